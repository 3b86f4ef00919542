import { DynamoDBClient, GetItemCommand } from "@aws-sdk/client-dynamodb";
import { replyItemKey } from "@tern/core";
import { waitFor } from "@tern/devstack";
import { createLambdaApp, httpStatusForErrorRecord } from "@tern/gateway";
import { handle } from "hono/aws-lambda";
import { Kafka, logLevel } from "kafkajs";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DataflowStack, sampleManifest, startDataflowStack } from "../dataflow/dataflow-stack.js";
import { apiGatewayEvent, type LambdaHandler } from "../helpers/lambda-event.js";
import { kafkaBrokers } from "../helpers/services.js";

// The Lambda entry's pipeline channel (issue 11, DESIGN §3 "Rendezvous") on the real broker and DynamoDB Local: the
// REAL exported `handler` of packages/gateway/src/lambda.ts, driven with synthetic API Gateway v2 events, in front of a
// scheduler, one dataflow worker process, one model gateway and one agent serving the sample models. The worker puts
// each answer in the state table under reply#<id>; the handler reads it there and never joins a consumer group.
// Every expectation is computed here from the request (in float32 like the models), never recorded.

const f = Math.fround;
// At most 29 s: the Lambda entry refuses a deadline API Gateway's 30 s would cut (docs/lambda.md).
const REQUEST_MS = 29_000;

interface InferJson {
  id: string;
  model_name: string;
  outputs: Array<{ name: string; datatype: string; shape: number[]; data: number[] }>;
}

let stack: DataflowStack;
let handler: LambdaHandler;
let dynamodb: DynamoDBClient;
let admin: ReturnType<Kafka["admin"]>;
const saved: Record<string, string | undefined> = {};

const inferBody = (inputs: Array<{ name: string; rows: number[][] }>) =>
  JSON.stringify({
    inputs: inputs.map(({ name, rows }) => ({
      name,
      datatype: "FP32",
      shape: [rows.length, rows[0]!.length],
      data: rows.flat(),
    })),
  });

async function infer(
  pipeline: string,
  inputs: Array<{ name: string; rows: number[][] }>,
  options: { via?: LambdaHandler; headers?: Record<string, string> } = {},
): Promise<{ status: number; headers: Record<string, string>; json: unknown; id: string }> {
  const res = await (options.via ?? handler)(
    apiGatewayEvent(`/v2/pipelines/${pipeline}/infer`, {
      body: inferBody(inputs),
      ...(options.headers ? { headers: options.headers } : {}),
    }),
    {},
  );
  const text = res.isBase64Encoded ? Buffer.from(res.body, "base64").toString("utf8") : res.body;
  return {
    status: res.statusCode,
    headers: res.headers ?? {},
    json: JSON.parse(text),
    id: res.headers?.["x-tern-request-id"] ?? "",
  };
}

function rows(json: unknown, name: string): number[][] {
  const out = (json as InferJson).outputs?.find((o) => o.name === name);
  if (!out) throw new Error(`no output ${name} in ${JSON.stringify(json).slice(0, 500)}`);
  const columns = out.shape[out.shape.length - 1]!;
  const result: number[][] = [];
  for (let i = 0; i < out.data.length; i += columns) result.push(out.data.slice(i, i + columns));
  return result;
}

const map = (r: number[][], fn: (v: number) => number) => r.map((row) => row.map((v) => f(fn(v))));

async function replyItem(requestId: string) {
  const key = replyItemKey(requestId);
  const out = await dynamodb.send(
    new GetItemCommand({
      TableName: stack.e2e.table,
      Key: { pk: { S: key.pk }, sk: { S: key.sk } },
      ConsistentRead: true,
    }),
  );
  return out.Item;
}

/** Groups on the broker, but the test's own outside readers (`outside-…`). */
async function groups(): Promise<string[]> {
  const { groups: all } = await admin.listGroups();
  return all.map((g) => g.groupId).filter((g) => !g.startsWith("outside-"));
}

let groupsBefore: string[];

