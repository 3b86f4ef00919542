import * as protoLoader from "@grpc/proto-loader";
import { OIP_LOADER_OPTIONS, OIP_PROTO_PATH } from "@tern/agent";
import { waitFor } from "@tern/devstack";
import { bucketOf } from "@tern/scheduler";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type E2eStack, irisManifest, serverManifest, startE2eStack } from "../e2e/harness.js";
import { createOutsideKafka, type OutsideKafka, type OutsideRecord } from "../helpers/outside-kafka.js";
import { kafkaBrokers } from "../helpers/services.js";
import { type ModelGatewayProcess, startModelGatewayProcess } from "./model-gateway-process.js";

// protobufjs through proto-loader: an OIP encoder independent of Tern's codec.
const definition = protoLoader.loadSync(OIP_PROTO_PATH, OIP_LOADER_OPTIONS);
const infer = (definition["inference.GRPCInferenceService"] as protoLoader.ServiceDefinition).ModelInfer!;

const ROWS = [
  { features: [5.1, 3.5, 1.4, 0.2], label: 0 },
  { features: [7.0, 3.2, 4.7, 1.4], label: 1 },
  { features: [6.3, 3.3, 6.0, 2.5], label: 2 },
];

function irisRequest(id: string, rows = ROWS, inputName = "predict"): Buffer {
  return infer.requestSerialize({
    model_name: "iris",
    id,
    inputs: [
      {
        name: inputName,
        datatype: "FP32",
        shape: [rows.length, 4],
        contents: { fp32_contents: rows.flatMap((r) => r.features) },
      },
    ],
  });
}

function labels(record: OutsideRecord): number[] {
  const response = infer.responseDeserialize(record.value) as {
    outputs: Array<{ name: string; contents: { int64_contents: string[] } }>;
  };
  return response.outputs.find((o) => o.name === "label")!.contents.int64_contents.map(Number);
}

const namespace = `mgw${Date.now().toString(36)}`;
const inputs = `seldon.${namespace}.model.iris.inputs`;
const outputs = `seldon.${namespace}.model.iris.outputs`;
const errors = `seldon.${namespace}.errors.errors`;

let stack: E2eStack;
let outside: OutsideKafka;
const gateways: ModelGatewayProcess[] = [];

async function startGateway(id: string): Promise<ModelGatewayProcess> {
  const g = await startModelGatewayProcess({
    id,
    schedulerUrl: stack.scheduler.url,
    brokers: kafkaBrokers(),
    env: { TERN_NAMESPACE: namespace, KAFKA_PARTITIONS: "4", LOG_LEVEL: "warn" },
  });
  gateways.push(g);
  return g;
}

interface ModelGatewayStatus {
  replicas: Array<{ id: string; buckets: number[] }>;
  buckets: Array<{ bucket: number; owner?: string; models: string[] }>;
}
const status = async () =>
  (await (await fetch(`${stack.scheduler.url}/v1/workers/modelgateway`)).json()) as ModelGatewayStatus;

beforeAll(async () => {
  stack = await startE2eStack({
    name: "mgw",
    agents: 2,
    schedulerEnv: {
      KAFKA_BROKERS: kafkaBrokers().join(","),
      KAFKA_PARTITIONS: "4",
      TERN_NAMESPACE: namespace,
      TERN_MODELGATEWAY_BUCKETS: "16",
    },
  });
  await stack.apply(serverManifest("mlserver", 2));
  await stack.apply(irisManifest(2));
  await stack.waitModel("iris", (s) => s.state === "ModelAvailable" && s.availableReplicas === 2, "iris available");
  await waitFor(async () => (await status()).buckets.some((b) => b.models.includes("iris")), {
    timeoutMs: 20_000,
    intervalMs: 100,
    description: "iris's topics created and iris in its bucket",
  });
  outside = await createOutsideKafka(kafkaBrokers(), namespace);
}, 120_000);

afterAll(async () => {
  await outside?.close();
  for (const g of gateways) g.kill("SIGKILL");
  await Promise.all(gateways.map((g) => g.exited));
  await stack?.close();
});

