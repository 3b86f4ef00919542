import * as grpc from "@grpc/grpc-js";
import {
  decodeModelInferResponse,
  encodeModelInferRequest,
  encodeTensorData,
  REPLICA_MISS_HEADER,
  responseOutputsToOip,
} from "@tern/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGrpcServer } from "../../src/grpc/grpc-server.js";
import { loadOipService } from "../../src/grpc/oip-proto.js";
import { createTestStack, IRIS_ROWS, sampleUri } from "./helpers.js";

const stack = createTestStack();
const server = createGrpcServer({ service: stack.service, metrics: stack.metrics });
let client: grpc.Client &
  Record<string, (req: unknown, cb: (err: grpc.ServiceError | null, res: unknown) => void) => void>;

// biome-ignore lint/suspicious/noExplicitAny: responses are checked field by field in the tests
function call<T = any>(method: string, req: unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    client[method]!(req, (err, res) => (err ? reject(err) : resolve(res as T)));
  });
}

beforeAll(async () => {
  await stack.models.load({ model: "iris", version: 1, storageUri: sampleUri("iris") });
  const port = await server.start("127.0.0.1", 0);
  const { Client } = loadOipService();
  client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as typeof client;
});

afterAll(async () => {
  client.close();
  await server.close(1000);
  await stack.models.close();
});

const irisInput = (rows = IRIS_ROWS) => ({
  name: "predict",
  datatype: "FP32",
  shape: [rows.length, 4],
  contents: { fp32_contents: rows.flatMap((r) => r.features) },
});

