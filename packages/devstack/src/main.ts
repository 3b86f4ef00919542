import { existsSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { hasCode } from "@tern/core";
import { formatServiceTable } from "./banner.js";
import { localComponents, reservedServices } from "./components.js";
import { loadDevStackConfig, repoRoot } from "./config.js";
import { createDevStack } from "./dev-stack.js";
import { errorText } from "./wait-for.js";

// `npm start`: the local stack in the foreground. Exit codes: 0 stopped on request, 1 failed, 2 bad configuration,
// 3 already running.

function fail(err: unknown): number {
  if (hasCode(err, "config.invalid")) {
    console.error(`tern: ${(err as Error).message}`);
    return 2;
  }
  if (hasCode(err, "conflict")) {
    console.error(`tern: ${(err as Error).message}`);
    return 3;
  }
  if (typeof err === "object" && err !== null && "code" in err && err instanceof Error) {
    console.error(`tern: ${err.message}`);
    return 1;
  }
  console.error("tern: unexpected error", err);
  return 1;
}

async function main(): Promise<number> {
  // The AWS SDK warns on every start that its 2027 releases will need Node 22; on a dev console that buries the
  // "what runs where" list. The SDK reads this variable once; an explicit setting still wins.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
  let config: ReturnType<typeof loadDevStackConfig>;
  try {
    // Settings from the repo's .env (see .env.example); variables already set in the environment win.
    const envFile = join(repoRoot, ".env");
    if (existsSync(envFile)) process.loadEnvFile(envFile);
    config = loadDevStackConfig();
  } catch (err) {
    return fail(err);
  }

  let finish: (code: number) => void = () => undefined;
  const finished = new Promise<number>((resolve) => {
    finish = resolve;
  });

  const stack = createDevStack({
    dir: config.TERN_DEV_DIR,
    ...(config.KAFKA_BROKERS === undefined ? {} : { kafkaBrokers: config.KAFKA_BROKERS }),
    ...(config.DYNAMODB_ENDPOINT === undefined ? {} : { dynamodbEndpoint: config.DYNAMODB_ENDPOINT }),
    kafkaPort: config.KAFKA_PORT,
    kafkaControllerPort: config.KAFKA_CONTROLLER_PORT,
    dynamodbPort: config.DYNAMODB_PORT,
    partitions: config.KAFKA_PARTITIONS,
    kafkaHeap: config.KAFKA_HEAP,
    region: config.AWS_REGION,
    readyTimeoutMs: config.TERN_DEV_READY_TIMEOUT_MS,
    stopGraceMs: config.TERN_DEV_STOP_GRACE_MS,
    onUnexpectedExit(name, exit, logTail) {
      console.error(
        `tern: ${name} stopped unexpectedly (${exit.signal ?? `exit code ${exit.code}`}); stopping the stack${logTail ? `\n${logTail}` : ""}`,
      );
      stack.stop().then(
        () => finish(1),
        () => finish(1),
      );
    },
  });
  for (const component of localComponents(config)) stack.addProcess(component);

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals++;
    if (signals > 1) {
      // A second Ctrl-C: stop waiting. The supervisor's exit hook still SIGKILLs every child group.
      console.error("tern: forced exit");
      process.exit(130);
    }
    console.log(`\ntern: ${signal}: stopping the dev stack (Ctrl-C again to force)`);
    stack.stop().then(
      () => {
        console.log("tern: stopped");
        finish(0);
      },
      (err: unknown) => {
        console.error(`tern: stop failed: ${errorText(err)}`);
        finish(1);
      },
    );
  };
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, onSignal);

  const startedAt = performance.now();
  const what = [
    config.KAFKA_BROKERS === undefined ? `Kafka on localhost:${config.KAFKA_PORT}` : "the given Kafka",
    config.DYNAMODB_ENDPOINT === undefined
      ? `DynamoDB Local on localhost:${config.DYNAMODB_PORT}`
      : "the given DynamoDB",
  ];
  console.log(`tern: starting ${what.join(" and ")} (data in ${config.TERN_DEV_DIR})`);
  try {
    await stack.start();
  } catch (err) {
    // A signal during start already stops the stack; report that rather than the aborted wait.
    if (signals > 0) return finished;
    return fail(err);
  }
  const seconds = ((performance.now() - startedAt) / 1000).toFixed(1);
  console.log(`tern: dev stack ready in ${seconds} s\n`);
  console.log(formatServiceTable(stack.services(), { cwd: process.cwd(), reserved: reservedServices }));
  console.log(`\nEvery topic gets ${config.KAFKA_PARTITIONS} partitions (KAFKA_PARTITIONS). Press Ctrl-C to stop.`);
  return finished;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => process.exit(fail(err)),
);
