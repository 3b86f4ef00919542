/**
 * Model-gateway benchmark (not a test): what the Kafka path adds to an iris inference, against a direct call to the
 * same agent, in one run.
 *
 *   npm run bench:model-gateway        (node --import tsx bench/model-gateway/run.ts)
 *
 * Starts (or uses, with KAFKA_BROKERS / DYNAMODB_ENDPOINT) a Kafka broker and DynamoDB Local on free ports, then a
 * scheduler with KAFKA_BROKERS (it creates iris's topics), one agent (`mlserver/0`, tern-onnx, iris on 1 replica) and
 * one model gateway (`modelgateway-0`), all on loopback. Then, in rounds whose order alternates so that machine noise
 * hits every path alike, closed loops of BENCH_DURATION_S seconds each:
 *
 * - direct: OIP gRPC ModelInfer straight to the agent, with the same protobuf bytes the Kafka path carries (so the
 *   difference is the Kafka path alone: produce, broker, model gateway, broker, consume);
 * - kafka: this process produces the ModelInferRequest on `seldon.<ns>.model.iris.inputs` (partition p, key
 *   `<p>.iris.<id>`) and reads `seldon.<ns>.model.iris.outputs` with its own consumer group, matching answers by key;
 *
 * each at 1 and at 32 requests in flight. Every answer is decoded and its label checked. CPU time per request is read
 * from /proc/<pid>/stat for the model gateway, the agent, the broker (its JVM), the scheduler, and this process.
 *
 * BENCH_ROUNDS (default 5), BENCH_DURATION_S (5), BENCH_WARMUP_S (10, per scenario, once), BENCH_IN_FLIGHT (default "1,32,256": the issue asks 1 and 32; 256 shows what one replica carries when the loop is not the limit).
 * BENCH_GATEWAY_VARIANTS: `;`-separated model-gateway environments to compare, each `name:VAR=value,VAR=value`
 * (e.g. `default:;conc256:TERN_MODELGATEWAY_CONCURRENCY=256`); every round runs the Kafka path through each (the
 * gateway is restarted between them, as modelgateway-0 each time). Default: one variant, the shipped defaults.
 * BENCH_GATEWAY_NODE_ARGS: node options for the model gateway's process (e.g. `--cpu-prof --cpu-prof-dir=/tmp/p`).
 * Writes bench/results/model-gateway.json and .md (BENCH_OUT to change the name).
 */
import { loadavg } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
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
import { type Call, closedLoop, createKafkaCaller, type LoadWindow } from "../lib/kafka-load.js";
import { createServerGroup, REPO_ROOT, runMain, type Server } from "../lib/processes.js";
import { type MachineInfo, machineLines, notesLines, rerenderIfAsked, startRun, writeResults } from "../lib/report.js";
import { median, round2, round3 } from "../lib/stats.js";

const OUT = process.env.BENCH_OUT ?? "model-gateway";
const ROUNDS = envNumber("BENCH_ROUNDS", 5, 1);
const DURATION_S = envNumber("BENCH_DURATION_S", 5, 1);
// Long enough for the broker's JIT: in a 3 s warm-up the broker still spent ~10 ms of CPU per request at 1 in flight.
const WARMUP_S = envNumber("BENCH_WARMUP_S", 10, 0);
const IN_FLIGHT = (process.env.BENCH_IN_FLIGHT ?? "1,32,256").split(",").map((s) => {
  const n = Number(s.trim());
  if (!Number.isInteger(n) || n < 1) throw new Error(`BENCH_IN_FLIGHT: ${JSON.stringify(s)} is not a count >= 1`);
  return n;
});
const PARTITIONS = 4;
const NAMESPACE = `mgbench${Date.now().toString(36)}`;
/** Bound on the whole run: everything is stopped after it. */
const RUN_DEADLINE_MS = 20 * 60_000;
/** Bound on one request; a request that takes longer fails the run (a lost record is a bug, not a slow sample). */
const REQUEST_DEADLINE_MS = 30_000;

/** Kafka targets of the issue (#9) on this machine. */
const TARGET_ADDED_P50_MS = 5;
const TARGET_RPS = 2_000;

