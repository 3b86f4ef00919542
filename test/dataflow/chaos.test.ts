import { loadavg } from "node:os";
import {
  createHashRing,
  decodeModelInferResponse,
  type OipTensor,
  parseRecordKey,
  responseOutputsToOip,
} from "@tern/core";
import { waitFor } from "@tern/devstack";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type E2eStack, serverManifest, startE2eStack } from "../e2e/harness.js";
import { type DataflowProcess, startDataflowProcess } from "../helpers/dataflow-process.js";
import type { OutsideRecord } from "../helpers/outside-kafka.js";
import {
  createPipelineKafka,
  ERROR_HEADERS,
  f32,
  type PipelineKafka,
  type PipelineOutputs,
  rowsOf,
  tensor,
} from "../helpers/pipeline-kafka.js";
import { kafkaBrokers } from "../helpers/services.js";
import { type ModelGatewayProcess, startModelGatewayProcess } from "../model-gateway/model-gateway-process.js";

/**
 * Failures under load on the Kafka path (issue 10): `add-then-mul` (y = (x + 10) × 10) on two dataflow workers at a
 * steady 200 requests/s, one worker SIGKILLed in the middle; then a third worker joins under load. Every request must
 * get an answer, the right value or an explicit error answer; a request with none is lost and fails the test. Times
 * are measured and printed, never asserted (benchmarks measure speed).
 *
 * Settings in play: the workers' Kafka session timeout is 10 s (TERN_DATAFLOW_SESSION_TIMEOUT_MS, set here to its
 * default so the figure printed is the one that ran), so the failover bound the issue sets is 10 s + 5 s; the
 * scheduler drops a silent worker after 3 s (TERN_AGENT_HEARTBEAT_TIMEOUT_MS in the e2e harness);
 * TERN_DATAFLOW_REPLICATION 2, 4 partitions.
 */

const SESSION_TIMEOUT_MS = 10_000;
const PARTITIONS = 4;
const REPLICATION = 2;
const RATE = 200;
/**
 * After the last request was produced, answers are awaited while they keep coming: a request still without one once
 * no new answer came for ANSWER_STALL_MS (or at ANSWER_CAP_MS in any case) is lost. So a machine too busy to keep up
 * with the rate (a backlog draining) is told apart from a pipeline that stopped answering.
 */
const ANSWER_STALL_MS = 20_000;
const ANSWER_CAP_MS = 120_000;
const PIPELINE = "add-then-mul";
const MODELS = ["add10", "mul10", "sum-diff"];
/**
 * Pipelines besides add-then-mul, so that "moved" on a join is a count worth reading. One step on sum-diff, a model
 * with no traffic: their consumers read idle topics, while pipelines on add10/mul10 would each fetch (and skip) every
 * add-then-mul record on the shared model topics.
 */
const OTHERS = Array.from({ length: 8 }, (_, i) => `chaos-${i + 1}`);

/** x of request i: 1 × 2 FP32 integers, so (x + 10) × 10 is exact. */
const xOf = (i: number): number[] => [i % 1000, -(i % 613)];
const expected = (i: number): number[] => xOf(i).map((v) => (v + 10) * 10);

type Answer = { kind: "value"; y: number[] } | { kind: "error"; message: string };

/** An answer record read as the pipeline gateway will: an error record, or y's values. */
function answerOf(record: OutsideRecord): Answer {
  if (ERROR_HEADERS.message in record.headers || ERROR_HEADERS.failed in record.headers)
    return { kind: "error", message: record.headers[ERROR_HEADERS.message] ?? record.headers[ERROR_HEADERS.failed]! };
  const tensors: OipTensor[] = responseOutputsToOip(decodeModelInferResponse(record.value));
  return { kind: "value", y: rowsOf(tensor(tensors, "y")).flat() };
}

const namespace = `chaos${Date.now().toString(36)}`;

let stack: E2eStack;
let client: PipelineKafka;
let modelGateway: ModelGatewayProcess | undefined;
const workers = new Map<string, DataflowProcess>();
const retired: DataflowProcess[] = [];
/** The worker the first test kills; the second starts it again. */
let victimId = "";

async function startWorker(id: string): Promise<DataflowProcess> {
  const w = await startDataflowProcess({
    id,
    schedulerUrl: stack.scheduler.url,
    brokers: kafkaBrokers(),
    env: {
      TERN_NAMESPACE: namespace,
      KAFKA_PARTITIONS: String(PARTITIONS),
      TERN_DATAFLOW_SESSION_TIMEOUT_MS: String(SESSION_TIMEOUT_MS),
      LOG_LEVEL: "warn",
    },
  });
  workers.set(id, w);
  return w;
}

