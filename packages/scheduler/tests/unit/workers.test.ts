import type { WorkerAssignments } from "@tern/core";
import { afterEach, describe, expect, it } from "vitest";
import { bucketOf } from "../../src/bucket-placement.js";
import { loadState } from "../../src/persistence.js";
import { createHarness, type Harness, model, server } from "./helpers.js";

let h: Harness;
let standby: Harness | undefined;
afterEach(async () => {
  await standby?.scheduler.stop();
  standby = undefined;
  await h?.close();
});

/** Registers a model gateway and follows its assignments, like the real one does over SSE. */
async function gateway(id: string): Promise<{ received: WorkerAssignments[]; buckets(): number[] }> {
  const received: WorkerAssignments[] = [];
  await h.scheduler.workers.register({ kind: "modelgateway", id });
  h.scheduler.workers.watch("modelgateway", id, { assignments: (a) => received.push(a), close() {} });
  return { received, buckets: () => (received.at(-1)?.buckets ?? []).map((b) => b.bucket) };
}

const all = (n: number) => Array.from({ length: n }, (_, b) => b);

describe("data-plane workers", () => {
  it("gives the only model gateway every bucket at once, each with its consumer group", async () => {
    h = await createHarness({ dataPlane: { buckets: 4 } });
    const g = await gateway("modelgateway-0");
    expect(g.received).toHaveLength(1);
    expect(g.buckets()).toEqual(all(4));
    expect(g.received[0]!.buckets[2]!.groupId).toBe("tern.default.modelgateway.bucket-2");
    expect(g.received[0]).toMatchObject({ kind: "modelgateway", id: "modelgateway-0", partitions: 4 });
  });

  it("spreads the buckets when a second gateway joins, telling the first what it lost", async () => {
    h = await createHarness({ dataPlane: { buckets: 16 } });
    const g0 = await gateway("modelgateway-0");
    const g1 = await gateway("modelgateway-1");
    expect(g0.received).toHaveLength(2);
    expect(g1.buckets().length).toBeGreaterThan(0);
    expect([...g0.buckets(), ...g1.buckets()].sort((a, b) => a - b)).toEqual(all(16));
    const status = h.scheduler.workers.status("modelgateway");
    expect(status.replicas.map((r) => [r.id, r.state, r.buckets])).toEqual([
      ["modelgateway-0", "Ready", g0.buckets()],
      ["modelgateway-1", "Ready", g1.buckets()],
    ]);
    expect(status.buckets!.every((b) => b.consumers === 1)).toBe(true);
  });

  it("adds a model that becomes available to its bucket, with its topics, for the bucket's owner only", async () => {
    h = await createHarness({ dataPlane: { buckets: 4 } });
    const g = await gateway("modelgateway-0");
    await h.apply(server("onnx", 1));
    await h.agent("onnx", 0);
    expect(g.received).toHaveLength(1);
    await h.apply(model("iris"));
    await h.settle();
    const bucket = g.received.at(-1)!.buckets.find((b) => b.bucket === bucketOf("iris", 4))!;
    expect(bucket.models).toEqual([
      {
        model: "iris",
        inputTopic: "seldon.default.model.iris.inputs",
        outputTopic: "seldon.default.model.iris.outputs",
      },
    ]);
  });

  it("removes a gateway that stops heartbeating and moves its buckets to the others", async () => {
    h = await createHarness({ dataPlane: { buckets: 8 } });
    const g0 = await gateway("modelgateway-0");
    await gateway("modelgateway-1");
    h.clock.now += 5000;
    expect(h.scheduler.workers.heartbeat("modelgateway", "modelgateway-0")).toBe(true);
    h.clock.now += 2000;
    await h.scheduler.checkHeartbeats();
    expect(h.scheduler.workers.view("modelgateway", "modelgateway-1")).toBeUndefined();
    expect(h.scheduler.workers.heartbeat("modelgateway", "modelgateway-1")).toBe(false);
    expect(g0.buckets()).toEqual(all(8));
  });

  it("refuses a model gateway beyond the partition count, naming both numbers, but lets a known one re-register", async () => {
    h = await createHarness({ dataPlane: { partitions: 2 } });
    await gateway("modelgateway-0");
    await gateway("modelgateway-1");
    await expect(h.scheduler.workers.register({ kind: "modelgateway", id: "modelgateway-2" })).rejects.toMatchObject({
      code: "conflict",
      message: expect.stringMatching(/modelgateway-2 refused: 2 model-gateway replicas .* KAFKA_PARTITIONS is 2/),
    });
    await h.scheduler.workers.register({ kind: "modelgateway", id: "modelgateway-1" });
    // Dataflow workers are another kind: the model gateways' cap does not count them.
    await h.scheduler.workers.register({ kind: "dataflow", id: "dataflow-0" });
    expect(h.scheduler.workers.status("modelgateway").replicas).toHaveLength(2);
  });

  it("stores workers and buckets, so a standby taking over serves the same assignments", async () => {
    h = await createHarness({ dataPlane: { buckets: 8 } });
    const g0 = await gateway("modelgateway-0");
    const g1 = await gateway("modelgateway-1");
    await h.scheduler.workers.register({ kind: "dataflow", id: "dataflow-0" });
    const stored = await loadState(h.store);
    expect([...stored.state.workers.keys()].sort()).toEqual([
      "dataflow/dataflow-0",
      "modelgateway/modelgateway-0",
      "modelgateway/modelgateway-1",
    ]);
    expect(stored.state.buckets.size).toBe(8);
    await h.scheduler.stop();

    standby = await createHarness({ store: h.store, dataPlane: { buckets: 8 } });
    expect(standby.scheduler.snapshot().buckets).toEqual(stored.state.buckets);
    const again: WorkerAssignments[] = [];
    standby.scheduler.workers.watch("modelgateway", "modelgateway-1", {
      assignments: (a) => again.push(a),
      close() {},
    });
    expect(again[0]!.buckets).toEqual(g1.received.at(-1)!.buckets);
    expect(g0.buckets().length + again[0]!.buckets.length).toBe(8);
  });

  it("ends a worker's stream and moves its buckets when it leaves", async () => {
    h = await createHarness({ dataPlane: { buckets: 4 } });
    let closed = false;
    await h.scheduler.workers.register({ kind: "modelgateway", id: "mg-a" });
    h.scheduler.workers.watch("modelgateway", "mg-a", { assignments() {}, close: () => (closed = true) });
    const g = await gateway("mg-b");
    await h.scheduler.workers.remove("modelgateway", "mg-a");
    expect(closed).toBe(true);
    expect(g.buckets()).toEqual(all(4));
    await expect(h.scheduler.workers.remove("modelgateway", "mg-a")).rejects.toMatchObject({ code: "not_found" });
  });
});