const ROWS = [
  { features: [5.1, 3.5, 1.4, 0.2], label: 0n },
  { features: [7.0, 3.2, 4.7, 1.4], label: 1n },
  { features: [6.3, 3.3, 6.0, 2.5], label: 2n },
];
/** One encoded ModelInferRequest per iris row (1 × 4 FP32): the same bytes on both paths. */
const REQUESTS = ROWS.map((r) =>
  encodeModelInferRequest({
    model_name: "iris",
    inputs: [
      { name: "predict", datatype: "FP32", shape: [1, 4], contents: { fp32_contents: Float32Array.from(r.features) } },
    ],
  }),
);

interface Variant {
  name: string;
  env: Record<string, string>;
}

function parseVariants(raw: string | undefined): Variant[] {
  if (raw === undefined || raw.trim() === "") return [{ name: "default", env: {} }];
  return raw.split(";").map((part) => {
    const colon = part.indexOf(":");
    const name = (colon < 0 ? part : part.slice(0, colon)).trim();
    const env: Record<string, string> = {};
    for (const kv of (colon < 0 ? "" : part.slice(colon + 1)).split(",").filter((s) => s.trim() !== "")) {
      const eq = kv.indexOf("=");
      if (eq < 1) throw new Error(`BENCH_GATEWAY_VARIANTS: ${JSON.stringify(kv)} is not VAR=value`);
      env[kv.slice(0, eq).trim()] = kv.slice(eq + 1).trim();
    }
    if (!/^[a-z0-9-]+$/.test(name)) throw new Error(`BENCH_GATEWAY_VARIANTS: bad variant name ${JSON.stringify(name)}`);
    return { name, env };
  });
}
const VARIANTS = parseVariants(process.env.BENCH_GATEWAY_VARIANTS);
/** BENCH_GATEWAY_NODE_ARGS: space-separated node options for the model gateway (e.g. `--cpu-prof --cpu-prof-dir=/tmp/p`). */
const GATEWAY_NODE_ARGS = (process.env.BENCH_GATEWAY_NODE_ARGS ?? "").split(" ").filter((a) => a !== "");

/** Figures of one closed-loop window. Latencies in ms. */
type Window = LoadWindow;

/** A scenario: `direct` or `kafka/<variant>`, at some requests in flight. */
interface ScenarioResult {
  path: string;
  inFlight: number;
  rounds: Window[];
  /** Medians over rounds of each figure. */
  median: Omit<Window, "requests"> & { requests: number };
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
    variants: Variant[];
    /** `resolveKafkaSettings()`: what both the model gateway and this bench's client ran with (neither sets any). */
    kafka: ReturnType<typeof resolveKafkaSettings>;
    /** How the bench client used them. */
    client: string;
    broker: string;
  };
  scenarios: ScenarioResult[];
}

// ---------------------------------------------------------------------------------------------------------------
// Load

/** The label of an answer (ModelInferResponse bytes), or an error naming what is wrong. */
function labelOf(bytes: Uint8Array): bigint {
  const res = decodeModelInferResponse(bytes);
  const out = res.outputs.find((o) => o.name === "label");
  const v = out?.contents?.int64_contents?.[0];
  if (v === undefined)
    throw new Error(`answer without a label output: ${JSON.stringify(res.outputs.map((o) => o.name))}`);
  return v;
}

/** Throws unless answer `i` carries the label of its row. */
function checkLabel(i: number, answer: Uint8Array): void {
  const label = labelOf(answer);
  if (label !== ROWS[i % 3]!.label) throw new Error(`request ${i}: label ${label}, expected ${ROWS[i % 3]!.label}`);
}

/** Direct path: OIP gRPC ModelInfer to the agent, raw bytes both ways (one HTTP/2 channel, as the model gateway uses). */
function directCaller(grpcAddress: string): { call: Call; close(): void } {
  const client = new grpc.Client(grpcAddress, grpc.credentials.createInsecure());
  const identity = (b: Buffer) => b;
  const call: Call = (i) =>
    new Promise((resolve, reject) => {
      client.makeUnaryRequest(
        "/inference.GRPCInferenceService/ModelInfer",
        identity,
        identity,
        Buffer.from(REQUESTS[i % 3]!),
        new grpc.Metadata(),
        { deadline: Date.now() + REQUEST_DEADLINE_MS },
        (err, value) => (err ? reject(err) : resolve(value!)),
      );
    });
  return { call, close: () => client.close() };
}

