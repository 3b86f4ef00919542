import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { type ServerType, serve } from "@hono/node-server";
import type { RouteTable } from "@tern/core";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGrpcServer } from "../../packages/agent/src/grpc/grpc-server.js";
import { loadOipService } from "../../packages/agent/src/grpc/oip-proto.js";
import { createTestStack, sampleUri } from "../../packages/agent/tests/unit/helpers.js";
import type { CliIo } from "../../packages/cli/src/io.js";
import { main as tern } from "../../packages/cli/src/main.js";
import { createApiKeyCheck, hashApiKey } from "../../packages/gateway/src/api-keys.js";
import { createApp } from "../../packages/gateway/src/app.js";
import { createGrpcProxy } from "../../packages/gateway/src/grpc-proxy.js";
import { createMemoryRouteSource } from "../../packages/gateway/src/route-source.js";
import { createHttpUpstream } from "../../packages/gateway/src/upstream.js";
import { createControlApp } from "../../packages/scheduler/src/app.js";
import { createHarness, type Harness, silentLogger } from "../../packages/scheduler/tests/unit/helpers.js";

// The bad-input corpus: one table of distinct kinds of bad request across every edge a user reaches — the gateway
// (REST and gRPC) in front of a real agent, the agent itself (REST and gRPC), the scheduler's control API and
// `tern validate` — each with the answer it must get (a 4xx, a gRPC status or an exit code) and a fragment of the
// message. Everything runs in this process on loopback ports: the agent with the real ONNX runtime and the iris sample.
// After the whole table every edge must still serve a good request.

const GATEWAY_BODY_LIMIT = 16_384;
const API_KEY = "corpus-key";
const logger = pino({ level: "silent" });

const agent = createTestStack({ maxBodyBytes: 64 * 1024 });
const agentGrpc = createGrpcServer({ service: agent.service, metrics: agent.metrics });
const upstream = createHttpUpstream();
let agentHttp: ServerType;
let gatewayKeyed: ReturnType<typeof createApp>;
let gateway: ReturnType<typeof createApp>;
let gatewayGrpc: ReturnType<typeof createGrpcProxy>;
let gatewayGrpcKeyed: ReturnType<typeof createGrpcProxy>;
let controlHarness: Harness;
let control: ReturnType<typeof createControlApp>;
let controlWithToken: ReturnType<typeof createControlApp>;
type OipClient = grpc.Client & Record<string, (req: unknown, md: grpc.Metadata, cb: GrpcCallback) => void>;
type GrpcCallback = (err: grpc.ServiceError | null, res: unknown) => void;
const clients: Record<"agent" | "gateway" | "gatewayKeyed", OipClient> = {} as never;
let manifests: string;

beforeAll(async () => {
  const loaded = await agent.models.load({ model: "iris", version: 1, storageUri: sampleUri("iris") });
  expect(loaded.state).toBe("Available");
  const agentPort = await new Promise<number>((resolve) => {
    agentHttp = serve({ fetch: agent.app.fetch, hostname: "127.0.0.1", port: 0 }, (info: AddressInfo) =>
      resolve(info.port),
    );
  });
  const agentGrpcPort = await agentGrpc.start("127.0.0.1", 0);
  const endpoint = {
    server: "mlserver",
    replica: 0,
    version: 1,
    http: `http://127.0.0.1:${agentPort}`,
    grpc: `127.0.0.1:${agentGrpcPort}`,
  };
  const table: RouteTable = {
    revision: 1,
    models: { iris: { name: "iris", version: 1, state: "ModelAvailable", endpoints: [endpoint] } },
    pipelines: { chain: { name: "chain", state: "PipelineReady" } },
    experiments: {
      ab: { name: "ab", resourceType: "model", candidates: [{ name: "iris", weight: 1 }], active: true },
    },
  };
  const routes = createMemoryRouteSource(table);
  const apiKeys = createApiKeyCheck([hashApiKey(API_KEY)]);
  gateway = createApp({ routes, upstream, logger, config: { bodyLimitBytes: GATEWAY_BODY_LIMIT } });
  gatewayKeyed = createApp({ routes, upstream, logger, apiKeys, config: { validateJson: true } });
  gatewayGrpc = createGrpcProxy({ routes, logger, maxMessageBytes: GATEWAY_BODY_LIMIT });
  gatewayGrpcKeyed = createGrpcProxy({ routes, logger, apiKeys });
  const { Client } = loadOipService();
  const connect = (port: number) =>
    new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as OipClient;
  clients.agent = connect(agentGrpcPort);
  clients.gateway = connect(await gatewayGrpc.listen("127.0.0.1", 0));
  clients.gatewayKeyed = connect(await gatewayGrpcKeyed.listen("127.0.0.1", 0));

  controlHarness = await createHarness();
  const controlDeps = { active: () => controlHarness.scheduler, store: controlHarness.store, leaseName: "scheduler" };
  control = createControlApp({ ...controlDeps, logger: silentLogger });
  controlWithToken = createControlApp({ ...controlDeps, logger: silentLogger, token: "s3cret" });
  await controlHarness.apply(
    "apiVersion: mlops.seldon.io/v1alpha1\nkind: Server\nmetadata: {name: mlserver}\nspec: {serverConfig: mlserver}\n",
  );

  manifests = mkdtempSync(join(tmpdir(), "tern-corpus-"));
  for (const [file, text] of Object.entries(MANIFEST_FILES)) writeFileSync(join(manifests, file), text);
});