beforeAll(async () => {
  stack = await startDataflowStack({ name: "plambda", workers: 1, replication: 1 });
  await stack.applyPipelines(sampleManifest("pipelines.yaml"));
  dynamodb = new DynamoDBClient({
    region: "us-east-1",
    endpoint: stack.e2e.dynamodbEndpoint,
    credentials: { accessKeyId: "local", secretAccessKey: "local" },
  });
  admin = new Kafka({ clientId: "plambda-admin", brokers: kafkaBrokers(), logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  // lambda.ts builds its app from process.env when first imported (a cold start): point it at the installation.
  const env = {
    TERN_TABLE: stack.e2e.table,
    DYNAMODB_ENDPOINT: stack.e2e.dynamodbEndpoint,
    AWS_REGION: "us-east-1",
    KAFKA_BROKERS: kafkaBrokers().join(","),
    KAFKA_PARTITIONS: String(stack.partitions),
    TERN_NAMESPACE: stack.namespace,
    TERN_GATEWAY_PIPELINE_TIMEOUT_MS: String(REQUEST_MS),
    TERN_GATEWAY_ROUTE_CACHE_MS: "200",
    LOG_LEVEL: "warn",
  };
  for (const [k, v] of Object.entries(env)) {
    saved[k] = process.env[k];
    process.env[k] = v;
  }
  groupsBefore = await groups();
  ({ handler } = (await import("../../packages/gateway/src/lambda.js")) as unknown as { handler: LambdaHandler });
  // The scheduler writes the route table to DynamoDB; wait (bounded) until the handler sees add-then-mul ready.
  await waitFor(async () => (await infer("add-then-mul", [{ name: "x", rows: [[0]] }])).status === 200, {
    timeoutMs: 30_000,
    intervalMs: 200,
    description: "the Lambda handler answering add-then-mul",
  });
}, 240_000);

afterAll(async () => {
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  await admin?.disconnect();
  dynamodb?.destroy();
  await stack?.close();
});

describe("POST /v2/pipelines/{p}/infer through the Lambda handler (DynamoDB rendezvous)", () => {
  it("add-then-mul answers (x + 10) * 10; the reply item carries expiresAt; the handler created no consumer group", async () => {
    const x = [
      [1.5, -2, 0],
      [3, 4, -12.5],
    ];
    const before = Math.floor(Date.now() / 1000);
    const res = await infer("add-then-mul", [{ name: "x", rows: x }], { headers: { "x-request-id": "caller-9" } });
    expect(res.status, JSON.stringify(res.json)).toBe(200);
    expect(rows(res.json, "y")).toEqual(map(x, (v) => f(v + 10) * 10));
    expect(res.headers["x-request-id"]).toBe("caller-9");
    expect((res.json as InferJson).id).toBe(res.id);
    expect(await groups()).toEqual(groupsBefore);

    const item = await replyItem(res.id);
    expect(item?.pipeline?.S).toBe("add-then-mul");
    expect(item?.response?.B).toBeInstanceOf(Uint8Array);
    // The worker's default TTL, 600 s, from when it put the item.
    const expiresAt = Number(item?.expiresAt?.N);
    expect(expiresAt).toBeGreaterThanOrEqual(before + 600);
    expect(expiresAt).toBeLessThanOrEqual(Math.ceil(Date.now() / 1000) + 600);
  });

  it("after-add-then-mul reads add-then-mul's answers with the same id, but the reply item stays add-then-mul's", async () => {
    const x = [[7, -1]];
    const res = await infer("add-then-mul", [{ name: "x", rows: x }]);
    expect(res.status, JSON.stringify(res.json)).toBe(200);
    // Wait (bounded) for the chained pipeline's answer to this id, then look at the item once more.
    const chained = await (await stack.client.outputs("after-add-then-mul")).answer(res.id, 15_000);
    expect(chained.ok).toBe(true);
    const item = await replyItem(res.id);
    expect(item?.pipeline?.S).toBe("add-then-mul");
  });

  it("add-mul-join: the inner join's sum = 11x + 10 and diff = 10 - 9x", async () => {
    const x = [
      [1, 2],
      [-3, 0.5],
    ];
    const res = await infer("add-mul-join", [{ name: "x", rows: x }]);
    expect(res.status, JSON.stringify(res.json)).toBe(200);
    const a = map(x, (v) => v + 10);
    const b = map(x, (v) => v * 10);
    expect(rows(res.json, "sum")).toEqual(a.map((r, i) => r.map((v, j) => f(v + b[i]![j]!))));
    expect(rows(res.json, "diff")).toEqual(a.map((r, i) => r.map((v, j) => f(v - b[i]![j]!))));
  });

  it("concurrent requests: one item per request id, each caller gets its own answer", async () => {
    const xs = Array.from({ length: 20 }, (_, i) => [i, -i / 4]);
    const answers = await Promise.all(xs.map((x) => infer("add-then-mul", [{ name: "x", rows: [x] }])));
    expect(
      answers.filter((a) => a.status !== 200).map((a) => a.json),
      "every request answered",
    ).toEqual([]);
    expect(answers.map((a) => rows(a.json, "y"))).toEqual(xs.map((x) => map([x], (v) => f(v + 10) * 10)));
    const ids = answers.map((a) => a.id);
    expect(new Set(ids).size).toBe(xs.length);
    const items = await Promise.all(ids.map((id) => replyItem(id)));
    expect(items.map((i) => i?.pk?.S)).toEqual(ids.map((id) => `reply#${id}`));
  });

  it("a step's error comes back with the step's status and message (sum-diff without b)", async () => {
    const res = await infer("sum-diff-pipeline", [{ name: "a", rows: [[1, 2]] }]);
    const { error } = res.json as { error: string };
    expect(error).toContain("pipeline sum-diff-pipeline: step sum-diff failed");
    // The status is the error record's own, as the worker wrote it on the outputs topic.
    const record = await (await stack.client.outputs("sum-diff-pipeline")).answer(res.id, 15_000);
    expect(record.ok).toBe(false);
    if (record.ok) return;
    expect(error).toBe(record.message);
    expect(res.status).toBe(httpStatusForErrorRecord(record.status));
    expect(res.status).toBeGreaterThanOrEqual(400);
    const item = await replyItem(res.id);
    expect(item?.status?.S).toBe(record.status);
  });

  it("an answer above DynamoDB's item limit answers 413 naming the limit, not a timeout", async () => {
    // 110,000 FP32 values: 440,000 bytes of output, over the 409,600 bytes of an item.
    const x = [Array.from({ length: 110_000 }, (_, i) => i % 7)];
    const res = await infer("add-then-mul", [{ name: "x", rows: x }]);
    expect(res.status, JSON.stringify(res.json).slice(0, 300)).toBe(413);
    expect((res.json as { error: string }).error).toMatch(
      /^pipeline add-then-mul: the answer to request id [0-9a-f-]{36} is \d+ bytes, above DynamoDB's item limit of 409600 bytes \(400 KB\)/,
    );
    expect((res.json as { error: string }).error).toContain(res.id);
  });

  it("a pipeline whose worker is stopped answers 504 naming the request id by its deadline", async () => {
    const short = handle(
      createLambdaApp({ ...process.env, TERN_GATEWAY_PIPELINE_TIMEOUT_MS: "2000" }, pino({ level: "silent" })),
    ) as unknown as LambdaHandler;
    const worker = [...stack.workers.values()][0]!;
    try {
      // Served first (its cold start — Kafka connections, partition counts — may take longer than the short deadline), so
      // the stopped worker is the only reason for no answer.
      await waitFor(
        async () => (await infer("add-then-mul", [{ name: "x", rows: [[1]] }], { via: short })).status === 200,
        {
          timeoutMs: 30_000,
          intervalMs: 100,
          description: "the short-deadline handler answering add-then-mul",
        },
      );
      worker.kill("SIGSTOP");
      const res = await infer("add-then-mul", [{ name: "x", rows: [[2]] }], { via: short });
      expect(res.status).toBe(504);
      expect((res.json as { error: string }).error).toMatch(
        /^pipeline add-then-mul did not answer request id [0-9a-f-]{36} within \d+ ms$/,
      );
    } finally {
      worker.kill("SIGCONT");
    }
  });
});