describe("the model gateway on the real broker, with an outside Kafka client", () => {
  it("answers iris rows put on partition 2 on partition 2 of the outputs topic, same key, headers kept", async () => {
    await startGateway("modelgateway-0");
    const seen = await outside.read([outputs, errors]);
    const key = "2.iris.outside-1";
    await outside.send(inputs, 2, key, irisRequest("outside-1"), { "x-request-id": "client-1", "x-team": "ml" });
    const answer = await waitFor(() => seen.find((r) => r.key === key && r.topic === outputs), {
      timeoutMs: 30_000,
      intervalMs: 50,
      description: "iris's answer on the outputs topic",
    });
    expect(answer.partition).toBe(2);
    expect(answer.headers["x-request-id"]).toBe("client-1");
    expect(answer.headers["x-team"]).toBe("ml");
    expect(answer.headers["seldon-pipeline-errors"]).toBeUndefined();
    expect(labels(answer)).toEqual(ROWS.map((r) => r.label));
  }, 60_000);

  it("answers an unknown tensor with an error record carrying the agent's message, also on the errors topic", async () => {
    const seen = await outside.read([outputs, errors]);
    const key = "1.iris.outside-bad";
    await outside.send(inputs, 1, key, irisRequest("outside-bad", ROWS, "nope"), { "x-request-id": "bad-1" });
    const both = await waitFor(
      () => {
        const found = seen.filter((r) => r.key === key);
        return found.length >= 2 ? found : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 50, description: "error records on outputs and errors" },
    );
    const onOutputs = both.find((r) => r.topic === outputs)!;
    const onErrors = both.find((r) => r.topic === errors)!;
    expect(onOutputs.partition).toBe(1);
    expect(onOutputs.headers["seldon-pipeline-errors"]).toBe("iris");
    expect(onOutputs.headers["tern-error-status"]).toBe("INVALID_ARGUMENT");
    expect(onOutputs.headers["tern-error"]).toContain("nope");
    expect(onErrors.value.toString()).toBe(onOutputs.headers["tern-error"]);
    expect(onErrors.headers["x-request-id"]).toBe("bad-1");
  }, 60_000);

  it("spreads buckets over two replicas and loses no request when one is SIGKILLed", async () => {
    const second = await startGateway("modelgateway-1");
    await waitFor(
      async () => {
        const s = await status();
        return s.replicas.length === 2 && s.replicas.every((r) => r.buckets.length > 0);
      },
      { timeoutMs: 20_000, intervalMs: 100, description: "both model gateways own buckets" },
    );
    const owner = (await status()).buckets.find((b) => b.models.includes("iris"))!.owner!;
    const victim = gateways.find((g) => g.id === owner)!;
    const seen = await outside.read([outputs]);
    const produced: string[] = [];
    const produce = async (n: number, from: number) => {
      for (let i = from; i < from + n; i++) {
        const partition = i % 4;
        const key = `${partition}.iris.kill-${i}`;
        produced.push(key);
        await outside.send(inputs, partition, key, irisRequest(`kill-${i}`, [ROWS[i % 3]!]));
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    await produce(50, 0);
    victim.kill("SIGKILL");
    const killedAt = Date.now();
    await produce(100, 50);
    const answered = await waitFor(
      () => {
        const keys = new Set(seen.map((r) => r.key));
        return produced.every((k) => keys.has(k)) ? keys : undefined;
      },
      { timeoutMs: 45_000, intervalMs: 100, description: `all ${produced.length} requests answered after the kill` },
    );
    const lastAnswerAfterKill = Date.now() - killedAt;
    const wrong = seen.filter((r) => {
      const i = Number(r.key.split("kill-")[1]);
      return Number.isFinite(i) && labels(r)[0] !== ROWS[i % 3]!.label;
    });
    console.log(
      `[model-gateway] SIGKILL of ${victim.id}: ${produced.length} produced, ${answered.size} answered (${seen.length} records incl. duplicates), ` +
        `all answered ${lastAnswerAfterKill} ms after the kill; ${second.id} took over`,
    );
    expect(wrong).toEqual([]);
    expect(produced.length).toBe(150);
  }, 120_000);

  it.each([
    ["in another bucket", false],
    ["in iris's own bucket", true],
  ])(
    "keeps answering iris while a model %s is applied",
    async (_where, sameBucket) => {
      const irisBucketNumber = bucketOf("iris", 16);
      let name = "";
      for (let k = 0; ; k++) {
        name = `iris-b${k}`;
        if ((bucketOf(name, 16) === irisBucketNumber) === sameBucket) break;
      }
      const seen = await outside.read([outputs]);
      const produced: string[] = [];
      let applied = 0;
      const traffic = (async () => {
        for (let i = 0; i < 240; i++) {
          const key = `${i % 4}.iris.steady-${name}-${i}`;
          produced.push(key);
          await outside.send(inputs, i % 4, key, irisRequest(`steady-${name}-${i}`, [ROWS[0]!]));
          await new Promise((r) => setTimeout(r, 25));
        }
      })();
      await new Promise((r) => setTimeout(r, 1500));
      applied = Date.now();
      await stack.apply(irisManifest(1).replace("name: iris}", `name: ${name}}`));
      await stack.waitModel(name, (s) => s.state === "ModelAvailable", `${name} available`);
      await waitFor(async () => (await status()).buckets.some((b) => b.models.includes(name)), {
        timeoutMs: 20_000,
        intervalMs: 100,
        description: `${name} in its bucket`,
      });
      await traffic;
      await waitFor(
        () => {
          const keys = new Set(seen.map((r) => r.key));
          return produced.every((k) => keys.has(k)) || undefined;
        },
        { timeoutMs: 30_000, intervalMs: 100, description: "every steady request answered" },
      );
      const arrivals = seen
        .filter((r) => r.key.includes(`.iris.steady-${name}-`))
        .map((r) => r.at)
        .sort((a, b) => a - b);
      let maxGap = 0;
      for (let i = 1; i < arrivals.length; i++) maxGap = Math.max(maxGap, arrivals[i]! - arrivals[i - 1]!);
      const irisBucket = (await status()).buckets.find((b) => b.models.includes("iris"))!;
      console.log(
        `[model-gateway] applying ${name} under ${produced.length} steady iris requests (one per 25 ms): ` +
          `longest gap between iris answers ${maxGap} ms; ${name} ${irisBucket.models.includes(name) ? "shares" : "does not share"} ` +
          `iris's bucket ${irisBucket.bucket}; applied at +${applied - arrivals[0]!} ms`,
      );
      expect(irisBucket.models.includes(name)).toBe(sameBucket);
    },
    120_000,
  );

  it("drains on SIGTERM: exits 0 and leaves at once, so its buckets are free without waiting for a timeout", async () => {
    const live = gateways.filter((g) => !g.hasExited());
    expect(live.length).toBeGreaterThan(0);
    for (const g of live) g.kill("SIGTERM");
    const codes = await Promise.all(live.map((g) => g.exited));
    expect(codes).toEqual(live.map(() => 0));
    const after = await status();
    expect(after.replicas).toEqual([]);
    expect(after.buckets.every((b) => b.owner === undefined)).toBe(true);
  }, 60_000);
});
