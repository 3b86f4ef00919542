import { randomUUID } from "node:crypto";
import {
  createTopicNames,
  decodeModelInferRequest,
  decodeModelInferResponse,
  encodeModelInferRequest,
  encodeModelInferResponse,
  type MessageBus,
  type OipTensor,
  type PipelineResource,
  parseRecordKey,
  requestInputsToOip,
  responseOutputsToOip,
  tensorsFromOip,
} from "@tern/core";
import { compilePipeline, createPipelineHost, type PipelineHost, type PipelinePlan } from "@tern/dataflow";
import { createKafkaBus } from "@tern/kafka";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { createOutsideKafka, type OutsideKafka, type OutsideRecord } from "../helpers/outside-kafka.js";
import { kafkaBrokers } from "../helpers/services.js";
import { testSettings } from "../kafka/test-settings.js";

/**
 * The pipeline runner on the real broker: `createPipelineHost` over the Kafka bus runs a chain, while the test's own
 * plain-kafkajs client sends the requests, reads every topic, and plays the model gateway (answers each model request
 * on the same partition of the model's outputs topic, key and headers kept).
 */

const PARTITIONS = 4;
const logger = pino({ level: "silent" });
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

async function waitFor<T>(probe: () => T | undefined, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const fp32 = (name: string, values: number[]): OipTensor => ({
  name,
  datatype: "FP32",
  shape: [1, values.length],
  data: Float32Array.from(values),
});

interface Setup {
  bus: MessageBus;
  plan: PipelinePlan;
  topics: ReturnType<typeof createTopicNames>;
  outside: OutsideKafka;
  seen: OutsideRecord[];
  groupId: string;
  host(): Promise<PipelineHost>;
  send(id: string, partition: number, x: number[]): Promise<void>;
  /** The model gateway the test plays: answers model requests while `answering` is true. */
  models: { answering: boolean };
  answersTo(id: string): OutsideRecord[];
}

async function setUp(): Promise<Setup> {
  const suffix = randomUUID().slice(0, 8);
  const topics = createTopicNames({ prefix: `it-df-${suffix}` });
  const pipeline = "add-then-mul";
  const plan = compilePipeline(
    {
      apiVersion: "mlops.seldon.io/v1alpha1",
      kind: "Pipeline",
      metadata: { name: pipeline },
      spec: {
        steps: [
          { name: "add10" },
          { name: "mul10", inputs: ["add10.outputs.y"], tensorMap: { "add10.outputs.y": "x" } },
        ],
        output: { steps: ["mul10"] },
      },
    } as PipelineResource,
    { topics },
  );
  const bus = createKafkaBus({ brokers: kafkaBrokers(), settings: testSettings });
  cleanups.push(() => bus.close());
  await bus.admin().ensureTopics([...new Set([...plan.subscribe, ...plan.produce])], PARTITIONS);
  const outside = await createOutsideKafka(kafkaBrokers(), `dataflow-${suffix}`);
  cleanups.push(() => outside.close());
  const seen = await outside.read([...new Set([...plan.subscribe, ...plan.produce])]);

  // The model gateway: each model adds or multiplies by 10 its tensor x, answering y.
  const models = { answering: true };
  const answered = new WeakSet<OutsideRecord>();
  const fns: Record<string, (v: number) => number> = { add10: (v) => v + 10, mul10: (v) => v * 10 };
  const loop = setInterval(() => {
    if (!models.answering) return;
    for (const record of seen) {
      const parsed = topics.parse(record.topic);
      if (parsed?.kind !== "model" || parsed.direction !== "inputs") continue;
      if (answered.has(record)) continue;
      answered.add(record);
      const request = decodeModelInferRequest(record.value);
      const x = requestInputsToOip(request).find((t) => t.name === "x")!;
      const y: OipTensor = { ...fp32("y", [...(x.data as Float32Array)].map(fns[parsed.name!]!)), shape: x.shape };
      const { tensors, raw } = tensorsFromOip([y], true);
      const value = encodeModelInferResponse({ model_name: parsed.name!, outputs: tensors, raw_output_contents: raw! });
      void outside.send(topics.modelOutputs(parsed.name!), record.partition, record.key, value, record.headers);
    }
  }, 10);
  cleanups.push(async () => clearInterval(loop));

  const groupId = `it-df-${suffix}`;
  let workers = 0;
  return {
    bus,
    plan,
    topics,
    outside,
    seen,
    groupId,
    models,
    async host() {
      const host = createPipelineHost({
        bus,
        plan,
        groupId,
        partitions: PARTITIONS,
        errorsTopic: topics.errors(),
        logger,
        workerId: `dataflow-${workers++}`,
      });
      cleanups.push(() => host.stop());
      await host.start({ timeoutMs: 30_000 });
      return host;
    },
    async send(id, partition, x) {
      const { tensors, raw } = tensorsFromOip([fp32("x", x)], true);
      const value = encodeModelInferRequest({ model_name: pipeline, id, inputs: tensors, raw_input_contents: raw! });
      await outside.send(plan.inputsTopic, partition, `${partition}.${pipeline}.${id}`, value, {
        pipeline,
        "x-request-id": `client-${id}`,
        "x-team": "ml",
      });
    },
    answersTo: (id) => seen.filter((r) => r.topic === plan.outputsTopic && parseRecordKey(r.key)?.requestId === id),
  };
}

const expected = (x: number[]) => x.map((v) => Math.fround(Math.fround(Math.fround(v) + 10) * 10));

describe("dataflow runner on Kafka", () => {
  it("runs a chain: every hop on the request's partition with <k>.<resource>.<id> keys, the answers right", async () => {
    const s = await setUp();
    await s.host();
    const requests = [0, 1, 2, 3].map((k) => ({ id: `chain-${k}`, partition: k, x: [k, k + 0.5] }));
    for (const r of requests) await s.send(r.id, r.partition, r.x);
    for (const r of requests) {
      const [answer] = await waitFor(() => {
        const found = s.answersTo(r.id);
        return found.length > 0 ? found : undefined;
      }, `the answer to ${r.id}`);
      expect(answer!.partition).toBe(r.partition);
      expect(answer!.key).toBe(`${r.partition}.add-then-mul.${r.id}`);
      expect(answer!.headers).toMatchObject({
        pipeline: "add-then-mul",
        "x-request-id": `client-${r.id}`,
        "x-team": "ml",
      });
      const response = decodeModelInferResponse(answer!.value);
      expect(response).toMatchObject({ model_name: "add-then-mul", id: r.id });
      const [y] = responseOutputsToOip(response);
      expect(y!.name).toBe("y");
      expect([...(y!.data as Float32Array)]).toEqual(expected(r.x));
      // Every hop in between: the model topics, on partition k, keyed <k>.<model>.<id>.
      for (const model of ["add10", "mul10"]) {
        for (const topic of [s.topics.modelInputs(model), s.topics.modelOutputs(model)]) {
          // The outside reader fetches each topic on its own: the answer may be read before an earlier hop.
          const hops = await waitFor(() => {
            const found = s.seen.filter((m) => m.topic === topic && parseRecordKey(m.key)?.requestId === r.id);
            return found.length > 0 ? found : undefined;
          }, `${r.id} on ${topic}`);
          expect(hops.map((m) => [m.partition, m.key])).toEqual([[r.partition, `${r.partition}.${model}.${r.id}`]]);
          expect(hops[0]!.headers).toMatchObject({ pipeline: "add-then-mul", "x-team": "ml" });
        }
        const call = s.seen.find(
          (m) => m.topic === s.topics.modelInputs(model) && parseRecordKey(m.key)?.requestId === r.id,
        )!;
        const request = decodeModelInferRequest(call.value);
        expect(request).toMatchObject({ model_name: model, id: r.id });
        expect(requestInputsToOip(request).map((t) => t.name)).toEqual(["x"]);
      }
    }
  });

  it("two owners in one group: one stopped with a request open, the other replays it and answers it once", async () => {
    const s = await setUp();
    const first = await s.host();
    const second = await s.host();
    // Both hold their assignment once the second joined (an eager rebalance of the group).
    await waitFor(() => {
      const a = first.assignment()[s.plan.inputsTopic] ?? [];
      const b = second.assignment()[s.plan.inputsTopic] ?? [];
      return a.length === 2 && b.length === 2 ? true : undefined;
    }, "both owners holding two partitions each");
    const partition = first.assignment()[s.plan.inputsTopic]![0]!;
    expect(first.assignment()[s.topics.modelOutputs("add10")]).toContain(partition);

    s.models.answering = false;
    await s.send("handover", partition, [7]);
    await waitFor(() => (first.inFlight() === 1 ? true : undefined), "the first owner to take the request");
    await waitFor(
      () =>
        s.seen.some((m) => m.topic === s.topics.modelInputs("add10") && m.key === `${partition}.add10.handover`) ||
        undefined,
      "the first owner's model call",
    );
    // Stopped without finishing: its request's records stay uncommitted.
    await first.stop();
    await waitFor(
      () => ((second.assignment()[s.plan.inputsTopic] ?? []).length === PARTITIONS ? true : undefined),
      "the second owner holding every partition",
    );
    await waitFor(
      () =>
        s.seen.filter((m) => m.topic === s.topics.modelInputs("add10") && m.key === `${partition}.add10.handover`)
          .length === 2 || undefined,
      "the second owner to replay the request and call add10 again",
    );
    s.models.answering = true;
    const [answer] = await waitFor(() => {
      const found = s.answersTo("handover");
      return found.length > 0 ? found : undefined;
    }, "the answer from the second owner");
    expect(answer!.partition).toBe(partition);
    expect(answer!.key).toBe(`${partition}.add-then-mul.handover`);
    const [y] = responseOutputsToOip(decodeModelInferResponse(answer!.value));
    expect([...(y!.data as Float32Array)]).toEqual(expected([7]));
    await waitFor(() => (second.inFlight() === 0 ? true : undefined), "the second owner to finish");
    // Both add10 answers reached the second owner; the later one was dropped, so mul10 ran once and one answer went out.
    await waitFor(
      () =>
        s.seen.filter((m) => m.topic === s.topics.modelOutputs("add10") && m.key === `${partition}.add10.handover`)
          .length === 2 || undefined,
      "both add10 answers",
    );
    expect(s.answersTo("handover")).toHaveLength(1);
  });
});
