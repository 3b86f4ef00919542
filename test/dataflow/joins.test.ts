import { waitFor } from "@tern/devstack";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  f32,
  hopProblems,
  type PipelineAnswer,
  type PipelineOutputs,
  requestIdOnPartition,
  rowsOf,
  type SentRequest,
  type TopicWatch,
  tensor,
} from "../helpers/pipeline-kafka.js";
import { type DataflowStack, SESSION_TIMEOUT_MS, sampleManifest, startDataflowStack } from "./dataflow-stack.js";

// Joins across workers on the real broker: three dataflow workers, every pipeline owned by all three
// (TERN_DATAFLOW_REPLICATION=3), four partitions. A join only works when partition k of every topic a pipeline reads
// lands on one worker (the co-partitioning assigner); the round-robin assigner of kafkajs splits them over 3 members.
//
// The joins whose timing the test must control read two other pipelines (input.externalInputs): `src-add` (x + 10)
// and `src-mul` (x * 10). A request sent to src-add only gives the join its first input; the second comes when, and
// if, the test sends the same request id to src-mul.

const f = Math.fround;
const map = (rows: number[][], fn: (v: number) => number) => rows.map((r) => r.map((v) => f(fn(v))));
const WORKERS = ["dataflow-0", "dataflow-1", "dataflow-2"];

const source = (name: string, step: string) => `apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata:
  name: ${name}
spec:
  steps:
    - name: ${step}
`;
const lateInner = (name: string, windowMs: number) => `apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata:
  name: ${name}
spec:
  input:
    externalInputs:
      - src-add.outputs.y
      - src-mul.outputs.y
    tensorMap:
      src-add.outputs.y: a
      src-mul.outputs.y: b
    joinWindowMs: ${windowMs}
  steps:
    - name: sum-diff
`;
const PIPELINES = [
  source("src-add", "add10"),
  source("src-mul", "mul10"),
  // Inner, short window: a request that only src-add answered fails after 1.5 s.
  lateInner("late-inner", 1_500),
  // Outer, short window: after 1.5 s it goes on with what came (whole messages: src-add's y, or src-mul's).
  `apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata:
  name: late-outer
spec:
  input:
    externalInputs:
      - src-add.outputs
      - src-mul.outputs
    joinType: outer
    joinWindowMs: 1500
  steps:
    - name: negate
`,
  // Inner, a window that outlives a failover.
  lateInner("failover-join", 40_000),
  sampleManifest("pipelines.yaml")
    .split(/^---\s*$/m)
    .find((doc) => /name: add-mul-join\s*$/m.test(doc))!,
].join("---\n");

let stack: DataflowStack;
let hops: TopicWatch;
const outputs = new Map<string, PipelineOutputs>();

async function outputsOf(pipeline: string): Promise<PipelineOutputs> {
  let out = outputs.get(pipeline);
  if (!out) {
    out = await stack.client.outputs(pipeline);
    outputs.set(pipeline, out);
  }
  return out;
}

