/**
 * Pipelines benchmark, complete (issue 11; not a test): what a pipeline costs as a client of the gateway's REST sees it,
 * against a model called directly through the same gateway, in one run.
 *
 *   npm run bench:pipelines        (node --import tsx bench/pipelines/run.ts)
 *
 * Starts (or uses, with KAFKA_BROKERS / DYNAMODB_ENDPOINT) a Kafka broker and DynamoDB Local on free ports, then a
 * scheduler (TERN_DATAFLOW_REPLICATION 1), one agent (`mlserver/0`, tern-onnx), one model gateway (`modelgateway-0`),
 * ONE dataflow worker (`dataflow-0`) and the Node gateway (REST, with KAFKA_BROKERS), all on loopback. Every model is
 * samples/models/add10 (y = x + 10). The paths, each a POST of OIP REST JSON to the gateway:
 *
 * - `model`: `/v2/models/add10/infer` — the gateway forwards it over HTTP to the agent (no Kafka): the baseline;
 * - `one`: `/v2/pipelines/bench-one/infer`, the 1-step pipeline (add10): gateway → pipeline inputs topic → worker →
 *   add10's inputs topic → model gateway → agent → add10's outputs topic → worker → pipeline outputs topic → gateway;
 * - `chain`: `/v2/pipelines/bench-chain/infer`, the 3-step chain add10 → add10-b → add10-c (the same ONNX file under
 *   three names, since a step is named after its model), answer x + 30;
 * - `lambda`: the 1-step pipeline through the Lambda entry invoked in this process (`createLambdaApp` + `handle`, API
 *   Gateway v2 events; its answers come through the DynamoDB rendezvous) — measured only when this branch's Lambda
 *   entry answers it (the result records whether it did);
 *
 * each in closed loops over BENCH_CONNECTIONS keep-alive connections ("1,32"), in rounds whose order alternates so
 * that machine noise hits every path alike. Every answer is parsed and its y checked. CPU time per request is read
 * from /proc/<pid>/stat for every process: gateway, dataflow worker, model gateway, agent, broker (its JVM), DynamoDB
 * Local, scheduler, and this process (`client`).
 *
 * BENCH_ROUNDS (default 3), BENCH_DURATION_S (5), BENCH_WARMUP_S (3, per scenario, once), BENCH_CONNECTIONS ("1,32"),
 * BENCH_PATHS ("model,one,chain,lambda": the paths to measure, e.g. "model,one" for a quick look at the 1-step figures),
 * BENCH_CPU_PROF (a folder: the gateway, the worker and the model gateway run with `--cpu-prof` and write their
 * profiles there when the run stops them; profiling costs CPU, so figures of such a run are not for the record).
 * Writes bench/results/pipelines.json and .md (BENCH_OUT to change the name); bench/pipelines/notes.md (the written
 * analysis) is appended to the .md. The Kafka-path half (no HTTP front; 100 pipelines on one worker) is
 * bench/pipelines/kafka.ts (`npm run bench:pipelines-kafka`).
 */

import http from "node:http";
import { loadavg } from "node:os";
import { join } from "node:path";
import type { ModelStatus } from "@tern/core";
import { waitFor } from "@tern/devstack";
import { createLambdaApp, LAMBDA_MAX_DEADLINE_MS } from "@tern/gateway";
import { resolveKafkaSettings } from "@tern/kafka";
import { handle } from "hono/aws-lambda";
import pino from "pino";
import { startBenchStack, startSchedulerAndAgent } from "../lib/bench-stack.js";
import { commandLine, envNumber } from "../lib/config.js";
import { closedLoop, type LoadWindow } from "../lib/kafka-load.js";
import { createServerGroup, REPO_ROOT, runMain } from "../lib/processes.js";
import { type MachineInfo, machineLines, notesLines, rerenderIfAsked, startRun, writeResults } from "../lib/report.js";
import { median, round2, round3 } from "../lib/stats.js";

