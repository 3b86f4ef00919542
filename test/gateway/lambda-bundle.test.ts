import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { waitFor } from "@tern/devstack";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildLambdaBundle, type LambdaBundle } from "../../bench/lambda/build.js";
import { type DataflowStack, sampleManifest, startDataflowStack } from "../dataflow/dataflow-stack.js";
import { kafkaBrokers } from "../helpers/services.js";

// Issue 13: the gateway's Lambda entry as it is deployed — ONE esbuild bundle (bench/lambda/build.ts) with the Kafka
// producer, the MSK IAM signer and the DynamoDB client inside — imported from the built file and driven with
// synthetic API Gateway v2 events, in front of the real local stack: broker, DynamoDB Local, scheduler, one dataflow
// worker, one model gateway and one agent serving the sample models. A model request goes straight to the agent; a
// pipeline request goes through Kafka and the DynamoDB rendezvous. Expected values are computed from the request.

const f = Math.fround;

interface LambdaResult {
  statusCode: number;
  headers?: Record<string, string>;
  body: string;
  isBase64Encoded: boolean;
}
type LambdaHandler = (event: unknown, context: unknown) => Promise<LambdaResult>;

interface InferJson {
  model_name?: string;
  outputs: Array<{ name: string; shape: number[]; data: number[] }>;
}

let stack: DataflowStack;
let bundle: LambdaBundle;
let handler: LambdaHandler;
const outdir = mkdtempSync(join(tmpdir(), "tern-lambda-bundle-"));
const saved: Record<string, string | undefined> = {};
let counter = 0;

function event(method: string, path: string, body?: string) {
  const domainName = "bundle.execute-api.us-east-1.amazonaws.com";
  return {
    version: "2.0",
    routeKey: "$default",
    rawPath: path,
    rawQueryString: "",
    headers: { host: domainName, "content-type": "application/json" },
    requestContext: {
      accountId: "123456789012",
      apiId: "bundle",
      domainName,
      domainPrefix: "bundle",
      http: { method, path, protocol: "HTTP/1.1", sourceIp: "127.0.0.1", userAgent: "tern-test" },
      requestId: `bundle-${++counter}`,
      routeKey: "$default",
      stage: "$default",
      time: new Date().toISOString(),
      timeEpoch: Date.now(),
    },
    ...(body === undefined ? {} : { body, isBase64Encoded: false }),
  };
}

async function infer(kind: "models" | "pipelines", name: string, x: number[][]) {
  const body = JSON.stringify({
    inputs: [{ name: "x", datatype: "FP32", shape: [x.length, x[0]!.length], data: x.flat() }],
  });
  const res = await handler(event("POST", `/v2/${kind}/${name}/infer`, body), {});
  const text = res.isBase64Encoded ? Buffer.from(res.body, "base64").toString("utf8") : res.body;
  return { status: res.statusCode, json: JSON.parse(text) as InferJson & { error?: string } };
}

function rows(json: InferJson, name: string): number[][] {
  const out = json.outputs?.find((o) => o.name === name);
  if (!out) throw new Error(`no output ${name} in ${JSON.stringify(json).slice(0, 500)}`);
  const columns = out.shape[out.shape.length - 1]!;
  const result: number[][] = [];
  for (let i = 0; i < out.data.length; i += columns) result.push(out.data.slice(i, i + columns));
  return result;
}

beforeAll(async () => {
  bundle = await buildLambdaBundle({ outdir });
  stack = await startDataflowStack({ name: "lbundle", workers: 1, replication: 1 });
  await stack.applyPipelines(sampleManifest("pipelines.yaml"));
  // The bundle builds its app from process.env when it is imported (a cold start): point it at the installation.
  const env = {
    TERN_TABLE: stack.e2e.table,
    DYNAMODB_ENDPOINT: stack.e2e.dynamodbEndpoint,
    AWS_REGION: "us-east-1",
    KAFKA_BROKERS: kafkaBrokers().join(","),
    KAFKA_PARTITIONS: String(stack.partitions),
    TERN_NAMESPACE: stack.namespace,
    TERN_GATEWAY_ROUTE_CACHE_MS: "200",
    LOG_LEVEL: "warn",
  };
  for (const [k, v] of Object.entries(env)) {
    saved[k] = process.env[k];
    process.env[k] = v;
  }
  ({ handler } = (await import(pathToFileURL(bundle.file).href)) as { handler: LambdaHandler });
  await waitFor(async () => (await infer("pipelines", "add-then-mul", [[0]])).status === 200, {
    timeoutMs: 30_000,
    intervalMs: 200,
    description: "the bundled handler answering add-then-mul",
  });
}, 240_000);

afterAll(async () => {
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  await stack?.close();
  rmSync(outdir, { recursive: true, force: true });
});

describe("the bundled Lambda handler against the local stack", () => {
  it("is one file within the 1.5 MiB target, with kafkajs and the MSK IAM signer inside and no classic zod or yaml", () => {
    const names = bundle.inputs.map((i) => i.name);
    expect(names).toEqual(
      expect.arrayContaining(["kafkajs", "aws-msk-iam-sasl-signer-js", "@aws-sdk/client-dynamodb"]),
    );
    expect(names).not.toContain("yaml");
    // zod/mini only: classic zod alone was 455 KB.
    expect(bundle.inputs.find((i) => i.name === "zod")!.bytes).toBeLessThan(64 * 1024);
    expect(bundle.bytes).toBeLessThanOrEqual(1.5 * 1024 * 1024);
  });

  it("answers a model: add10 through the route table straight to the agent", async () => {
    const x = [
      [1.5, -2],
      [0, 30],
    ];
    const res = await infer("models", "add10", x);
    expect(res.status, JSON.stringify(res.json)).toBe(200);
    expect(res.json.model_name).toBe("add10");
    expect(rows(res.json, "y")).toEqual(x.map((r) => r.map((v) => f(v + 10))));
  });

  it("answers a pipeline: add-then-mul through Kafka and the DynamoDB rendezvous", async () => {
    const x = [[2.25, -7, 0]];
    const res = await infer("pipelines", "add-then-mul", x);
    expect(res.status, JSON.stringify(res.json)).toBe(200);
    expect(rows(res.json, "y")).toEqual(x.map((r) => r.map((v) => f(f(v + 10) * 10))));
  });

  it("answers an unknown model with the OIP 404 body", async () => {
    const res = await infer("models", "nope", [[1]]);
    expect(res.status).toBe(404);
    expect(res.json).toEqual({ error: "model nope not found" });
  });
});
