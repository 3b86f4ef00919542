import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { createLambdaApp } from "@tern/gateway";
import { handle } from "hono/aws-lambda";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { invokeLambda, type LambdaHandler } from "../helpers/lambda-event.js";
import { type E2eStack, serverManifest, startE2eStack } from "./harness.js";
import { inferIris, irisRequest, knownIrisRows, parseIrisAnswer } from "./iris-data.js";

// Scale to zero and back (issue 14, docs/autoscaling.md) with real processes: a scheduler with short autoscaling
// windows, two agents and the gateway; last, the Lambda entry (its app as lambda.ts builds it, on synthetic API Gateway
// events) reading the scheduler's route item in DynamoDB Local. The tests run in order on one stack.

const rows = knownIrisRows();
let stack: E2eStack;

const IDLE_WINDOW_MS = 1_500;

beforeAll(async () => {
  stack = await startE2eStack({
    name: "autoscale",
    agents: 2,
    schedulerEnv: {
      TERN_AUTOSCALE_IDLE_WINDOW_MS: String(IDLE_WINDOW_MS),
      TERN_AUTOSCALE_SCALE_UP_WINDOW_MS: "60000",
      TERN_AUTOSCALE_COOLDOWN_MS: "500",
    },
  });
});

afterAll(async () => {
  await stack?.close();
});

function irisAutoscaled(): string {
  return `apiVersion: mlops.seldon.io/v1alpha1
kind: Model
metadata: {name: iris}
spec:
  storageUri: "file://./samples/models/iris"
  requirements: [onnx]
  memory: 100Ki
  replicas: 1
  minReplicas: 0
  maxReplicas: 2
`;
}

/** Loads of iris started on every running agent (its `tern_agent_model_state_changes_total{state="Loading"}`). */
async function irisLoads(): Promise<number> {
  let total = 0;
  for (const agent of stack.agents.values()) {
    const text = await (await fetch(`${agent.http}/metrics`, { signal: AbortSignal.timeout(3000) })).text();
    for (const line of text.split("\n")) {
      if (
        line.startsWith("tern_agent_model_state_changes_total{") &&
        line.includes('model="iris"') &&
        line.includes('state="Loading"')
      ) {
        total += Number(line.slice(line.lastIndexOf(" ") + 1));
      }
    }
  }
  return total;
}

/** Agents answering 200 to `GET /v2/models/iris/ready`. */
async function agentsHoldingIris(): Promise<number> {
  let n = 0;
  for (const agent of stack.agents.values()) {
    const res = await fetch(`${agent.http}/v2/models/iris/ready`, { signal: AbortSignal.timeout(3000) });
    await res.body?.cancel();
    if (res.status === 200) n++;
  }
  return n;
}

async function waitScaledDown(): Promise<void> {
  const s = await stack.waitModel(
    "iris",
    (m) => m.state === "ModelScaledDown",
    "iris ModelScaledDown after idling",
    30_000,
  );
  expect(s).toMatchObject({ replicas: 1, desiredReplicas: 0, availableReplicas: 0, placement: [] });
  expect(s.autoscaling?.lastDecision?.reason).toMatch(/served no request/);
  expect(await agentsHoldingIris()).toBe(0);
}

describe("a model with minReplicas 0, through the gateway process", () => {
  it("serves, then unloads everywhere after idling", async () => {
    await stack.apply(`${serverManifest("mlserver", 2)}---\n${irisAutoscaled()}`);
    await stack.waitModel("iris", (s) => s.state === "ModelAvailable" && s.availableReplicas === 1, "iris available");
    const { status, body } = await inferIris(stack.gateway.url, rows.slice(0, 3), 10_000);
    expect(status, JSON.stringify(body)).toBe(200);
    await waitScaledDown();
  });

  it("answers the next request correctly, waking the model within the request's deadline", async () => {
    const before = await irisLoads();
    const { status, body } = await inferIris(stack.gateway.url, rows, 20_000);
    expect(status, JSON.stringify(body)).toBe(200);
    expect(parseIrisAnswer(body).labels).toEqual(rows.map((r) => r.label));
    expect((await irisLoads()) - before).toBe(1);
    const s = await stack.modelStatus("iris");
    expect(s?.desiredReplicas).toBe(1);
    expect(s?.autoscaling?.lastDecision?.reason).toContain("a request arrived while scaled to zero");
  });

  it("wakes it with exactly one load for 50 concurrent first requests, each answered with its own class", async () => {
    await waitScaledDown();
    const before = await irisLoads();
    const answers = await Promise.all(
      Array.from({ length: 50 }, (_, i) => {
        const row = rows[i % rows.length]!;
        return inferIris(stack.gateway.url, [row], 20_000).then((r) => ({ row, ...r }));
      }),
    );
    for (const a of answers) {
      expect(a.status, JSON.stringify(a.body)).toBe(200);
      expect(parseIrisAnswer(a.body).labels).toEqual([a.row.label]);
    }
    expect((await irisLoads()) - before).toBe(1);
    expect(await agentsHoldingIris()).toBe(1);
  });
});

