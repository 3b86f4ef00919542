import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import {
  type BusConsumer,
  createMemoryBus,
  createTopicNames,
  decodeModelInferRequest,
  encodeModelInferResponse,
  type MemoryBus,
  type PipelineSpec,
  type PipelineState,
  partitionForRequest,
  pipelineIo,
  type RouteTable,
  requestInputsToOip,
  tensorsFromOip,
} from "@tern/core";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { grpcStatusForErrorRecord } from "../../src/grpc-pipeline.js";
import { createGrpcProxy, type GrpcProxy } from "../../src/grpc-proxy.js";
import { createPipelineFront, type PipelineFront } from "../../src/pipeline-front.js";
import { httpStatusForErrorRecord } from "../../src/pipeline-json.js";
import { type ModelTensorLists, type PipelineTensorMetadata, pipelineMetadata } from "../../src/pipeline-metadata.js";
import { createMemoryRouteSource } from "../../src/route-source.js";
import { waitFor } from "./fake-agent.js";

// gRPC ModelInfer/ModelReady/ModelMetadata with `seldon-model: <p>.pipeline` (or `<e>.experiment`, an experiment of
// pipelines) through the real gRPC proxy and the pipeline front on the in-memory bus. A stand-in dataflow worker answers
// y = 2x - 1 (FP32) for pipeline double and y = x + 100 for plus, on the request's partition and key, or an error record
// for an input named "fail"; nothing reads pipeline copy (an experiment's mirror) or stalled. The integration test
// (test/gateway/pipeline-grpc.test.ts) runs the real worker on the real broker.

const logger = pino({ level: "silent" });
const PARTITIONS = 4;
const topics = createTopicNames({ namespace: "grpcunit" });
const PROTO = fileURLToPath(new URL("../../../core/proto/oip.proto", import.meta.url));
const Service = (
  grpc.loadPackageDefinition(
    protoLoader.loadSync(PROTO, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true }),
  ) as unknown as { inference: { GRPCInferenceService: grpc.ServiceClientConstructor } }
).inference.GRPCInferenceService;

interface WireTensor {
  name: string;
  datatype: string;
  shape: string[];
  contents?: { fp32_contents?: number[] };
}
interface InferResponse {
  model_name: string;
  id: string;
  outputs: WireTensor[];
  raw_output_contents: Buffer[];
}

/** What the stand-in worker computes, by pipeline. */
const FUNCTIONS: Record<string, (x: number) => number> = { double: (x) => 2 * x - 1, plus: (x) => x + 100 };

let bus: MemoryBus;
let front: PipelineFront;
let worker: BusConsumer;
let proxy: GrpcProxy;
let client: grpc.Client;

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
    ["double", "plus", "copy", "stalled"].flatMap((p) => [topics.pipelineInputs(p), topics.pipelineOutputs(p)]),
    PARTITIONS,
  );
  const producer = bus.producer();
  worker = bus.consumer({
    groupId: "stand-in-worker",
    topics: Object.keys(FUNCTIONS).map((p) => topics.pipelineInputs(p)),
    fromBeginning: true,
    async onBatch(messages) {
      for (const m of messages) {
        const pipeline = m.headers.pipeline!;
        const target = { topic: topics.pipelineOutputs(pipeline), partition: m.partition, key: m.key };
        const [x] = requestInputsToOip(decodeModelInferRequest(m.value));
        if (x!.name === "fail") {
          const headers = {
            ...m.headers,
            "seldon-pipeline-errors": "double",
            "tern-error": "pipeline double: step twice failed: x is out of range",
            "tern-error-status": "FAILED_PRECONDITION",
          };
          await producer.send([{ ...target, value: new Uint8Array(0), headers }]);
          continue;
        }
        const y = { ...x!, name: "y", data: (x!.data as Float32Array).map(FUNCTIONS[pipeline]!) };
        const value = encodeModelInferResponse({ model_name: pipeline, outputs: tensorsFromOip([y], false).tensors });
        await producer.send([{ ...target, value, headers: m.headers }]);
      }
    },
  });
  await worker.start();
  front = createPipelineFront({ bus, topics, partitions: PARTITIONS, logger });
  proxy = createGrpcProxy({
    routes: createMemoryRouteSource(
      table({ double: "PipelineReady", stalled: "PipelineReady", creating: "PipelineCreating" }),
    ),
    logger,
    pipelines: front,
    pipelineDeadlineMs: 2000,
  });
  const port = await proxy.listen("127.0.0.1", 0);
  client = new Service(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
});

