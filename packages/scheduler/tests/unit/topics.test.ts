import { createMemoryTopicAdmin, type MemoryTopicAdmin, type ModelStatus } from "@tern/core";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { DataPlaneOptions } from "../../src/data-plane.js";
import { KAFKA_UNREACHABLE_REASON } from "../../src/topics.js";
import { createHarness, type Harness, model, server } from "./helpers.js";

let h: Harness;
afterEach(async () => {
  await h?.close();
});

const IRIS_TOPICS = [
  "seldon.default.model.iris.inputs",
  "seldon.default.model.iris.outputs",
  "seldon.default.errors.errors",
];

async function setup(admin: MemoryTopicAdmin | undefined, extra: DataPlaneOptions = {}): Promise<void> {
  h = await createHarness({
    dataPlane: {
      partitions: 4,
      buckets: 2,
      ...(admin === undefined ? {} : { topicAdmin: admin }),
      topicRetry: { initialMs: 5, maxMs: 20 },
      ...extra,
    },
  });
  await h.apply(server("onnx", 1));
  await h.agent("onnx", 0);
}

async function serve(name: string): Promise<void> {
  await h.apply(model(name));
  await h.settle();
  await h.scheduler.topicsIdle();
}

function status(name: string): ModelStatus {
  return h.scheduler.get("Model", name) as ModelStatus;
}

describe("topic lifecycle", () => {
  it("creates the model's topics and the errors topic with KAFKA_PARTITIONS partitions once it is available", async () => {
    const admin = createMemoryTopicAdmin();
    await setup(admin);
    await serve("iris");
    expect(Object.fromEntries(admin.topics)).toEqual(Object.fromEntries(IRIS_TOPICS.map((t) => [t, 4])));
    expect(status("iris")).toMatchObject({ state: "ModelAvailable" });
    expect(status("iris").reason).toBeUndefined();
    expect(h.scheduler.snapshot().models.get("iris")!.topics).toEqual({ ready: true });
  });

  it("keeps a model whose topic has another partition count servable over HTTP, its reason naming the topic and both counts", async () => {
    const admin = createMemoryTopicAdmin();
    admin.createExternally("seldon.default.model.iris.outputs", 1);
    await setup(admin);
    await serve("iris");
    expect(status("iris").state).toBe("ModelAvailable");
    expect(status("iris").reason).toMatch(/seldon\.default\.model\.iris\.outputs has 1 partitions.* uses 4/);
    expect(h.scheduler.routes().models.iris).toBeDefined();
    // Its bucket leaves it out: no model gateway may consume a topic with the wrong partition count.
    await h.scheduler.workers.register({ kind: "modelgateway", id: "mg-0" });
    expect([...h.scheduler.snapshot().buckets.values()].flatMap((b) => b.models)).toEqual([]);
  });

  it("says Kafka is unreachable while the broker is down, keeps serving, and recovers on a retry", async () => {
    const admin = createMemoryTopicAdmin();
    admin.setDown(true);
    await setup(admin);
    await serve("iris");
    expect(status("iris")).toMatchObject({ state: "ModelAvailable", reason: KAFKA_UNREACHABLE_REASON });
    // Other models are reconciled meanwhile: the failing topic work never holds the queue.
    await serve("wine");
    expect(status("wine").state).toBe("ModelAvailable");
    admin.setDown(false);
    await vi.waitFor(() => expect(status("iris").reason).toBeUndefined(), { timeout: 5000, interval: 10 });
    await vi.waitFor(() => expect(status("wine").reason).toBeUndefined(), { timeout: 5000, interval: 10 });
    expect(admin.topics.get("seldon.default.model.iris.inputs")).toBe(4);
  });

  it("never holds up reconciliation while the broker hangs: models become available meanwhile", async () => {
    const admin = createMemoryTopicAdmin();
    const calls: string[][] = [];
    // A broker that accepts the connection and never answers.
    const hanging = {
      ...admin,
      ensureTopics: (topics: string[]) => {
        calls.push(topics);
        return new Promise<never>(() => {});
      },
    };
    h = await createHarness({ dataPlane: { partitions: 4, topicAdmin: hanging } });
    await h.apply(server("onnx", 1));
    await h.agent("onnx", 0);
    await h.apply(model("iris"));
    await h.settle();
    await h.apply(model("wine"));
    await h.settle();
    expect([status("iris").state, status("wine").state]).toEqual(["ModelAvailable", "ModelAvailable"]);
    await vi.waitFor(() => expect(calls.map((t) => t[0])).toContain("seldon.default.model.wine.inputs"), {
      timeout: 5000,
      interval: 10,
    });
  });

  it("deletes a deleted model's topics when cleanTopicsOnDelete is set, and keeps the errors topic", async () => {
    const admin = createMemoryTopicAdmin();
    await setup(admin, { cleanTopicsOnDelete: true });
    await serve("iris");
    await h.scheduler.remove("Model", "iris");
    await h.settle();
    expect(h.scheduler.get("Model", "iris")).toBeUndefined();
    await vi.waitFor(() => expect([...admin.topics.keys()]).toEqual(["seldon.default.errors.errors"]), {
      timeout: 5000,
      interval: 10,
    });
  });

  it("keeps a deleted model's topics by default", async () => {
    const admin = createMemoryTopicAdmin();
    await setup(admin);
    await serve("iris");
    await h.scheduler.remove("Model", "iris");
    await h.settle();
    await h.scheduler.topicsIdle();
    expect(h.scheduler.get("Model", "iris")).toBeUndefined();
    expect([...admin.topics.keys()].sort()).toEqual([...IRIS_TOPICS].sort());
  });

  it("reports Kafka as not configured without a topic admin, and models serve with no Kafka reason", async () => {
    await setup(undefined);
    await serve("iris");
    expect(status("iris").reason).toBeUndefined();
    expect(h.scheduler.workers.status("modelgateway")).toMatchObject({ kafkaConfigured: false, partitions: 4 });
  });
});