const OUT = process.env.BENCH_OUT ?? "pipelines";
const ROUNDS = envNumber("BENCH_ROUNDS", 3, 1);
const DURATION_S = envNumber("BENCH_DURATION_S", 5, 1);
const WARMUP_S = envNumber("BENCH_WARMUP_S", 3, 0);
const CONNECTIONS = (process.env.BENCH_CONNECTIONS ?? "1,32").split(",").map((s) => {
  const n = Number(s.trim());
  if (!Number.isInteger(n) || n < 1) throw new Error(`BENCH_CONNECTIONS: ${JSON.stringify(s)} is not a count >= 1`);
  return n;
});
const CPU_PROF_DIR = process.env.BENCH_CPU_PROF;
const PARTITIONS = 4;
const NAMESPACE = `plgw${Date.now().toString(36)}`;
/** Bound on the whole run: everything is stopped after it. */
const RUN_DEADLINE_MS = 20 * 60_000;
/** The gateway's deadline for one request (TERN_GATEWAY_DEADLINE_MS and ..._PIPELINE_TIMEOUT_MS); an error fails the run. */
const REQUEST_DEADLINE_MS = 30_000;

/** Targets of issue 11 on this machine. */
const TARGET_ADDED_P50_MS = 10;
const TARGET_ADDED_P99_MS = 25;
const TARGET_ONE_RPS = 1_000;
const TARGET_ONE_RPS_CONNECTIONS = 32;

const PATHS = ["model", "one", "chain", "lambda"] as const;
type PathName = (typeof PATHS)[number];
const WANTED_PATHS = (process.env.BENCH_PATHS ?? PATHS.join(",")).split(",").map((s) => {
  const p = s.trim() as PathName;
  if (!PATHS.includes(p)) throw new Error(`BENCH_PATHS: ${JSON.stringify(s)} is not one of ${PATHS.join(", ")}`);
  return p;
});
/** Node options of the profiled processes (BENCH_CPU_PROF), none otherwise. */
const profArgs = (): string[] => (CPU_PROF_DIR ? ["--cpu-prof", `--cpu-prof-dir=${CPU_PROF_DIR}`] : []);
/** What each path adds to x: add10 once, or three times along the chain. */
const ADDED: Record<PathName, number> = { model: 10, one: 10, chain: 30, lambda: 10 };
const URL_PATH: Record<PathName, string> = {
  model: "/v2/models/add10/infer",
  one: "/v2/pipelines/bench-one/infer",
  chain: "/v2/pipelines/bench-chain/infer",
  lambda: "/v2/pipelines/bench-one/infer",
};

/** x of request i: 1 × 2 FP32 integers, exact in FP32 after + 30. */
const xOf = (i: number): [number, number] => [i % 1000, -(i % 777)];
const body = (i: number) => JSON.stringify({ inputs: [{ name: "x", datatype: "FP32", shape: [1, 2], data: xOf(i) }] });

function checker(path: PathName): (i: number, answer: Uint8Array) => void {
  return (i, answer) => {
    const text = Buffer.from(answer).toString("utf8");
    const y = (JSON.parse(text) as { outputs?: Array<{ name: string; data: number[] }> }).outputs?.find(
      (o) => o.name === "y",
    )?.data;
    const want = xOf(i).map((v) => v + ADDED[path]);
    if (!y || y.length !== want.length || y.some((v, k) => v !== want[k]))
      throw new Error(`${path} request ${i}: ${text.slice(0, 300)}; expected y ${JSON.stringify(want)}`);
  };
}

/**
 * A REST client of the gateway over exactly `connections` keep-alive sockets: `call(i)` POSTs request i's body to the
 * path and resolves with the 200 answer's bytes; any other status, or a socket error, rejects (and fails the run).
 */
function httpCaller(base: URL, path: PathName, connections: number) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections, maxFreeSockets: connections });
  const call = (i: number): Promise<Uint8Array> =>
    new Promise((resolve, reject) => {
      const payload = body(i);
      const req = http.request(
        {
          agent,
          host: base.hostname,
          port: base.port,
          method: "POST",
          path: URL_PATH[path],
          headers: { "content-type": "application/json", "content-length": Buffer.byteLength(payload) },
          timeout: REQUEST_DEADLINE_MS + 5_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => {
            const bytes = Buffer.concat(chunks);
            if (res.statusCode === 200) resolve(bytes);
            else reject(new Error(`${path} request ${i}: ${res.statusCode} ${bytes.toString("utf8").slice(0, 300)}`));
          });
          res.on("error", reject);
        },
      );
      req.on("timeout", () => req.destroy(new Error(`${path} request ${i}: no answer within the client's deadline`)));
      req.on("error", reject);
      req.end(payload);
    });
  return { call, close: () => agent.destroy() };
}