interface PipelineView {
  name: string;
  state: string;
  reason?: string;
  owners?: string[];
}
interface DataflowStatus {
  replicas: Array<{ id: string }>;
  pipelines: Array<{ pipeline: string; owners: string[] }>;
}
const pipelineStatus = async (name: string) =>
  (await (await fetch(`${stack.scheduler.url}/v1/pipelines/${name}`)).json()) as PipelineView;
const dataflowStatus = async () =>
  (await (await fetch(`${stack.scheduler.url}/v1/workers/dataflow`)).json()) as DataflowStatus;
const ownerSets = async () =>
  new Map((await dataflowStatus()).pipelines.map((p) => [p.pipeline, [...p.owners].sort().join(",")]));

async function waitAllReady(description: string, accept: (p: PipelineView) => boolean = () => true): Promise<void> {
  await waitFor(
    async () => {
      const all = await Promise.all([PIPELINE, ...OTHERS].map(pipelineStatus));
      return all.every((p) => p.state === "PipelineReady" && accept(p));
    },
    { timeoutMs: 60_000, intervalMs: 100, description },
  );
}

function otherManifest(name: string): string {
  return `apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: ${name}}
spec:
  steps:
    - name: sum-diff
  output:
    steps: [sum-diff]
`;
}

function addThenMulManifest(name: string): string {
  return `apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: ${name}}
spec:
  steps:
    - name: add10
    - name: mul10
      inputs: [add10.outputs.y]
      tensorMap: {add10.outputs.y: x}
  output:
    steps: [mul10]
`;
}

const modelManifest = (name: string) => `apiVersion: mlops.seldon.io/v1alpha1
kind: Model
metadata: {name: ${name}}
spec:
  storageUri: "file://./samples/models/${name}"
  requirements: [onnx]
  memory: 10Ki
`;

/** One request as the traffic sent it: its id, its number (which fixes x), its partition and when it went out. */
interface Sent {
  requestId: string;
  i: number;
  partition: number;
  at: number;
}

/**
 * Steady traffic on add-then-mul's inputs topic through the pipeline client: `rate` requests/s for `seconds`, request n
 * with id `<label>-<n>` on partition n mod 4. `during(elapsedMs)` is called every tick (the test
 * kills or starts a worker from it). Resolves with everything sent, once every send was acknowledged.
 */
async function traffic(
  label: string,
  rate: number,
  seconds: number,
  during: (elapsedMs: number) => void,
): Promise<Sent[]> {
  const sent: Sent[] = [];
  const sends: Array<Promise<void>> = [];
  const t0 = Date.now();
  const total = rate * seconds;
  while (sent.length < total) {
    const elapsed = Date.now() - t0;
    during(elapsed);
    const due = Math.min(total, Math.floor((elapsed * rate) / 1000));
    const batch: Array<{ tensors: OipTensor[]; options: { requestId: string; partition: number } }> = [];
    while (sent.length < due) {
      const i = sent.length;
      const partition = i % PARTITIONS;
      const requestId = `${label}-${i}`;
      sent.push({ requestId, i, partition, at: Date.now() });
      batch.push({ tensors: [f32("x", [xOf(i)])], options: { requestId, partition } });
    }
    // The requests due in one tick go out in one produce request, as a gateway under load batches them.
    if (batch.length > 0) sends.push(client.sendTogether(PIPELINE, batch).then(() => undefined));
    await new Promise((r) => setTimeout(r, 5));
  }
  await Promise.all(sends);
  return sent;
}

/** What the answers to `sent` say: lost ones, wrong ones, error answers, duplicates. */
function tally(sent: Sent[], seen: readonly OutsideRecord[]) {
  const byId = answersById(seen);
  const lost: string[] = [];
  const wrong: string[] = [];
  const errors: string[] = [];
  let duplicates = 0;
  for (const s of sent) {
    const answers = byId.get(s.requestId) ?? [];
    if (answers.length === 0) {
      lost.push(s.requestId);
      continue;
    }
    duplicates += answers.length - 1;
    for (const a of answers) {
      let answer: Answer;
      try {
        answer = answerOf(a);
      } catch (err) {
        wrong.push(`${s.requestId}: ${(err as Error).message}`);
        continue;
      }
      if (answer.kind === "error") errors.push(`${s.requestId}: ${answer.message}`);
      else if (JSON.stringify(answer.y) !== JSON.stringify(expected(s.i)))
        wrong.push(`${s.requestId}: y ${JSON.stringify(answer.y)}, expected ${JSON.stringify(expected(s.i))}`);
    }
  }
  return { byId, lost, wrong, errors, duplicates };
}

