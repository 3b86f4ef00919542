import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createDevStack, type DevStackConfig, findFreePort, loadDevStackConfig, waitFor } from "@tern/devstack";
import type { Server, ServerGroup } from "./processes.js";

export interface BenchStack {
  config: DevStackConfig;
  brokers: string[];
  dynamodbEndpoint: string;
  region: string;
  /** Undefined when the broker (or DynamoDB Local) is an outside one (KAFKA_BROKERS, DYNAMODB_ENDPOINT): not measured. */
  brokerPid: number | undefined;
  dynamodbPid: number | undefined;
  /** `extraPorts` free ports for the bench's own processes, distinct from the stack's. */
  ports: number[];
  /** Stops the broker and DynamoDB Local and removes their folder. Idempotent. */
  stop(): Promise<void>;
}

/**
 * A bench's broker and DynamoDB Local, started by @tern/devstack on free ports in a temporary folder (or the outside
 * ones KAFKA_BROKERS / DYNAMODB_ENDPOINT name). If starting fails, what did start is stopped before the error is thrown.
 */
export async function startBenchStack(options: {
  dirPrefix: string;
  partitions: number;
  extraPorts: number;
}): Promise<BenchStack> {
  const config = loadDevStackConfig();
  const ports = new Set<number>();
  while (ports.size < 3 + options.extraPorts) ports.add(await findFreePort());
  const [kafkaPort, kafkaControllerPort, dynamodbPort, ...extra] = [...ports] as [number, number, number, ...number[]];
  const dir = mkdtempSync(join(tmpdir(), options.dirPrefix));
  const stack = createDevStack({
    dir,
    kafkaLibsDir: join(config.TERN_DEV_DIR, "kafka", "libs"),
    ...(config.KAFKA_BROKERS === undefined ? {} : { kafkaBrokers: config.KAFKA_BROKERS }),
    ...(config.DYNAMODB_ENDPOINT === undefined ? {} : { dynamodbEndpoint: config.DYNAMODB_ENDPOINT }),
    kafkaPort,
    kafkaControllerPort,
    dynamodbPort,
    partitions: options.partitions,
    region: config.AWS_REGION,
    kafkaHeap: config.KAFKA_HEAP,
    lock: false,
    stopGraceMs: 5_000,
    readyTimeoutMs: config.TERN_DEV_READY_TIMEOUT_MS,
  });
  let stopped: Promise<void> | undefined;
  const stop = () => {
    stopped ??= stack.stop().finally(() => rmSync(dir, { recursive: true, force: true }));
    return stopped;
  };
  try {
    const endpoints = await stack.start();
    const pidOf = (name: string) => stack.services().find((s) => s.name === name)?.pid;
    const brokerPid = pidOf("kafka");
    console.log(`broker ${endpoints.kafkaBrokers.join(",")} (pid ${brokerPid ?? "external: its CPU is not measured"})`);
    return {
      config,
      brokers: endpoints.kafkaBrokers,
      dynamodbEndpoint: endpoints.dynamodbEndpoint,
      region: endpoints.region,
      brokerPid,
      dynamodbPid: pidOf("dynamodb"),
      ports: extra,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** The control plane every Kafka bench starts first: a scheduler (it creates the topics) and one tern-onnx agent. */
export interface BenchControlPlane {
  scheduler: Server<"scheduler">;
  agent: Server<"agent">;
  schedulerUrl: string;
  /** The Kafka variables every platform process of the bench gets. */
  common: Record<string, string>;
}

/**
 * Starts the scheduler on `schedulerPort` (its table and id named after `name` and the namespace), waits until it is
 * active, then one agent `mlserver/0` (runtime tern-onnx, 64Mi), all in `group`.
 */
export async function startSchedulerAndAgent(
  group: ServerGroup,
  bench: BenchStack,
  options: {
    name: string;
    namespace: string;
    partitions: number;
    schedulerPort: number;
    schedulerEnv?: Record<string, string>;
  },
): Promise<BenchControlPlane> {
  const common = {
    KAFKA_BROKERS: bench.brokers.join(","),
    KAFKA_PARTITIONS: String(options.partitions),
    TERN_NAMESPACE: options.namespace,
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
  };
  const schedulerUrl = `http://127.0.0.1:${options.schedulerPort}`;
  const scheduler = await group.start({
    key: "scheduler",
    label: "scheduler",
    script: "packages/scheduler/src/main.ts",
    env: {
      ...common,
      DYNAMODB_ENDPOINT: bench.dynamodbEndpoint,
      AWS_REGION: bench.region,
      TERN_TABLE: `tern-${options.name}-${options.namespace}`,
      TERN_SCHEDULER_ID: `${options.name}-${options.namespace}`,
      TERN_SCHEDULER_HOST: "127.0.0.1",
      TERN_SCHEDULER_PORT: String(options.schedulerPort),
      LOG_LEVEL: "info",
      ...options.schedulerEnv,
    },
    ready: /"msg":"control API listening"/,
  });
  await waitFor(
    async () => {
      const res = await fetch(`${schedulerUrl}/v1/status`).catch(() => undefined);
      return res?.ok === true && ((await res.json()) as { active?: boolean }).active === true;
    },
    { timeoutMs: 60_000, intervalMs: 200, description: "scheduler active" },
  );
  const agent = await group.start({
    key: "agent",
    label: "agent mlserver/0",
    script: "packages/agent/src/main.ts",
    env: {
      TERN_SCHEDULER_URL: schedulerUrl,
      TERN_AGENT_SERVER: "mlserver",
      TERN_AGENT_REPLICA: "0",
      TERN_AGENT_HTTP_PORT: "0",
      TERN_AGENT_GRPC_PORT: "0",
      TERN_AGENT_MEMORY: "64Mi",
      LOG_LEVEL: "warn",
    },
    ready: /agent mlserver\/0 serving \S+ grpc (\S+)/,
  });
  return { scheduler, agent, schedulerUrl, common };
}
