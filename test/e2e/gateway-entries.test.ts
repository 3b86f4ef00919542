import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import type { ModelStatus } from "@tern/core";
import { waitFor } from "@tern/devstack";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { invokeLambda, type LambdaHandler } from "../helpers/lambda-event.js";
import { type E2eStack, irisManifest, serverManifest, startE2eStack } from "./harness.js";
import { inferIris, irisRequest, knownIrisRows, parseIrisAnswer } from "./iris-data.js";

// The gateway's edges against one running stack (scheduler, 2 agents of mlserver, the gateway process with a small
// body limit): bad inputs through the Node entry, the Lambda entry on synthetic API Gateway v2 events, and gRPC.

const repoRoot = resolve(fileURLToPath(new URL(".", import.meta.url)), "../..");
const BODY_LIMIT = 16_384;
const rows = knownIrisRows();
let stack: E2eStack;

beforeAll(async () => {
  stack = await startE2eStack({
    name: "edges",
    agents: 2,
    gatewayEnv: { TERN_GATEWAY_BODY_LIMIT_BYTES: String(BODY_LIMIT) },
  });
  await stack.apply(`${serverManifest("mlserver", 2)}---\n${irisManifest(2)}`);
  await stack.waitModel(
    "iris",
    (s: ModelStatus) => s.state === "ModelAvailable" && s.availableReplicas === 2,
    "iris available on both agents",
  );
  await waitFor(async () => (await inferIris(stack.gateway.url, rows.slice(0, 1))).status === 200, {
    timeoutMs: 10_000,
    intervalMs: 100,
    description: "iris served through the gateway",
  });
});

afterAll(async () => {
  await stack?.close();
});

/** A request and what the gateway must answer. */
interface BadCase {
  kind: string;
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  status: number;
  /** Substring of the `error` message. */
  message: string;
}

const predict = (fields: Record<string, unknown>) => JSON.stringify({ inputs: [{ name: "predict", ...fields }] });
const row = [5.1, 3.5, 1.4, 0.2];

/** Binary-tensor extension body: JSON header then raw little-endian FP32 values. */
function binaryBody(header: unknown, values: number[]): { body: Uint8Array; headerLength: number } {
  const json = Buffer.from(JSON.stringify(header));
  const data = Buffer.from(Float32Array.from(values).buffer);
  return { body: Buffer.concat([json, data]), headerLength: json.length };
}

const goodBinary = binaryBody(
  { inputs: [{ name: "predict", shape: [1, 4], datatype: "FP32", parameters: { binary_data_size: 16 } }] },
  row,
);
const shortBinary = binaryBody(
  { inputs: [{ name: "predict", shape: [1, 4], datatype: "FP32", parameters: { binary_data_size: 16 } }] },
  row.slice(0, 2),
);
const hugeBinary = binaryBody(
  { inputs: [{ name: "predict", shape: [1_000_000_000, 4], datatype: "FP32", parameters: { binary_data_size: 16 } }] },
  row,
);

