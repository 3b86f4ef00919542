import { resolve } from "node:path";
import { DynamoDBClient, GetItemCommand } from "@aws-sdk/client-dynamodb";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { type OipTensor, partitionForRequest, replyItemKey } from "@tern/core";
import { waitFor } from "@tern/devstack";
import { Kafka, logLevel } from "kafkajs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DataflowStack, sampleManifest, startDataflowStack } from "../dataflow/dataflow-stack.js";
import { invokeLambda, type LambdaHandler } from "../helpers/lambda-event.js";
import type { PipelineOutputs } from "../helpers/pipeline-kafka.js";
import {
  chainedRequest,
  type ExpectedAnswer,
  expectedAnswer,
  pipelineInputNames,
  type RefTensor,
  samplePipelines,
  type Tensors,
  upstreamPipelines,
} from "../helpers/pipeline-reference.js";
import { repoRoot } from "../helpers/platform-process.js";
import { kafkaBrokers } from "../helpers/services.js";

/**
 * The sample matrix of issue 11: EVERY Pipeline in samples/manifests/ (parsed, not listed here, so a new sample is in
 * the matrix the day it is added) answers right over every channel of both gateway entries, on the real broker and
 * DynamoDB Local, in front of a scheduler, one dataflow worker, one model gateway and one agent serving the sample
 * models:
 *
 * - the Node gateway process: REST JSON, REST binary tensors (Inference-Header-Content-Length), gRPC ModelInfer with
 *   `seldon-model: <p>.pipeline`;
 * - the REAL Lambda `handler` (packages/gateway/src/lambda.ts) invoked in-process with API Gateway v2 events: REST JSON
 *   and REST binary. gRPC does not exist on Lambda (a function behind API Gateway cannot serve it; docs/pipelines.md
 *   "Not supported"), so the Lambda rows have no gRPC column. The handler must create no consumer group, and each
 *   answer's reply item (`reply#<id>`, one per request) must carry `expiresAt`.
 *
 * Every expectation is computed from the request by test/helpers/pipeline-reference.ts (each sample model's math,
 * keyed by model name, and the pipeline's steps interpreted from its manifest); a sample model without a reference
 * fails the file. Each pipeline gets two requests per channel, one with every input summing positive and one
 * negative, so `choose`'s pipelines take both branches; the inputs are every tensor the pipeline's stages read
 * (`trigger-gate` gets its trigger `ok`, so it answers). A pipeline fed by another (`input.externalInputs`,
 * after-add-then-mul) is asked directly like the others — its steps read its own inputs topic — and is checked once
 * more the way it is meant to be used: every answer of its upstream through every channel is followed by its own
 * answer, under the same request id, on its outputs topic (no gateway waits for that one). Every answer's record on
 * the outputs topic is keyed `<k>.<p>.<id>` by its own request id, on the partition k that id chose. A channel's
 * requests go in parallel, so the batch pipeline's may share a model call.
 */

/** Each request's deadline: 29 s, the longest the Lambda entry accepts (API Gateway's HTTP API gives up at 30 s). */
const REQUEST_MS = 29_000;
/** The dataflow worker's TERN_DATAFLOW_REPLY_TTL_S default, which the stack leaves as it is. */
const REPLY_TTL_S = 600;
const SIGNS = [1, -1] as const;

const PIPELINES = samplePipelines();
const BY_NAME = new Map(PIPELINES.map((p) => [p.metadata.name, p]));

interface Reply {
  ok: boolean;
  status: string;
  id: string;
  outputs?: Tensors;
  error?: string;
}

/** One request of the matrix: its row label, the pipeline, the tensors sent, and what the reference expects. */
interface Cell {
  label: string;
  pipeline: string;
  /** The sign of every input value. */
  sign: 1 | -1;
  request: Tensors;
  expected: ExpectedAnswer;
}

/**
 * Two requests per pipeline for a channel, one per sign: every input [2, 3], values distinct per input and per channel,
 * all of the request's sign, exact in float32.
 */