// ---------------------------------------------------------------------------------------------------------------
// Stack

async function getJson<T>(url: string): Promise<T | undefined> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  return res.status === 200 ? ((await res.json()) as T) : undefined;
}

const MANIFESTS = `apiVersion: mlops.seldon.io/v1alpha1
kind: Server
metadata: {name: mlserver}
spec: {serverConfig: tern-onnx, replicas: 1}
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Model
metadata: {name: iris}
spec:
  storageUri: "file://./samples/models/iris"
  requirements: [onnx]
  memory: 100Ki
  replicas: 1
`;

// ---------------------------------------------------------------------------------------------------------------
// Report

function pathLabel(path: string): string {
  if (path === "direct") return "direct gRPC → agent";
  if (path === "hop") return "one bare Kafka hop (produce → consume, no gateway)";
  return `Kafka path (${path.slice("kafka/".length)} gateway)`;
}

function render(r: Result): string {
  const cpuKeys = ["gateway", "agent", "broker", "scheduler", "client"];
  const rows = r.scenarios.map((s) => {
    const m = s.median;
    const cpu = cpuKeys.map((k) => (m.cpuUsPerRequest[k] === undefined ? "–" : String(m.cpuUsPerRequest[k])));
    const gw = m.cpuUsPerRequest.gateway;
    const busy = gw === undefined || s.path === "hop" ? "–" : `${Math.round((gw * m.rps) / 1e4)} %`;
    return `| ${pathLabel(s.path)} | ${s.inFlight} | ${m.rps} | ${m.p50} | ${m.p90} | ${m.p99} | ${busy} | ${cpu.join(" | ")} |`;
  });
  const side: string[] = [];
  const verdicts: string[] = [];
  for (const inFlight of r.settings.inFlight) {
    const direct = r.scenarios.find((s) => s.path === "direct" && s.inFlight === inFlight);
    for (const k of r.scenarios.filter((s) => s.path.startsWith("kafka/") && s.inFlight === inFlight)) {
      if (!direct) continue;
      const added = round3(k.median.p50 - direct.median.p50);
      side.push(
        `| ${inFlight} | ${k.path.slice(6)} | ${direct.median.rps} | ${k.median.rps} | ${round3(k.median.rps / direct.median.rps)} | ` +
          `${direct.median.p50} | ${k.median.p50} | +${added} | ${direct.median.p99} | ${k.median.p99} |`,
      );
      if (inFlight === 1) {
        verdicts.push(
          `- Kafka path adds ≤ ${TARGET_ADDED_P50_MS} ms p50 at 1 in flight (${k.path.slice(6)}): +${added} ms — **${added <= TARGET_ADDED_P50_MS ? "met" : "missed"}**.`,
        );
      }
    }
  }
  for (const v of r.settings.variants) {
    const levels = r.scenarios.filter((s) => s.path === `kafka/${v.name}`);
    const best = Math.max(...levels.map((s) => s.median.rps));
    const each = levels.map(
      (s) => `${s.median.rps} req/s at ${s.inFlight} in flight (${s.median.rps >= TARGET_RPS ? "met" : "missed"})`,
    );
    verdicts.push(
      `- ≥ ${TARGET_RPS} req/s through one model-gateway replica (${v.name}): **${best >= TARGET_RPS ? "met" : "missed"}** ` +
        `at its best in-flight level; ${each.join(", ")}.`,
    );
  }
  const k = r.settings.kafka;
  return [
    "# Model gateway: direct to the agent vs the Kafka path (issue 9)",
    "",
    `Run ${r.startedAt}: \`${r.command}\`.`,
    ...machineLines(r.machine),
    `1-min load average before each measured window: ${r.loadDuringRun.join(", ")}.`,
    "",
    `${r.settings.rounds} rounds × ${r.settings.durationS} s per scenario (order reversed every other round), ` +
      `${r.settings.warmupS} s warm-up each; iris (1 × 4 FP32, OIP protobuf from the core codec), every answer decoded ` +
      `and its label checked. One scheduler, one agent (tern-onnx, iris on 1 replica), one model gateway ` +
      `(modelgateway-0), one broker (${r.settings.broker}); topics of ${r.settings.partitions} partitions. ` +
      "Figures are medians over rounds; CPU is µs per request from /proc/<pid>/stat (clock ticks of 10 ms, so small " +
      "figures are coarse); `client` is this bench process (load generator, Kafka client).",
    "",
    "## Targets",
    "",
    ...verdicts,
    "",
    "## Side by side (medians over rounds)",
    "",
    "| in flight | gateway variant | direct req/s | Kafka req/s | ratio | direct p50 ms | Kafka p50 ms | added p50 ms | direct p99 ms | Kafka p99 ms |",
    "|---|---|---|---|---|---|---|---|---|---|",
    ...side,
    "",
    "## Every scenario (medians over rounds)",
    "",
    "| path | in flight | req/s | p50 ms | p90 ms | p99 ms | gateway busy (of one core) | CPU µs/req gateway | agent | broker | scheduler | client |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ...rows,
    "",
    "Per round (req/s, p50 ms):",
    "",
    ...r.scenarios.map(
      (s) =>
        `- ${pathLabel(s.path)}, ${s.inFlight} in flight: ${s.rounds.map((w) => `${w.rps} / ${w.p50}`).join("; ")}`,
    ),
    "",
    "## kafkajs settings",
    "",
    "Neither the model gateway nor this bench's client sets any: both run `resolveKafkaSettings()` (packages/kafka/src/settings.ts), i.e.:",
    "",
    "```json",
    JSON.stringify(k, null, 2),
    "```",
    "",
    `Client: ${r.settings.client}`,
    "",
    ...(r.settings.variants.some((v) => Object.keys(v.env).length > 0)
      ? [
          "Model-gateway variants (environment on top of the defaults):",
          "",
          ...r.settings.variants.map((v) => `- ${v.name}: ${JSON.stringify(v.env)}`),
          "",
        ]
      : []),
    ...notesLines(join(REPO_ROOT, "bench/model-gateway/notes.md")),
  ].join("\n");
}

