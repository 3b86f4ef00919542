import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type E2eStack, serverManifest, startE2eStack } from "./harness.js";
import { inferIris, knownIrisRows, parseIrisAnswer } from "./iris-data.js";

// Scale to zero and back (issue 14, docs/autoscaling.md) with real processes: a scheduler with short autoscaling
// windows, two agents and the gateway. The tests run in order on one stack.

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