describe("OIP gRPC", () => {
  it("answers ServerLive, ServerReady, ModelReady, ServerMetadata and ModelMetadata", async () => {
    expect(await call("ServerLive", {})).toEqual({ live: true });
    expect(await call("ServerReady", {})).toEqual({ ready: true });
    expect(await call("ModelReady", { name: "iris", version: "" })).toEqual({ ready: true });
    expect(await call("ServerMetadata", {})).toMatchObject({ name: "mlserver", extensions: ["binary_tensor_data"] });
    const meta = await call("ModelMetadata", { name: "iris" });
    expect(meta.inputs).toEqual([{ name: "predict", datatype: "FP32", shape: ["-1", "4"] }]);
    expect(meta.outputs.map((o: { name: string }) => o.name)).toEqual(["probabilities", "label"]);
  });

  it("predicts known iris rows from typed contents", async () => {
    const res = await call("ModelInfer", { model_name: "iris", id: "g-1", inputs: [irisInput()] });
    expect(res.id).toBe("g-1");
    expect(res.model_version).toBe("1");
    const label = res.outputs.find((o: { name: string }) => o.name === "label");
    expect(label.shape).toEqual([String(IRIS_ROWS.length)]);
    expect(label.contents.int64_contents.map(Number)).toEqual(IRIS_ROWS.map((r) => r.label));
  });

  it("predicts known iris rows from raw_input_contents and answers in raw_output_contents", async () => {
    const raw = encodeTensorData("FP32", Float32Array.from(IRIS_ROWS.flatMap((r) => r.features)));
    const res = await call("ModelInfer", {
      model_name: "iris",
      model_version: "1",
      inputs: [{ name: "predict", datatype: "FP32", shape: [IRIS_ROWS.length, 4] }],
      outputs: [{ name: "label" }],
      raw_input_contents: [Buffer.from(raw)],
    });
    expect(res.outputs).toHaveLength(1);
    const bytes: Buffer = res.raw_output_contents[0];
    const labels = new BigInt64Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
    expect(Array.from(labels, Number)).toEqual(IRIS_ROWS.map((r) => r.label));
  });

  const cases: Array<{ what: string; req: unknown; code: grpc.status; message: RegExp }> = [
    {
      what: "unknown model",
      req: { model_name: "nope", inputs: [irisInput()] },
      code: grpc.status.NOT_FOUND,
      message: /model nope is not loaded/,
    },
    {
      what: "wrong datatype",
      req: {
        model_name: "iris",
        inputs: [{ ...irisInput(), datatype: "FP64", contents: { fp64_contents: [1, 2, 3, 4] }, shape: [1, 4] }],
      },
      code: grpc.status.INVALID_ARGUMENT,
      message: /datatype FP64 does not match the model's FP32/,
    },
    {
      what: "wrong shape",
      req: { model_name: "iris", inputs: [{ ...irisInput(IRIS_ROWS.slice(0, 1)), shape: [4] }] },
      code: grpc.status.INVALID_ARGUMENT,
      message: /shape \[4\] has rank 1/,
    },
    {
      what: "contents not matching the shape",
      req: { model_name: "iris", inputs: [{ ...irisInput(IRIS_ROWS.slice(0, 1)), shape: [2, 4] }] },
      code: grpc.status.INVALID_ARGUMENT,
      message: /fp32_contents has 4 elements but the shape needs 8/,
    },
    {
      what: "raw contents count mismatch",
      req: {
        model_name: "iris",
        inputs: [{ name: "predict", datatype: "FP32", shape: [1, 4] }],
        raw_input_contents: [Buffer.alloc(16), Buffer.alloc(4)],
      },
      code: grpc.status.INVALID_ARGUMENT,
      message: /raw_input_contents has 2 entries but there are 1 inputs/,
    },
    {
      what: "raw contents of the wrong length",
      req: {
        model_name: "iris",
        inputs: [{ name: "predict", datatype: "FP32", shape: [1, 4] }],
        raw_input_contents: [Buffer.alloc(12)],
      },
      code: grpc.status.INVALID_ARGUMENT,
      message: /binary data is 12 bytes/,
    },
    {
      what: "an INT8 element beyond its range in int_contents",
      req: {
        model_name: "iris",
        inputs: [{ name: "small", datatype: "INT8", shape: [3], contents: { int_contents: [1, -128, 300] } }],
      },
      code: grpc.status.INVALID_ARGUMENT,
      message: /input "small": element 2 is 300, expected an integer in \[-128, 127\] for datatype INT8/,
    },
    {
      what: "no inputs",
      req: { model_name: "iris", inputs: [] },
      code: grpc.status.INVALID_ARGUMENT,
      message: /inputs must not be empty/,
    },
  ];

  it.each(cases)("rejects $what with the right status", async ({ req, code, message }) => {
    const err = (await call("ModelInfer", req).catch((e: unknown) => e)) as grpc.ServiceError;
    expect(err.code).toBe(code);
    expect(err.details).toMatch(message);
    const ok = await call("ModelInfer", { model_name: "iris", inputs: [irisInput()] });
    expect(ok.outputs).toHaveLength(2);
  });

  /** ModelInfer with the request and response as protobuf bytes, as a Kafka record carries them. */
  function inferBytes(bytes: Uint8Array): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      client.makeUnaryRequest(
        "/inference.GRPCInferenceService/ModelInfer",
        (b: Uint8Array) => Buffer.from(b),
        (b: Buffer) => b,
        bytes,
        (err, res) => (err ? reject(err) : resolve(res!)),
      );
    });
  }

  it("answers a request encoded by the core codec with a response the core codec decodes", async () => {
    const features = Float32Array.from(IRIS_ROWS.flatMap((r) => r.features));
    const res = decodeModelInferResponse(
      await inferBytes(
        encodeModelInferRequest({
          model_name: "iris",
          id: "bytes-1",
          parameters: { trace: { kind: "bool", value: true } },
          inputs: [
            { name: "predict", datatype: "FP32", shape: [IRIS_ROWS.length, 4], contents: { fp32_contents: features } },
          ],
          outputs: [{ name: "label" }],
        }),
      ),
    );
    expect(res).toMatchObject({ model_name: "iris", model_version: "1", id: "bytes-1" });
    expect(responseOutputsToOip(res)).toEqual([
      {
        name: "label",
        datatype: "INT64",
        shape: [IRIS_ROWS.length],
        data: BigInt64Array.from(IRIS_ROWS, (r) => BigInt(r.label)),
      },
    ]);
  });

  it("answers INVALID_ARGUMENT naming the fault for malformed protobuf bytes", async () => {
    // model_name (field 1, length-delimited) claiming 50 bytes where 2 follow.
    const err = (await inferBytes(Uint8Array.of(0x0a, 50, 0x69, 0x72)).catch((e: unknown) => e)) as grpc.ServiceError;
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.details).toMatch(/malformed ModelInferRequest: length 50 runs past the end of the data/);
  });

  it("reports NOT_FOUND for metadata of an unknown model, marked as a replica miss", async () => {
    const err = (await call("ModelMetadata", { name: "nope" }).catch((e: unknown) => e)) as grpc.ServiceError;
    expect(err.code).toBe(grpc.status.NOT_FOUND);
    expect(err.metadata.get(REPLICA_MISS_HEADER)).toEqual(["1"]);
  });

  it("counts gRPC requests in the metrics", async () => {
    // Counts before and after this test's own calls: the test does not depend on what ran before it.
    const series = [
      'tern_agent_inference_requests_total{model="iris",protocol="grpc",code="200"}',
      'tern_agent_inference_requests_total{model="iris",protocol="grpc",code="400"}',
    ];
    const values = async () => {
      const lines = (await stack.metrics.registry.metrics()).split("\n");
      return series.map((s) => Number(lines.find((l) => l.startsWith(`${s} `))?.slice(s.length + 1) ?? 0));
    };
    const before = await values();
    await call("ModelInfer", { model_name: "iris", inputs: [irisInput()] });
    const err = (await call("ModelInfer", { model_name: "iris", inputs: [] }).catch((e: unknown) => e)) as
      | grpc.ServiceError
      | undefined;
    expect(err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    const after = await values();
    expect(after.map((v, i) => v - before[i]!)).toEqual([1, 1]);
  });
});