/** The Lambda entry's result for an API Gateway v2 event (hono/aws-lambda). */
interface LambdaResult {
  statusCode: number;
  body: string;
  isBase64Encoded: boolean;
}

/**
 * The Lambda entry invoked in-process as API Gateway's HTTP API would (payload 2.0 events), `createLambdaApp` +
 * `handle` exactly as packages/gateway/src/lambda.ts builds it, with the environment a deployed function would have.
 */
function lambdaCaller(env: Record<string, string>) {
  const handler = handle(createLambdaApp({ ...process.env, ...env }, pino({ name: "gateway", level: "warn" }))) as (
    event: unknown,
    context: unknown,
  ) => Promise<LambdaResult>;
  let n = 0;
  const call = async (i: number): Promise<Uint8Array> => {
    const path = URL_PATH.lambda;
    const domainName = "bench.execute-api.us-east-1.amazonaws.com";
    const result = await handler(
      {
        version: "2.0",
        routeKey: "$default",
        rawPath: path,
        rawQueryString: "",
        headers: { host: domainName, "content-type": "application/json" },
        requestContext: {
          accountId: "123456789012",
          apiId: "bench",
          domainName,
          domainPrefix: "bench",
          http: { method: "POST", path, protocol: "HTTP/1.1", sourceIp: "127.0.0.1", userAgent: "tern-bench" },
          requestId: `bench-${++n}`,
          routeKey: "$default",
          stage: "$default",
          time: new Date().toISOString(),
          timeEpoch: Date.now(),
        },
        body: body(i),
        isBase64Encoded: false,
      },
      {},
    );
    const bytes = Buffer.from(result.body, result.isBase64Encoded ? "base64" : "utf8");
    if (result.statusCode !== 200)
      throw new Error(`lambda request ${i}: ${result.statusCode} ${bytes.toString("utf8").slice(0, 300)}`);
    return bytes;
  };
  return { call };
}

/** A scenario: one path at some connections. */
interface ScenarioResult {
  path: PathName;
  connections: number;
  rounds: LoadWindow[];
  /** Medians over rounds of each figure. */
  median: LoadWindow;
}

interface Result {
  startedAt: string;
  command: string;
  machine: MachineInfo;
  /** Load average read right before each measured window (1 min), in run order. */
  loadDuringRun: number[];
  settings: {
    rounds: number;
    durationS: number;
    warmupS: number;
    partitions: number;
    connections: number[];
    replication: number;
    /** `resolveKafkaSettings()`: what the gateway, the model gateway and the worker run with. */
    kafka: ReturnType<typeof resolveKafkaSettings>;
    broker: string;
    /** Environment of the gateway beyond the installation's (Kafka, namespace, scheduler). */
    gatewayEnv: Record<string, string>;
    /** Environment of the dataflow worker beyond the installation's. */
    workerEnv: Record<string, string>;
  };
  scenarios: ScenarioResult[];
  /** Whether the Lambda entry answered the 1-step pipeline on this branch (its rows are measured only then), and if not, what it said. */
  lambda: { available: boolean; answer?: string };
}

// ---------------------------------------------------------------------------------------------------------------
// Report

function pathLabel(path: PathName): string {
  if (path === "model") return "model add10 direct (gateway → agent, HTTP)";
  if (path === "one") return "1-step pipeline (add10) over Kafka";
  if (path === "lambda") return "1-step pipeline through the Lambda handler, in-process (DynamoDB rendezvous)";
  return "3-step chain (add10 → add10-b → add10-c) over Kafka";
}

const signed = (n: number): string => (n >= 0 ? `+${n}` : `${n}`);

const CPU_KEYS = ["gateway", "worker", "modelgateway", "agent", "broker", "dynamodb", "scheduler", "client"];