/** The answer records by request id (from the key, as the gateway will match them). */
function answersById(seen: readonly OutsideRecord[]): Map<string, OutsideRecord[]> {
  const byId = new Map<string, OutsideRecord[]>();
  for (const r of seen) {
    const id = parseRecordKey(r.key)?.requestId;
    if (id === undefined) continue;
    const list = byId.get(id);
    if (list) list.push(r);
    else byId.set(id, [r]);
  }
  return byId;
}

/** Waits (bounded) until every request in `sent` has an answer; the tally decides what they say. */
async function waitAnswered(sent: Sent[], seen: PipelineOutputs, what: string): Promise<void> {
  const started = Date.now();
  let count = -1;
  let progressAt = started;
  await waitFor(
    () => {
      const byId = answersById(seen.records);
      if (sent.every((s) => byId.has(s.requestId))) return true;
      if (seen.records.length !== count) {
        count = seen.records.length;
        progressAt = Date.now();
      }
      // Stalled: stop waiting; the tally names what is missing.
      return Date.now() - progressAt > ANSWER_STALL_MS;
    },
    { timeoutMs: ANSWER_CAP_MS, intervalMs: 200, description: what },
  ).catch(() => undefined); // at the cap, too, the tally names what is missing
}

/**
 * For a failure message: how far the requests of `sent` got, as records per topic (pipeline inputs, each model's
 * inputs and outputs, pipeline outputs), and the last lines the workers and the model gateway wrote.
 */
async function whereTheyStopped(sent: Sent[]): Promise<string> {
  const ids = new Set(sent.map((s) => s.requestId));
  const topics = [
    client.topics.pipelineInputs(PIPELINE),
    client.topics.modelInputs("add10"),
    client.topics.modelOutputs("add10"),
    client.topics.modelInputs("mul10"),
    client.topics.modelOutputs("mul10"),
    client.topics.pipelineOutputs(PIPELINE),
  ];
  const watch = await client.watch(topics);
  let before = -1;
  await waitFor(
    async () => {
      await new Promise((r) => setTimeout(r, 1000));
      const now = watch.records.length;
      const settled = now === before && now > 0;
      before = now;
      return settled;
    },
    { timeoutMs: 15_000, intervalMs: 0, description: "the hop watch to catch up" },
  ).catch(() => undefined);
  const counts = topics.map(
    (t) =>
      `${t}: ${watch.records.filter((r) => r.topic === t && ids.has(parseRecordKey(r.key)?.requestId ?? "")).length}`,
  );
  const tails = [...workers.values(), ...retired, ...(modelGateway ? [modelGateway] : [])].map(
    (p) => `--- ${p.child.pid}\n${p.output().slice(-1500)}`,
  );
  return `records of these requests per topic: ${counts.join(", ")}\n${tails.join("\n")}`;
}

beforeAll(async () => {
  stack = await startE2eStack({
    name: "chaos",
    agents: 1,
    schedulerEnv: {
      KAFKA_BROKERS: kafkaBrokers().join(","),
      KAFKA_PARTITIONS: String(PARTITIONS),
      TERN_NAMESPACE: namespace,
      TERN_DATAFLOW_REPLICATION: String(REPLICATION),
    },
  });
  await stack.apply(serverManifest("mlserver", 1));
  await stack.apply(MODELS.map(modelManifest).join("---\n"));
  await Promise.all(MODELS.map((m) => stack.waitModel(m, (s) => s.state === "ModelAvailable", `${m} available`)));
  const [gateway] = await Promise.all([
    startModelGatewayProcess({
      id: "modelgateway-0",
      schedulerUrl: stack.scheduler.url,
      brokers: kafkaBrokers(),
      env: { TERN_NAMESPACE: namespace, KAFKA_PARTITIONS: String(PARTITIONS), LOG_LEVEL: "warn" },
    }),
    startWorker("dataflow-0"),
    startWorker("dataflow-1"),
  ]);
  modelGateway = gateway;
  await stack.apply([addThenMulManifest(PIPELINE), ...OTHERS.map(otherManifest)].join("---\n"));
  await waitAllReady("every pipeline ready on two owners", (p) => p.owners?.length === 2);
  client = await createPipelineKafka({ brokers: kafkaBrokers(), namespace, partitions: PARTITIONS, name: "chaos" });
  // One request through the whole path (worker, model gateway, agent, twice) before any traffic.
  const first = await client.send(PIPELINE, [f32("x", [xOf(1)])]);
  const answer = await (await client.outputs(PIPELINE)).answer(first.requestId, 60_000);
  expect(answer.ok && rowsOf(tensor(answer.tensors, "y")).flat()).toEqual(expected(1));
}, 180_000);

