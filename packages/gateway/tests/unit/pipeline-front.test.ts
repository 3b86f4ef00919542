import {
  type BusConsumer,
  createMemoryBus,
  createTopicNames,
  decodeModelInferRequest,
  encodeModelInferResponse,
  type MemoryBus,
  type PipelineState,
  parseRecordKey,
  partitionForRequest,
  type RouteTable,
  requestInputsToOip,
  tensorsFromOip,
} from "@tern/core";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.js";
import { createPipelineFront, type PipelineFront } from "../../src/pipeline-front.js";
import { createMemoryRouteSource, type MemoryRouteSource } from "../../src/route-source.js";
import { createHttpUpstream } from "../../src/upstream.js";

// The pipeline front on the in-memory bus: a stand-in dataflow worker below reads pipeline inputs and answers
// y = (x + 10) * 10 on the same partition and key, or an error record, as docs/dataflow.md describes the workers.
// The integration test (test/gateway/pipeline-front.test.ts) runs the real workers on the real broker.

const logger = pino({ level: "silent" });
const PARTITIONS = 4;
const topics = createTopicNames({ namespace: "unit" });
const PIPELINES = ["p1", "p2", "stalled", "creating"];

let bus: MemoryBus;
let front: PipelineFront;
let routes: MemoryRouteSource;
let worker: BusConsumer;

function table(states: Record<string, PipelineState>): RouteTable {
  return {
    revision: 1,
    models: {},
    experiments: {},
    pipelines: Object.fromEntries(Object.entries(states).map(([name, state]) => [name, { name, state }])),
  };
}

beforeEach(async () => {
  bus = createMemoryBus();
  await bus.admin().ensureTopics(
    PIPELINES.flatMap((p) => [topics.pipelineInputs(p), topics.pipelineOutputs(p)]),
    PARTITIONS,
  );
  const producer = bus.producer();
  worker = bus.consumer({
    groupId: "fake-worker",
    topics: ["p1", "p2"].map((p) => topics.pipelineInputs(p)),
    fromBeginning: true,
    async onBatch(messages) {
      for (const m of messages) {
        const pipeline = m.headers.pipeline!;
        const out = topics.pipelineOutputs(pipeline);
        const base = { topic: out, partition: m.partition, key: m.key };
        const inputs = requestInputsToOip(decodeModelInferRequest(m.value));
        if (inputs[0]?.name === "bad") {
          await producer.send([
            {
              ...base,
              value: new Uint8Array(0),
              headers: {
                ...m.headers,
                "seldon-pipeline-errors": pipeline,
                "tern-error": `pipeline ${pipeline}: step s failed: no tensor x`,
                "tern-error-status": "INVALID_ARGUMENT",
              },
            },
          ]);
          continue;
        }
        const x = inputs[0]!.data as Float32Array;
        const y = { name: "y", datatype: "FP32" as const, shape: inputs[0]!.shape, data: x.map((v) => (v + 10) * 10) };
        const value = encodeModelInferResponse({ model_name: pipeline, outputs: tensorsFromOip([y], false).tensors });
        // Twice: at-least-once delivery may repeat an answer; the gateway must drop the second.
        await producer.send([
          { ...base, value, headers: m.headers },
          { ...base, value, headers: m.headers },
        ]);
      }
    },
  });
  await worker.start();
  front = createPipelineFront({ bus, topics, partitions: PARTITIONS, logger });
  routes = createMemoryRouteSource(
    table({ p1: "PipelineReady", p2: "PipelineRebalancing", stalled: "PipelineReady", creating: "PipelineCreating" }),
  );
});

afterEach(async () => {
  await front.close();
  await worker.stop();
  await bus.close();
});

function app(pipelineDeadlineMs = 5000) {
  return createApp({
    routes,
    upstream: createHttpUpstream(),
    logger,
    pipelines: front,
    config: { pipelineDeadlineMs },
  });
}

const body = (name: string, data: number[]) =>
  JSON.stringify({ inputs: [{ name, datatype: "FP32", shape: [1, data.length], data }] });

async function infer(pipeline: string, payload: string, headers: Record<string, string> = {}, deadlineMs?: number) {
  return app(deadlineMs).request(`/v2/pipelines/${pipeline}/infer`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: payload,
  });
}