function render(r: Result): string {
  const rows = r.scenarios.map((s) => {
    const m = s.median;
    const cpu = CPU_KEYS.map((k) => (m.cpuUsPerRequest[k] === undefined ? "–" : String(m.cpuUsPerRequest[k])));
    const total = round2(Object.values(m.cpuUsPerRequest).reduce((a, b) => a + b, 0));
    return `| ${pathLabel(s.path)} | ${s.connections} | ${m.rps} | ${m.p50} | ${m.p90} | ${m.p99} | ${cpu.join(" | ")} | ${total} |`;
  });
  const verdicts: string[] = [];
  const side: string[] = [];
  for (const connections of r.settings.connections) {
    const model = r.scenarios.find((s) => s.path === "model" && s.connections === connections);
    if (!model) continue;
    for (const path of ["one", "chain", "lambda"] as const) {
      const p = r.scenarios.find((s) => s.path === path && s.connections === connections);
      if (!p) continue;
      const added50 = round3(p.median.p50 - model.median.p50);
      const added99 = round3(p.median.p99 - model.median.p99);
      side.push(
        `| ${connections} | ${path} | ${model.median.rps} | ${p.median.rps} | ${round3(p.median.rps / model.median.rps)} | ` +
          `${model.median.p50} | ${p.median.p50} | ${signed(added50)} | ${model.median.p99} | ${p.median.p99} | ${signed(added99)} |`,
      );
      if (connections === 1 && path === "one") {
        verdicts.push(
          `- A 1-step pipeline adds ≤ ${TARGET_ADDED_P50_MS} ms p50 at 1 connection over the direct model path: ` +
            `${signed(added50)} ms (${p.median.p50} against ${model.median.p50}) — **${added50 <= TARGET_ADDED_P50_MS ? "met" : "missed"}**.`,
          `- … and ≤ ${TARGET_ADDED_P99_MS} ms p99: ${signed(added99)} ms (${p.median.p99} against ${model.median.p99}) — ` +
            `**${added99 <= TARGET_ADDED_P99_MS ? "met" : "missed"}**.`,
        );
      }
    }
  }
  const one32 = r.scenarios.find((s) => s.path === "one" && s.connections === TARGET_ONE_RPS_CONNECTIONS);
  if (one32) {
    verdicts.push(
      `- A 1-step pipeline moves ≥ ${TARGET_ONE_RPS} req/s at ${TARGET_ONE_RPS_CONNECTIONS} connections: ` +
        `${one32.median.rps} req/s (p50 ${one32.median.p50} ms) — **${one32.median.rps >= TARGET_ONE_RPS ? "met" : "missed"}**.`,
    );
  }
  const k = r.settings.kafka;
  return [
    "# Pipelines through the gateway's REST: direct model, 1-step pipeline, 3-step chain (issue 11)",
    "",
    `Run ${r.startedAt}: \`${r.command}\`.`,
    ...machineLines(r.machine),
    `1-min load average before each measured window: ${r.loadDuringRun.join(", ")}.`,
    "",
    `${r.settings.rounds} rounds × ${r.settings.durationS} s per scenario (order reversed every other round), ` +
      `${r.settings.warmupS} s warm-up each; closed loops over exactly N keep-alive connections (node:http); x is 1 × 2 ` +
      "FP32 in OIP REST JSON, every answer parsed and its y checked against x + 10 (x + 30 for the chain). One " +
      `scheduler (TERN_DATAFLOW_REPLICATION ${r.settings.replication}), one agent (tern-onnx: add10, add10-b, add10-c, ` +
      "each samples/models/add10), one model gateway (modelgateway-0), one dataflow worker (dataflow-0), the Node " +
      `gateway (REST only), one broker (${r.settings.broker}); topics of ${r.settings.partitions} partitions. Figures ` +
      "are medians over rounds; CPU is µs per request from /proc/<pid>/stat (clock ticks of 10 ms, so small figures " +
      "are coarse); `client` is this bench process (the load generator).",
    "",
    r.lambda.available
      ? "The Lambda rows invoke the Lambda entry (`createLambdaApp` + `handle`, as packages/gateway/src/lambda.ts) in this " +
        "process with API Gateway v2 events: its CPU is in `client`, and N connections there means N invocations at once " +
        "in one process (a deployed function runs one invocation per execution environment)."
      : `**No Lambda rows**: the Lambda entry did not answer the 1-step pipeline on this branch (it said: ${r.lambda.answer ?? "?"}).`,
    "",
    "## Targets",
    "",
    ...verdicts,
    "",
    "## Side by side (medians over rounds)",
    "",
    "| connections | pipeline | model req/s | pipeline req/s | ratio | model p50 ms | pipeline p50 ms | added p50 ms | model p99 ms | pipeline p99 ms | added p99 ms |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
    ...side,
    "",
    "## Every scenario (medians over rounds)",
    "",
    `| path | connections | req/s | p50 ms | p90 ms | p99 ms | CPU µs/req ${CPU_KEYS.join(" | ")} | all processes |`,
    `|---|---|---|---|---|---|${CPU_KEYS.map(() => "---|").join("")}---|`,
    ...rows,
    "",
    "Per round (req/s, p50 ms, p99 ms):",
    "",
    ...r.scenarios.map(
      (s) =>
        `- ${pathLabel(s.path)}, ${s.connections} connection${s.connections === 1 ? "" : "s"}: ${s.rounds.map((w) => `${w.rps} / ${w.p50} / ${w.p99}`).join("; ")}`,
    ),
    "",
    "## Settings",
    "",
    "The gateway, the model gateway and the dataflow worker run `resolveKafkaSettings()` (packages/kafka/src/settings.ts) " +
      "as they are; the worker sets only its `clientId` and its session timeout from TERN_DATAFLOW_SESSION_TIMEOUT_MS " +
      "(default 10 000, the same as the bus's) with a heartbeat of a third of it capped at 3 000, i.e. the same values:",
    "",
    "```json",
    JSON.stringify(k, null, 2),
    "```",
    "",
    `Gateway environment beyond the installation's: ${JSON.stringify(r.settings.gatewayEnv)}. ` +
      `Dataflow worker: ${JSON.stringify(r.settings.workerEnv)}.`,
    "",
    ...notesLines(join(REPO_ROOT, "bench/pipelines/notes.md")),
  ].join("\n");
}