describe("a model with minReplicas 0, over the gateway's gRPC port", () => {
  interface Output {
    name: string;
    contents?: { int64_contents?: string[] };
  }
  type OipClient = grpc.Client & {
    ModelInfer(
      request: unknown,
      metadata: grpc.Metadata,
      options: grpc.CallOptions,
      callback: (err: grpc.ServiceError | null, res: { outputs: Output[] }) => void,
    ): void;
  };

  it("answers a ModelInfer that arrives while the model is at zero, with one load", async () => {
    await waitScaledDown();
    const before = await irisLoads();
    const proto = new URL("../../packages/core/proto/oip.proto", import.meta.url).pathname;
    const definition = await protoLoader.load(proto, { keepCase: true, longs: String, defaults: true, oneofs: true });
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      inference: { GRPCInferenceService: new (address: string, creds: grpc.ChannelCredentials) => OipClient };
    };
    const client = new loaded.inference.GRPCInferenceService(
      stack.gateway.grpcAddress,
      grpc.credentials.createInsecure(),
    );
    try {
      const request = {
        model_name: "iris",
        inputs: [
          {
            name: "predict",
            datatype: "FP32",
            shape: [rows.length, 4],
            contents: { fp32_contents: rows.flatMap((r) => r.features) },
          },
        ],
      };
      const res = await new Promise<{ outputs: Output[] }>((resolve, reject) =>
        client.ModelInfer(request, new grpc.Metadata(), { deadline: Date.now() + 20_000 }, (err, r) =>
          err ? reject(err) : resolve(r),
        ),
      );
      const label = res.outputs.find((o) => o.name === "label");
      expect(label?.contents?.int64_contents?.map(Number)).toEqual(rows.map((r) => r.label));
      expect((await irisLoads()) - before).toBe(1);
    } finally {
      client.close();
    }
  });
});

describe("a model with minReplicas 0, through the Lambda entry (routes from DynamoDB)", () => {
  /** The app lambda.ts exports (`handle(createLambdaApp(process.env, …))`), built from `extra` over the stack's table. */
  function lambdaHandler(extra: Record<string, string>): LambdaHandler {
    const env: Record<string, string | undefined> = {
      ...process.env,
      TERN_TABLE: stack.table,
      DYNAMODB_ENDPOINT: stack.dynamodbEndpoint,
      AWS_REGION: "us-east-1",
      LOG_LEVEL: "warn",
      TERN_GATEWAY_DEADLINE_MS: "20000",
      ...extra,
    };
    if (extra.TERN_SCHEDULER_URL === undefined) delete env.TERN_SCHEDULER_URL;
    return handle(createLambdaApp(env, pino({ level: "warn" }))) as unknown as LambdaHandler;
  }

  async function lambdaInfer(handler: LambdaHandler, row: (typeof rows)[number]) {
    const res = await invokeLambda(handler, "/v2/models/iris/infer", { body: irisRequest(row) });
    return { status: res.status, body: JSON.parse(res.body.toString("utf8")) as unknown };
  }

  it("without TERN_SCHEDULER_URL answers 503 saying the model is scaled to zero and it cannot wake it", async () => {
    await waitScaledDown();
    const before = await irisLoads();
    const handler = lambdaHandler({});
    const { status, body } = await lambdaInfer(handler, rows[0]!);
    expect({ status, body }).toEqual({
      status: 503,
      body: { error: "model iris is scaled to zero and this gateway cannot wake it (TERN_SCHEDULER_URL unset)" },
    });
    // Nothing was asked of the scheduler: still at zero, no load.
    expect(await stack.modelStatus("iris")).toMatchObject({ state: "ModelScaledDown", desiredReplicas: 0 });
    expect((await irisLoads()) - before).toBe(0);
  });

  it("with TERN_SCHEDULER_URL wakes it: 20 concurrent first requests answered right, one load", async () => {
    await waitScaledDown();
    const before = await irisLoads();
    const handler = lambdaHandler({ TERN_SCHEDULER_URL: stack.scheduler.url, TERN_GATEWAY_ROUTE_CACHE_MS: "1000" });
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => {
        const row = rows[i % rows.length]!;
        return lambdaInfer(handler, row).then((r) => ({ row, ...r }));
      }),
    );
    for (const a of answers) {
      expect(a.status, JSON.stringify(a.body)).toBe(200);
      expect(parseIrisAnswer(a.body).labels).toEqual([a.row.label]);
    }
    expect((await irisLoads()) - before).toBe(1);
    const s = await stack.modelStatus("iris");
    expect(s?.autoscaling?.lastDecision?.reason).toContain("a request arrived while scaled to zero");
  });
});