afterEach(async () => {
  client.close();
  await proxy.close();
  await front.close();
  await worker.stop();
  await bus.close();
});

function call<T>(method: string, request: unknown, metadata: Record<string, string> = {}) {
  return callWith<T>(client, method, request, metadata);
}

function callWith<T>(on: grpc.Client, method: string, request: unknown, metadata: Record<string, string> = {}) {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(metadata)) md.set(k, v);
  return new Promise<{ value?: T; error?: grpc.ServiceError; headers?: grpc.Metadata }>((resolve) => {
    let headers: grpc.Metadata | undefined;
    const unary = (on as unknown as Record<string, (...args: unknown[]) => grpc.ClientUnaryCall>)[method]!;
    const c = unary.call(
      on,
      request,
      md,
      { deadline: Date.now() + 10_000 },
      (error: grpc.ServiceError | null, value: T) =>
        resolve({ ...(error ? { error } : { value }), ...(headers ? { headers } : {}) }),
    );
    c.on("metadata", (m: grpc.Metadata) => {
      headers = m;
    });
  });
}

const pipelineHeader = (p: string) => ({ "seldon-model": `${p}.pipeline` });
const fp32 = (values: number[]) => Buffer.from(new Float32Array(values).buffer);
const fromFp32 = (b: Buffer) => [...new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength))];