// ---------------------------------------------------------------------------------------------------------------
// Stack

async function getJson<T>(url: string): Promise<T | undefined> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  return res.status === 200 ? ((await res.json()) as T) : undefined;
}

async function apply(schedulerUrl: string, yaml: string): Promise<void> {
  const res = await fetch(`${schedulerUrl}/v1/apply`, {
    method: "POST",
    headers: { "content-type": "application/yaml" },
    body: yaml,
    signal: AbortSignal.timeout(60_000),
  });
  if (res.status !== 200) throw new Error(`apply: ${res.status} ${await res.text()}`);
}

const MODELS = ["add10", "add10-b", "add10-c"];

const modelManifest = (name: string) => `apiVersion: mlops.seldon.io/v1alpha1
kind: Model
metadata: {name: ${name}}
spec:
  storageUri: "file://./samples/models/add10"
  requirements: [onnx]
  memory: 10Ki
`;

const ONE = `apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: bench-one}
spec:
  steps:
    - name: add10
  output:
    steps: [add10]
`;

const CHAIN = `apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: bench-chain}
spec:
  steps:
    - name: add10
    - name: add10-b
      inputs: [add10.outputs.y]
      tensorMap: {add10.outputs.y: x}
    - name: add10-c
      inputs: [add10-b.outputs.y]
      tensorMap: {add10-b.outputs.y: x}
  output:
    steps: [add10-c]
`;

const MANIFESTS = [
  `apiVersion: mlops.seldon.io/v1alpha1
kind: Server
metadata: {name: mlserver}
spec: {serverConfig: tern-onnx, replicas: 1}
`,
  ...MODELS.map(modelManifest),
].join("---\n");

// ---------------------------------------------------------------------------------------------------------------
// Main

const group = createServerGroup({ startDeadlineMs: 90_000 });
let stopStack = async (): Promise<void> => undefined;
/** Stops everything, newest first: the platform processes, broker and DynamoDB. */
const cleanUp = async (): Promise<void> => {
  await group.stopAll();
  await stopStack();
  stopStack = async () => undefined;
};

