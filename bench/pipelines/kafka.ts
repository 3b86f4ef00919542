/**
 * Pipelines benchmark, first half (not a test): what a dataflow worker adds on the Kafka path, against the model topic
 * straight through the model gateway (issue 9's path, the baseline), in one run; bench/pipelines/run.ts (issue 11) measures the same
 * paths through the gateway's REST.
 *
 *   npm run bench:pipelines-kafka        (node --import tsx bench/pipelines/kafka.ts)
 *
 * Starts (or uses, with KAFKA_BROKERS / DYNAMODB_ENDPOINT) a Kafka broker and DynamoDB Local on free ports, then a
 * scheduler (TERN_DATAFLOW_REPLICATION 1), one agent (`mlserver/0`, tern-onnx), one model gateway (`modelgateway-0`)
 * and ONE dataflow worker (`dataflow-0`), all on loopback. Every model is samples/models/add10 (y = x + 10):
 *
 * - `model`: this process produces the ModelInferRequest on `seldon.<ns>.model.add10.inputs` and reads
 *   `….model.add10.outputs` (the baseline: produce, broker, model gateway, agent, broker, consume);
 * - `one`: the 1-step pipeline `bench-one` (add10) on its pipeline topics: the same model behind one dataflow worker,
 *   i.e. two more broker hops and the worker twice (the request in, the model's answer out);
 * - `chain`: the 3-step pipeline `bench-chain` (add10 → add10-b → add10-c, the same ONNX file under three names,
 *   since a step is named after its model), answer x + 30;
 *
 * each in closed loops at BENCH_IN_FLIGHT requests in flight, in rounds whose order alternates so that machine noise
 * hits every path alike. Every answer is decoded and its value checked. CPU time per request is read from
 * /proc/<pid>/stat for the dataflow worker, the model gateway, the agent, the broker (its JVM), the scheduler, and
 * this process. "One worker's max req/s" is the best `one` figure (BENCH_IN_FLIGHT includes a high level for it), with
 * the worker's share of a core telling whether the worker was the limit.
 * Then BENCH_PIPELINES (100) more 1-step pipelines are applied at once: the time until the scheduler reports every one
 * `PipelineReady`, and the worker's resident memory (VmRSS, VmHWM) before and after.
 *
 * BENCH_ROUNDS (default 3), BENCH_DURATION_S (5), BENCH_WARMUP_S (5, per scenario, once), BENCH_IN_FLIGHT
 * ("1,32,256"), BENCH_PIPELINES (100; 0 skips that part). Writes bench/results/pipelines-kafka.json and .md (BENCH_OUT
 * to change the name); bench/pipelines/kafka-notes.md (the written analysis) is appended to the .md.
 */
import { loadavg } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import {
  createTopicNames,
  decodeModelInferResponse,
  encodeModelInferRequest,
  type MessageBus,
  type ModelStatus,
} from "@tern/core";
import { waitFor } from "@tern/devstack";
import { createKafkaBus, resolveKafkaSettings } from "@tern/kafka";
import { startBenchStack, startSchedulerAndAgent } from "../lib/bench-stack.js";
import { commandLine, envNumber } from "../lib/config.js";
import {
  type Call,
  closedLoop,
  createKafkaCaller,
  type LoadWindow,
  processMemoryMiB,
  waitGroupCoordinator,
} from "../lib/kafka-load.js";
import { createServerGroup, REPO_ROOT, runMain } from "../lib/processes.js";
import { type MachineInfo, machineLines, notesLines, rerenderIfAsked, startRun, writeResults } from "../lib/report.js";
import { median, round2, round3 } from "../lib/stats.js";