function cells(channel: number): Cell[] {
  return PIPELINES.flatMap((p) =>
    SIGNS.map((sign) => {
      const request: Tensors = new Map(
        pipelineInputNames(p).map((name, i) => [
          name,
          { shape: [2, 3], data: [0, 1, 2, 3, 4, 5].map((k) => sign * (1 + k + 6 * i + 0.25 * channel)) },
        ]),
      );
      return {
        label: `${p.metadata.name} (${sign > 0 ? "positive" : "negative"})`,
        pipeline: p.metadata.name,
        sign,
        request,
        expected: expectedAnswer(p, request),
      };
    }),
  );
}

const table = (tensors: Tensors | undefined) =>
  Object.fromEntries([...(tensors ?? [])].sort(([a], [b]) => a.localeCompare(b)));
const view = (e: ExpectedAnswer) => (e.ok ? { outputs: table(e.outputs) } : { error: true });
const viewReply = (r: Reply) => (r.ok ? { outputs: table(r.outputs) } : { error: true });

const fp32 = (values: number[]) => Buffer.from(Float32Array.from(values).buffer);
const fromFp32 = (b: Uint8Array) =>
  Array.from(new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)));
const fromOip = (t: OipTensor): RefTensor => ({
  shape: t.shape.map(Number),
  data: Array.from(t.data as ArrayLike<number>, Number),
});

// ---- REST, the same bodies for the Node server and the Lambda handler

interface RestAnswer {
  status: number;
  headers: Record<string, string | undefined>;
  body: Buffer;
}

function jsonBody(request: Tensors): { body: string; headers: Record<string, string> } {
  return {
    body: JSON.stringify({
      inputs: [...request].map(([name, t]) => ({ name, datatype: "FP32", shape: t.shape, data: t.data })),
    }),
    headers: { "content-type": "application/json" },
  };
}

/** The binary tensor extension, as tritonclient sends it: a JSON head, then each input's bytes; bytes back too. */
function binaryBody(request: Tensors): { body: Buffer; headers: Record<string, string> } {
  const head = Buffer.from(
    JSON.stringify({
      inputs: [...request].map(([name, t]) => ({
        name,
        datatype: "FP32",
        shape: t.shape,
        parameters: { binary_data_size: t.data.length * 4 },
      })),
      parameters: { binary_data_output: true },
    }),
  );
  return {
    body: Buffer.concat([head, ...[...request.values()].map((t) => fp32(t.data))]),
    headers: { "content-type": "application/octet-stream", "inference-header-content-length": String(head.length) },
  };
}

interface RestJson {
  id?: string;
  error?: string;
  outputs?: Array<{
    name: string;
    datatype: string;
    shape: number[];
    data?: number[];
    parameters?: { binary_data_size?: number };
  }>;
}

/** Reads a REST answer, JSON or binary, into a Reply. */
function restReply(res: RestAnswer): Reply {
  const id = res.headers["x-tern-request-id"] ?? "";
  const headLength = res.headers["inference-header-content-length"];
  const head = headLength === undefined ? res.body : res.body.subarray(0, Number(headLength));
  const json = JSON.parse(head.toString("utf8")) as RestJson;
  if (res.status !== 200) return { ok: false, status: String(res.status), id, error: json.error ?? head.toString() };
  const outputs: Tensors = new Map();
  let offset = headLength === undefined ? 0 : Number(headLength);
  for (const o of json.outputs ?? []) {
    expect(o.datatype, `${o.name}'s datatype`).toBe("FP32");
    const size = o.parameters?.binary_data_size;
    let data: number[];
    if (size !== undefined) {
      data = fromFp32(res.body.subarray(offset, offset + size));
      offset += size;
    } else data = (o.data ?? []).flat(Number.POSITIVE_INFINITY) as number[];
    outputs.set(o.name, { shape: o.shape, data });
  }
  return { ok: true, status: "200", id: json.id ?? id, outputs };
}

// ---- gRPC