async function answer(pipeline: string, requestId: string, timeoutMs = 30_000): Promise<PipelineAnswer> {
  try {
    return await (await outputsOf(pipeline)).answer(requestId, timeoutMs);
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${stack.logs()}`);
  }
}

function ok(a: PipelineAnswer) {
  if (!a.ok)
    throw new Error(`expected an answer, got the error ${a.status ?? ""} "${a.message}" from ${a.failed ?? "?"}`);
  return a.tensors;
}

/** sum-diff of a = x + 10 and b = x * 10, as every join here computes it. */
function expectSumDiff(out: PipelineAnswer, x: number[][]) {
  const a = map(x, (v) => v + 10);
  const b = map(x, (v) => v * 10);
  const tensors = ok(out);
  expect(rowsOf(tensor(tensors, "sum"))).toEqual(a.map((r, i) => r.map((v, j) => f(v + b[i]![j]!))));
  expect(rowsOf(tensor(tensors, "diff"))).toEqual(a.map((r, i) => r.map((v, j) => f(v - b[i]![j]!))));
}

beforeAll(async () => {
  stack = await startDataflowStack({ name: "joins", workers: 3, replication: 3 });
  const t = stack.client.topics;
  await stack.applyPipelines(PIPELINES);
  hops = await stack.client.watch([
    ...["add10", "mul10", "sum-diff"].flatMap((m) => [t.modelInputs(m), t.modelOutputs(m)]),
    t.pipelineInputs("add-mul-join"),
    t.pipelineOutputs("add-mul-join"),
  ]);
  await Promise.all(["add-mul-join", "src-add", "late-inner", "late-outer", "failover-join"].map(outputsOf));
}, 120_000);

afterAll(async () => {
  await stack?.close();
});

describe("joins over three workers and four partitions", () => {
  it("a join pipeline owned by all three workers answers every request right, whatever partition it lands on", async () => {
    const status = await stack.pipelineStatus("add-mul-join");
    expect([...status.owners].sort()).toEqual(WORKERS);
    // Each partition is held by exactly one owner, and every owner holds some (by the workers' reports, which follow
    // the group's last rebalance).
    const held = await waitFor(
      async () => {
        const byPartition = new Map<number, string[]>();
        for (const run of (await stack.pipelineStatus("add-mul-join")).runs ?? []) {
          for (const p of run.partitions ?? []) byPartition.set(p, [...(byPartition.get(p) ?? []), run.worker]);
        }
        const ok =
          byPartition.size === 4 &&
          [...byPartition.values()].every((w) => w.length === 1) &&
          new Set([...byPartition.values()].flat()).size === 3;
        return ok ? byPartition : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 100, description: "add-mul-join's 4 partitions spread over its 3 owners" },
    );
    console.log(`[dataflow joins] add-mul-join partitions: ${[...held].map(([p, w]) => `${p}→${w}`).join(", ")}`);

    const sent: Array<{ sent: SentRequest; x: number[][] }> = [];
    for (let i = 0; i < 60; i++) {
      const x = [[i, -i / 2, 0.25 * i]];
      sent.push({ sent: await stack.client.send("add-mul-join", [f32("x", x)]), x });
    }
    expect(new Set(sent.map((s) => s.sent.partition)).size).toBe(4);
    for (const { sent: s, x } of sent) expectSumDiff(await answer("add-mul-join", s.requestId), x);
    for (const { sent: s } of sent) expect(hopProblems(hops.forRequest(s.requestId), s)).toEqual([]);
  });

  it("inner join with one input that never comes: no answer, and after the window an error naming the missing input; outer goes on with what came", async () => {
    const x = [[2, -7]];
    const sent = await stack.client.send("src-add", [f32("x", x)]);
    // src-add itself answers; its answer is the first input of late-inner and late-outer.
    expect(rowsOf(tensor(ok(await answer("src-add", sent.requestId)), "y"))).toEqual(map(x, (v) => v + 10));

    const failed = await answer("late-inner", sent.requestId);
    expect(failed.ok).toBe(false);
    if (failed.ok) return;
    expect(failed.message).toContain("src-mul.outputs");
    expect(failed.message).toContain("never came");
    expect(failed.message).not.toContain("src-add.outputs");
    expect(failed.record.key).toBe(`${sent.partition}.late-inner.${sent.requestId}`);
    expect((await outputsOf("late-inner")).answers(sent.requestId).filter((a) => a.ok)).toEqual([]);

    const outer = await answer("late-outer", sent.requestId);
    expect(rowsOf(tensor(ok(outer), "z"))).toEqual(map(x, (v) => -f(v + 10)));
  });

  it("SIGKILL of the owner after the first of a join's two inputs arrived: the next owner completes the request from replayed records", async () => {
    const partition = 2;
    const owner = await stack.ownerOfPartition("failover-join", partition);
    const x = [[3, -1.5]];
    const id = requestIdOnPartition("failover", partition, stack.partitions);
    await stack.client.send("src-add", [f32("x", x)], { requestId: id });
    await answer("src-add", id);

    // A second request on the same partition, complete: its answer proves the owner has read past the first input of
    // `id` (a partition is read in order), so a worker that committed what it read would lose `id` below.
    const probe = requestIdOnPartition("probe", partition, stack.partitions);
    const px = [[1, 1]];
    await stack.client.send("src-add", [f32("x", px)], { requestId: probe });
    await stack.client.send("src-mul", [f32("x", px)], { requestId: probe });
    expectSumDiff(await answer("failover-join", probe), px);
    expect(await stack.ownerOfPartition("failover-join", partition)).toBe(owner);
    expect((await outputsOf("failover-join")).answers(id)).toEqual([]);

    await stack.stopWorker(owner, "SIGKILL");
    const killedAt = Date.now();
    await stack.client.send("src-mul", [f32("x", x)], { requestId: id });
    // Failover: the session timeout, one rebalance, then the replay; src-mul's own partition may have moved too.
    const completed = await answer("failover-join", id, SESSION_TIMEOUT_MS + 30_000);
    const tookMs = Date.now() - killedAt;
    expectSumDiff(completed, x);
    const next = await stack.ownerOfPartition("failover-join", partition);
    expect(next).not.toBe(owner);
    console.log(
      `[dataflow joins] SIGKILL of ${owner} (held partition ${partition}); ${next} completed ${id} ${tookMs} ms after the kill ` +
        `(consumer session timeout ${SESSION_TIMEOUT_MS} ms)`,
    );
  });
});