const OUT = process.env.BENCH_OUT ?? "pipelines-kafka";
const ROUNDS = envNumber("BENCH_ROUNDS", 3, 1);
const DURATION_S = envNumber("BENCH_DURATION_S", 5, 1);
const WARMUP_S = envNumber("BENCH_WARMUP_S", 5, 0);
const IN_FLIGHT = (process.env.BENCH_IN_FLIGHT ?? "1,32,256").split(",").map((s) => {
  const n = Number(s.trim());
  if (!Number.isInteger(n) || n < 1) throw new Error(`BENCH_IN_FLIGHT: ${JSON.stringify(s)} is not a count >= 1`);
  return n;
});
const MANY = envNumber("BENCH_PIPELINES", 100, 0);
const PARTITIONS = 4;
const NAMESPACE = `plbench${Date.now().toString(36)}`;
/** Bound on the whole run: everything is stopped after it. */
const RUN_DEADLINE_MS = 25 * 60_000;
/** Bound on one request; a request that takes longer fails the run (a lost record is a bug, not a slow sample). */
const REQUEST_DEADLINE_MS = 30_000;
/** The share of the BENCH_PIPELINES pipelines ready at which the time is recorded. */
const MILESTONES: Array<[number, string]> = [
  [1 / 100, "first"],
  [0.5, "50%"],
  [0.9, "90%"],
  [1, "all"],
];
/** Bound on the BENCH_PIPELINES pipelines becoming ready (the target is 30 s; past this the run records a miss). */
const MANY_READY_DEADLINE_MS = 180_000;

/** Targets of issue 10 on this machine. */
const TARGET_ADDED_P50_MS = 5;
const TARGET_WORKER_RPS = 1_000;
const TARGET_MANY_READY_MS = 30_000;
const TARGET_MANY_RSS_MIB = 500;

const PATHS = ["model", "one", "chain"] as const;
type PathName = (typeof PATHS)[number];
/** What each path adds to x: add10 once, or three times along the chain. */
const ADDED: Record<PathName, number> = { model: 10, one: 10, chain: 30 };

/** x of request i: 1 × 2 FP32 integers, exact in FP32 after + 30. */
const xOf = (i: number): [number, number] => [i % 1000, -(i % 777)];

function request(model: string, i: number): Uint8Array {
  return encodeModelInferRequest({
    model_name: model,
    inputs: [{ name: "x", datatype: "FP32", shape: [1, 2], contents: { fp32_contents: Float32Array.from(xOf(i)) } }],
  });
}

/** The FP32 values of the answer's `y` output (typed contents or raw bytes). */
function yOf(bytes: Uint8Array): number[] {
  const res = decodeModelInferResponse(bytes);
  const index = res.outputs.findIndex((o) => o.name === "y");
  if (index < 0) throw new Error(`answer without a y output: ${JSON.stringify(res.outputs.map((o) => o.name))}`);
  const typed = res.outputs[index]!.contents?.fp32_contents;
  if (typed) return [...typed];
  const raw = res.raw_output_contents?.[index];
  if (!raw) throw new Error("answer's y output has no contents");
  return [...new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength))];
}