describe("pipeline requests over the bus", () => {
  it("answers with the pipeline's outputs; the key and partition carry the gateway's id, the caller's x-request-id travels as a header", async () => {
    const res = await infer("p1", body("x", [1, 2.5]), { "x-request-id": "caller-1" });
    expect(res.status).toBe(200);
    const json = (await res.json()) as {
      id: string;
      model_name: string;
      outputs: Array<{ name: string; data: number[] }>;
    };
    expect(json.model_name).toBe("p1");
    expect(json.outputs).toEqual([expect.objectContaining({ name: "y", data: [110, 125] })]);
    expect(res.headers.get("x-request-id")).toBe("caller-1");
    const id = res.headers.get("x-tern-request-id")!;
    expect(json.id).toBe(id);
    expect(id).not.toBe("caller-1");
    const k = partitionForRequest(id, PARTITIONS);
    const [sent] = bus.records(topics.pipelineInputs("p1"), k);
    expect(sent?.key).toBe(`${k}.p1.${id}`);
    expect(parseRecordKey(sent!.key)?.requestId).toBe(id);
    expect(sent?.headers).toMatchObject({ pipeline: "p1", "x-request-id": "caller-1" });
    expect(front.pending()).toBe(0);
  });

  it("serves a PipelineRebalancing pipeline, and a second pipeline after the first (the reader restarts with its topic)", async () => {
    expect((await infer("p1", body("x", [0]))).status).toBe(200);
    const res = await infer("p2", body("x", [3]));
    expect(res.status).toBe(200);
    expect(((await res.json()) as { outputs: Array<{ data: number[] }> }).outputs[0]!.data).toEqual([130]);
    const again = await infer("p1", body("x", [-10]));
    expect(((await again.json()) as { outputs: Array<{ data: number[] }> }).outputs[0]!.data).toEqual([0]);
  });

  it("the seldon-model: p.pipeline header routes a model path's infer to the pipeline", async () => {
    const res = await app().request("/v2/models/anything/infer", {
      method: "POST",
      headers: { "content-type": "application/json", "seldon-model": "p1.pipeline" },
      body: body("x", [5]),
    });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { outputs: Array<{ data: number[] }> }).outputs[0]!.data).toEqual([150]);
  });

  it.each([
    // p1 and p2 hash into different buckets of 3 (checked below, so the test says so if the hash ever changes).
    [
      3,
      [
        { pipelines: ["p2"], starts: 1 },
        { pipelines: ["p1"], starts: 1 },
      ],
    ],
    [1, [{ pipelines: ["p1", "p2"], starts: 2 }]],
  ] as const)("with %i bucket(s), a new pipeline restarts only its own bucket's reader", async (buckets, expected) => {
    if (buckets === 3) expect(partitionForRequest("p1", 3)).not.toBe(partitionForRequest("p2", 3));
    const own = createPipelineFront({ bus, topics, partitions: PARTITIONS, logger, buckets });
    try {
      const served = createApp({ routes, upstream: createHttpUpstream(), logger, pipelines: own });
      for (const p of ["p1", "p2"]) {
        const res = await served.request(`/v2/pipelines/${p}/infer`, { method: "POST", body: body("x", [1]) });
        expect(res.status).toBe(200);
      }
      expect(own.readers().map(({ pipelines, starts }) => ({ pipelines, starts }))).toEqual(expected);
    } finally {
      await own.close();
    }
  });

  it("a reply reader that stops for good is started again, so its pipelines keep answering", async () => {
    expect((await infer("p1", body("x", [1]))).status).toBe(200);
    const [reader] = front.readers();
    expect(await bus.crash(reader!.groupId)).toBe(1);
    const res = await infer("p1", body("x", [2]), {}, 3000);
    expect(res.status, JSON.stringify(await res.clone().json())).toBe(200);
    expect(front.readers()).toEqual([expect.objectContaining({ pipelines: ["p1"], starts: 2 })]);
  });

  it("a request that cannot be produced gets 503 naming its id, not a 500", async () => {
    // Its outputs topic exists (the reader starts), its inputs topic does not: the produce fails.
    await bus.admin().ensureTopics([topics.pipelineOutputs("half")], PARTITIONS);
    routes.set(table({ half: "PipelineReady" }));
    const res = await infer("half", body("x", [1]));
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: string }).error).toMatch(
      /^pipeline half: request id [0-9a-f-]{36} could not be sent$/,
    );
    expect(front.pending()).toBe(0);
  });

  it("many concurrent requests each get their own answer", async () => {
    const xs = Array.from({ length: 50 }, (_, i) => i);
    const answers = await Promise.all(
      xs.map(async (x) => {
        const res = await infer(x % 2 ? "p1" : "p2", body("x", [x]));
        return ((await res.json()) as { outputs: Array<{ data: number[] }> }).outputs[0]!.data[0];
      }),
    );
    expect(answers).toEqual(xs.map((x) => (x + 10) * 10));
  });

  it("an error answer comes back with the HTTP status of its gRPC status and its message", async () => {
    const res = await infer("p1", body("bad", [1]));
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: "pipeline p1: step s failed: no tensor x" });
  });

  it("404 for an unknown pipeline, 503 naming the state of one not ready", async () => {
    const missing = await infer("nope", body("x", [1]));
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ error: "pipeline nope not found" });
    const creating = await infer("creating", body("x", [1]));
    expect(creating.status).toBe(503);
    expect(((await creating.json()) as { error: string }).error).toContain("state PipelineCreating");
  });

  it("504 naming the request id when no answer comes by the deadline", async () => {
    const res = await infer("stalled", body("x", [1]), {}, 300);
    expect(res.status).toBe(504);
    const { error } = (await res.json()) as { error: string };
    expect(error).toMatch(/^pipeline stalled did not answer request id [0-9a-f-]{36} within \d+ ms$/);
    expect(front.pending()).toBe(0);
  });

  it("400 naming the input for a malformed tensor, 501 for binary tensors", async () => {
    const short = await infer(
      "p1",
      JSON.stringify({ inputs: [{ name: "x", datatype: "FP32", shape: [1, 3], data: [1] }] }),
    );
    expect(short.status).toBe(400);
    expect(((await short.json()) as { error: string }).error).toContain('input "x"');
    const binary = await infer("p1", body("x", [1]), { "inference-header-content-length": "10" });
    expect(binary.status).toBe(501);
  });

  it("after close new requests get 503", async () => {
    expect((await infer("p1", body("x", [1]))).status).toBe(200);
    await front.close();
    const res = await infer("p1", body("x", [1]));
    expect(res.status).toBe(503);
  });
});