// ---------------------------------------------------------------------------------------------------------------
// Main

const group = createServerGroup({ startDeadlineMs: 90_000 });
let stopStack = async (): Promise<void> => undefined;
let stopGateway = async (): Promise<void> => undefined;
let bus: MessageBus | undefined;
/** Stops everything, newest first: model gateway, Kafka client, agent and scheduler, broker and DynamoDB. */
const cleanUp = async (): Promise<void> => {
  await stopGateway();
  await bus?.close().catch(() => undefined);
  bus = undefined;
  await group.stopAll();
  await stopStack();
  stopStack = async () => undefined;
};

async function main(): Promise<void> {
  if (rerenderIfAsked<Result>(OUT, render)) return;
  // Quiet the AWS SDK's "Node 22 needed from 2027" warning (DynamoDB Local's probe, the scheduler).
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
  const run = startRun("model-gateway");
  const runDeadline = setTimeout(() => {
    console.error(`model-gateway bench: over ${RUN_DEADLINE_MS / 60_000} min, stopping everything`);
    void cleanUp().then(() => process.exit(1));
  }, RUN_DEADLINE_MS);
  runDeadline.unref();

  // 1. Broker and DynamoDB Local (or the given ones).
  const bench = await startBenchStack({ dirPrefix: "tern-mgbench-", partitions: PARTITIONS, extraPorts: 1 });
  stopStack = bench.stop;
  const { config, brokers, brokerPid } = bench;
  const [schedulerPort] = bench.ports as [number];

  // 2. Scheduler (creates the topics), agent, manifests.
  const { scheduler, agent, schedulerUrl, common } = await startSchedulerAndAgent(group, bench, {
    name: "mgbench",
    namespace: NAMESPACE,
    partitions: PARTITIONS,
    schedulerPort,
  });
  const applied = await fetch(`${schedulerUrl}/v1/apply`, {
    method: "POST",
    headers: { "content-type": "application/yaml" },
    body: MANIFESTS,
    signal: AbortSignal.timeout(10_000),
  });
  if (applied.status !== 200) throw new Error(`apply: ${applied.status} ${await applied.text()}`);
  await waitFor(
    async () => {
      const s = await getJson<ModelStatus>(`${schedulerUrl}/v1/models/iris`);
      return s?.state === "ModelAvailable" && s.availableReplicas === 1;
    },
    { timeoutMs: 60_000, intervalMs: 200, description: "iris available on the agent" },
  );

  await waitFor(
    async () =>
      (
        await getJson<{ buckets: Array<{ models: string[] }> }>(`${schedulerUrl}/v1/workers/modelgateway`)
      )?.buckets.some((b) => b.models.includes("iris")),
    { timeoutMs: 60_000, intervalMs: 200, description: "iris's topics created and iris in a model-gateway bucket" },
  );

  // 3. Clients. The bench's own Kafka client is a second @tern/kafka bus with the same (default) settings.
  bus = createKafkaBus({ brokers });
  const direct = directCaller(agent.url);
  const pids = (gateway?: Server): Record<string, number> => ({
    ...(gateway ? { gateway: gateway.child.pid! } : {}),
    agent: agent.child.pid!,
    ...(brokerPid ? { broker: brokerPid } : {}),
    scheduler: scheduler.child.pid!,
  });

  let current: { variant: string; server: Server; stop(): Promise<void> } | undefined;
  /** The model gateway of `variant`, started (as modelgateway-0) if another one runs; resolves once it answers. */
  async function gatewayOf(variant: Variant): Promise<Server> {
    if (current?.variant === variant.name) return current.server;
    await current?.stop();
    current = undefined;
    const solo = createServerGroup({ startDeadlineMs: 90_000 });
    const server = await solo.start({
      key: "gateway",
      label: `model gateway (${variant.name})`,
      script: "packages/model-gateway/src/main.ts",
      env: {
        ...common,
        TERN_SCHEDULER_URL: schedulerUrl,
        TERN_MODELGATEWAY_ID: "modelgateway-0",
        LOG_LEVEL: "warn",
        ...variant.env,
      },
      ready: /tern model-gateway modelgateway-0 running/,
      nodeArgs: GATEWAY_NODE_ARGS,
    });
    current = { variant: variant.name, server, stop: () => solo.stopAll() };
    stopGateway = () => solo.stopAll();
    return server;
  }

  const names = createTopicNames({ namespace: NAMESPACE });
  const admin = bus.admin();
  await waitFor(
    async () =>
      Object.keys(await admin.describeTopics([names.modelInputs("iris"), names.modelOutputs("iris")])).length === 2,
    { timeoutMs: 60_000, intervalMs: 200, description: "iris's topics created by the scheduler" },
  );
  // Requests are the three iris rows in turn; keys `<k>.iris.<group>-<n>`, answers matched by key.
  const caller = (inputs: string, outputs: string, groupId: string) =>
    createKafkaCaller(bus!, {
      inputs,
      outputs,
      groupId,
      resource: "iris",
      partitions: PARTITIONS,
      request: (i) => REQUESTS[i % 3]!,
      deadlineMs: REQUEST_DEADLINE_MS,
    });
  const kafka = await caller(names.modelInputs("iris"), names.modelOutputs("iris"), `mgbench-client-${NAMESPACE}`);
  const hopTopic = `mgbench.hop.${NAMESPACE}`;
  await admin.ensureTopics([hopTopic], PARTITIONS);
  // With inputs = outputs it is one bare broker hop: the record itself comes back.
  const hop = await caller(hopTopic, hopTopic, `mgbench-hop-${NAMESPACE}`);
  async function kafkaReady(): Promise<void> {
    // The gateway's bucket consumer joins its group after the "running" line: the first answer proves the path.
    await waitFor(
      async () => {
        const answer = kafka.call(0);
        answer.catch(() => undefined);
        try {
          labelOf(await withTimeout(answer, 5_000));
          return true;
        } catch {
          return false;
        }
      },
      { timeoutMs: 90_000, intervalMs: 100, description: "a first answer through the model gateway" },
    );
  }

  // 4. Rounds.
  const scenarios: ScenarioResult[] = [];
  const order: Array<{ path: string; inFlight: number; variant?: Variant }> = [];
  for (const inFlight of IN_FLIGHT) {
    order.push({ path: "direct", inFlight });
    if (inFlight === 1) order.push({ path: "hop", inFlight });
    for (const v of VARIANTS) order.push({ path: `kafka/${v.name}`, inFlight, variant: v });
  }
  for (const o of order) scenarios.push({ path: o.path, inFlight: o.inFlight, rounds: [], median: undefined! });
  const loadDuringRun: number[] = [];
  const runOne = async (o: (typeof order)[number], seconds: number, record: boolean) => {
    let window: Window;
    if (o.variant) {
      const gw = await gatewayOf(o.variant);
      window = await closedLoop({ call: kafka.call, inFlight: o.inFlight, seconds, pids: pids(gw), check: checkLabel });
    } else if (o.path === "hop") {
      window = await closedLoop({
        call: hop.call,
        inFlight: o.inFlight,
        seconds,
        pids: pids(current?.server),
        check: () => undefined,
      });
    } else {
      window = await closedLoop({ call: direct.call, inFlight: o.inFlight, seconds, pids: pids(), check: checkLabel });
    }
    if (record) scenarios.find((s) => s.path === o.path && s.inFlight === o.inFlight)!.rounds.push(window);
    console.log(
      `${record ? "" : "warm-up "}${o.path} × ${o.inFlight}: ${window.rps} req/s, p50 ${window.p50} ms, p99 ${window.p99} ms, ` +
        `CPU µs/req ${JSON.stringify(window.cpuUsPerRequest)}`,
    );
  };
  const ensureReady = async (o: (typeof order)[number]) => {
    if (!o.variant) return;
    if (current?.variant !== o.variant.name) {
      await gatewayOf(o.variant);
      await kafkaReady();
    }
  };
  for (const o of order) {
    await ensureReady(o);
    if (WARMUP_S > 0) await runOne(o, WARMUP_S, false);
  }
  for (let round = 0; round < ROUNDS; round++) {
    const inOrder = round % 2 === 0 ? order : [...order].reverse();
    for (const o of inOrder) {
      await ensureReady(o);
      loadDuringRun.push(round2(loadavg()[0]!));
      await runOne(o, DURATION_S, true);
    }
  }
  for (const s of scenarios) {
    const m = (f: (w: Window) => number) => round3(median(s.rounds.map(f)));
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

  direct.close();
  await kafka.close();
  await hop.close();
  await admin.deleteTopics([hopTopic]);
  await cleanUp();
  clearTimeout(runDeadline);
  writeResults<Result>(
    OUT,
    {
      startedAt: run.startedAt.toISOString(),
      command: commandLine("npm run bench:model-gateway"),
      machine: run.machine(),
      loadDuringRun,
      settings: {
        rounds: ROUNDS,
        durationS: DURATION_S,
        warmupS: WARMUP_S,
        partitions: PARTITIONS,
        inFlight: IN_FLIGHT,
        variants: VARIANTS,
        kafka: resolveKafkaSettings(),
        client:
          "@tern/kafka's bus (createKafkaBus, default settings), not the outside kafkajs client: the same client code as the " +
          "model gateway, so the settings recorded here are all that is in play. Sends made in one tick go out as one " +
          "produce request (sendBatch); the outputs consumer is round-robin in a group of its own, commit after handler.",
        broker:
          config.KAFKA_BROKERS === undefined
            ? `Apache Kafka 3.9.1 KRaft, started by @tern/devstack, heap ${config.KAFKA_HEAP}`
            : `external (KAFKA_BROKERS=${brokers.join(",")})`,
      },
      scenarios,
    },
    render,
  );
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return Promise.race([
    p,
    new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms).unref()),
  ]);
}

runMain(main, cleanUp);