function checker(path: PathName): (i: number, answer: Uint8Array) => void {
  return (i, answer) => {
    const want = xOf(i).map((v) => v + ADDED[path]);
    const got = yOf(answer);
    if (got.length !== want.length || got.some((v, k) => v !== want[k]))
      throw new Error(`${path} request ${i}: y ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
  };
}

/** A scenario: one path at some requests in flight. */
interface ScenarioResult {
  path: PathName;
  inFlight: number;
  rounds: LoadWindow[];
  /** Medians over rounds of each figure. */
  median: LoadWindow;
}

interface ManyPipelines {
  count: number;
  /** From the apply request to the scheduler reporting every one `PipelineReady`; null if not within the deadline. */
  readyMs: number | null;
  /** How many were ready at the end (all of them unless the deadline passed). */
  ready: number;
  /** ms from the apply until the first one, 50 %, 90 % and all of them were ready. */
  readyAt: Record<string, number>;
  /** The worker's memory in MiB with the bench's two pipelines, and once all the others are ready. */
  workerBefore: { rss: number; peak: number };
  workerAfter: { rss: number; peak: number };
  /** A request to the last one answered correctly (proof that ready means served). */
  lastAnswered: boolean;
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
    inFlight: number[];
    pipelines: number;
    replication: number;
    /** `resolveKafkaSettings()`: what the model gateway and this bench's client ran with (the worker: the same values). */
    kafka: ReturnType<typeof resolveKafkaSettings>;
    client: string;
    broker: string;
    /** Environment of the dataflow worker beyond the installation's (Kafka, namespace, scheduler). */
    workerEnv: Record<string, string>;
  };
  scenarios: ScenarioResult[];
  many?: ManyPipelines;
}

// ---------------------------------------------------------------------------------------------------------------
// Report

function pathLabel(path: PathName): string {
  if (path === "model") return "model topic (add10 via the model gateway)";
  if (path === "one") return "1-step pipeline (add10)";
  return "3-step chain (add10 → add10-b → add10-c)";
}

const signed = (n: number): string => (n >= 0 ? `+${n}` : `${n}`);

const CPU_KEYS = ["worker", "gateway", "agent", "broker", "scheduler", "client"];

function render(r: Result): string {
  const rows = r.scenarios.map((s) => {
    const m = s.median;
    const cpu = CPU_KEYS.map((k) => (m.cpuUsPerRequest[k] === undefined ? "–" : String(m.cpuUsPerRequest[k])));
    const w = m.cpuUsPerRequest.worker;
    const busy = w === undefined || s.path === "model" ? "–" : `${Math.round((w * m.rps) / 1e4)} %`;
    return `| ${pathLabel(s.path)} | ${s.inFlight} | ${m.rps} | ${m.p50} | ${m.p90} | ${m.p99} | ${busy} | ${cpu.join(" | ")} |`;
  });
  const verdicts: string[] = [];
  const side: string[] = [];
  for (const inFlight of r.settings.inFlight) {
    const model = r.scenarios.find((s) => s.path === "model" && s.inFlight === inFlight);
    if (!model) continue;
    for (const path of ["one", "chain"] as const) {
      const p = r.scenarios.find((s) => s.path === path && s.inFlight === inFlight);
      if (!p) continue;
      const added = round3(p.median.p50 - model.median.p50);
      side.push(
        `| ${inFlight} | ${path} | ${model.median.rps} | ${p.median.rps} | ${round3(p.median.rps / model.median.rps)} | ` +
          `${model.median.p50} | ${p.median.p50} | ${signed(added)} | ${model.median.p99} | ${p.median.p99} |`,
      );
      if (inFlight === 1 && path === "one") {
        verdicts.push(
          `- A 1-step pipeline adds ≤ ${TARGET_ADDED_P50_MS} ms p50 at 1 in flight over the model-topic path: ` +
            `${signed(added)} ms (${p.median.p50} against ${model.median.p50}) — **${added <= TARGET_ADDED_P50_MS ? "met" : "missed"}**.`,
        );
      }
    }
  }
  const ones = r.scenarios.filter((s) => s.path === "one");
  if (ones.length > 0) {
    const best = ones.reduce((a, b) => (b.median.rps > a.median.rps ? b : a));
    const w = best.median.cpuUsPerRequest.worker;
    verdicts.push(
      `- One dataflow worker moves ≥ ${TARGET_WORKER_RPS} req/s: ${best.median.rps} req/s (1-step pipeline, ` +
        `${best.inFlight} in flight; the worker busy ${w === undefined ? "?" : Math.round((w * best.median.rps) / 1e4)} % ` +
        `of one core, ${w ?? "?"} µs CPU per request) — **${best.median.rps >= TARGET_WORKER_RPS ? "met" : "missed"}**.`,
    );
  }
  if (r.many) {
    const m = r.many;
    const inTime = m.readyMs !== null && m.readyMs <= TARGET_MANY_READY_MS;
    verdicts.push(
      `- ${m.count} pipelines on one worker start within ${TARGET_MANY_READY_MS / 1000} s: ` +
        `${m.readyMs === null ? `not all ready within ${MANY_READY_DEADLINE_MS / 1000} s (${m.ready} were)` : `${round2(m.readyMs / 1000)} s`} ` +
        `— **${inTime ? "met" : "missed"}**.`,
      `- … and use < ${TARGET_MANY_RSS_MIB} MB RSS: ${m.workerAfter.rss} MiB resident once ready (peak ${m.workerAfter.peak} MiB; ` +
        `${m.workerBefore.rss} MiB with the bench's 2 pipelines before) — **${m.workerAfter.peak < TARGET_MANY_RSS_MIB ? "met" : "missed"}**.`,
    );
  }
  const k = r.settings.kafka;
  return [
    "# Pipelines on the Kafka path: one dataflow worker vs the model topic (issue 10, first half)",
    "",
    `Run ${r.startedAt}: \`${r.command}\`.`,
    ...machineLines(r.machine),
    `1-min load average before each measured window: ${r.loadDuringRun.join(", ")}.`,
    "",
    `${r.settings.rounds} rounds × ${r.settings.durationS} s per scenario (order reversed every other round), ` +
      `${r.settings.warmupS} s warm-up each; x is 1 × 2 FP32 (OIP protobuf from the core codec), every answer decoded ` +
      "and its y checked against x + 10 (x + 30 for the chain). One scheduler (TERN_DATAFLOW_REPLICATION " +
      `${r.settings.replication}), one agent (tern-onnx: add10, add10-b, add10-c, each samples/models/add10), one model ` +
      `gateway (modelgateway-0), one dataflow worker (dataflow-0), one broker (${r.settings.broker}); topics of ` +
      `${r.settings.partitions} partitions. Figures are medians over rounds; CPU is µs per request from /proc/<pid>/stat ` +
      "(clock ticks of 10 ms, so small figures are coarse); `client` is this bench process (load generator, Kafka " +
      "client); \"worker busy\" is the dataflow worker's CPU time over the window's wall time.",
    "",
    "## Targets",
    "",
    ...verdicts,
    "",
    "## Side by side (medians over rounds)",
    "",
    "| in flight | pipeline | model-topic req/s | pipeline req/s | ratio | model-topic p50 ms | pipeline p50 ms | added p50 ms | model-topic p99 ms | pipeline p99 ms |",
    "|---|---|---|---|---|---|---|---|---|---|",
    ...side,
    "",
    "## Every scenario (medians over rounds)",
    "",
    "| path | in flight | req/s | p50 ms | p90 ms | p99 ms | worker busy (of one core) | CPU µs/req worker | model gateway | agent | broker | scheduler | client |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ...rows,
    "",
    "Per round (req/s, p50 ms):",
    "",
    ...r.scenarios.map(
      (s) =>
        `- ${pathLabel(s.path)}, ${s.inFlight} in flight: ${s.rounds.map((w) => `${w.rps} / ${w.p50}`).join("; ")}`,
    ),
    "",
    ...(r.many
      ? [
          `## ${r.many.count} pipelines on one worker`,
          "",
          `Applied in one request (each a 1-step add10 pipeline, on top of the bench's two), after the load scenarios. ` +
            `Every one \`PipelineReady\` (the scheduler's state: topics exist, add10 available, the worker's consumer ` +
            `holds its assignment) after ${r.many.readyMs === null ? "— (deadline passed)" : `${r.many.readyMs} ms`} ` +
            `(ms after the apply: ${Object.entries(r.many.readyAt)
              .map(([k, v]) => `${k} ${v}`)
              .join(", ")}); ` +
            `${r.many.ready} of ${r.many.count} ready at the end. Worker memory: ${r.many.workerBefore.rss} MiB resident ` +
            `before (peak so far ${r.many.workerBefore.peak}), ${r.many.workerAfter.rss} MiB after (peak ` +
            `${r.many.workerAfter.peak}). A request to the last one ${r.many.lastAnswered ? "was answered correctly" : "was NOT answered"}.`,
          "",
        ]
      : []),
    "## Settings",
    "",
    "The model gateway and this bench's client run `resolveKafkaSettings()` (packages/kafka/src/settings.ts) as they " +
      "are; the dataflow worker sets only its `clientId` and its session timeout from TERN_DATAFLOW_SESSION_TIMEOUT_MS " +
      "(default 10 000, the same as the bus's) with a heartbeat of a third of it capped at 3 000, i.e. the same values:",
    "",
    "```json",
    JSON.stringify(k, null, 2),
    "```",
    "",
    `Client: ${r.settings.client}`,
    "",
    `Dataflow worker environment beyond the installation's: ${JSON.stringify(r.settings.workerEnv)}.`,
    "",
    ...notesLines(join(REPO_ROOT, "bench/pipelines/kafka-notes.md")),
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

const onePipeline = (name: string) => `apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: ${name}}
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

interface PipelineView {
  name: string;
  state: string;
  reason?: string;
}

// ---------------------------------------------------------------------------------------------------------------
// Main

const group = createServerGroup({ startDeadlineMs: 90_000 });
let stopStack = async (): Promise<void> => undefined;
let bus: MessageBus | undefined;
/** Stops everything, newest first: the Kafka client, the platform processes, broker and DynamoDB. */
const cleanUp = async (): Promise<void> => {
  await bus?.close().catch(() => undefined);
  bus = undefined;
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
  const bench = await startBenchStack({ dirPrefix: "tern-plbench-", partitions: PARTITIONS, extraPorts: 1 });
  stopStack = bench.stop;
  const { config, brokers, brokerPid } = bench;
  const [schedulerPort] = bench.ports as [number];

  // 2. Scheduler, agent, model gateway, one dataflow worker; models, then the bench's two pipelines.
  const replication = 1;
  const { scheduler, agent, schedulerUrl, common } = await startSchedulerAndAgent(group, bench, {
    name: "plbench",
    namespace: NAMESPACE,
    partitions: PARTITIONS,
    schedulerPort,
    schedulerEnv: { TERN_DATAFLOW_REPLICATION: String(replication) },
  });
  // 3. Clients: a second @tern/kafka bus with the same (default) settings; first, the broker must coordinate groups.
  bus = createKafkaBus({ brokers });
  await waitGroupCoordinator(bus, `plbench.${NAMESPACE}`);
  const gateway = await group.start({
    key: "gateway",
    label: "model gateway",
    script: "packages/model-gateway/src/main.ts",
    env: { ...common, TERN_SCHEDULER_URL: schedulerUrl, TERN_MODELGATEWAY_ID: "modelgateway-0", LOG_LEVEL: "warn" },
    ready: /tern model-gateway modelgateway-0 running/,
  });
  const workerEnv: Record<string, string> = { TERN_DATAFLOW_ID: "dataflow-0", LOG_LEVEL: "warn" };
  const worker = await group.start({
    key: "worker",
    label: "dataflow worker",
    script: "packages/dataflow/src/main.ts",
    env: { ...common, TERN_SCHEDULER_URL: schedulerUrl, ...workerEnv },
    ready: /tern dataflow dataflow-0 running/,
  });
  await apply(schedulerUrl, MANIFESTS);
  for (const m of MODELS) {
    await waitFor(
      async () => (await getJson<ModelStatus>(`${schedulerUrl}/v1/models/${m}`))?.state === "ModelAvailable",
      { timeoutMs: 60_000, intervalMs: 200, description: `${m} available on the agent` },
    );
  }
  await apply(schedulerUrl, [onePipeline("bench-one"), CHAIN].join("---\n"));
  for (const p of ["bench-one", "bench-chain"]) {
    await waitFor(
      async () => (await getJson<PipelineView>(`${schedulerUrl}/v1/pipelines/${p}`))?.state === "PipelineReady",
      { timeoutMs: 90_000, intervalMs: 200, description: `${p} PipelineReady` },
    );
  }

  const names = createTopicNames({ namespace: NAMESPACE });
  const callers: Record<PathName, { call: Call; close(): Promise<void> }> = {
    model: await createKafkaCaller(bus, {
      inputs: names.modelInputs("add10"),
      outputs: names.modelOutputs("add10"),
      groupId: `plbench-model-${NAMESPACE}`,
      resource: "add10",
      partitions: PARTITIONS,
      request: (i) => request("add10", i),
      deadlineMs: REQUEST_DEADLINE_MS,
    }),
    one: await createKafkaCaller(bus, {
      inputs: names.pipelineInputs("bench-one"),
      outputs: names.pipelineOutputs("bench-one"),
      groupId: `plbench-one-${NAMESPACE}`,
      resource: "bench-one",
      partitions: PARTITIONS,
      request: (i) => request("bench-one", i),
      headers: { pipeline: "bench-one" },
      deadlineMs: REQUEST_DEADLINE_MS,
    }),
    chain: await createKafkaCaller(bus, {
      inputs: names.pipelineInputs("bench-chain"),
      outputs: names.pipelineOutputs("bench-chain"),
      groupId: `plbench-chain-${NAMESPACE}`,
      resource: "bench-chain",
      partitions: PARTITIONS,
      request: (i) => request("bench-chain", i),
      headers: { pipeline: "bench-chain" },
      deadlineMs: REQUEST_DEADLINE_MS,
    }),
  };
  // Each path's first answer proves it end to end (consumers join their groups after the ready lines).
  for (const path of PATHS) {
    const check = checker(path);
    await waitFor(
      async () => {
        const answer = callers[path].call(0);
        answer.catch(() => undefined);
        try {
          check(0, await withTimeout(answer, 5_000));
          return true;
        } catch {
          return false;
        }
      },
      { timeoutMs: 90_000, intervalMs: 100, description: `a first answer on the ${path} path` },
    );
  }
  const pids: Record<string, number> = {
    worker: worker.child.pid!,
    gateway: gateway.child.pid!,
    agent: agent.child.pid!,
    ...(brokerPid ? { broker: brokerPid } : {}),
    scheduler: scheduler.child.pid!,
  };

  // 4. Rounds.
  const order: Array<{ path: PathName; inFlight: number }> = [];
  for (const inFlight of IN_FLIGHT) for (const path of PATHS) order.push({ path, inFlight });
  const scenarios: ScenarioResult[] = order.map((o) => ({ ...o, rounds: [], median: undefined! }));
  const loadDuringRun: number[] = [];
  const runOne = async (o: (typeof order)[number], seconds: number, record: boolean) => {
    // The worker is watched on the model path too: its pipelines' consumers read add10's outputs topic and skip the
    // records of no pipeline of theirs, a cost the model-topic traffic puts on it.
    const window = await closedLoop({
      call: callers[o.path].call,
      inFlight: o.inFlight,
      seconds,
      pids,
      check: checker(o.path),
    });
    if (record) scenarios.find((s) => s.path === o.path && s.inFlight === o.inFlight)!.rounds.push(window);
    console.log(
      `${record ? "" : "warm-up "}${o.path} × ${o.inFlight}: ${window.rps} req/s, p50 ${window.p50} ms, p99 ${window.p99} ms, ` +
        `CPU µs/req ${JSON.stringify(window.cpuUsPerRequest)}`,
    );
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
  for (const c of Object.values(callers)) await c.close();

  // 5. BENCH_PIPELINES more pipelines on the one worker.
  let many: ManyPipelines | undefined;
  if (MANY > 0) many = await manyPipelines(schedulerUrl, worker.child.pid!, names);

  await cleanUp();
  clearTimeout(runDeadline);
  writeResults<Result>(
    OUT,
    {
      startedAt: run.startedAt.toISOString(),
      command: commandLine("npm run bench:pipelines-kafka"),
      machine: run.machine(),
      loadDuringRun,
      settings: {
        rounds: ROUNDS,
        durationS: DURATION_S,
        warmupS: WARMUP_S,
        partitions: PARTITIONS,
        inFlight: IN_FLIGHT,
        pipelines: MANY,
        replication,
        kafka: resolveKafkaSettings(),
        client:
          "@tern/kafka's bus (createKafkaBus, default settings): the client code the model gateway and the dataflow " +
          "worker run. Sends made in one tick go out as one produce request; each path's answers are read by a " +
          "round-robin consumer in a group of its own (commit after handler). Requests carry `x-request-id` and, on " +
          "the pipeline paths, `pipeline: <p>`; keys are `<k>.<resource>.<id>` with k = request number mod partitions.",
        broker:
          config.KAFKA_BROKERS === undefined
            ? `Apache Kafka 3.9.1 KRaft, started by @tern/devstack, heap ${config.KAFKA_HEAP}`
            : `external (KAFKA_BROKERS=${brokers.join(",")})`,
        workerEnv,
      },
      scenarios,
      ...(many ? { many } : {}),
    },
    render,
  );
}

/** Applies MANY 1-step pipelines in one request and times them until all are `PipelineReady`. */
async function manyPipelines(
  schedulerUrl: string,
  workerPid: number,
  names: ReturnType<typeof createTopicNames>,
): Promise<ManyPipelines> {
  const pipelineNames = Array.from({ length: MANY }, (_, i) => `bench-many-${String(i).padStart(3, "0")}`);
  const workerBefore = await processMemoryMiB(workerPid);
  const t0 = performance.now();
  await apply(schedulerUrl, pipelineNames.map(onePipeline).join("---\n"));
  let readyMs: number | null = null;
  let ready = 0;
  let nextPrint = 10_000;
  const readyAt: Record<string, number> = {};
  const wanted = new Set(pipelineNames);
  try {
    await waitFor(
      async () => {
        const all = (await getJson<{ items: PipelineView[] }>(`${schedulerUrl}/v1/pipelines`))?.items ?? [];
        const now = all.filter((p) => wanted.has(p.name) && p.state === "PipelineReady").length;
        const ms = Math.round(performance.now() - t0);
        if (now !== ready) {
          for (const [fraction, label] of MILESTONES) {
            if (readyAt[label] === undefined && now >= Math.ceil(fraction * MANY)) readyAt[label] = ms;
          }
        }
        ready = now;
        if (ms >= nextPrint) {
          nextPrint += 10_000;
          console.log(`${MANY} pipelines: ${ready} ready after ${ms} ms`);
        }
        return ready === MANY;
      },
      { timeoutMs: MANY_READY_DEADLINE_MS, intervalMs: 200, description: `${MANY} pipelines PipelineReady` },
    );
    readyMs = Math.round(performance.now() - t0);
  } catch (err) {
    console.error(`${(err as Error).message}: ${ready} of ${MANY} ready`);
  }
  const workerAfter = await processMemoryMiB(workerPid);
  console.log(
    `${MANY} pipelines: ${readyMs === null ? `${ready} ready at the deadline` : `all ready in ${readyMs} ms`}; ` +
      `worker RSS ${workerBefore.rss} → ${workerAfter.rss} MiB (peak ${workerAfter.peak})`,
  );
  const last = pipelineNames[pipelineNames.length - 1]!;
  const caller = await createKafkaCaller(bus!, {
    inputs: names.pipelineInputs(last),
    outputs: names.pipelineOutputs(last),
    groupId: `plbench-last-${NAMESPACE}`,
    resource: last,
    partitions: PARTITIONS,
    request: (i) => request(last, i),
    headers: { pipeline: last },
    deadlineMs: REQUEST_DEADLINE_MS,
  });
  let lastAnswered = false;
  try {
    checker("one")(7, await caller.call(7));
    lastAnswered = true;
  } catch (err) {
    console.error(`${last}: ${(err as Error).message}`);
  }
  await caller.close();
  return { count: MANY, readyMs, ready, readyAt, workerBefore, workerAfter, lastAnswered };
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return Promise.race([
    p,
    new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms).unref()),
  ]);
}

runMain(main, cleanUp);