type OipClient = grpc.Client & Record<string, (...args: unknown[]) => grpc.ClientUnaryCall>;
interface GrpcResponse {
  id: string;
  outputs: Array<{ name: string; datatype: string; shape: string[]; contents?: { fp32_contents?: number[] } }>;
  raw_output_contents: Buffer[];
}

async function grpcClient(address: string): Promise<OipClient> {
  const definition = await protoLoader.load(resolve(repoRoot, "packages/core/proto/oip.proto"), {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const Service = (
    grpc.loadPackageDefinition(definition) as unknown as {
      inference: { GRPCInferenceService: new (a: string, c: grpc.ChannelCredentials) => OipClient };
    }
  ).inference.GRPCInferenceService;
  return new Service(address, grpc.credentials.createInsecure());
}

/** ModelInfer with the pipeline's header; positive requests go as typed contents, negative ones as raw bytes. */
function grpcInfer(client: OipClient, pipeline: string, request: Tensors, raw: boolean): Promise<Reply> {
  const md = new grpc.Metadata();
  md.set("seldon-model", `${pipeline}.pipeline`);
  const tensors = [...request];
  const message = {
    model_name: pipeline,
    inputs: tensors.map(([name, t]) => ({
      name,
      datatype: "FP32",
      shape: t.shape,
      ...(raw ? {} : { contents: { fp32_contents: t.data } }),
    })),
    ...(raw ? { raw_input_contents: tensors.map(([, t]) => fp32(t.data)) } : {}),
  };
  return new Promise((done) => {
    let id = "";
    const call = client.ModelInfer!.call(
      client,
      message,
      md,
      { deadline: Date.now() + REQUEST_MS + 5_000 },
      (error: grpc.ServiceError | null, value: GrpcResponse) => {
        if (error) {
          done({ ok: false, status: grpc.status[error.code] ?? String(error.code), id, error: error.details });
          return;
        }
        const outputs: Tensors = new Map(
          value.outputs.map((o, i) => {
            expect(o.datatype, `${o.name}'s datatype`).toBe("FP32");
            const data =
              value.raw_output_contents.length > 0
                ? fromFp32(value.raw_output_contents[i]!)
                : o.contents?.fp32_contents;
            return [o.name, { shape: o.shape.map(Number), data: data ?? [] }];
          }),
        );
        done({ ok: true, status: "OK", id: value.id, outputs });
      },
    );
    call.on("metadata", (m: grpc.Metadata) => {
      id = String(m.get("x-tern-request-id")[0] ?? "");
    });
  });
}

// ---- the stack

let stack: DataflowStack;
const outputs = new Map<string, PipelineOutputs>();

beforeAll(async () => {
  stack = await startDataflowStack({
    name: "pmatrix",
    workers: 1,
    replication: 1,
    gatewayEnv: { TERN_GATEWAY_PIPELINE_TIMEOUT_MS: String(REQUEST_MS) },
  });
  await stack.applyPipelines(sampleManifest("pipelines.yaml"));
  // Every sample pipeline must be on the stack: one that lives in another manifest file would not be.
  const applied = new Set((await stack.dataflowStatus()).pipelines?.map((p) => p.pipeline));
  expect(PIPELINES.map((p) => p.metadata.name).filter((p) => !applied.has(p))).toEqual([]);
  // Readers of every outputs topic (outside-… groups), for the record keys and the chained pipelines' answers.
  await Promise.all(
    PIPELINES.map(async (p) => outputs.set(p.metadata.name, await stack.client.outputs(p.metadata.name))),
  );
}, 240_000);

afterAll(async () => {
  await stack?.close();
});

/** The first answer on the pipeline's outputs topic to this id, as a Reply. */
async function kafkaAnswer(pipeline: string, id: string) {
  const answer = await outputs.get(pipeline)!.answer(id, 15_000);
  const reply: Reply = answer.ok
    ? { ok: true, status: "OK", id, outputs: new Map(answer.tensors.map((t) => [t.name, fromOip(t)])) }
    : { ok: false, status: answer.status ?? "", id, error: answer.message };
  return { answer, reply };
}

/**
 * Sends every cell through `send` at once and compares the whole matrix with the reference's in one assertion, then
 * checks on Kafka that each answer sat under its own request's key on the partition its id chose, and that each
 * pipeline fed by another answered its upstream's request with the reference's answer.
 */
async function runMatrix(
  channel: number,
  send: (cell: Cell) => Promise<Reply>,
): Promise<Array<Cell & { reply: Reply }>> {
  const all = cells(channel);
  const replies = await Promise.all(all.map(send));
  const done = all.map((cell, i) => ({ ...cell, reply: replies[i]! }));
  const failed = done.filter((d) => !d.reply.ok).map((d) => `${d.label}: ${d.reply.status} ${d.reply.error}`);
  expect(
    Object.fromEntries(done.map((d) => [d.label, viewReply(d.reply)])),
    `answers (the errors: ${failed.join("; ")})`,
  ).toEqual(Object.fromEntries(done.map((d) => [d.label, view(d.expected)])));
  const ids = done.map((d) => d.reply.id);
  expect(new Set(ids).size, "one request id per request").toBe(ids.length);

  const keys = await Promise.all(
    done.map(async (d) => {
      const { answer } = await kafkaAnswer(d.pipeline, d.reply.id);
      return { key: answer.record.parsedKey, partition: answer.record.partition };
    }),
  );
  expect(keys).toEqual(
    done.map((d) => {
      const partition = partitionForRequest(d.reply.id, stack.partitions);
      return { key: { partition, resource: d.pipeline, requestId: d.reply.id }, partition };
    }),
  );

  const chained = done.flatMap((d) =>
    PIPELINES.filter((down) => upstreamPipelines(down).includes(d.pipeline)).map((down) => {
      const request = d.expected.ok ? chainedRequest(down, d.pipeline, d.expected.outputs) : undefined;
      return {
        label: `${down.metadata.name} after ${d.label}`,
        pipeline: down.metadata.name,
        id: d.reply.id,
        expected: request ? expectedAnswer(down, request) : undefined,
      };
    }),
  );
  const fed = chained.filter((c) => c.expected !== undefined);
  const chainedReplies = await Promise.all(fed.map(async (c) => (await kafkaAnswer(c.pipeline, c.id)).reply));
  expect(Object.fromEntries(fed.map((c, i) => [c.label, viewReply(chainedReplies[i]!)]))).toEqual(
    Object.fromEntries(fed.map((c) => [c.label, view(c.expected!)])),
  );
  return done;
}

describe("the sample pipelines", () => {
  it("are parsed from samples/manifests, every one answerable: each has a request the reference answers", () => {
    expect(PIPELINES.length).toBeGreaterThan(0);
    const unanswered = PIPELINES.map((p) => p.metadata.name).filter(
      (p) => !cells(0).some((c) => c.pipeline === p && c.expected.ok),
    );
    expect(unanswered).toEqual([]);
    // Each pipeline fed by another names one that is a sample too.
    for (const p of PIPELINES) for (const up of upstreamPipelines(p)) expect(BY_NAME.has(up), up).toBe(true);
  });
});

describe("every sample pipeline through the Node gateway", () => {
  const post = async (pipeline: string, body: { body: string | Buffer; headers: Record<string, string> }) => {
    const res = await fetch(`${stack.e2e.gateway.url}/v2/pipelines/${pipeline}/infer`, {
      method: "POST",
      headers: body.headers,
      body: body.body,
      signal: AbortSignal.timeout(REQUEST_MS + 5_000),
    });
    return restReply({
      status: res.status,
      headers: Object.fromEntries(res.headers),
      body: Buffer.from(await res.arrayBuffer()),
    });
  };

  it("REST JSON", async () => {
    await runMatrix(0, (c) => post(c.pipeline, jsonBody(c.request)));
  });

  it("REST binary tensors", async () => {
    await runMatrix(1, (c) => post(c.pipeline, binaryBody(c.request)));
  });

  it("gRPC ModelInfer with seldon-model: <p>.pipeline", async () => {
    const client = await grpcClient(stack.e2e.gateway.grpcAddress);
    try {
      await runMatrix(2, (c) => grpcInfer(client, c.pipeline, c.request, c.sign < 0));
    } finally {
      client.close();
    }
  });
});

describe("every sample pipeline through the Lambda handler (DynamoDB rendezvous)", () => {
  let handler: LambdaHandler;
  let dynamodb: DynamoDBClient;
  let admin: ReturnType<Kafka["admin"]>;
  let groupsBefore: string[];
  const saved: Record<string, string | undefined> = {};

  /** Groups on the broker but the test's own outside readers (`outside-…`). */
  const groups = async () =>
    (await admin.listGroups()).groups
      .map((g) => g.groupId)
      .filter((g) => !g.startsWith("outside-"))
      .sort();

  beforeAll(async () => {
    dynamodb = new DynamoDBClient({
      region: "us-east-1",
      endpoint: stack.e2e.dynamodbEndpoint,
      credentials: { accessKeyId: "local", secretAccessKey: "local" },
    });
    admin = new Kafka({ clientId: "pmatrix-admin", brokers: kafkaBrokers(), logLevel: logLevel.NOTHING }).admin();
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
    // After the Node gateway's tests: its reply readers' groups exist by now, and no other process joins one.
    groupsBefore = await groups();
    ({ handler } = (await import("../../packages/gateway/src/lambda.js")) as unknown as { handler: LambdaHandler });
    // The scheduler writes the route table to DynamoDB; wait (bounded) until the handler sees every pipeline ready.
    for (const p of PIPELINES) {
      await waitFor(
        async () =>
          (await invokeLambda(handler, `/v2/pipelines/${p.metadata.name}/ready`, { method: "GET" })).status === 200,
        { timeoutMs: 30_000, intervalMs: 200, description: `the Lambda handler seeing ${p.metadata.name} ready` },
      );
    }
  }, 120_000);

  afterAll(async () => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    await admin?.disconnect();
    dynamodb?.destroy();
  });

  const post = async (pipeline: string, body: { body: string | Buffer; headers: Record<string, string> }) =>
    restReply(await invokeLambda(handler, `/v2/pipelines/${pipeline}/infer`, body));

  /** Each answer's reply item: its own key, its pipeline, an expiresAt TTL from when the worker put it. */
  async function checkReplyItems(done: Array<Cell & { reply: Reply }>, startedS: number) {
    const items = await Promise.all(
      done.map(async (d) => {
        const key = replyItemKey(d.reply.id);
        const out = await dynamodb.send(
          new GetItemCommand({
            TableName: stack.e2e.table,
            Key: { pk: { S: key.pk }, sk: { S: key.sk } },
            ConsistentRead: true,
          }),
        );
        return out.Item;
      }),
    );
    const endedS = Math.ceil(Date.now() / 1000);
    expect(
      items.map((item) => ({
        pk: item?.pk?.S,
        pipeline: item?.pipeline?.S,
        expiresAtInRange:
          Number(item?.expiresAt?.N) >= startedS + REPLY_TTL_S && Number(item?.expiresAt?.N) <= endedS + REPLY_TTL_S,
      })),
    ).toEqual(done.map((d) => ({ pk: `reply#${d.reply.id}`, pipeline: d.pipeline, expiresAtInRange: true })));
  }

  it("REST JSON; one reply item per request, with expiresAt", async () => {
    const startedS = Math.floor(Date.now() / 1000);
    const done = await runMatrix(3, (c) => post(c.pipeline, jsonBody(c.request)));
    await checkReplyItems(done, startedS);
  });

  it("REST binary tensors; one reply item per request, with expiresAt", async () => {
    const startedS = Math.floor(Date.now() / 1000);
    const done = await runMatrix(4, (c) => post(c.pipeline, binaryBody(c.request)));
    await checkReplyItems(done, startedS);
  });

  it("the handler created no consumer group", async () => {
    expect(await groups()).toEqual(groupsBefore);
  });
});