const BAD_CASES: BadCase[] = [
  {
    kind: "wrong datatype",
    body: predict({ shape: [1, 4], datatype: "INT32", data: [5, 3, 1, 0] }),
    status: 400,
    message: `input "predict": datatype INT32 does not match the model's FP32`,
  },
  {
    kind: "datatype that is not OIP",
    body: predict({ shape: [1, 4], datatype: "FLOAT", data: row }),
    status: 400,
    message: `datatype "FLOAT" is not an OIP datatype`,
  },
  {
    kind: "wrong shape (3 features)",
    body: predict({ shape: [1, 3], datatype: "FP32", data: [5.1, 3.5, 1.4] }),
    status: 400,
    message: "does not match the model's [-1,4] at dimension 1 (3 ≠ 4)",
  },
  {
    kind: "wrong rank",
    body: predict({ shape: [4], datatype: "FP32", data: row }),
    status: 400,
    message: "has rank 1, the model expects rank 2",
  },
  {
    kind: "missing input (empty inputs)",
    body: JSON.stringify({ inputs: [] }),
    status: 400,
    message: '"inputs" must be a non-empty array',
  },
  {
    kind: "input without a name",
    body: JSON.stringify({ inputs: [{ shape: [1, 4], datatype: "FP32", data: row }] }),
    status: 400,
    message: 'inputs[0]: "name" must be a non-empty string',
  },
  {
    kind: "unknown input name",
    body: JSON.stringify({ inputs: [{ name: "petals", shape: [1, 4], datatype: "FP32", data: row }] }),
    status: 400,
    message: 'unknown input "petals" for model iris (its inputs: predict)',
  },
  {
    kind: "same input twice",
    body: JSON.stringify({
      inputs: [
        { name: "predict", shape: [1, 4], datatype: "FP32", data: row },
        { name: "predict", shape: [1, 4], datatype: "FP32", data: row },
      ],
    }),
    status: 400,
    message: 'input "predict" is given more than once',
  },
  {
    kind: "data length not matching the shape",
    body: predict({ shape: [2, 4], datatype: "FP32", data: row }),
    status: 400,
    message: "data has 4 elements but shape [2,4] needs 8",
  },
  {
    kind: "non-numeric data",
    body: predict({ shape: [1, 4], datatype: "FP32", data: ["a", "b", "c", "d"] }),
    status: 400,
    message: 'input "predict": element 0 is "a", expected a number for datatype FP32',
  },
  {
    kind: "data missing",
    body: predict({ shape: [1, 4], datatype: "FP32" }),
    status: 400,
    message: 'input "predict": "data" is missing',
  },
  {
    kind: "negative shape",
    body: predict({ shape: [-1, 4], datatype: "FP32", data: row }),
    status: 400,
    message: "shape [-1,4] must hold non-negative integers",
  },
  {
    kind: "huge shape (JSON data)",
    body: predict({ shape: [1_000_000_000, 4], datatype: "FP32", data: row }),
    status: 400,
    message: "data has 4 elements but shape [1000000000,4] needs 4000000000",
  },
  {
    kind: "huge shape (binary data)",
    headers: { "inference-header-content-length": String(hugeBinary.headerLength) },
    body: hugeBinary.body,
    status: 400,
    message: "binary data is 16 bytes, shape and datatype FP32 need 16000000000",
  },
  {
    kind: "unknown output requested",
    body: JSON.stringify({
      inputs: [{ name: "predict", shape: [1, 4], datatype: "FP32", data: row }],
      outputs: [{ name: "species" }],
    }),
    status: 400,
    message: 'unknown output "species" requested from model iris',
  },
  {
    kind: "parameters not an object",
    body: JSON.stringify({ parameters: 7, inputs: [{ name: "predict", shape: [1, 4], datatype: "FP32", data: row }] }),
    status: 400,
    message: '"parameters" must be an object',
  },
  {
    kind: "unknown model",
    path: "/v2/models/no-such-model/infer",
    body: irisRequest(rows[0]!),
    status: 404,
    message: "model no-such-model not found",
  },
  {
    kind: "unknown version",
    path: "/v2/models/iris/versions/9/infer",
    body: irisRequest(rows[0]!),
    status: 404,
    message: "model iris version 9 is not available",
  },
  {
    kind: "version that is not a number",
    path: "/v2/models/iris/versions/latest/infer",
    body: irisRequest(rows[0]!),
    status: 400,
    message: 'model version "latest" is not a positive integer',
  },
  { kind: "bad JSON", body: '{"inputs": [', status: 400, message: "malformed JSON body" },
  { kind: "empty body", body: "", status: 400, message: "malformed JSON body" },
  {
    kind: "JSON array instead of an object",
    body: JSON.stringify([{ name: "predict", shape: [1, 4], datatype: "FP32", data: row }]),
    status: 400,
    message: 'the request body must be a JSON object with an "inputs" array',
  },
  {
    kind: "inputs not an array",
    body: JSON.stringify({ inputs: { name: "predict", shape: [1, 4], datatype: "FP32", data: row } }),
    status: 400,
    message: '"inputs" must be a non-empty array',
  },
  {
    kind: "oversize body",
    body: predict({ shape: [1, 4], datatype: "FP32", data: row, padding: "x".repeat(BODY_LIMIT) }),
    status: 413,
    message: `request body is larger than the limit of ${BODY_LIMIT} bytes`,
  },
  {
    kind: "binary header length larger than the body",
    headers: { "inference-header-content-length": String(goodBinary.body.length + 100) },
    body: goodBinary.body,
    status: 400,
    message: `Inference-Header-Content-Length is ${goodBinary.body.length + 100} but the body has only ${goodBinary.body.length} bytes`,
  },
  {
    kind: "binary header length that is not a number",
    headers: { "inference-header-content-length": "abc" },
    body: goodBinary.body,
    status: 400,
    message: 'Inference-Header-Content-Length must be a byte count, got "abc"',
  },
  {
    kind: "binary part shorter than binary_data_size",
    headers: { "inference-header-content-length": String(shortBinary.headerLength) },
    body: shortBinary.body,
    status: 400,
    message: "binary_data_size 16 runs past the end of the binary part (8 bytes left)",
  },
  {
    kind: "bad seldon-model header",
    headers: { "seldon-model": "iris.model" },
    body: irisRequest(rows[0]!),
    status: 400,
    message: 'has an unknown suffix ".model"',
  },
  {
    kind: "seldon-model header naming an unknown model",
    headers: { "seldon-model": "ghost" },
    body: irisRequest(rows[0]!),
    status: 404,
    message: "model ghost not found",
  },
  {
    kind: "seldon-model header naming an unknown experiment",
    headers: { "seldon-model": "ghost.experiment" },
    body: irisRequest(rows[0]!),
    status: 404,
    message: "experiment ghost not found",
  },
  {
    kind: "unknown pipeline",
    path: "/v2/pipelines/no-such-pipeline/infer",
    body: irisRequest(rows[0]!),
    status: 404,
    message: "pipeline no-such-pipeline not found",
  },
  {
    // The app registers infer for POST only; other methods fall through to its JSON 404.
    kind: "GET on infer",
    method: "GET",
    status: 404,
    message: "no route for GET /v2/models/iris/infer",
  },
  {
    // The agent reads the body as OIP JSON whatever the content type says; CSV is not JSON.
    kind: "wrong content-type (CSV)",
    headers: { "content-type": "text/csv" },
    body: "5.1,3.5,1.4,0.2",
    status: 400,
    message: "malformed JSON body",
  },
];

