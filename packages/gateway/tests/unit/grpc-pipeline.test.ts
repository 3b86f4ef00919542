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
  type PipelineState,
  partitionForRequest,
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
import { createMemoryRouteSource } from "../../src/route-source.js";

// gRPC ModelInfer/ModelReady with `seldon-model: <p>.pipeline` through the real gRPC proxy and the pipeline front on
// the in-memory bus. A stand-in dataflow worker answers y = 2x - 1 (FP32) on the request's partition and key, or an
// error record for an input named "fail". The integration test (test/gateway/pipeline-grpc.test.ts) runs the real
// worker on the real broker.

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
    ["double", "stalled"].flatMap((p) => [topics.pipelineInputs(p), topics.pipelineOutputs(p)]),
    PARTITIONS,
  );
  const producer = bus.producer();
  worker = bus.consumer({
    groupId: "stand-in-worker",
    topics: [topics.pipelineInputs("double")],
    fromBeginning: true,
    async onBatch(messages) {
      for (const m of messages) {
        const target = { topic: topics.pipelineOutputs("double"), partition: m.partition, key: m.key };
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
        const y = { ...x!, name: "y", data: (x!.data as Float32Array).map((v) => 2 * v - 1) };
        const value = encodeModelInferResponse({ model_name: "double", outputs: tensorsFromOip([y], false).tensors });
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
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(metadata)) md.set(k, v);
  return new Promise<{ value?: T; error?: grpc.ServiceError; headers?: grpc.Metadata }>((resolve) => {
    let headers: grpc.Metadata | undefined;
    const unary = (client as unknown as Record<string, (...args: unknown[]) => grpc.ClientUnaryCall>)[method]!;
    const c = unary.call(
      client,
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

describe("gRPC ModelReady and ModelMetadata for a pipeline", () => {
  it("ready while served, not ready while creating, NOT_FOUND when unknown", async () => {
    expect((await call("ModelReady", { name: "x" }, pipelineHeader("double"))).value).toEqual({ ready: true });
    expect((await call("ModelReady", { name: "x" }, pipelineHeader("creating"))).value).toEqual({ ready: false });
    expect((await call("ModelReady", { name: "x" }, pipelineHeader("nope"))).error?.code).toBe(grpc.status.NOT_FOUND);
  });

  it("metadata is UNIMPLEMENTED for pipelines, saying so", async () => {
    const res = await call("ModelMetadata", { name: "x" }, pipelineHeader("double"));
    expect(res.error?.code).toBe(grpc.status.UNIMPLEMENTED);
    expect(res.error?.details).toBe("pipeline double: metadata is not served over gRPC yet");
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