describe("gRPC ModelInfer to a pipeline", () => {
  it("raw_input_contents in, raw_output_contents out; the id is the gateway's, the caller's x-request-id comes back", async () => {
    const x = [1.5, -2, 0.25, 8];
    const res = await call<InferResponse>(
      "ModelInfer",
      {
        model_name: "ignored-when-the-header-names-a-pipeline",
        inputs: [{ name: "x", datatype: "FP32", shape: [2, 2] }],
        raw_input_contents: [fp32(x)],
      },
      { ...pipelineHeader("double"), "x-request-id": "caller-9", "x-tenant": "t1", "x-tern-request-id": "forged" },
    );
    expect(res.error).toBeUndefined();
    const out = res.value!;
    expect(out.model_name).toBe("double");
    expect(out.outputs).toEqual([expect.objectContaining({ name: "y", datatype: "FP32", shape: ["2", "2"] })]);
    expect(fromFp32(out.raw_output_contents[0]!)).toEqual(x.map((v) => 2 * v - 1));
    expect(res.headers?.get("x-request-id")).toEqual(["caller-9"]);
    expect(res.headers?.get("x-tern-request-id")).toEqual([out.id]);
    expect(out.id).toMatch(/^[0-9a-f-]{36}$/);
    // The record on Kafka: keyed by the gateway's id, the caller's id as a header.
    const k = partitionForRequest(out.id, PARTITIONS);
    const [sent] = bus.records(topics.pipelineInputs("double"), k);
    expect(sent?.key).toBe(`${k}.double.${out.id}`);
    // The caller's x-* metadata travels on the record (as REST's x-* headers do), but never the gateway's own x-tern-*.
    expect(sent?.headers).toMatchObject({ pipeline: "double", "x-request-id": "caller-9", "x-tenant": "t1" });
    expect(sent?.headers["x-tern-request-id"]).toBeUndefined();
  });

  it("typed contents in, typed contents out", async () => {
    const res = await call<InferResponse>(
      "ModelInfer",
      { model_name: "", inputs: [{ name: "x", datatype: "FP32", shape: [3], contents: { fp32_contents: [3, 4, 5] } }] },
      pipelineHeader("double"),
    );
    expect(res.error).toBeUndefined();
    expect(res.value!.raw_output_contents).toEqual([]);
    expect(res.value!.outputs[0]!.contents?.fp32_contents).toEqual([5, 7, 9]);
  });

  it("a step's error comes back with its status as the gRPC code and its message", async () => {
    const res = await call(
      "ModelInfer",
      { inputs: [{ name: "fail", datatype: "FP32", shape: [1], contents: { fp32_contents: [1] } }] },
      pipelineHeader("double"),
    );
    expect(res.error?.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(res.error?.details).toBe("pipeline double: step twice failed: x is out of range");
  });

  it("NOT_FOUND for an unknown pipeline, UNAVAILABLE naming the state of one not ready", async () => {
    const req = { inputs: [{ name: "x", datatype: "FP32", shape: [1], contents: { fp32_contents: [1] } }] };
    const missing = await call("ModelInfer", req, pipelineHeader("nope"));
    expect(missing.error?.code).toBe(grpc.status.NOT_FOUND);
    expect(missing.error?.details).toBe("pipeline nope not found");
    const creating = await call("ModelInfer", req, pipelineHeader("creating"));
    expect(creating.error?.code).toBe(grpc.status.UNAVAILABLE);
    expect(creating.error?.details).toBe("pipeline creating is not ready (state PipelineCreating)");
  });

  it("DEADLINE_EXCEEDED naming the request id when no answer comes by the pipeline deadline", async () => {
    const res = await call(
      "ModelInfer",
      { inputs: [{ name: "x", datatype: "FP32", shape: [1], contents: { fp32_contents: [1] } }] },
      pipelineHeader("stalled"),
    );
    expect(res.error?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(res.error?.details).toMatch(/^pipeline stalled did not answer request id [0-9a-f-]{36} within \d+ ms$/);
    expect(res.error?.details).toContain(res.headers?.get("x-tern-request-id")[0] as string);
    expect(front.pending()).toBe(0);
  });

  it("INVALID_ARGUMENT naming the input for tensors that do not fit their shape, or no inputs", async () => {
    const short = await call(
      "ModelInfer",
      { inputs: [{ name: "x", datatype: "FP32", shape: [2, 2] }], raw_input_contents: [fp32([1, 2, 3])] },
      pipelineHeader("double"),
    );
    expect(short.error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(short.error?.details).toMatch(/"x"/);
    const none = await call("ModelInfer", { model_name: "double" }, pipelineHeader("double"));
    expect(none.error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(none.error?.details).toBe("ModelInferRequest has no inputs");
  });
});

describe("gRPC ModelReady for a pipeline", () => {
  it("ready while served, not ready while creating, NOT_FOUND when unknown", async () => {
    expect((await call("ModelReady", { name: "x" }, pipelineHeader("double"))).value).toEqual({ ready: true });
    expect((await call("ModelReady", { name: "x" }, pipelineHeader("creating"))).value).toEqual({ ready: false });
    expect((await call("ModelReady", { name: "x" }, pipelineHeader("nope"))).error?.code).toBe(grpc.status.NOT_FOUND);
  });
});

/** A second proxy on the same front, over a table of the test's own and a random source it controls. */
async function proxyOver(t: RouteTable, random: () => number = Math.random) {
  const own = createGrpcProxy({
    routes: createMemoryRouteSource(t),
    logger,
    pipelines: front,
    pipelineDeadlineMs: 2000,
    random,
  });
  const port = await own.listen("127.0.0.1", 0);
  const ownClient = new Service(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  cleanups.push(async () => {
    ownClient.close();
    await own.close();
  });
  return ownClient;
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** An experiment of pipelines double and plus, 50/50, taking over double's name, mirrored in full to copy. */
function experimentTable(active = true): RouteTable {
  const t = table({ double: "PipelineReady", plus: "PipelineRebalancing", copy: "PipelineReady" });
  t.experiments.ab = {
    name: "ab",
    resourceType: "pipeline",
    default: "double",
    candidates: [
      { name: "double", weight: 50 },
      { name: "plus", weight: 50 },
    ],
    mirror: { name: "copy", percent: 100 },
    active,
  };
  return t;
}

describe("gRPC ModelInfer to an experiment of pipelines", () => {
  const one = (x: number) => ({
    inputs: [{ name: "x", datatype: "FP32", shape: [1] }],
    raw_input_contents: [fp32([x])],
  });
  const answered = (res: { value?: InferResponse; error?: grpc.ServiceError; headers?: grpc.Metadata }) => {
    expect(res.error).toBeUndefined();
    return {
      by: res.value!.model_name,
      route: res.headers?.get("x-seldon-route")[0],
      y: fromFp32(res.value!.raw_output_contents[0]!)[0],
    };
  };
  const copies = () =>
    Array.from({ length: PARTITIONS }, (_, k) => bus.records(topics.pipelineInputs("copy"), k)).flat();

  it("splits by weight, answers the chosen pipeline's route in x-seldon-route, pins by it, mirrors every request", async () => {
    // Weights 50/50 over a total of 100: a draw of 0.1 falls in double's half, 0.9 in plus's. A 100% mirror draws nothing.
    const picks = [0.1, 0.9];
    const c = await proxyOver(experimentTable(), () => picks.shift() ?? Number.NaN);
    const callOn = (x: number, metadata: Record<string, string>) =>
      callWith<InferResponse>(c, "ModelInfer", one(x), metadata);
    expect(answered(await callOn(1, { "seldon-model": "ab.experiment" }))).toEqual({
      by: "double",
      route: ":double.pipeline:",
      y: FUNCTIONS.double!(1),
    });
    expect(answered(await callOn(2, { "seldon-model": "ab.experiment" }))).toEqual({
      by: "plus",
      route: ":plus.pipeline:",
      y: FUNCTIONS.plus!(2),
    });
    // Pinned by the route the last answer carried: no draw (none is left: a draw would give NaN and fail).
    expect(answered(await callOn(3, { "seldon-model": "ab.experiment", "x-seldon-route": ":plus.pipeline:" }))).toEqual(
      { by: "plus", route: ":plus.pipeline:", y: FUNCTIONS.plus!(3) },
    );
    // The experiment's default named as a pipeline is taken over by the experiment: pinned here too.
    expect(
      answered(await callOn(4, { "seldon-model": "double.pipeline", "x-seldon-route": ":plus.pipeline:" })),
    ).toEqual({ by: "plus", route: ":plus.pipeline:", y: FUNCTIONS.plus!(4) });
    // plus is no experiment's default: never split, and not mirrored.
    expect(answered(await callOn(5, { "seldon-model": "plus.pipeline" }))).toEqual({
      by: "plus",
      route: ":plus.pipeline:",
      y: FUNCTIONS.plus!(5),
    });
    // Each request through the experiment was copied to the mirror's inputs topic with its tensors and x-* metadata.
    await waitFor(() => copies().length === 4, 5000, "four mirror copies");
    const xs = copies().map((r) => (requestInputsToOip(decodeModelInferRequest(r.value))[0]!.data as Float32Array)[0]);
    expect(xs.sort()).toEqual([1, 2, 3, 4]);
    expect(copies().every((r) => r.headers.pipeline === "copy")).toBe(true);
  });

  it("an inactive experiment serves its default; NOT_FOUND for an unknown experiment", async () => {
    const c = await proxyOver(experimentTable(false), () => 0.9);
    expect(
      answered(await callWith<InferResponse>(c, "ModelInfer", one(7), { "seldon-model": "ab.experiment" })),
    ).toEqual({ by: "double", route: ":double.pipeline:", y: FUNCTIONS.double!(7) });
    const missing = await callWith(c, "ModelInfer", one(7), { "seldon-model": "nope.experiment" });
    expect(missing.error?.code).toBe(grpc.status.NOT_FOUND);
    expect(missing.error?.details).toBe("experiment nope not found");
    expect(copies()).toEqual([]);
  });

  it("ModelReady of an experiment answers for the candidate it chooses; NOT_FOUND for an unknown one", async () => {
    const t = experimentTable();
    t.pipelines.plus!.state = "PipelineCreating";
    const picks = [0.1, 0.9];
    const c = await proxyOver(t, () => picks.shift() ?? Number.NaN);
    const ready = (metadata: Record<string, string>) =>
      callWith<{ ready: boolean }>(c, "ModelReady", { name: "" }, metadata);
    expect((await ready({ "seldon-model": "ab.experiment" })).value).toEqual({ ready: true });
    expect((await ready({ "seldon-model": "ab.experiment" })).value).toEqual({ ready: false });
    expect((await ready({ "seldon-model": "nope.experiment" })).error?.code).toBe(grpc.status.NOT_FOUND);
  });
});

describe("gRPC ModelMetadata of a pipeline", () => {
  const CHAIN: PipelineSpec = {
    steps: [{ name: "add10" }, { name: "mul10", inputs: ["add10.outputs.y"], tensorMap: { "add10.outputs.y": "x" } }],
    output: { steps: ["mul10"], tensorMap: { "mul10.outputs.y": "result" } },
  };
  const GATED: PipelineSpec = { steps: [{ name: "add10", inputs: ["gated.inputs.x"], triggers: ["gated.inputs.ok"] }] };
  const MODELS = new Map<string, ModelTensorLists>([
    [
      "add10",
      {
        inputs: [{ name: "x", datatype: "FP32", shape: [-1, 3] }],
        outputs: [{ name: "y", datatype: "FP32", shape: [-1, 3] }],
      },
    ],
    [
      "mul10",
      {
        inputs: [{ name: "x", datatype: "FP32", shape: [-1, 3] }],
        outputs: [
          { name: "y", datatype: "FP32", shape: [-1, 3] },
          { name: "z", datatype: "INT64", shape: [-1] },
        ],
      },
    ],
  ]);

  /** A real gRPC server standing in for the step models' agent: ModelMetadata from MODELS, NOT_FOUND for others. */
  async function startMetadataAgent() {
    const server = new grpc.Server();
    server.addService(Service.service, {
      ModelMetadata: (call: grpc.ServerUnaryCall<{ name: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        const m = MODELS.get(call.request.name);
        if (!m) return cb({ code: grpc.status.NOT_FOUND, details: `model ${call.request.name} not found` });
        cb(null, { name: call.request.name, versions: ["1"], platform: "onnx", ...m });
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    cleanups.push(async () => server.forceShutdown());
    return `127.0.0.1:${port}`;
  }

  function metadataTable(agent: string): RouteTable {
    const endpoint = { server: "s", replica: 0, version: 1, http: "http://unused", grpc: agent };
    const model = (name: string) => ({ name, version: 1, state: "ModelAvailable" as const, endpoints: [endpoint] });
    return {
      revision: 1,
      models: { add10: model("add10"), mul10: model("mul10"), gone: model("gone") },
      experiments: {},
      pipelines: {
        chain: { name: "chain", state: "PipelineReady", io: pipelineIo("chain", CHAIN) },
        gated: { name: "gated", state: "PipelineCreating", io: pipelineIo("gated", GATED) },
        broken: {
          name: "broken",
          state: "PipelineFailed",
          io: pipelineIo("broken", { steps: [{ name: "no-such-model" }] }),
        },
        refused: { name: "refused", state: "PipelineReady", io: pipelineIo("refused", { steps: [{ name: "gone" }] }) },
        old: { name: "old", state: "PipelineReady" },
      },
    };
  }

  /** What REST's GET /v2/pipelines/{p} answers, as proto-loader decodes a ModelMetadataResponse (int64 as strings). */
  function expected(pipeline: string, spec: PipelineSpec) {
    const meta = pipelineMetadata(pipeline, pipelineIo(pipeline, spec), MODELS);
    const tensor = (t: PipelineTensorMetadata) => ({
      name: t.name,
      datatype: t.datatype ?? "",
      shape: (t.shape ?? []).map(String),
    });
    return {
      name: meta.name,
      versions: [],
      platform: meta.platform,
      inputs: meta.inputs.map(tensor),
      outputs: meta.outputs.map(tensor),
    };
  }

  it("answers what REST answers: the first step's inputs, the output step's outputs renamed, datatypes and shapes from the models", async () => {
    const c = await proxyOver(metadataTable(await startMetadataAgent()));
    const chain = await callWith(c, "ModelMetadata", { name: "ignored" }, pipelineHeader("chain"));
    expect(chain.error).toBeUndefined();
    expect(chain.value).toEqual(expected("chain", CHAIN));
    expect(chain.value).toMatchObject({ outputs: [{ name: "result", shape: ["-1", "3"] }, { name: "z" }] });
    // In any state; a trigger no model lists comes by name only (empty datatype and shape on the wire).
    const gated = await callWith(c, "ModelMetadata", { name: "" }, pipelineHeader("gated"));
    expect(gated.value).toEqual(expected("gated", GATED));
    expect(gated.value).toMatchObject({ inputs: [{ name: "x" }, { name: "ok", datatype: "", shape: [] }] });
  });

  it("UNAVAILABLE naming the model whose metadata cannot be read; NOT_FOUND for an unknown pipeline; UNAVAILABLE without io", async () => {
    const c = await proxyOver(metadataTable(await startMetadataAgent()));
    const meta = (p: string) => callWith(c, "ModelMetadata", { name: "" }, pipelineHeader(p));
    expect((await meta("broken")).error).toMatchObject({
      code: grpc.status.UNAVAILABLE,
      details: "pipeline broken: the metadata of its model no-such-model is unavailable: it is not deployed",
    });
    expect((await meta("refused")).error).toMatchObject({
      code: grpc.status.UNAVAILABLE,
      details: "pipeline refused: the metadata of its model gone is unavailable: its replica answered NOT_FOUND",
    });
    expect((await meta("nope")).error).toMatchObject({
      code: grpc.status.NOT_FOUND,
      details: "pipeline nope not found",
    });
    expect((await meta("old")).error?.code).toBe(grpc.status.UNAVAILABLE);
    expect((await meta("old")).error?.details).toMatch(/^pipeline old: the route table does not describe its inputs/);
  });
});

describe("grpcStatusForErrorRecord", () => {
  it("keeps the record's status, the same one REST answers as HTTP; INTERNAL when missing or unknown", () => {
    for (const name of ["INVALID_ARGUMENT", "NOT_FOUND", "UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"]) {
      expect(grpc.status[grpcStatusForErrorRecord(name)]).toBe(name);
      expect(httpStatusForErrorRecord(name)).toBeGreaterThanOrEqual(400);
    }
    expect(grpcStatusForErrorRecord(" unavailable ")).toBe(grpc.status.UNAVAILABLE);
    expect(grpcStatusForErrorRecord(undefined)).toBe(grpc.status.INTERNAL);
    expect(grpcStatusForErrorRecord("OK")).toBe(grpc.status.INTERNAL);
    expect(grpcStatusForErrorRecord("TEAPOT")).toBe(grpc.status.INTERNAL);
  });
});