afterAll(async () => {
  for (const c of Object.values(clients)) c?.close();
  await gatewayGrpc?.close();
  await gatewayGrpcKeyed?.close();
  await agentGrpc.close(1000);
  await new Promise<void>((resolve) => (agentHttp ? agentHttp.close(() => resolve()) : resolve()));
  await upstream.close();
  await agent.models.close();
  await controlHarness?.close();
  if (manifests) rmSync(manifests, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------------------------
// The table

type Surface = "gateway REST" | "gateway gRPC" | "agent REST" | "agent gRPC" | "control API" | "tern validate";

interface BadCase {
  surface: Surface;
  kind: string;
  /** What is sent; see `send`. */
  request: HttpRequest | GrpcRequest | CliRequest;
  /** HTTP status, gRPC status name, or `exit N` for the CLI. */
  expect: number | keyof typeof grpc.status | `exit ${number}`;
  /** Fragment of the error message (OIP `error`, gRPC details, or the CLI's output). */
  message: string;
}

interface HttpRequest {
  method?: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  /** Which gateway app: the plain one (body limit 16 KiB) or the one with API keys and JSON validation. */
  app?: "keyed";
}
interface GrpcRequest {
  grpc: "ModelInfer" | "ModelMetadata" | "ModelReady";
  req: unknown;
  metadata?: Record<string, string>;
  target?: "keyed";
}
interface CliRequest {
  cli: string[];
}

const row = [5.1, 3.5, 1.4, 0.2];
const good = { name: "predict", shape: [1, 4], datatype: "FP32", data: row };
const infer = (fields: Record<string, unknown>) => JSON.stringify({ inputs: [{ ...good, ...fields }] });
const deep = (depth: number) => `${"[".repeat(depth)}1${"]".repeat(depth)}`;

/** Binary-extension body: JSON header then the given bytes. */
function binary(header: unknown, bytes: Uint8Array): { body: Uint8Array; headers: Record<string, string> } {
  const json = Buffer.from(JSON.stringify(header));
  return {
    body: Buffer.concat([json, bytes]),
    headers: { "content-type": "application/octet-stream", "inference-header-content-length": String(json.length) },
  };
}
const fp32 = (values: number[]) => Buffer.from(Float32Array.from(values).buffer);
const binaryInput = (size: number, extra: Record<string, unknown> = {}) => ({
  inputs: [{ name: "predict", shape: [1, 4], datatype: "FP32", parameters: { binary_data_size: size }, ...extra }],
});

/** The REST kinds the agent answers; the corpus sends them to the agent and through the gateway. */
const TENSOR_CASES: Array<{
  kind: string;
  body: string | { body: Uint8Array; headers: Record<string, string> };
  message: string;
}> = [
  { kind: "malformed JSON", body: '{"inputs": [', message: "malformed JSON body" },
  { kind: "empty body", body: "", message: "malformed JSON body" },
  { kind: "JSON array body", body: "[1,2]", message: 'the request body must be a JSON object with an "inputs" array' },
  {
    kind: "JSON string body",
    body: '"infer"',
    message: 'the request body must be a JSON object with an "inputs" array',
  },
  { kind: "empty inputs", body: '{"inputs":[]}', message: '"inputs" must be a non-empty array' },
  { kind: "inputs an object", body: JSON.stringify({ inputs: good }), message: '"inputs" must be a non-empty array' },
  { kind: "input not an object", body: '{"inputs":[7]}', message: "inputs[0] must be an object" },
  {
    kind: "input without a name",
    body: infer({ name: undefined }),
    message: 'inputs[0]: "name" must be a non-empty string',
  },
  {
    kind: "input with an empty name",
    body: infer({ name: "" }),
    message: 'inputs[0]: "name" must be a non-empty string',
  },
  { kind: "unknown input", body: infer({ name: "petals" }), message: 'unknown input "petals" for model iris' },
  {
    kind: "same input twice",
    body: JSON.stringify({ inputs: [good, good] }),
    message: 'input "predict" is given more than once',
  },
  { kind: "datatype not OIP", body: infer({ datatype: "FLOAT" }), message: 'datatype "FLOAT" is not an OIP datatype' },
  { kind: "datatype lower case", body: infer({ datatype: "fp32" }), message: 'datatype "fp32" is not an OIP datatype' },
  {
    kind: "datatype missing",
    body: infer({ datatype: undefined }),
    message: "datatype undefined is not an OIP datatype",
  },
  {
    kind: "datatype not the model's",
    body: infer({ datatype: "FP64" }),
    message: `input "predict": datatype FP64 does not match the model's FP32`,
  },
  {
    kind: "shape missing",
    body: infer({ shape: undefined }),
    message: '"shape" must be an array of non-negative integers',
  },
  {
    kind: "shape a string",
    body: infer({ shape: "1x4" }),
    message: '"shape" must be an array of non-negative integers',
  },
  {
    kind: "negative dimension",
    body: infer({ shape: [-1, 4] }),
    message: "shape [-1,4] must hold non-negative integers",
  },
  {
    kind: "fractional dimension",
    body: infer({ shape: [1.5, 4] }),
    message: "shape [1.5,4] must hold non-negative integers",
  },
  { kind: "wrong rank", body: infer({ shape: [4] }), message: "has rank 1, the model expects rank 2" },
  {
    kind: "wrong fixed dimension",
    body: infer({ shape: [1, 3], data: [1, 2, 3] }),
    message: "does not match the model's [-1,4] at dimension 1 (3 ≠ 4)",
  },
  { kind: "data missing", body: infer({ data: undefined }), message: 'input "predict": "data" is missing' },
  { kind: "data a scalar for many elements", body: infer({ data: 5 }), message: '"data" must be an array' },
  {
    kind: "data shorter than the shape",
    body: infer({ shape: [2, 4] }),
    message: "data has 4 elements but shape [2,4] needs 8",
  },
  {
    kind: "huge shape, JSON data",
    body: infer({ shape: [1_000_000_000, 4] }),
    message: "data has 4 elements but shape [1000000000,4] needs 4000000000",
  },
  {
    kind: "string element",
    body: infer({ data: [5.1, "wide", 1.4, 0.2] }),
    message: 'element 1 is "wide", expected a number',
  },
  {
    kind: "null element",
    body: infer({ data: [5.1, null, 1.4, 0.2] }),
    message: "element 1 is null, expected a number",
  },
  {
    kind: "boolean element in FP32",
    body: infer({ data: [true, 1, 1, 1] }),
    message: "element 0 is true, expected a number",
  },
  {
    kind: "object element",
    body: infer({ data: [{ v: 1 }, 1, 1, 1] }),
    message: "element 0 is an object, expected a number",
  },
  {
    kind: "data nested 20,000 levels deep",
    body: `{"inputs":[{"name":"predict","shape":[1,4],"datatype":"FP32","data":${deep(20_000)}}]}`,
    message: '"data" is nested more than 32 levels deep (the limit)',
  },
  {
    kind: "shape nested 20,000 levels deep",
    body: `{"inputs":[{"name":"predict","datatype":"FP32","data":[1,2,3,4],"shape":[1,${deep(20_000)}]}]}`,
    message: "shape must hold non-negative integers (dimension 1 is an array)",
  },
  {
    kind: "FP32 1e400",
    body: infer({ data: [5.1, 3.5, 1.4, 0.2] }).replace("3.5", "1e400"),
    message: "element 1 is Infinity, expected a finite number within ±3.4028234663852886e+38 for datatype FP32",
  },
  {
    kind: "FP32 -1e39",
    body: infer({ data: [5.1, -1e39, 1.4, 0.2] }),
    message: "element 1 is -1e+39, expected a finite number within ±3.4028234663852886e+38",
  },
  {
    kind: "INT64 1e300",
    body: infer({ name: "n", shape: [1], datatype: "INT64", data: [1e300] }),
    message: 'input "n": element 0 is 1e+300, expected an integer in [-9223372036854775808, 9223372036854775807]',
  },
  {
    kind: "INT64 2^63",
    body: infer({ name: "n", shape: [1], datatype: "INT64", data: [2 ** 63] }),
    message: 'input "n": element 0 is 9223372036854776000, expected an integer in [-9223372036854775808',
  },
  {
    kind: "UINT64 negative",
    body: infer({ name: "n", shape: [1], datatype: "UINT64", data: [-1] }),
    message: "element 0 is -1, expected an integer in [0, 18446744073709551615]",
  },
  {
    kind: "INT32 fraction",
    body: infer({ name: "n", shape: [1], datatype: "INT32", data: [1.5] }),
    message: "element 0 is 1.5, expected an integer for datatype INT32",
  },
  {
    kind: "UINT8 256",
    body: infer({ name: "n", shape: [1], datatype: "UINT8", data: [256] }),
    message: "element 0 is 256, expected an integer in [0, 255] for datatype UINT8",
  },
  {
    kind: "INT16 -32769",
    body: infer({ name: "n", shape: [1], datatype: "INT16", data: [-32769] }),
    message: "element 0 is -32769, expected an integer in [-32768, 32767]",
  },
  {
    kind: "FP16 70000",
    body: infer({ name: "n", shape: [1], datatype: "FP16", data: [70000] }),
    message: "element 0 is 70000, expected a finite number within ±65504 for datatype FP16",
  },
  {
    kind: "BOOL as 1",
    body: infer({ name: "n", shape: [1], datatype: "BOOL", data: [1] }),
    message: "element 0 is 1, expected true or false for datatype BOOL",
  },
  {
    kind: "BYTES as a number",
    body: infer({ name: "n", shape: [1], datatype: "BYTES", data: [7] }),
    message: "element 0 is 7, expected a string for datatype BYTES",
  },
  {
    kind: "unknown output requested",
    body: JSON.stringify({ inputs: [good], outputs: [{ name: "species" }] }),
    message: 'unknown output "species" requested from model iris',
  },
  {
    kind: "output requested twice",
    body: JSON.stringify({ inputs: [good], outputs: [{ name: "label" }, { name: "label" }] }),
    message: 'output "label" is requested more than once',
  },
  {
    kind: "outputs not an array",
    body: JSON.stringify({ inputs: [good], outputs: "label" }),
    message: '"outputs" must be an array',
  },
  {
    kind: "output without a name",
    body: JSON.stringify({ inputs: [good], outputs: [{}] }),
    message: 'outputs[0] must be an object with a string "name"',
  },
  { kind: "id not a string", body: JSON.stringify({ id: 7, inputs: [good] }), message: '"id" must be a string' },
  {
    kind: "parameters not an object",
    body: JSON.stringify({ parameters: 7, inputs: [good] }),
    message: 'request: "parameters" must be an object',
  },
  {
    kind: "parameter value an object",
    body: JSON.stringify({ parameters: { x: { y: 1 } }, inputs: [good] }),
    message: 'parameter "x" must be a string, number or boolean',
  },
  {
    kind: "binary_data_size without a binary part",
    body: JSON.stringify(binaryInput(16)),
    message: "binary_data_size is set but the request has no binary part",
  },
  {
    kind: "binary part shorter than binary_data_size",
    body: binary(binaryInput(16), fp32([1, 2])),
    message: "binary_data_size 16 runs past the end of the binary part (8 bytes left)",
  },
  {
    kind: "binary bytes no input claims",
    body: binary(binaryInput(16), fp32([1, 2, 3, 4, 5])),
    message: "the binary part has 4 bytes that no input claims",
  },
  {
    kind: "binary_data_size not matching the shape",
    body: binary(binaryInput(12), fp32([1, 2, 3])),
    message: "binary data is 12 bytes, shape and datatype FP32 need 16",
  },
  {
    kind: "binary_data_size and data both",
    body: binary(binaryInput(16, { data: row }), fp32(row)),
    message: 'has both "data" and binary_data_size',
  },
  {
    kind: "binary_data_size negative",
    body: binary(binaryInput(-4), fp32(row)),
    message: "binary_data_size must be a non-negative integer",
  },
];

const agentInfer = "/v2/models/iris/infer";
const json = { "content-type": "application/json" };
const asHttp = (path: string, b: (typeof TENSOR_CASES)[number]["body"]): HttpRequest =>
  typeof b === "string" ? { path, headers: json, body: b } : { path, headers: b.headers, body: b.body };

const M = "apiVersion: mlops.seldon.io/v1alpha1\n";
/** Bad manifests, each with the problem `tern validate` and the control API must name. */
const MANIFESTS: Record<string, { text: string; problem: string }> = {
  "yaml-syntax.yaml": {
    text: `${M}kind: Model\nmetadata: {name: [oops\n`,
    problem: "document 1: YAML syntax error at line 4, column 1",
  },
  "bad.json": {
    text: '{"apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Model", "metadata": {"name": "iris"}, "spec": {',
    problem: "document 1: YAML syntax error at line 1, column 100",
  },
  "no-kind.yaml": {
    text: `${M}metadata: {name: iris}\nspec: {storageUri: s3://m/iris}\n`,
    problem: "document 1: kind: required (expected one of Model, Server, Pipeline, Experiment)",
  },
  "unknown-kind.yaml": {
    text: `${M}kind: Widget\nmetadata: {name: w}\nspec: {}\n`,
    problem: 'document 1 (Widget w): kind: unknown kind "Widget"',
  },
  "wrong-api.yaml": {
    text: "apiVersion: v1\nkind: Model\nmetadata: {name: iris}\nspec: {storageUri: s3://m/iris}\n",
    problem: 'document 1 (Model iris): apiVersion: must be mlops.seldon.io/v1alpha1 (got "v1")',
  },
  "no-name.yaml": {
    text: `${M}kind: Model\nmetadata: {}\nspec: {storageUri: s3://m/iris}\n`,
    problem: "document 1 (Model): metadata.name: required",
  },
  "dotted-name.yaml": {
    text: `${M}kind: Model\nmetadata: {name: iris.v2}\nspec: {storageUri: s3://m/iris}\n`,
    problem: 'document 1 (Model iris.v2): metadata.name: must not contain "." (got "iris.v2")',
  },
  "name-with-a-space.yaml": {
    text: `${M}kind: Model\nmetadata: {name: "my iris"}\nspec: {storageUri: s3://m/iris}\n`,
    problem: 'document 1 (Model my iris): metadata.name: may contain only letters, digits, "-" and "_" (got "my iris")',
  },
  "no-uri.yaml": {
    text: `${M}kind: Model\nmetadata: {name: iris}\nspec: {replicas: 1}\n`,
    problem: "document 1 (Model iris): spec.storageUri: required",
  },
  "neg-replicas.yaml": {
    text: `${M}kind: Model\nmetadata: {name: iris}\nspec: {storageUri: s3://m/iris, replicas: -1}\n`,
    problem: "document 1 (Model iris): spec.replicas: must be a non-negative integer (got -1)",
  },
  "bad-memory.yaml": {
    text: `${M}kind: Model\nmetadata: {name: iris}\nspec: {storageUri: s3://m/iris, memory: 12 parsecs}\n`,
    problem: 'document 1 (Model iris): spec.memory: "12 parsecs" is not a quantity',
  },
  "scalar.yaml": {
    text: "just a string\n",
    problem: "document 1: a manifest must be a map with apiVersion, kind, metadata and spec",
  },
  "pipeline-no-steps.yaml": {
    text: `${M}kind: Pipeline\nmetadata: {name: p}\nspec: {steps: []}\n`,
    problem: "document 1 (Pipeline p): spec.steps: a pipeline needs at least one step",
  },
  "experiment-no-candidates.yaml": {
    text: `${M}kind: Experiment\nmetadata: {name: e}\nspec: {default: iris, candidates: []}\n`,
    problem: "document 1 (Experiment e): spec.candidates: an experiment needs at least one candidate, or a mirror",
  },
  "duplicate.yaml": {
    text: `${M}kind: Model\nmetadata: {name: iris}\nspec: {storageUri: s3://m/iris}\n---\n${M}kind: Model\nmetadata: {name: iris}\nspec: {storageUri: s3://m/iris}\n`,
    problem: 'document 2 (Model iris): metadata.name: Model "iris" is defined twice (also in document 1)',
  },
};
const MANIFEST_FILES: Record<string, string> = {
  ...Object.fromEntries(Object.entries(MANIFESTS).map(([file, m]) => [file, m.text])),
  "empty.yaml": "",
};

const CASES: BadCase[] = [
  // --- the agent's REST edge, then the same tensor kinds through the gateway (the agent answers, the gateway passes
  // the answer through unchanged)
  ...TENSOR_CASES.map(
    (c): BadCase => ({
      surface: "agent REST",
      kind: c.kind,
      request: asHttp(agentInfer, c.body),
      expect: 400,
      message: c.message,
    }),
  ),
  ...TENSOR_CASES.filter(
    (c) => c.kind !== "data nested 20,000 levels deep" && c.kind !== "shape nested 20,000 levels deep",
  ).map(
    (c): BadCase => ({
      surface: "gateway REST",
      kind: `${c.kind} (answered by the agent)`,
      request: asHttp(agentInfer, c.body),
      expect: 400,
      message: c.message,
    }),
  ),
  {
    surface: "agent REST",
    kind: "unknown model",
    request: { path: "/v2/models/nope/infer", headers: json, body: infer({}) },
    expect: 404,
    message: "model nope is not loaded on this server replica",
  },
  {
    surface: "agent REST",
    kind: "unknown version",
    request: { path: "/v2/models/iris/versions/9/infer", headers: json, body: infer({}) },
    expect: 404,
    message: "model iris has no version 9 here",
  },
  {
    surface: "agent REST",
    kind: "binary header not a number",
    request: { path: agentInfer, headers: { ...json, "inference-header-content-length": "ten" }, body: infer({}) },
    expect: 400,
    message: 'Inference-Header-Content-Length must be a byte count, got "ten"',
  },
  {
    surface: "agent REST",
    kind: "binary header longer than the body",
    request: { path: agentInfer, headers: { ...json, "inference-header-content-length": "99999" }, body: infer({}) },
    expect: 400,
    message: "Inference-Header-Content-Length is 99999 but the body has only",
  },
  {
    surface: "agent REST",
    kind: "body over the limit",
    request: { path: agentInfer, headers: json, body: infer({ pad: "x".repeat(70_000) }) },
    expect: 413,
    message: "request body is larger than the limit of 65536 bytes",
  },
  {
    surface: "agent REST",
    kind: "unknown route",
    request: { path: "/v2/models/iris/predict", headers: json, body: infer({}) },
    expect: 404,
    message: "no route POST /v2/models/iris/predict",
  },
  {
    surface: "agent REST",
    kind: "metadata of an unknown model",
    request: { method: "GET", path: "/v2/models/nope" },
    expect: 404,
    message: "model nope is not loaded on this server replica",
  },

  // --- the gateway's own REST answers
  {
    surface: "gateway REST",
    kind: "unknown model",
    request: { path: "/v2/models/no-such-model/infer", headers: json, body: infer({}) },
    expect: 404,
    message: "model no-such-model not found",
  },
  {
    surface: "gateway REST",
    kind: "unknown version",
    request: { path: "/v2/models/iris/versions/9/infer", headers: json, body: infer({}) },
    expect: 404,
    message: "model iris version 9 is not available",
  },
  {
    surface: "gateway REST",
    kind: "version not a number",
    request: { path: "/v2/models/iris/versions/latest/infer", headers: json, body: infer({}) },
    expect: 400,
    message: 'model version "latest" is not a positive integer',
  },
  {
    surface: "gateway REST",
    kind: "version 0",
    request: { path: "/v2/models/iris/versions/0/infer", headers: json, body: infer({}) },
    expect: 400,
    message: 'model version "0" is not a positive integer',
  },
  {
    surface: "gateway REST",
    kind: "seldon-model with an unknown suffix",
    request: { path: agentInfer, headers: { ...json, "seldon-model": "iris.model" }, body: infer({}) },
    expect: 400,
    message: 'has an unknown suffix ".model"',
  },
  {
    surface: "gateway REST",
    kind: "seldon-model naming an unknown model",
    request: { path: agentInfer, headers: { ...json, "seldon-model": "ghost" }, body: infer({}) },
    expect: 404,
    message: "model ghost not found",
  },
  {
    surface: "gateway REST",
    kind: "seldon-model naming an unknown experiment",
    request: { path: agentInfer, headers: { ...json, "seldon-model": "ghost.experiment" }, body: infer({}) },
    expect: 404,
    message: "experiment ghost not found",
  },
  {
    surface: "gateway REST",
    kind: "unknown pipeline",
    request: { path: "/v2/pipelines/no-such-pipeline/infer", headers: json, body: infer({}) },
    expect: 404,
    message: "pipeline no-such-pipeline not found",
  },
  {
    surface: "gateway REST",
    kind: "metadata of an unknown model",
    request: { method: "GET", path: "/v2/models/no-such-model" },
    expect: 404,
    message: "model no-such-model not found",
  },
  {
    surface: "gateway REST",
    kind: "GET on infer",
    request: { method: "GET", path: agentInfer },
    expect: 404,
    message: "no route for GET /v2/models/iris/infer",
  },
  {
    surface: "gateway REST",
    kind: "unknown route",
    request: { path: "/v3/models/iris/infer", headers: json, body: infer({}) },
    expect: 404,
    message: "no route for POST /v3/models/iris/infer",
  },
  {
    surface: "gateway REST",
    kind: "body over the limit (declared length)",
    request: { path: agentInfer, headers: json, body: infer({ pad: "x".repeat(GATEWAY_BODY_LIMIT) }) },
    expect: 413,
    message: `request body is larger than the limit of ${GATEWAY_BODY_LIMIT} bytes`,
  },
  {
    surface: "gateway REST",
    kind: "body over the limit for an unknown model",
    request: {
      path: "/v2/models/no-such-model/infer",
      headers: json,
      body: infer({ pad: "x".repeat(GATEWAY_BODY_LIMIT) }),
    },
    expect: 413,
    message: "request body is larger than the limit",
  },
  {
    surface: "gateway REST",
    kind: "missing API key",
    request: { app: "keyed", path: agentInfer, headers: json, body: infer({}) },
    expect: 401,
    message: "missing API key: send Authorization: Bearer <key>",
  },
  {
    surface: "gateway REST",
    kind: "wrong API key",
    request: { app: "keyed", path: agentInfer, headers: { ...json, authorization: "Bearer nope" }, body: infer({}) },
    expect: 401,
    message: "invalid API key",
  },
  {
    surface: "gateway REST",
    kind: "malformed JSON with validation on",
    request: {
      app: "keyed",
      path: agentInfer,
      headers: { ...json, authorization: `Bearer ${API_KEY}` },
      body: '{"inputs": [',
    },
    expect: 400,
    message: "request body is not valid JSON",
  },
  {
    surface: "gateway REST",
    kind: "binary header past the body with validation on",
    request: {
      app: "keyed",
      path: agentInfer,
      headers: { ...json, authorization: `Bearer ${API_KEY}`, "inference-header-content-length": "5000" },
      body: infer({}),
    },
    expect: 400,
    message: 'Inference-Header-Content-Length "5000" does not fit the body',
  },
  {
    // The gateway parses the JSON (JSON.parse does not recurse) and passes it on; the agent names the limit.
    surface: "gateway REST",
    kind: "data nested 20,000 levels deep with validation on",
    request: {
      app: "keyed",
      path: agentInfer,
      headers: { ...json, authorization: `Bearer ${API_KEY}` },
      body: `{"inputs":[{"name":"predict","shape":[1,4],"datatype":"FP32","data":${deep(20_000)}}]}`,
    },
    expect: 400,
    message: '"data" is nested more than 32 levels deep (the limit)',
  },

  // --- gRPC, to the agent and through the gateway
  ...grpcCases("agent gRPC"),
  ...grpcCases("gateway gRPC"),
  {
    surface: "gateway gRPC",
    kind: "seldon-model with an unknown suffix",
    request: {
      grpc: "ModelInfer",
      req: { model_name: "iris", inputs: [] },
      metadata: { "seldon-model": "iris.model" },
    },
    expect: "INVALID_ARGUMENT",
    message: 'has an unknown suffix ".model"',
  },
  {
    surface: "gateway gRPC",
    kind: "unknown experiment in seldon-model",
    request: {
      grpc: "ModelInfer",
      req: { model_name: "iris", inputs: [] },
      metadata: { "seldon-model": "ghost.experiment" },
    },
    expect: "NOT_FOUND",
    message: "experiment ghost not found",
  },
  {
    surface: "gateway gRPC",
    kind: "missing API key",
    request: { grpc: "ModelInfer", req: { model_name: "iris", inputs: [] }, target: "keyed" },
    expect: "UNAUTHENTICATED",
    message: "missing API key: send Authorization: Bearer <key>",
  },
  {
    surface: "gateway gRPC",
    kind: "message over the limit",
    request: { grpc: "ModelInfer", req: { model_name: "iris", id: "x".repeat(GATEWAY_BODY_LIMIT), inputs: [] } },
    expect: "RESOURCE_EXHAUSTED",
    message: "Received message larger than max",
  },
  {
    surface: "gateway gRPC",
    kind: "metadata of an unknown model",
    request: { grpc: "ModelMetadata", req: { name: "ghost" } },
    expect: "NOT_FOUND",
    message: "model ghost not found",
  },
  {
    surface: "gateway gRPC",
    kind: "readiness of an unknown model",
    request: { grpc: "ModelReady", req: { name: "ghost" } },
    expect: "NOT_FOUND",
    message: "model ghost not found",
  },
  {
    surface: "gateway gRPC",
    kind: "version not a number",
    request: { grpc: "ModelInfer", req: { model_name: "iris", model_version: "latest", inputs: [] } },
    expect: "INVALID_ARGUMENT",
    message: 'model version "latest" is not a positive integer',
  },

  // --- the scheduler's control API (YAML or JSON manifests, with a matching content type)
  ...(
    [
      ["empty body", ""],
      ["only a comment", "# nothing\n"],
    ] as const
  ).map(
    ([kind, body]): BadCase => ({
      surface: "control API",
      kind: `apply: ${kind}`,
      request: { path: "/v1/apply", headers: { "content-type": "application/yaml" }, body },
      expect: 400,
      message: "the body holds no manifest (send YAML or JSON)",
    }),
  ),
  ...Object.entries(MANIFESTS).map(
    ([file, m]): BadCase => ({
      surface: "control API",
      kind: `apply: ${file}`,
      request: {
        path: "/v1/apply",
        headers: { "content-type": file.endsWith(".json") ? "application/json" : "application/yaml" },
        body: m.text,
      },
      expect: 400,
      message: m.problem,
    }),
  ),
  {
    surface: "control API",
    kind: "status of an unknown model",
    request: { method: "GET", path: "/v1/models/ghost" },
    expect: 404,
    message: "Model ghost not found",
  },
  {
    surface: "control API",
    kind: "delete of an unknown model",
    request: { method: "DELETE", path: "/v1/models/ghost" },
    expect: 404,
    message: "Model ghost not found",
  },
  {
    surface: "control API",
    kind: "unknown resource kind",
    request: { method: "GET", path: "/v1/widgets" },
    expect: 400,
    message: 'unknown kind "widgets": expected model, server, pipeline or experiment',
  },
  {
    surface: "control API",
    kind: "watch from a negative revision",
    request: { method: "GET", path: "/v1/watch?fromRevision=-1" },
    expect: 400,
    message: 'fromRevision must be a non-negative integer (got "-1")',
  },
  {
    surface: "control API",
    kind: "watch from a revision that is not a number",
    request: { method: "GET", path: "/v1/watch?fromRevision=abc" },
    expect: 400,
    message: 'fromRevision must be a non-negative integer (got "abc")',
  },
  {
    surface: "control API",
    kind: "worker heartbeat whose report names an unknown run state",
    request: {
      method: "POST",
      path: "/v1/workers/dataflow/dataflow-0/heartbeat",
      headers: json,
      body: JSON.stringify({ pipelines: [{ pipeline: "chain", version: 1, state: "Running" }] }),
    },
    expect: 400,
    message: "invalid worker report: pipelines.0.state",
  },
  {
    surface: "control API",
    kind: "worker heartbeat whose body is not JSON",
    request: { method: "POST", path: "/v1/workers/dataflow/dataflow-0/heartbeat", headers: json, body: "{pipelines" },
    expect: 400,
    message: "the heartbeat body must be empty or a JSON worker report",
  },
  {
    surface: "control API",
    kind: "unknown route",
    request: { method: "GET", path: "/v2/models" },
    expect: 404,
    message: "no route for GET /v2/models",
  },
  {
    surface: "control API",
    kind: "missing bearer token",
    request: { app: "keyed", method: "GET", path: "/v1/models" },
    expect: 401,
    message: "missing or wrong bearer token",
  },
  {
    surface: "control API",
    kind: "wrong bearer token",
    request: { app: "keyed", method: "GET", path: "/v1/models", headers: { authorization: "Bearer nope" } },
    expect: 401,
    message: "missing or wrong bearer token",
  },

  // --- tern validate (exit 1: problems found; exit 2: wrong usage)
  ...Object.entries(MANIFESTS).map(
    ([file, m]): BadCase => ({
      surface: "tern validate",
      kind: file,
      request: { cli: ["validate", "-f", file] },
      expect: "exit 1",
      message: `${file}: ${m.problem}`,
    }),
  ),
  {
    surface: "tern validate",
    kind: "empty file",
    request: { cli: ["validate", "-f", "empty.yaml"] },
    expect: "exit 1",
    message: "tern validate: no resources found in 1 file",
  },
  {
    surface: "tern validate",
    kind: "file that does not exist",
    request: { cli: ["validate", "-f", "missing.yaml"] },
    expect: "exit 1",
    message: "tern validate: missing.yaml: cannot read: no such file or directory",
  },
  {
    surface: "tern validate",
    kind: "no -f",
    request: { cli: ["validate"] },
    expect: "exit 2",
    message: "tern validate: say what to check with -f FILE, -f DIR or -f -",
  },
  {
    surface: "tern validate",
    kind: "unknown option",
    request: { cli: ["validate", "--frobnicate"] },
    expect: "exit 2",
    message: "tern validate: Unknown option '--frobnicate'",
  },
];

function grpcCases(surface: "agent gRPC" | "gateway gRPC"): BadCase[] {
  const fp32Input = { name: "predict", datatype: "FP32", shape: [1, 4], contents: { fp32_contents: row } };
  const rows: Array<[string, Record<string, unknown>, keyof typeof grpc.status, string]> = [
    ["no inputs", { inputs: [] }, "INVALID_ARGUMENT", "inputs must not be empty"],
    ["input without a name", { inputs: [{ ...fp32Input, name: "" }] }, "INVALID_ARGUMENT", "inputs[0]: name is empty"],
    [
      "datatype not OIP",
      { inputs: [{ ...fp32Input, datatype: "FLOAT" }] },
      "INVALID_ARGUMENT",
      'datatype "FLOAT" is not an OIP datatype',
    ],
    [
      "datatype not the model's",
      { inputs: [{ ...fp32Input, datatype: "FP64", contents: { fp64_contents: row } }] },
      "INVALID_ARGUMENT",
      "datatype FP64 does not match the model's FP32",
    ],
    ["wrong rank", { inputs: [{ ...fp32Input, shape: [4] }] }, "INVALID_ARGUMENT", "has rank 1"],
    [
      "contents not matching the shape",
      { inputs: [{ ...fp32Input, shape: [2, 4] }] },
      "INVALID_ARGUMENT",
      "fp32_contents has 4 elements but the shape needs 8",
    ],
    [
      "contents in the wrong field",
      { inputs: [{ ...fp32Input, contents: { int_contents: [1, 2, 3, 4] } }] },
      "INVALID_ARGUMENT",
      "fp32_contents has 0 elements",
    ],
    [
      "FP16 in contents",
      { inputs: [{ name: "h", datatype: "FP16", shape: [1] }] },
      "INVALID_ARGUMENT",
      "FP16 data must be sent in raw_input_contents",
    ],
    [
      "INT8 element beyond its range",
      { inputs: [{ name: "s", datatype: "INT8", shape: [1], contents: { int_contents: [300] } }] },
      "INVALID_ARGUMENT",
      "element 0 is 300, expected an integer in [-128, 127]",
    ],
    [
      "UINT16 element beyond its range",
      { inputs: [{ name: "s", datatype: "UINT16", shape: [1], contents: { uint_contents: [70000] } }] },
      "INVALID_ARGUMENT",
      "element 0 is 70000, expected an integer in [0, 65535]",
    ],
    [
      "raw contents count not matching the inputs",
      { inputs: [{ name: "predict", datatype: "FP32", shape: [1, 4] }], raw_input_contents: [fp32(row), fp32(row)] },
      "INVALID_ARGUMENT",
      "raw_input_contents has 2 entries but there are 1 inputs",
    ],
    [
      "raw contents of the wrong length",
      { inputs: [{ name: "predict", datatype: "FP32", shape: [1, 4] }], raw_input_contents: [Buffer.alloc(12)] },
      "INVALID_ARGUMENT",
      "binary data is 12 bytes",
    ],
    [
      "truncated BYTES element",
      { inputs: [{ name: "b", datatype: "BYTES", shape: [1] }], raw_input_contents: [Buffer.from([9, 0, 0, 0, 1])] },
      "INVALID_ARGUMENT",
      "BYTES element 0 claims 9 bytes",
    ],
    [
      "unknown input",
      { inputs: [{ ...fp32Input, name: "petals" }] },
      "INVALID_ARGUMENT",
      'unknown input "petals" for model iris',
    ],
    [
      "unknown output requested",
      { inputs: [fp32Input], outputs: [{ name: "species" }] },
      "INVALID_ARGUMENT",
      'unknown output "species"',
    ],
    [
      "negative dimension",
      { inputs: [{ ...fp32Input, shape: [-1, 4] }] },
      "INVALID_ARGUMENT",
      "must hold non-negative integers",
    ],
  ];
  const out = rows.map(
    ([kind, fields, code, message]): BadCase => ({
      surface,
      kind,
      request: { grpc: "ModelInfer", req: { model_name: "iris", ...fields } },
      expect: code,
      message,
    }),
  );
  out.push({
    surface,
    kind: "unknown model",
    request: { grpc: "ModelInfer", req: { model_name: "ghost", inputs: [fp32Input] } },
    expect: "NOT_FOUND",
    message: surface === "agent gRPC" ? "model ghost is not loaded on this server replica" : "model ghost not found",
  });
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Sending

async function send(c: BadCase): Promise<{ answer: BadCase["expect"]; message: string }> {
  const r = c.request;
  if ("cli" in r) {
    let stdout = "";
    let stderr = "";
    const io: CliIo = {
      stdout: { write: (t: string) => (stdout += t) },
      stderr: { write: (t: string) => (stderr += t) },
      readStdin: async () => "",
      cwd: manifests,
    };
    const code = await tern(r.cli, io);
    return { answer: `exit ${code}`, message: `${stdout}${stderr}` };
  }
  if ("grpc" in r) {
    const client =
      c.surface === "agent gRPC" ? clients.agent : r.target === "keyed" ? clients.gatewayKeyed : clients.gateway;
    const metadata = new grpc.Metadata();
    for (const [k, v] of Object.entries(r.metadata ?? {})) metadata.set(k, v);
    const err = await new Promise<grpc.ServiceError | null>((resolve) =>
      client[r.grpc]!(r.req, metadata, (e) => resolve(e)),
    );
    if (!err) return { answer: "OK", message: "" };
    return { answer: grpc.status[err.code] as keyof typeof grpc.status, message: err.details };
  }
  const app =
    c.surface === "agent REST"
      ? agent.app
      : c.surface === "control API"
        ? r.app === "keyed"
          ? controlWithToken
          : control
        : r.app === "keyed"
          ? gatewayKeyed
          : gateway;
  const res = await app.request(r.path, {
    method: r.method ?? (r.body === undefined ? "GET" : "POST"),
    headers: r.headers ?? {},
    ...(r.body === undefined ? {} : { body: r.body }),
  });
  const text = await res.text();
  let message: string;
  try {
    const error = (JSON.parse(text) as { error?: unknown }).error;
    message = typeof error === "string" ? error : `(no "error" string in ${text.slice(0, 200)})`;
  } catch {
    message = `(not JSON: ${text.slice(0, 200)})`;
  }
  return { answer: res.status, message };
}

const cases = new Set(CASES.map((c) => `${c.surface}: ${c.kind}`));
/**
 * Kinds counted once whatever edge they are sent to: a tensor error sent to the agent and through the gateway, a bad
 * manifest given to the control API and to `tern validate`, are one kind each.
 */
const kinds = new Set(CASES.map((c) => c.kind.replace(" (answered by the agent)", "").replace(/^apply: /, "")));

describe("the bad-input corpus", () => {
  it(`answers ${kinds.size} distinct kinds of bad input (${cases.size} cases over 6 edges) with the right status and a message, then still serves`, async () => {
    expect(cases.size, "every case names a kind of its own on its edge").toBe(CASES.length);
    expect(kinds.size).toBeGreaterThanOrEqual(100);
    const failures: string[] = [];
    for (const c of CASES) {
      const { answer, message } = await send(c);
      if (answer !== c.expect || !message.includes(c.message))
        failures.push(
          `${c.surface}: ${c.kind}: expected ${c.expect} "${c.message}", got ${answer} "${message.slice(0, 300)}"`,
        );
      if (/\n\s+at .+:\d+/.test(message)) failures.push(`${c.surface}: ${c.kind}: stack trace in the answer`);
    }
    expect(failures, failures.join("\n")).toEqual([]);

    // Every edge still serves a good request.
    const goodBody = JSON.stringify({ inputs: [good] });
    for (const app of [agent.app, gateway]) {
      const res = await app.request(agentInfer, { method: "POST", headers: json, body: goodBody });
      expect(res.status).toBe(200);
    }
    for (const client of [clients.agent, clients.gateway]) {
      const err = await new Promise<grpc.ServiceError | null>((resolve) =>
        client.ModelInfer!(
          {
            model_name: "iris",
            inputs: [{ name: "predict", datatype: "FP32", shape: [1, 4], contents: { fp32_contents: row } }],
          },
          new grpc.Metadata(),
          (e) => resolve(e),
        ),
      );
      expect(err).toBeNull();
    }
    expect((await control.request("/v1/models/ghost")).status).toBe(404);
    expect((await control.request("/healthz")).status).toBe(200);
  });
});