async function main(): Promise<void> {
  if (rerenderIfAsked<Result>(OUT, render)) return;
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
  const run = startRun("pipelines");
  const runDeadline = setTimeout(() => {
    console.error(`pipelines bench: over ${RUN_DEADLINE_MS / 60_000} min, stopping everything`);
    void cleanUp().then(() => process.exit(1));
  }, RUN_DEADLINE_MS);
  runDeadline.unref();

  // 1. Broker and DynamoDB Local (or the given ones).
  const bench = await startBenchStack({ dirPrefix: "tern-plgw-bench-", partitions: PARTITIONS, extraPorts: 2 });
  stopStack = bench.stop;
  const { config, brokers, brokerPid, dynamodbPid } = bench;
  const endpoints = { dynamodbEndpoint: bench.dynamodbEndpoint, region: bench.region };
  const [schedulerPort, gatewayPort] = bench.ports as [number, number];

  // 2. Scheduler, agent, model gateway, one dataflow worker, the gateway; models, then the bench's two pipelines.
  const replication = 1;
  const { scheduler, agent, schedulerUrl, common } = await startSchedulerAndAgent(group, bench, {
    name: "plgw",
    namespace: NAMESPACE,
    partitions: PARTITIONS,
    schedulerPort,
    schedulerEnv: { TERN_DATAFLOW_REPLICATION: String(replication) },
  });
  const modelGateway = await group.start({
    key: "modelgateway",
    label: "model gateway",
    script: "packages/model-gateway/src/main.ts",
    env: { ...common, TERN_SCHEDULER_URL: schedulerUrl, TERN_MODELGATEWAY_ID: "modelgateway-0", LOG_LEVEL: "warn" },
    ready: /tern model-gateway modelgateway-0 running/,
    nodeArgs: profArgs(),
  });
  const workerEnv: Record<string, string> = { TERN_DATAFLOW_ID: "dataflow-0", LOG_LEVEL: "warn" };
  const worker = await group.start({
    key: "worker",
    label: "dataflow worker",
    script: "packages/dataflow/src/main.ts",
    // The state table: where the worker puts the Lambda entry's replies (reply#<id>).
    env: {
      ...common,
      TERN_SCHEDULER_URL: schedulerUrl,
      TERN_TABLE: `tern-plgw-${NAMESPACE}`,
      DYNAMODB_ENDPOINT: endpoints.dynamodbEndpoint,
      AWS_REGION: endpoints.region,
      ...workerEnv,
    },
    ready: /tern dataflow dataflow-0 running/,
    nodeArgs: profArgs(),
  });
  const gatewayEnv: Record<string, string> = {
    TERN_GATEWAY_HOST: "127.0.0.1",
    TERN_GATEWAY_PORT: String(gatewayPort),
    TERN_GATEWAY_GRPC: "false",
    TERN_GATEWAY_DEADLINE_MS: String(REQUEST_DEADLINE_MS),
    TERN_GATEWAY_PIPELINE_TIMEOUT_MS: String(REQUEST_DEADLINE_MS),
    LOG_LEVEL: "info",
  };
  const gateway = await group.start({
    key: "gateway",
    label: "gateway",
    script: "packages/gateway/src/server.ts",
    env: { ...common, TERN_SCHEDULER_URL: schedulerUrl, ...gatewayEnv },
    ready: /"msg":"gateway listening"/,
    nodeArgs: profArgs(),
  });
  await apply(schedulerUrl, MANIFESTS);
  for (const m of MODELS) {
    await waitFor(
      async () => (await getJson<ModelStatus>(`${schedulerUrl}/v1/models/${m}`))?.state === "ModelAvailable",
      { timeoutMs: 60_000, intervalMs: 200, description: `${m} available on the agent` },
    );
  }
  await apply(schedulerUrl, [ONE, CHAIN].join("---\n"));
  for (const p of ["bench-one", "bench-chain"]) {
    await waitFor(
      async () => (await getJson<{ state: string }>(`${schedulerUrl}/v1/pipelines/${p}`))?.state === "PipelineReady",
      { timeoutMs: 90_000, intervalMs: 200, description: `${p} PipelineReady` },
    );
  }

  const base = new URL(`http://127.0.0.1:${gatewayPort}`);
  const lambda = lambdaCaller({
    KAFKA_BROKERS: brokers.join(","),
    KAFKA_PARTITIONS: String(PARTITIONS),
    TERN_NAMESPACE: NAMESPACE,
    TERN_TABLE: `tern-plgw-${NAMESPACE}`,
    DYNAMODB_ENDPOINT: endpoints.dynamodbEndpoint,
    AWS_REGION: endpoints.region,
    // The Lambda entry refuses a deadline API Gateway's 30 s would cut: its longest (docs/lambda.md).
    TERN_GATEWAY_DEADLINE_MS: String(LAMBDA_MAX_DEADLINE_MS),
    TERN_GATEWAY_PIPELINE_TIMEOUT_MS: String(LAMBDA_MAX_DEADLINE_MS),
    LOG_LEVEL: "warn",
  });
  // Does this branch's Lambda entry serve pipelines? Its rows are measured only if it answers right.
  let lambdaState: Result["lambda"] = { available: false };
  try {
    checker("lambda")(0, await lambda.call(0));
    lambdaState = { available: true };
  } catch (err) {
    lambdaState = { available: false, answer: (err as Error).message.slice(0, 300) };
    console.log(`no Lambda rows: ${lambdaState.answer}`);
  }
  const paths = PATHS.filter((p) => WANTED_PATHS.includes(p) && (p !== "lambda" || lambdaState.available));
  // Each path's first right answer proves it end to end (the gateway follows the route table; its reply reader joins).
  for (const path of paths.filter((p) => p !== "lambda")) {
    const probe = httpCaller(base, path, 1);
    const check = checker(path);
    await waitFor(
      async () => {
        try {
          check(0, await probe.call(0));
          return true;
        } catch {
          return false;
        }
      },
      { timeoutMs: 90_000, intervalMs: 200, description: `a first right answer on the ${path} path` },
    );
    probe.close();
  }
  const pids: Record<string, number> = {
    gateway: gateway.child.pid!,
    worker: worker.child.pid!,
    modelgateway: modelGateway.child.pid!,
    agent: agent.child.pid!,
    ...(brokerPid ? { broker: brokerPid } : {}),
    ...(dynamodbPid ? { dynamodb: dynamodbPid } : {}),
    scheduler: scheduler.child.pid!,
  };

  // 3. Rounds.
  const order: Array<{ path: PathName; connections: number }> = [];
  for (const connections of CONNECTIONS) for (const path of paths) order.push({ path, connections });
  const scenarios: ScenarioResult[] = order.map((o) => ({ ...o, rounds: [], median: undefined! }));
  const loadDuringRun: number[] = [];
  const runOne = async (o: (typeof order)[number], seconds: number, record: boolean) => {
    const caller =
      o.path === "lambda" ? { call: lambda.call, close: () => undefined } : httpCaller(base, o.path, o.connections);
    try {
      const window = await closedLoop({
        call: caller.call,
        inFlight: o.connections,
        seconds,
        pids,
        check: checker(o.path),
      });
      if (record) scenarios.find((s) => s.path === o.path && s.connections === o.connections)!.rounds.push(window);
      console.log(
        `${record ? "" : "warm-up "}${o.path} × ${o.connections}: ${window.rps} req/s, p50 ${window.p50} ms, p99 ${window.p99} ms, ` +
          `CPU µs/req ${JSON.stringify(window.cpuUsPerRequest)}`,
      );
    } finally {
      caller.close();
    }
  };
  if (WARMUP_S > 0) for (const o of order) await runOne(o, WARMUP_S, false);
  for (let round = 0; round < ROUNDS; round++) {
    for (const o of round % 2 === 0 ? order : [...order].reverse()) {
      loadDuringRun.push(round2(loadavg()[0]!));
      await runOne(o, DURATION_S, true);
    }
  }
  for (const s of scenarios) {
    const m = (f: (w: LoadWindow) => number) => round3(median(s.rounds.map(f)));
    const keys = Object.keys(s.rounds[0]!.cpuUsPerRequest);
    s.median = {
      rps: m((w) => w.rps),
      p50: m((w) => w.p50),
      p90: m((w) => w.p90),
      p99: m((w) => w.p99),
      requests: m((w) => w.requests),
      cpuUsPerRequest: Object.fromEntries(
        keys.map((k) => [k, round2(median(s.rounds.map((w) => w.cpuUsPerRequest[k]!)))]),
      ),
    };
  }

  await cleanUp();
  clearTimeout(runDeadline);
  writeResults<Result>(
    OUT,
    {
      startedAt: run.startedAt.toISOString(),
      command: commandLine("npm run bench:pipelines"),
      machine: run.machine(),
      loadDuringRun,
      settings: {
        rounds: ROUNDS,
        durationS: DURATION_S,
        warmupS: WARMUP_S,
        partitions: PARTITIONS,
        connections: CONNECTIONS,
        replication,
        kafka: resolveKafkaSettings(),
        broker:
          config.KAFKA_BROKERS === undefined
            ? `Apache Kafka 3.9.1 KRaft, started by @tern/devstack, heap ${config.KAFKA_HEAP}`
            : `external (KAFKA_BROKERS=${brokers.join(",")})`,
        gatewayEnv,
        workerEnv,
      },
      scenarios,
      lambda: lambdaState,
    },
    render,
  );
}

runMain(main, cleanUp);