afterAll(async () => {
  await client?.close();
  const all = [...workers.values(), ...retired, ...(modelGateway ? [modelGateway] : [])];
  for (const p of all) p.kill("SIGKILL");
  await Promise.all(all.map((p) => p.exited));
  await stack?.close();
});

describe("dataflow workers failing and joining under steady load", () => {
  it("SIGKILL of a worker at 200 req/s: every request answered (right value) or failed explicitly, none lost", async () => {
    const loadBefore = loadavg()[0]!.toFixed(1);
    const seen = await client.outputs(PIPELINE);
    victimId = (await pipelineStatus(PIPELINE)).owners![0]!;
    const victim = workers.get(victimId)!;
    let killedAt = 0;
    /** Pipeline states seen after the kill, with ms since the kill. */
    const states: string[] = [];
    let readyAgainMs: number | undefined;
    let watching = true;
    const watcher = (async () => {
      let last = "";
      while (watching) {
        if (killedAt > 0) {
          const s = await pipelineStatus(PIPELINE).catch(() => undefined);
          if (s) {
            const now = Date.now() - killedAt;
            const why = s.reason === undefined ? "" : ` (${s.reason.slice(0, 160)})`;
            const label = `${s.state}[${(s.owners ?? []).join(",")}]${why}`;
            if (label !== last) states.push(`+${now} ms ${label}`);
            last = label;
            if (
              readyAgainMs === undefined &&
              s.state === "PipelineReady" &&
              s.owners !== undefined &&
              !s.owners.includes(victimId)
            )
              readyAgainMs = now;
          }
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    })();

    const sent = await traffic("kill", RATE, 20, (elapsed) => {
      if (killedAt === 0 && elapsed >= 10_000) {
        victim.kill("SIGKILL");
        killedAt = Date.now();
        workers.delete(victimId);
        retired.push(victim);
      }
    });
    await waitAnswered(sent, seen, `all ${sent.length} requests answered after the kill`);
    await waitFor(() => readyAgainMs !== undefined || undefined, {
      timeoutMs: 30_000,
      intervalMs: 100,
      description: `${PIPELINE} PipelineReady without ${victimId}`,
    }).catch(() => undefined);
    watching = false;
    await watcher;

    const { byId, lost, wrong, errors, duplicates } = tally(sent, seen.records);
    // Per partition, the longest silence in its answers that ends after the kill: the victim's partitions are silent
    // until the group hands them over; the survivor's show only the pause of that rebalance. "Flowing again" is when
    // the last of these silences ended.
    const partitionOf = new Map(sent.map((s) => [s.requestId, s.partition]));
    const silences: Array<{ partition: number; ms: number; endsAfterKillMs: number }> = [];
    for (let k = 0; k < PARTITIONS; k++) {
      const at = seen.records
        .filter((r) => partitionOf.get(parseRecordKey(r.key)?.requestId ?? "") === k)
        .map((r) => r.at)
        .sort((a, b) => a - b);
      let longest = { partition: k, ms: 0, endsAfterKillMs: 0 };
      for (let n = 1; n < at.length; n++) {
        const ms = at[n]! - at[n - 1]!;
        if (at[n]! > killedAt && ms > longest.ms) longest = { partition: k, ms, endsAfterKillMs: at[n]! - killedAt };
      }
      silences.push(longest);
    }
    const flowingAgainMs = Math.max(...silences.map((x) => x.endsAfterKillMs));
    // Latency of each request: its first answer's arrival minus when it was sent.
    const latencies = sent
      .map((s) => Math.min(...(byId.get(s.requestId) ?? []).map((r) => r.at)) - s.at)
      .filter(Number.isFinite)
      .sort((a, b) => a - b);
    const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.ceil((p / 100) * latencies.length) - 1)];
    console.log(
      `[chaos] SIGKILL of ${victimId} at +10 s of ${sent.length} requests (${RATE}/s for 20 s): ` +
        `${sent.length - lost.length} answered (${errors.length} error answers, ${duplicates} duplicates), ${lost.length} lost, ` +
        `${wrong.length} wrong. Answers flowing again on every partition ${flowingAgainMs} ms after the kill (per ` +
        `partition, the longest silence after the kill and when it ended: ${silences
          .map((x) => `p${x.partition} ${x.ms} ms, at +${x.endsAfterKillMs}`)
          .join("; ")}); latency p50 ${pct(50)} ms, p99 ${pct(99)} ms, max ${latencies[latencies.length - 1]} ms. ` +
        `${PIPELINE} PipelineReady without ${victimId} ${readyAgainMs === undefined ? "NOT within 30 s" : `${readyAgainMs} ms`} after the kill. ` +
        `Session timeout ${SESSION_TIMEOUT_MS} ms, so the bound is ${SESSION_TIMEOUT_MS + 5_000} ms. ` +
        `States after the kill: ${states.join("; ")}. Machine load (1 min) ${loadBefore} → ${loadavg()[0]!.toFixed(1)} on ` +
        "2 shared cores: a backlog (latency of seconds) distorts every time above.",
    );
    if (errors.length > 0) console.log(`[chaos] error answers (first 5): ${errors.slice(0, 5).join(" | ")}`);
    if (lost.length > 0) console.log(`[chaos] ${lost.length} lost: ${await whereTheyStopped(sent)}`);
    expect(lost.slice(0, 10)).toEqual([]);
    expect(wrong.slice(0, 10)).toEqual([]);
    expect(sent.length).toBe(RATE * 20);
  }, 180_000);

  it("a third worker joining under load moves about R/(N+1) of the pipelines, one owner each, answers all correct", async () => {
    // The crashed worker comes back under its id, as its supervisor restarts it: two workers again, so the joiner
    // makes N = 3 with R = 2 and "moved" is a real fraction of the pipelines.
    expect(victimId).not.toBe("");
    await startWorker(victimId);
    await waitAllReady("every pipeline ready on two owners again", (p) => p.owners?.length === 2);
    const before = await ownerSets();
    const loadBefore = loadavg()[0]!.toFixed(1);
    // The joiner's id is the first dataflow-<k> (k ≥ 2) the ring puts into add-then-mul's owner set, so that the
    // pipeline under traffic is one of those that move (ids are stable names; any unused index is a valid worker).
    let joiner = "";
    for (let k = 2; joiner === ""; k++) {
      const ring = createHashRing({ nodes: ["dataflow-0", "dataflow-1", `dataflow-${k}`] });
      if (ring.lookup(PIPELINE, REPLICATION).includes(`dataflow-${k}`)) joiner = `dataflow-${k}`;
    }
    const seen = await client.outputs(PIPELINE);
    let joinStarted: Promise<DataflowProcess> | undefined;
    const sent = await traffic("join", RATE / 2, 12, (elapsed) => {
      if (!joinStarted && elapsed >= 3_000) joinStarted = startWorker(joiner);
    });
    await joinStarted;
    await waitAllReady("every pipeline ready after the join", (p) => p.owners?.length === 2);
    await waitAnswered(sent, seen, `all ${sent.length} requests answered across the join`);
    const after = await ownerSets();

    const names = [PIPELINE, ...OTHERS];
    const moved = names.filter((p) => before.get(p) !== after.get(p));
    const notOneSwap = moved.filter((p) => {
      const b = new Set(before.get(p)!.split(","));
      const a = after.get(p)!.split(",");
      return !a.includes(joiner) || a.filter((o) => b.has(o)).length !== REPLICATION - 1;
    });
    const ring = createHashRing({ nodes: ["dataflow-0", "dataflow-1", joiner] });
    const ringMoved = names.filter((p) => ring.lookup(p, REPLICATION).includes(joiner)).length;
    const { lost, wrong, errors, duplicates } = tally(sent, seen.records);
    console.log(
      `[chaos] ${joiner} joined under ${RATE / 2} req/s: ${moved.length} of ${names.length} pipelines moved ` +
        `(${PIPELINE} ${moved.includes(PIPELINE) ? "among them" : "NOT among them"}; the ring puts ${joiner} in ${ringMoved} owner sets; R/(N+1) = ${REPLICATION}/3 of ${names.length} ≈ ` +
        `${((REPLICATION / 3) * names.length).toFixed(1)}), ${notOneSwap.length} of them changed other than by one owner; ` +
        `${sent.length} requests: ${sent.length - lost.length} answered, ${errors.length} error answers, ${duplicates} duplicates, ` +
        `${wrong.length} wrong, ${lost.length} lost; machine load (1 min) ${loadBefore} → ${loadavg()[0]!.toFixed(1)}`,
    );
    if (lost.length > 0) console.log(`[chaos] ${lost.length} lost: ${await whereTheyStopped(sent)}`);
    expect(lost.slice(0, 10)).toEqual([]);
    expect(wrong.slice(0, 10)).toEqual([]);
    expect(errors.slice(0, 10)).toEqual([]);
    expect(notOneSwap).toEqual([]);
    expect(moved.length).toBe(ringMoved);
  }, 180_000);
});
