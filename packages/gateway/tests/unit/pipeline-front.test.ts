import {
  type BusConsumer,
  createMemoryBus,
  createTopicNames,
  DEADLINE_HEADER,
  decodeModelInferRequest,
  encodeModelInferResponse,
  formatRecordKey,
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
import { createPipelineFront, deletedPipelines, type PipelineFront } from "../../src/pipeline-front.js";
import { createMemoryRouteSource, type MemoryRouteSource } from "../../src/route-source.js";
import { createHttpUpstream } from "../../src/upstream.js";
import { waitFor } from "./fake-agent.js";

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

interface BinaryInput {
  name: string;
  datatype: string;
  shape: number[];
  bytes: ArrayBufferView;
}

/** A binary-extension request: the JSON part names each input's byte count, the raw bytes follow in input order. */
async function inferBinary(pipeline: string, inputs: BinaryInput[], extra: Record<string, unknown> = {}) {
  const head = Buffer.from(
    JSON.stringify({
      inputs: inputs.map(({ name, datatype, shape, bytes }) => ({
        name,
        datatype,
        shape,
        parameters: { binary_data_size: bytes.byteLength },
      })),
      ...extra,
    }),
  );
  const tails = inputs.map(({ bytes }) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  return app().request(`/v2/pipelines/${pipeline}/infer`, {
    method: "POST",
    headers: { "content-type": "application/octet-stream", "inference-header-content-length": String(head.byteLength) },
    body: Buffer.concat([head, ...tails]),
  });
}

function splitBinary(body: Uint8Array, headers: Headers) {
  const n = Number(headers.get("inference-header-content-length"));
  expect(n).toBeGreaterThan(0);
  const json = JSON.parse(Buffer.from(body.subarray(0, n)).toString("utf8")) as {
    id: string;
    outputs: Array<{ name: string; parameters?: Record<string, unknown> }>;
  };
  return { json, tail: body.subarray(n) };
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

  it("the caller's x-* headers travel on the record; its own x-tern-* and non-x headers do not", async () => {
    const before = Date.now();
    const res = await infer(
      "p1",
      body("x", [1]),
      {
        "x-request-id": "caller-2",
        "x-tenant": "blue",
        "X-Trace-Flags": "01",
        "x-tern-request-id": "spoofed",
        "tern-deadline": "1",
        authorization: "Bearer secret",
      },
      7_000,
    );
    const after = Date.now();
    expect(res.status).toBe(200);
    const id = res.headers.get("x-tern-request-id")!;
    expect(id).not.toBe("spoofed");
    const [sent] = bus.records(topics.pipelineInputs("p1"), partitionForRequest(id, PARTITIONS));
    const { [DEADLINE_HEADER]: deadline, ...carried } = sent!.headers;
    expect(carried).toEqual({
      pipeline: "p1",
      "x-request-id": "caller-2",
      "x-tenant": "blue",
      "x-trace-flags": "01",
    });
    // The gateway's own deadline for the request (epoch ms), never the caller's header.
    expect(Number(deadline)).toBeGreaterThanOrEqual(before + 7_000);
    expect(Number(deadline)).toBeLessThanOrEqual(after + 7_000);
    expect(res.headers.get("x-request-id")).toBe("caller-2");
  });

  it("serves a PipelineRebalancing pipeline, and a second pipeline after the first (the reader restarts with its topic)", async () => {
    expect((await infer("p1", body("x", [0]))).status).toBe(200);
    const res = await infer("p2", body("x", [3]));
    expect(res.status).toBe(200);
    expect(((await res.json()) as { outputs: Array<{ data: number[] }> }).outputs[0]!.data).toEqual([130]);
    const again = await infer("p1", body("x", [-10]));
    expect(((await again.json()) as { outputs: Array<{ data: number[] }> }).outputs[0]!.data).toEqual([0]);
  });

  it("an experiment of pipelines: takes over its default's path, splits by weight, pins by x-seldon-route, mirrors to a third", async () => {
    const t = table({ p1: "PipelineReady", p2: "PipelineRebalancing", stalled: "PipelineReady" });
    t.experiments.ab = {
      name: "ab",
      resourceType: "pipeline",
      default: "p1",
      candidates: [
        { name: "p1", weight: 50 },
        { name: "p2", weight: 50 },
      ],
      mirror: { name: "stalled", percent: 100 },
      active: true,
    };
    routes.set(t);
    const picks = [0.1, 0.9];
    const served = createApp({
      routes,
      upstream: createHttpUpstream(),
      logger,
      pipelines: front,
      random: () => picks.shift() ?? Number.NaN,
      config: { pipelineDeadlineMs: 5000 },
    });
    const post = (path: string, x: number, headers: Record<string, string> = {}) =>
      served.request(path, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: body("x", [x]),
      });
    const answered = async (res: Response) => {
      expect(res.status).toBe(200);
      const json = (await res.json()) as { model_name: string; outputs: Array<{ data: number[] }> };
      return { by: json.model_name, route: res.headers.get("x-seldon-route"), y: json.outputs[0]!.data[0] };
    };
    expect(await answered(await post("/v2/pipelines/p1/infer", 1))).toEqual({
      by: "p1",
      route: ":p1.pipeline:",
      y: 110,
    });
    expect(await answered(await post("/v2/pipelines/p1/infer", 2))).toEqual({
      by: "p2",
      route: ":p2.pipeline:",
      y: 120,
    });
    // The experiment by its header on a model path, pinned to p2 by the route the last answer carried: no draw.
    const pinned = await post("/v2/models/anything/infer", 3, {
      "seldon-model": "ab.experiment",
      "x-seldon-route": ":p2.pipeline:",
    });
    expect(await answered(pinned)).toEqual({ by: "p2", route: ":p2.pipeline:", y: 130 });
    // p2 itself is no experiment's default: never split.
    expect((await answered(await post("/v2/pipelines/p2/infer", 4))).by).toBe("p2");
    // Every request through the experiment was copied to the mirror's inputs topic, with its tensors.
    const copies = () =>
      Array.from({ length: PARTITIONS }, (_, k) => bus.records(topics.pipelineInputs("stalled"), k)).flat();
    await waitFor(() => copies().length === 3, 5000, "three mirror copies");
    const mirrored = copies();
    const xs = mirrored.map((r) => (requestInputsToOip(decodeModelInferRequest(r.value))[0]!.data as Float32Array)[0]);
    expect(xs.sort()).toEqual([1, 2, 3]);
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

  it("first requests of two pipelines of one bucket, the second while the first's reader starts: both answered", async () => {
    // The reader's start is held until both requests wait, so the second pipeline's restart is queued behind the
    // first's and begins the moment it ends (the sample matrix on a fresh gateway hit this: a 503 for the first).
    let open!: () => void;
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const gated = {
      ...bus,
      consumer(options: Parameters<MemoryBus["consumer"]>[0]) {
        const c = bus.consumer(options);
        return { ...c, start: async (o?: { timeoutMs?: number }) => gate.then(() => c.start(o)) };
      },
    };
    const own = createPipelineFront({ bus: gated, topics, partitions: PARTITIONS, logger, buckets: 1 });
    try {
      const served = createApp({ routes, upstream: createHttpUpstream(), logger, pipelines: own });
      const first = served.request("/v2/pipelines/p1/infer", { method: "POST", body: body("x", [1]) });
      await waitFor(() => own.readers()[0]?.starts === 1, 5000, "the first reader start");
      const second = served.request("/v2/pipelines/p2/infer", { method: "POST", body: body("x", [2]) });
      await waitFor(() => own.pending() === 2, 5000, "both requests waiting");
      open();
      const [a, b] = await Promise.all([first, second]);
      expect([a.status, b.status], `${await a.clone().text()} ${await b.clone().text()}`).toEqual([200, 200]);
      expect(own.readers().map(({ pipelines, starts }) => ({ pipelines, starts }))).toEqual([
        { pipelines: ["p1", "p2"], starts: 2 },
      ]);
    } finally {
      open();
      await own.close();
    }
  });

  it("an answer written during a restart, on a partition the reader never read from, still reaches its request", async () => {
    // 'stalled' has no worker: the test writes its answer itself, after the reader stopped for p1's first request and
    // before the new one started. The reader had read nothing from that partition, so its group had no offset there.
    const requestId = "answer-during-restart";
    const partition = partitionForRequest(requestId, PARTITIONS);
    const producer = bus.producer();
    let written = false;
    const hooked = {
      ...bus,
      consumer(options: Parameters<MemoryBus["consumer"]>[0]) {
        const c = bus.consumer(options);
        if (!options.topics.includes(topics.pipelineOutputs("p1"))) return c;
        const start = async (o?: { timeoutMs?: number }) => {
          const y = { name: "y", datatype: "FP32" as const, shape: [1, 1], data: new Float32Array([7]) };
          await producer.send([
            {
              topic: topics.pipelineOutputs("stalled"),
              partition,
              key: formatRecordKey({ partition, resource: "stalled", requestId }),
              value: encodeModelInferResponse({ model_name: "stalled", outputs: tensorsFromOip([y], false).tensors }),
            },
          ]);
          written = true;
          return c.start(o);
        };
        return { ...c, start };
      },
    };
    const own = createPipelineFront({ bus: hooked, topics, partitions: PARTITIONS, logger, buckets: 1 });
    try {
      const x = [{ name: "x", datatype: "FP32" as const, shape: [1, 1], data: new Float32Array([1]) }];
      const stalled = own.infer("stalled", x, { deadline: Date.now() + 2_000, requestId });
      await waitFor(() => bus.records(topics.pipelineInputs("stalled"), partition).length === 1, 5000, "its request");
      const p1 = await own.infer("p1", x, { deadline: Date.now() + 5_000 });
      expect(written).toBe(true);
      expect(p1.ok).toBe(true);
      const reply = await stalled.catch((err: unknown) => err);
      expect(reply).toMatchObject({ ok: true, requestId, outputs: [{ name: "y", data: new Float32Array([7]) }] });
      expect(own.readers().map(({ pipelines, starts }) => ({ pipelines, starts }))).toEqual([
        { pipelines: ["p1", "stalled"], starts: 2 },
      ]);
    } finally {
      await own.close();
      await producer.close();
    }
  });

  it("prune: a pipeline gone from the table leaves its bucket's reader, which restarts without it; its waiting requests get 404", async () => {
    const own = createPipelineFront({ bus, topics, partitions: PARTITIONS, logger, buckets: 1 });
    try {
      const served = createApp({
        routes,
        upstream: createHttpUpstream(),
        logger,
        pipelines: own,
        config: { pipelineDeadlineMs: 5000 },
      });
      for (const p of ["p1", "p2"]) {
        expect(
          (await served.request(`/v2/pipelines/${p}/infer`, { method: "POST", body: body("x", [1]) })).status,
        ).toBe(200);
      }
      // A request on `stalled` waits (nobody answers it) while its pipeline is deleted.
      const waiting = served.request("/v2/pipelines/stalled/infer", { method: "POST", body: body("x", [1]) });
      await waitFor(
        () => own.pending() === 1 && own.readers()[0]!.pipelines.includes("stalled"),
        5000,
        "the waiting request",
      );
      const next = table({ p1: "PipelineReady", creating: "PipelineCreating" });
      expect(await own.prune!(next)).toEqual(["p2", "stalled"]);
      const res = await waiting;
      expect(res.status).toBe(404);
      expect(await res.json()).toEqual({ error: "pipeline stalled was deleted" });
      expect(own.readers().map(({ pipelines, starts }) => ({ pipelines, starts }))).toEqual([
        { pipelines: ["p1"], starts: 4 },
      ]);
      // p1 still answers on the restarted reader; pruning again changes nothing.
      expect((await served.request("/v2/pipelines/p1/infer", { method: "POST", body: body("x", [2]) })).status).toBe(
        200,
      );
      expect(await own.prune!(next)).toEqual([]);
      expect(own.readers()[0]!.starts).toBe(4);
    } finally {
      await own.close();
    }
  });

  it("prune keeps a terminating pipeline while a request of it waits, and drops it once none does", async () => {
    const reading = ["a", "b", "c", "d"];
    const t = table({
      a: "PipelineReady",
      b: "PipelineTerminating",
      c: "PipelineTerminating",
      d: "PipelineTerminated",
    });
    expect(deletedPipelines(reading, t, (p) => (p === "b" ? 1 : 0))).toEqual(["c", "d"]);
    expect(deletedPipelines(reading, t, () => 0)).toEqual(["b", "c", "d"]);
    expect(deletedPipelines(reading, table({}), () => 3)).toEqual(["a", "b", "c", "d"]);
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

  it("400 naming the input for a malformed tensor", async () => {
    const short = await infer(
      "p1",
      JSON.stringify({ inputs: [{ name: "x", datatype: "FP32", shape: [1, 3], data: [1] }] }),
    );
    expect(short.status).toBe(400);
    expect(((await short.json()) as { error: string }).error).toContain('input "x"');
  });

  it("binary tensors in and out (the OIP binary extension, as tritonclient sends it by default)", async () => {
    const x = Float32Array.from([1.25, -3, 7]);
    const res = await inferBinary("p1", [{ name: "x", datatype: "FP32", shape: [1, 3], bytes: x }], {
      parameters: { binary_data_output: true },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/octet-stream");
    const { json, tail } = splitBinary(new Uint8Array(await res.arrayBuffer()), res.headers);
    expect(json.outputs).toEqual([
      { name: "y", datatype: "FP32", shape: [1, 3], parameters: { binary_data_size: 12 } },
    ]);
    expect(Array.from(new Float32Array(tail.slice().buffer))).toEqual(Array.from(x, (v) => Math.fround((v + 10) * 10)));
    expect(json.id).toBe(res.headers.get("x-tern-request-id"));
  });

  it("a binary request whose output is asked for as JSON answers JSON; JSON in, one output binary out", async () => {
    const asJson = await inferBinary(
      "p1",
      [{ name: "x", datatype: "FP32", shape: [2], bytes: Float32Array.from([0, 1]) }],
      {
        parameters: { binary_data_output: true },
        outputs: [{ name: "y", parameters: { binary_data: false } }],
      },
    );
    expect(asJson.status).toBe(200);
    expect(asJson.headers.get("inference-header-content-length")).toBeNull();
    expect(((await asJson.json()) as { outputs: Array<{ data: number[] }> }).outputs[0]!.data).toEqual([100, 110]);

    const res = await infer(
      "p1",
      JSON.stringify({
        inputs: [{ name: "x", datatype: "FP32", shape: [1], data: [2] }],
        outputs: [{ name: "y", parameters: { binary_data: true } }],
      }),
    );
    expect(res.status).toBe(200);
    const { json, tail } = splitBinary(new Uint8Array(await res.arrayBuffer()), res.headers);
    expect(json.outputs[0]!.parameters).toEqual({ binary_data_size: 4 });
    expect(Array.from(new Float32Array(tail.slice().buffer))).toEqual([120]);
  });

  it.each([
    [
      "a length past the body",
      { "inference-header-content-length": "9999" },
      /Inference-Header-Content-Length is 9999 but the body has only \d+ bytes/,
    ],
    ["a length that is not a number", { "inference-header-content-length": "ten" }, /must be a byte count, got "ten"/],
    ["bytes no input claims", { extra: 3 }, /the binary part has 3 bytes that no input claims/],
    [
      "a size past the binary part",
      { size: 16 },
      /binary_data_size 16 runs past the end of the binary part \(12 bytes left\)/,
    ],
    [
      "a size that does not fit the shape",
      { size: 8, extra: -4 },
      /input "x": binary data is 8 bytes, shape and datatype FP32 need 12/,
    ],
  ] as const)("400 for a binary request with %s", async (_what, fault, message) => {
    const x = new Uint8Array(Float32Array.from([1, 2, 3]).buffer);
    const declared = "size" in fault ? fault.size : x.byteLength;
    const head = Buffer.from(
      JSON.stringify({
        inputs: [{ name: "x", datatype: "FP32", shape: [3], parameters: { binary_data_size: declared } }],
      }),
    );
    const extra = "extra" in fault ? fault.extra : 0;
    const tail = extra >= 0 ? Buffer.concat([x, Buffer.alloc(extra)]) : x.subarray(0, x.byteLength + extra);
    const res = await app().request("/v2/pipelines/p1/infer", {
      method: "POST",
      headers: {
        "content-type": "application/octet-stream",
        "inference-header-content-length":
          "inference-header-content-length" in fault
            ? fault["inference-header-content-length"]
            : String(head.byteLength),
      },
      body: Buffer.concat([head, tail]),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toMatch(message);
    expect(front.pending()).toBe(0);
  });

  it("after close new requests get 503", async () => {
    expect((await infer("p1", body("x", [1]))).status).toBe(200);
    await front.close();
    const res = await infer("p1", body("x", [1]));
    expect(res.status).toBe(503);
  });
});
