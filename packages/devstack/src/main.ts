import { existsSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { createControlClient } from "@tern/control";
import { hasCode } from "@tern/core";
import { formatServiceTable, shortPath } from "./banner.js";
import { localComponents, localModelGatewayReplicas, localSchedulerUrl, reservedServices } from "./components.js";
import { loadDevStackConfig, repoRoot } from "./config.js";
import { createDevStack } from "./dev-stack.js";
import { createLocalController } from "./local-controller.js";
import { type PythonEnvRun, runPythonEnv } from "./python-env.js";
import {
  applyManifests,
  IRIS_SAMPLES,
  type IrisSample,
  inferIris,
  irisCurl,
  waitForModelAvailable,
} from "./samples.js";
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
    maxRestartsPerMinute: config.TERN_DEV_MAX_RESTARTS,
    // A crash is restarted by the stack itself (and logged); only a component that keeps crashing ends the stack.
    onGiveUp(name) {
      console.error(`tern: ${name} keeps crashing; stopping the stack`);
      shutdown().then(
        () => {
          console.error(`tern: stopped (gave up on ${name}; its log tail is above)`);
          finish(1);
        },
        (err: unknown) => {
          console.error(`tern: stop failed: ${errorText(err)}`);
          finish(1);
        },
      );
    },
  });
  const modelGateways = localModelGatewayReplicas(config);
  if (modelGateways.capped) {
    console.log(
      `tern: running ${modelGateways.replicas} model-gateway replicas, not ${config.TERN_MODELGATEWAY_REPLICAS}: ` +
        `a group's consumers never exceed KAFKA_PARTITIONS (${config.KAFKA_PARTITIONS})`,
    );
  }
  for (const component of localComponents(config)) stack.addProcess(component);

  const schedulerUrl = localSchedulerUrl(config);
  const client = createControlClient({
    url: schedulerUrl,
    ...(config.TERN_SCHEDULER_TOKEN === undefined ? {} : { token: config.TERN_SCHEDULER_TOKEN }),
  });
  // MLServer-backed agents wait for two things: the venv (installed in the background on the first start) and the
  // ONNX samples' first answer, so that four MLServer starts do not slow down the first curl on two cores.
  let onnxSamplesSettled: () => void = () => undefined;
  const onnxSettled = new Promise<void>((resolve) => {
    onnxSamplesSettled = resolve;
  });
  let mlserverInstall: PythonEnvRun | undefined;
  let mlserverReady: (python: string | undefined) => void = () => undefined;
  /** The venv's python once the mlserver agents may start; undefined when MLServer is unavailable. */
  const mlserverPrepared = new Promise<string | undefined>((resolve) => {
    mlserverReady = resolve;
  });
  const logDir = join(config.TERN_DEV_DIR, "logs");
  const installLog = join(logDir, "mlserver-install.log");
  async function prepareMlserver(): Promise<Record<string, string>> {
    const began = performance.now();
    const install = runPythonEnv({
      root: repoRoot,
      name: "mlserver",
      logFile: installLog,
      env: { ...process.env, ...stack.ownerEnv },
      onInstalling: () =>
        console.log(
          `tern: installing MLServer 1.7.1 into .tern/python/mlserver in the background (first start only: a few minutes, ~560 MB; log ${shortPath(installLog, process.cwd())}); the mlserver Server's agents start once it is ready`,
        ),
      onProgress: (line) => console.log(`tern: MLServer install: ${line}`),
    });
    mlserverInstall = install;
    if (install.pid !== undefined) stack.recordChildren("mlserver-install", [install.pid]);
    let python: string;
    try {
      python = await install.python;
    } catch (err) {
      mlserverReady(undefined);
      throw new Error(
        `MLServer is not available: ${errorText(err)} (log ${shortPath(installLog, process.cwd())}); the other Servers keep serving`,
      );
    } finally {
      stack.recordChildren("mlserver-install", []);
    }
    if (install.installed()) {
      console.log(`tern: MLServer installed in ${((performance.now() - began) / 1000).toFixed(0)} s`);
    }
    await onnxSettled;
    mlserverReady(python);
    return { TERN_MLSERVER_PYTHON: python };
  }

  const controller = createLocalController({
    client,
    schedulerUrl,
    cwd: repoRoot,
    logDir,
    // Each stack its own MLServer folders (TERN_AGENT_CACHE_DIR/mlserver/<server>-<replica>) and download cache.
    env: {
      ...process.env,
      ...stack.ownerEnv,
      TERN_AGENT_CACHE_DIR: process.env.TERN_AGENT_CACHE_DIR || join(config.TERN_DEV_DIR, "agent-cache"),
    },
    prepareRuntime: { mlserver: prepareMlserver },
    stopGraceMs: config.TERN_DEV_AGENT_STOP_GRACE_MS,
    maxRestartsPerMinute: config.TERN_DEV_AGENT_MAX_RESTARTS,
    logger: { info: (m) => console.log(`tern: ${m}`), warn: (m) => console.error(`tern: ${m}`) },
    onChildrenChanged: (pids) => stack.recordChildren("agents", pids),
  });
  // Ends the sample waits at once on Ctrl-C.
  const started = new AbortController();

  // Agents first (they drain through the scheduler), then the gateway, the scheduler, Kafka and DynamoDB (the
  // supervisor stops the stack's children newest first).
  let shuttingDown: Promise<void> | undefined;
  function shutdown(): Promise<void> {
    shuttingDown ??= (async () => {
      started.abort(new Error("stopping"));
      try {
        await Promise.all([controller.stop(), mlserverInstall?.stop()]);
      } finally {
        await stack.stop();
      }
    })();
    return shuttingDown;
  }

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals++;
    if (signals > 1) {
      // A second Ctrl-C: stop waiting. The supervisors' exit hooks still SIGKILL every child group.
      console.error("tern: forced exit");
      process.exit(130);
    }
    console.log(`\ntern: ${signal}: stopping the dev stack (Ctrl-C again to force)`);
    const stopStarted = performance.now();
    shutdown().then(
      () => {
        console.log(`tern: stopped in ${((performance.now() - stopStarted) / 1000).toFixed(1)} s`);
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
  const elapsed = (): string => ((performance.now() - startedAt) / 1000).toFixed(1);
  const what = [
    config.KAFKA_BROKERS === undefined ? `Kafka on localhost:${config.KAFKA_PORT}` : "the given Kafka",
    config.DYNAMODB_ENDPOINT === undefined
      ? `DynamoDB Local on localhost:${config.DYNAMODB_PORT}`
      : "the given DynamoDB",
  ];
  console.log(`tern: starting ${what.join(" and ")}, the scheduler and the gateway (data in ${config.TERN_DEV_DIR})`);
  try {
    await stack.start();
  } catch (err) {
    // A signal during start already stops the stack; report that rather than the aborted wait.
    if (signals > 0) return finished;
    await controller.stop().catch(() => undefined);
    await mlserverInstall?.stop();
    return fail(err);
  }
  controller.start();
  console.log(`tern: platform up in ${elapsed()} s; the local controller starts one agent per Server replica\n`);
  console.log(formatServiceTable(stack.services(), { cwd: process.cwd(), reserved: reservedServices }));
  console.log(
    `  agents          one per Server replica    logs ${shortPath(join(config.TERN_DEV_DIR, "logs"), process.cwd())}/agent-<server>-<replica>.log`,
  );
  console.log(`\nEvery topic gets ${config.KAFKA_PARTITIONS} partitions (KAFKA_PARTITIONS).`);

  /** Waits until a sample iris is available and answers label 0 through the gateway. */
  async function sampleReady(sample: IrisSample, timeoutMs: number): Promise<void> {
    await waitForModelAvailable(client, sample.model, timeoutMs, started.signal);
    await inferIris(config.TERN_GATEWAY_PORT, sample, config.TERN_DEV_SAMPLES_TIMEOUT_MS, started.signal);
  }

  /** In the background: once the mlserver agents may start, waits for the sklearn iris and prints its curl. */
  async function mlserverSampleReady(): Promise<void> {
    const python = await mlserverPrepared;
    if (python === undefined || started.signal.aborted) return;
    const sample = IRIS_SAMPLES.mlserver;
    try {
      // Its agents start MLServer first (each within TERN_MLSERVER_START_TIMEOUT_MS), then load it.
      await sampleReady(sample, config.TERN_DEV_SAMPLES_TIMEOUT_MS + config.TERN_MLSERVER_START_TIMEOUT_MS);
      console.log(`\ntern: ${sample.title} is ready, ${elapsed()} s after the start (label 0, setosa):\n`);
      console.log(`  ${irisCurl(config.TERN_GATEWAY_PORT, sample.model)}\n`);
    } catch (err) {
      if (started.signal.aborted) return;
      console.error(
        `tern: ${sample.title} is not ready: ${(err as Error).message ?? errorText(err)}\n` +
          `tern: see \`npx tern status model ${sample.model}\` and the agent logs in ${logDir}`,
      );
    }
  }

  if (config.TERN_SAMPLES) {
    let models: string[] = [];
    try {
      const applied = await applyManifests(client, config.TERN_SAMPLES_DIR);
      models = applied.models;
      console.log(`tern: applied ${shortPath(config.TERN_SAMPLES_DIR, process.cwd())}: ${applied.summary}`);
      // The ONNX iris first: it answers in seconds. The sklearn iris follows once MLServer is there (below).
      if (models.includes(IRIS_SAMPLES.onnx.model)) {
        await sampleReady(IRIS_SAMPLES.onnx, config.TERN_DEV_SAMPLES_TIMEOUT_MS);
        console.log(
          `\ntern: ready in ${elapsed()} s. Try ${IRIS_SAMPLES.onnx.title} through the gateway (label 0, setosa):\n`,
        );
        console.log(`  ${irisCurl(config.TERN_GATEWAY_PORT, IRIS_SAMPLES.onnx.model)}\n`);
      } else {
        console.log(`\ntern: ready in ${elapsed()} s.\n`);
      }
      if (models.includes(IRIS_SAMPLES.mlserver.model)) {
        console.log(
          `tern: ${IRIS_SAMPLES.mlserver.title} answers once MLServer is installed and its agents are up; its curl follows then.\n`,
        );
      }
      console.log(`  npx tern status model ${IRIS_SAMPLES.onnx.model}   # its state and replicas`);
      console.log(
        `  npx tern list servers             # the sample Servers and their agents${config.TERN_DATAFLOW_WORKERS > 0 ? "" : "\n"}`,
      );
      if (config.TERN_DATAFLOW_WORKERS > 0) {
        console.log("  npx tern list dataflow            # the dataflow workers and each pipeline's owners\n");
      }
    } catch (err) {
      if (signals > 0 || started.signal.aborted) return finished;
      console.error(
        `tern: the samples are not ready: ${(err as Error).message ?? errorText(err)}\n` +
          `tern: the platform keeps running; see \`npx tern status model ${IRIS_SAMPLES.onnx.model}\` and the agent logs in ${logDir}`,
      );
    }
    onnxSamplesSettled();
    if (models.includes(IRIS_SAMPLES.mlserver.model)) void mlserverSampleReady();
  } else {
    onnxSamplesSettled();
    console.log(`\ntern: ready in ${elapsed()} s (TERN_SAMPLES=false: nothing applied).`);
  }
  console.log("Press Ctrl-C to stop.");
  return finished;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => process.exit(fail(err)),
);