async function send(c: BadCase): Promise<{ status: number; text: string }> {
  const res = await fetch(`${stack.gateway.url}${c.path ?? "/v2/models/iris/infer"}`, {
    method: c.method ?? "POST",
    headers: { "content-type": "application/json", ...c.headers },
    ...(c.body === undefined ? {} : { body: c.body }),
    signal: AbortSignal.timeout(5000),
  });
  return { status: res.status, text: await res.text() };
}

describe("bad inputs through the gateway process", () => {
  it(`answers ${BAD_CASES.length} kinds of bad request with their status and an OIP error, then still serves`, async () => {
    expect(BAD_CASES.length).toBeGreaterThanOrEqual(20);
    const failures: string[] = [];
    for (const c of BAD_CASES) {
      const { status, text } = await send(c);
      let error: unknown;
      try {
        error = (JSON.parse(text) as { error?: unknown }).error;
      } catch {
        error = undefined;
      }
      if (status !== c.status || typeof error !== "string" || !error.includes(c.message)) {
        failures.push(`${c.kind}: expected ${c.status} "${c.message}", got ${status} ${text.slice(0, 300)}`);
      }
      // No internals leak into answers.
      if (/\bat .+\.ts:\d+/.test(text)) failures.push(`${c.kind}: stack trace in the answer: ${text.slice(0, 300)}`);
    }
    expect(failures, failures.join("\n")).toEqual([]);

    // Afterwards: the gateway, and every agent, still serve good requests.
    for (const r of rows) {
      const { status, body } = await inferIris(stack.gateway.url, [r]);
      expect(status).toBe(200);
      expect(parseIrisAnswer(body).labels).toEqual([r.label]);
    }
    const binary = await fetch(`${stack.gateway.url}/v2/models/iris/infer`, {
      method: "POST",
      headers: {
        "content-type": "application/octet-stream",
        "inference-header-content-length": String(goodBinary.headerLength),
      },
      body: goodBinary.body,
      signal: AbortSignal.timeout(5000),
    });
    expect(binary.status).toBe(200);
    expect(parseIrisAnswer(await binary.json()).labels).toEqual([0]);
    for (const agent of stack.agents.values()) {
      expect(agent.hasExited()).toBe(false);
      const { status, body } = await inferIris(agent.http, rows.slice(0, 1));
      expect(status).toBe(200);
      expect(parseIrisAnswer(body).labels).toEqual([rows[0]!.label]);
    }
    expect((await fetch(`${stack.gateway.url}/v2/health/ready`)).status).toBe(200);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Lambda entry

describe("the Lambda entry (packages/gateway/src/lambda.ts) against the same stack", () => {
  let handler: LambdaHandler;
  const saved: Record<string, string | undefined> = {};

  beforeAll(async () => {
    // lambda.ts builds its app from process.env when first imported (a cold start): point it at the stack's table.
    const env = {
      TERN_TABLE: stack.table,
      DYNAMODB_ENDPOINT: stack.dynamodbEndpoint,
      AWS_REGION: "us-east-1",
      LOG_LEVEL: "warn",
      TERN_GATEWAY_ROUTE_CACHE_MS: "500",
    };
    for (const [k, v] of Object.entries(env)) {
      saved[k] = process.env[k];
      process.env[k] = v;
    }
    ({ handler } = (await import("../../packages/gateway/src/lambda.js")) as unknown as { handler: LambdaHandler });
  });

  afterAll(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });

  it("gives the same answers as the Node entry (infer, metadata, ready, errors)", async () => {
    const binary = binaryBody(
      { inputs: [{ name: "predict", shape: [1, 4], datatype: "FP32", parameters: { binary_data_size: 16 } }] },
      rows[5]!.features,
    );
    const requests: Array<{
      what: string;
      method: string;
      path: string;
      headers?: Record<string, string>;
      body?: string | Uint8Array;
    }> = [
      ...[rows[0]!, rows[6]!, rows[12]!].map((r) => ({
        what: `infer row ${r.row}`,
        method: "POST",
        path: "/v2/models/iris/infer",
        headers: { "content-type": "application/json" },
        body: irisRequest(r),
      })),
      {
        what: "infer batch",
        method: "POST",
        path: "/v2/models/iris/infer",
        headers: { "content-type": "application/json" },
        body: irisRequest(...rows),
      },
      {
        what: "infer binary (base64 event body)",
        method: "POST",
        path: "/v2/models/iris/infer",
        headers: {
          "content-type": "application/octet-stream",
          "inference-header-content-length": String(binary.headerLength),
        },
        body: binary.body,
      },
      { what: "model metadata", method: "GET", path: "/v2/models/iris" },
      { what: "model ready", method: "GET", path: "/v2/models/iris/ready" },
      { what: "unknown model metadata", method: "GET", path: "/v2/models/no-such-model" },
      {
        what: "unknown model infer",
        method: "POST",
        path: "/v2/models/no-such-model/infer",
        headers: { "content-type": "application/json" },
        body: irisRequest(rows[0]!),
      },
      {
        what: "wrong datatype",
        method: "POST",
        path: "/v2/models/iris/infer",
        headers: { "content-type": "application/json" },
        body: predict({ shape: [1, 4], datatype: "INT32", data: [5, 3, 1, 0] }),
      },
      { what: "unknown pipeline", method: "GET", path: "/v2/pipelines/no-such-pipeline" },
      { what: "health ready", method: "GET", path: "/v2/health/ready" },
    ];

    // The scheduler wrote the route table to DynamoDB; wait (bounded) until the Lambda app reads iris from it.
    await waitFor(
      async () => (await invokeLambda(handler, "/v2/models/iris/ready", { method: "GET" })).status === 200,
      { timeoutMs: 10_000, intervalMs: 200, description: "Lambda entry routes iris" },
    );

    const infers: unknown[] = [];
    for (const r of requests) {
      const node = await fetch(`${stack.gateway.url}${r.path}`, {
        method: r.method,
        ...(r.headers ? { headers: r.headers } : {}),
        ...(r.body === undefined ? {} : { body: r.body }),
        signal: AbortSignal.timeout(5000),
      });
      const nodeBody = (await node.json()) as unknown;
      const lambda = await invokeLambda(handler, r.path, {
        method: r.method,
        ...(r.headers ? { headers: r.headers } : {}),
        ...(r.body === undefined ? {} : { body: r.body }),
      });
      expect({ what: r.what, status: lambda.status }).toEqual({ what: r.what, status: node.status });
      expect(JSON.parse(lambda.body.toString("utf8")), r.what).toEqual(nodeBody);
      expect(lambda.headers["x-seldon-route"], r.what).toBe(node.headers.get("x-seldon-route") ?? undefined);
      if (r.path.endsWith("/infer") && node.status === 200) infers.push(nodeBody);
    }
    // The answers compared are real predictions, not two identical errors.
    expect(infers).toHaveLength(5);
    expect(parseIrisAnswer(infers[3]).labels).toEqual(rows.map((r) => r.label));
  });
});

// ---------------------------------------------------------------------------------------------------------------
// gRPC

interface GrpcInferResponse {
  model_name: string;
  outputs: Array<{
    name: string;
    datatype: string;
    shape: string[];
    contents?: { fp32_contents?: number[]; int64_contents?: string[] };
  }>;
  raw_output_contents: Buffer[];
}

describe("gRPC ModelInfer through the gateway's gRPC port", () => {
  type OipClient = grpc.Client & {
    ModelInfer(
      request: unknown,
      metadata: grpc.Metadata,
      options: grpc.CallOptions,
      callback: (err: grpc.ServiceError | null, res: GrpcInferResponse) => void,
    ): void;
  };
  let client: OipClient;

  beforeAll(async () => {
    const definition = await protoLoader.load(resolve(repoRoot, "packages/core/proto/oip.proto"), {
      keepCase: true,
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
    });
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      inference: { GRPCInferenceService: new (address: string, creds: grpc.ChannelCredentials) => OipClient };
    };
    client = new loaded.inference.GRPCInferenceService(stack.gateway.grpcAddress, grpc.credentials.createInsecure());
  });

  afterAll(() => {
    client?.close();
  });

  function modelInfer(request: unknown): Promise<GrpcInferResponse> {
    return new Promise((resolvePromise, reject) => {
      client.ModelInfer(request, new grpc.Metadata(), { deadline: Date.now() + 5000 }, (err, res) =>
        err ? reject(err) : resolvePromise(res),
      );
    });
  }

  it("answers like REST: same classes, probabilities within float tolerance (contents and raw inputs)", async () => {
    const batch = rows;
    const rest = await inferIris(stack.gateway.url, batch);
    expect(rest.status).toBe(200);
    const expected = parseIrisAnswer(rest.body);

    const viaContents = await modelInfer({
      model_name: "iris",
      inputs: [
        {
          name: "predict",
          datatype: "FP32",
          shape: [batch.length, 4],
          contents: { fp32_contents: batch.flatMap((r) => r.features) },
        },
      ],
    });
    expect(viaContents.model_name).toBe("iris");
    const label = viaContents.outputs.find((o) => o.name === "label")!;
    const probs = viaContents.outputs.find((o) => o.name === "probabilities")!;
    expect(label.contents!.int64_contents!.map(Number)).toEqual(expected.labels);
    expect(probs.shape.map(Number)).toEqual([batch.length, 3]);
    const flat = probs.contents!.fp32_contents!;
    for (const [i, p] of expected.probabilities.entries()) {
      for (let k = 0; k < 3; k++) expect(flat[i * 3 + k]).toBeCloseTo(p[k]!, 5);
    }

    // The raw form (how Triton clients send): outputs come back raw too.
    const raw = await modelInfer({
      model_name: "iris",
      inputs: [{ name: "predict", datatype: "FP32", shape: [batch.length, 4] }],
      raw_input_contents: [Buffer.from(Float32Array.from(batch.flatMap((r) => r.features)).buffer)],
    });
    const index = raw.outputs.findIndex((o) => o.name === "label");
    const labelBytes = raw.raw_output_contents[index]!;
    const labels = [
      ...new BigInt64Array(
        labelBytes.buffer.slice(labelBytes.byteOffset, labelBytes.byteOffset + labelBytes.byteLength),
      ),
    ].map(Number);
    expect(labels).toEqual(expected.labels);

    // And a gRPC error is a status, not a hang.
    await expect(modelInfer({ model_name: "no-such-model", inputs: [] })).rejects.toMatchObject({
      code: grpc.status.NOT_FOUND,
      details: expect.stringContaining("no-such-model"),
    });
  });
});
