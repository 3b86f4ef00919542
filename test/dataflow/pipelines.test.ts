import { waitFor } from "@tern/devstack";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type DecodedRecord,
  decodeTensors,
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
import { type DataflowStack, pipelineNames, sampleManifest, startDataflowStack } from "./dataflow-stack.js";

// Every sample pipeline of samples/manifests/pipelines.yaml, as npm start applies it, on the real broker: two dataflow
// workers (each pipeline owned by both, the partitions split between them), one model gateway, one agent. Requests go
// in and answers come out through plain kafkajs (test/helpers/pipeline-kafka.ts). Every expectation is computed here
// from the request, in float32 like the models, never recorded.

const f = Math.fround;
const map = (rows: number[][], fn: (v: number) => number) => rows.map((r) => r.map((v) => f(fn(v))));
const ANSWER_MS = 30_000;

let stack: DataflowStack;
let samples: string;
/** Every model and pipeline topic of the samples, read from the beginning: the hops. */
let hops: TopicWatch;
const outputs = new Map<string, PipelineOutputs>();

async function answer(sent: SentRequest, pipeline = sent.pipeline): Promise<PipelineAnswer> {
  let out = outputs.get(pipeline);
  if (!out) {
    out = await stack.client.outputs(pipeline);
    outputs.set(pipeline, out);
  }
  try {
    return await out.answer(sent.requestId, ANSWER_MS);
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${stack.logs()}`);
  }
}

function ok(a: PipelineAnswer) {
  if (!a.ok)
    throw new Error(`expected an answer, got the error ${a.status ?? ""} "${a.message}" from ${a.failed ?? "?"}`);
  return a.tensors;
}

/** Waits until the request's records are on every one of `topics` (the hop watch reads in its own time). */
async function hopsOf(sent: SentRequest, topics: string[]): Promise<DecodedRecord[]> {
  return waitFor(
    () => {
      const records = hops.forRequest(sent.requestId);
      return topics.every((t) => records.some((r) => r.topic === t)) ? records : undefined;
    },
    { timeoutMs: 15_000, intervalMs: 25, description: `records of ${sent.requestId} on ${topics.join(", ")}` },
  );
}

const onTopic = (records: DecodedRecord[], topic: string, pipeline: string) =>
  records.filter((r) => r.topic === topic && r.headers.pipeline === pipeline);

beforeAll(async () => {
  stack = await startDataflowStack({ name: "pipes", workers: 2, replication: 2 });
  samples = sampleManifest("pipelines.yaml");
  const t = stack.client.topics;
  const models = ["add10", "mul10", "sum-diff", "choose", "negate"];
  // Ready means the topics exist: read them from then on (from the beginning, so nothing is missed).
  await stack.applyPipelines(samples);
  hops = await stack.client.watch([
    ...models.flatMap((m) => [t.modelInputs(m), t.modelOutputs(m)]),
    ...pipelineNames(samples).flatMap((p) => [t.pipelineInputs(p), t.pipelineOutputs(p)]),
  ]);
}, 120_000);

afterAll(async () => {
  await stack?.close();
});

describe("the sample pipelines on the real broker", () => {
  it("applies every sample pipeline and each becomes ready", async () => {
    const names = pipelineNames(samples);
    expect(names).toEqual(
      expect.arrayContaining([
        "add-then-mul",
        "sum-diff-pipeline",
        "choose-route",
        "add-mul-join",
        "trigger-gate",
        "any-branch",
        "after-add-then-mul",
        "batch-mul",
      ]),
    );
    const status = await stack.dataflowStatus();
    for (const name of names) {
      const p = status.pipelines?.find((x) => x.pipeline === name);
      expect(p?.owners.sort(), name).toEqual(["dataflow-0", "dataflow-1"]);
    }
  });

  it("add-then-mul: y = (x + 10) * 10, and after-add-then-mul (fed by its answers) adds 10; every hop keyed <k>.<resource>.<id> on partition k, values OIP protobuf", async () => {
    const x = [
      [1.5, -2, 0],
      [3, 4, -12.5],
    ];
    const sent = await stack.client.send("add-then-mul", [f32("x", x)]);
    const y = rowsOf(tensor(ok(await answer(sent)), "y"));
    expect(y).toEqual(map(x, (v) => f(v + 10) * 10));
    const chained = rowsOf(tensor(ok(await answer(sent, "after-add-then-mul")), "y"));
    expect(chained).toEqual(map(y, (v) => v + 10));

    const t = stack.client.topics;
    const path = [
      t.pipelineInputs("add-then-mul"),
      t.modelInputs("add10"),
      t.modelOutputs("add10"),
      t.modelInputs("mul10"),
      t.modelOutputs("mul10"),
      t.pipelineOutputs("add-then-mul"),
      t.pipelineInputs("after-add-then-mul"),
      t.pipelineOutputs("after-add-then-mul"),
    ];
    const records = await hopsOf(sent, path);
    expect(hopProblems(records, sent)).toEqual([]);
    // The records in between carry what the steps computed: mul10 got add10's y renamed x.
    const toMul = onTopic(records, t.modelInputs("mul10"), "add-then-mul");
    expect(toMul).toHaveLength(1);
    expect(rowsOf(tensor(decodeTensors(toMul[0]!), "x"))).toEqual(map(x, (v) => v + 10));
    // The chained pipeline's own request holds add-then-mul's answer under the name its step reads.
    const chainedIn = onTopic(records, t.pipelineInputs("after-add-then-mul"), "after-add-then-mul");
    expect(chainedIn).toHaveLength(1);
    expect(rowsOf(tensor(decodeTensors(chainedIn[0]!), "x"))).toEqual(y);
  });

  it("sum-diff-pipeline: two inputs in, sum = a + b and diff = a - b out", async () => {
    const a = [[7, -1.5, 100]];
    const b = [[2, 4, -0.25]];
    const sent = await stack.client.send("sum-diff-pipeline", [f32("a", a), f32("b", b)]);
    const out = ok(await answer(sent));
    expect(rowsOf(tensor(out, "sum"))).toEqual([a[0]!.map((v, i) => f(v + b[0]![i]!))]);
    expect(rowsOf(tensor(out, "diff"))).toEqual([a[0]!.map((v, i) => f(v - b[0]![i]!))]);
    const records = await hopsOf(sent, [stack.client.topics.modelOutputs("sum-diff")]);
    expect(hopProblems(records, sent)).toEqual([]);
  });

  it.each([
    ["positive", "add10", "mul10", [[2, -1, 0.5]]],
    ["negative", "mul10", "add10", [[-2, 1, -0.5]]],
  ] as const)("choose-route: a %s sum runs only %s, never %s", async (_sign, taken, skipped, x) => {
    const rows = x.map((r) => [...r]);
    const sent = await stack.client.send("choose-route", [f32("x", rows)]);
    const y = rowsOf(tensor(ok(await answer(sent)), "y"));
    expect(y).toEqual(map(rows, (v) => (taken === "add10" ? v + 10 : v * 10)));
    const t = stack.client.topics;
    const records = await hopsOf(sent, [t.modelOutputs("choose"), t.modelOutputs(taken)]);
    expect(hopProblems(records, sent)).toEqual([]);
    expect(onTopic(records, t.modelInputs(skipped), "choose-route")).toEqual([]);
  });

  it("add-mul-join: sum-diff joins add10's and mul10's answers (inner): sum = 11x + 10, diff = 10 - 9x", async () => {
    const x = [
      [1, 2],
      [-3, 0.5],
    ];
    const sent = await stack.client.send("add-mul-join", [f32("x", x)]);
    const out = ok(await answer(sent));
    const a = map(x, (v) => v + 10);
    const b = map(x, (v) => v * 10);
    expect(rowsOf(tensor(out, "sum"))).toEqual(a.map((r, i) => r.map((v, j) => f(v + b[i]![j]!))));
    expect(rowsOf(tensor(out, "diff"))).toEqual(a.map((r, i) => r.map((v, j) => f(v - b[i]![j]!))));
    const t = stack.client.topics;
    const records = await hopsOf(sent, [t.modelOutputs("add10"), t.modelOutputs("mul10"), t.modelInputs("sum-diff")]);
    expect(hopProblems(records, sent)).toEqual([]);
    const toSumDiff = onTopic(records, t.modelInputs("sum-diff"), "add-mul-join");
    expect(toSumDiff).toHaveLength(1);
    expect(decodeTensors(toSumDiff[0]!).map((x) => x.name)).toEqual(["a", "b"]);
  });

  it("trigger-gate: with `ok` add10 runs on x alone (the trigger is not passed on); without it no step runs and the answer is an error", async () => {
    const x = [[4, -6]];
    const gated = await stack.client.send("trigger-gate", [f32("x", x), f32("ok", [[1]])]);
    expect(rowsOf(tensor(ok(await answer(gated)), "y"))).toEqual(map(x, (v) => v + 10));
    const t = stack.client.topics;
    const records = await hopsOf(gated, [t.modelInputs("add10")]);
    expect(hopProblems(records, gated)).toEqual([]);
    const toAdd = onTopic(records, t.modelInputs("add10"), "trigger-gate");
    expect(toAdd).toHaveLength(1);
    expect(decodeTensors(toAdd[0]!).map((x) => x.name)).toEqual(["x"]);

    const ungated = await stack.client.send("trigger-gate", [f32("x", x)]);
    const refused = await answer(ungated);
    expect(refused.ok).toBe(false);
    expect(refused.ok ? "" : refused.message).toContain("trigger-gate");
    expect(onTopic(hops.forRequest(ungated.requestId), t.modelInputs("add10"), "trigger-gate")).toEqual([]);
  });

  it.each([
    ["positive", [[3, 1]], (v: number) => -f(v + 10)],
    ["negative", [[-3, 1]], (v: number) => -f(v * 10)],
  ] as const)("any-branch: negate takes the answer of the one branch that ran (%s sum)", async (_sign, x, expected) => {
    const rows = x.map((r) => [...r]);
    const sent = await stack.client.send("any-branch", [f32("x", rows)]);
    const z = rowsOf(tensor(ok(await answer(sent)), "z"));
    expect(z).toEqual(map(rows, expected));
    const records = await hopsOf(sent, [stack.client.topics.modelOutputs("negate")]);
    expect(hopProblems(records, sent)).toEqual([]);
  });

  it("batch-mul: two requests on one partition go to mul10 as one call of their rows concatenated; each gets its own answer", async () => {
    const partition = 1;
    const one = [[1, 2]];
    const two = [
      [3, 4],
      [-5, 0.5],
    ];
    const label = "batch";
    const [first, second] = await stack.client.sendTogether("batch-mul", [
      { tensors: [f32("x", one)], options: { requestId: requestIdOnPartition(label, partition, stack.partitions) } },
      { tensors: [f32("x", two)], options: { requestId: requestIdOnPartition(label, partition, stack.partitions) } },
    ]);
    expect(rowsOf(tensor(ok(await answer(first!)), "y"))).toEqual(map(one, (v) => v * 10));
    expect(rowsOf(tensor(ok(await answer(second!)), "y"))).toEqual(map(two, (v) => v * 10));
    // The batched model request carries its own id; the tern-batch header lists the requests it holds.
    const topic = stack.client.topics.modelInputs("mul10");
    const batched = await waitFor(
      () =>
        hops
          .all()
          .find(
            (r) =>
              r.topic === topic &&
              r.headers.pipeline === "batch-mul" &&
              (r.headers["tern-batch"] ?? "").includes(first!.requestId),
          ),
      { timeoutMs: 15_000, intervalMs: 25, description: "the batched request to mul10" },
    );
    expect(batched.partition).toBe(partition);
    expect(batched.headers["tern-batch"]).toContain(second!.requestId);
    expect(rowsOf(tensor(decodeTensors(batched), "x"))).toEqual(map([...one, ...two], (v) => v));
  });

  it("a step's error becomes the pipeline's error answer, naming the step (sum-diff without b)", async () => {
    const sent = await stack.client.send("sum-diff-pipeline", [f32("a", [[1, 2]])]);
    const failed = await answer(sent);
    expect(failed.ok).toBe(false);
    if (failed.ok) return;
    expect(failed.message).toContain("step sum-diff");
    expect(failed.failed).toBe("sum-diff-pipeline");
    expect(failed.record.partition).toBe(sent.partition);
    expect(failed.record.key).toBe(sent.key);
  });
});
