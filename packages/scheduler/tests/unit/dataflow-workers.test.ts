import { createHashRing, type WorkerAssignments } from "@tern/core";
import { afterEach, describe, expect, it } from "vitest";
import { loadState } from "../../src/persistence.js";
import { createHarness, type Harness } from "./helpers.js";

let h: Harness;
let standby: Harness | undefined;
afterEach(async () => {
  await standby?.scheduler.stop();
  standby = undefined;
  await h?.close();
});

function pipelineYaml(name: string, step = "m"): string {
  return `apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: ${name}}
spec:
  steps:
    - name: ${step}
  output:
    steps: [${step}]
`;
}

/** Registers a dataflow worker and follows its assignments, like the real one will over SSE. */
async function worker(id: string): Promise<{ received: WorkerAssignments[]; pipelines(): string[] }> {
  const received: WorkerAssignments[] = [];
  await h.scheduler.workers.register({ kind: "dataflow", id });
  h.scheduler.workers.watch("dataflow", id, { assignments: (a) => received.push(a), close() {} });
  return { received, pipelines: () => (received.at(-1)?.pipelines ?? []).map((p) => p.pipeline) };
}

const owners = (name: string) => h.scheduler.snapshot().pipelines.get(name)?.owners;
const names = (n: number) => Array.from({ length: n }, (_, i) => `p${i}`);

describe("dataflow workers and pipeline placement", () => {
  it("gives the only dataflow worker every pipeline, with its version and consumer group", async () => {
    h = await createHarness({ dataPlane: { replication: 2 } });
    await h.apply(pipelineYaml("chain"));
    expect(owners("chain")).toBeUndefined();
    const w = await worker("dataflow-0");
    expect(owners("chain")).toEqual(["dataflow-0"]);
    expect(w.received[0]).toMatchObject({
      kind: "dataflow",
      id: "dataflow-0",
      partitions: 4,
      buckets: [],
      pipelines: [
        { pipeline: "chain", version: 1, groupId: "tern.default.dataflow.pipeline.chain", owners: ["dataflow-0"] },
      ],
    });
  });

  it("places each pipeline on min(workers, replication) workers as they join, the ring's owners in ring order", async () => {
    h = await createHarness({ dataPlane: { replication: 2 } });
    for (const p of names(12)) await h.apply(pipelineYaml(p));
    const w0 = await worker("dataflow-0");
    const w1 = await worker("dataflow-1");
    // Fewer workers than the replication: every set grew by the joiner.
    for (const p of names(12)) expect([...owners(p)!].sort()).toEqual(["dataflow-0", "dataflow-1"]);
    expect(w0.pipelines()).toEqual(w1.pipelines());
    const w2 = await worker("dataflow-2");
    const ring = createHashRing({ nodes: ["dataflow-0", "dataflow-1", "dataflow-2"] });
    for (const p of names(12)) expect(owners(p)).toEqual(ring.lookup(p, 2));
    for (const [id, w] of [
      ["dataflow-0", w0],
      ["dataflow-1", w1],
      ["dataflow-2", w2],
    ] as const) {
      expect(w.pipelines()).toEqual(
        names(12)
          .filter((p) => owners(p)!.includes(id))
          .sort(),
      );
    }
    // Placed is not ready: the step's model does not exist.
    expect(h.scheduler.snapshot().pipelines.get("p0")).toMatchObject({
      state: "PipelineFailed",
      reason: "step m: model m does not exist",
    });
  });

  it("tells a worker only when its own pipelines changed", async () => {
    h = await createHarness({ dataPlane: { replication: 1 } });
    for (const p of names(20)) await h.apply(pipelineYaml(p));
    const w0 = await worker("dataflow-0");
    const w1 = await worker("dataflow-1");
    const before = { w0: w0.received.length, w1: w1.received.length };
    // A pipeline applied lands on one owner: only that worker hears about it.
    await h.apply(pipelineYaml("extra"));
    const owner = owners("extra")![0];
    expect(w0.received.length - before.w0).toBe(owner === "dataflow-0" ? 1 : 0);
    expect(w1.received.length - before.w1).toBe(owner === "dataflow-1" ? 1 : 0);
  });

  it("bumps the version when a pipeline's spec changes, not when it is re-applied unchanged", async () => {
    h = await createHarness();
    const w = await worker("dataflow-0");
    await h.apply(pipelineYaml("chain"));
    await h.apply(pipelineYaml("chain"));
    expect(w.received.at(-1)!.pipelines[0]!.version).toBe(1);
    await h.apply(pipelineYaml("chain", "other"));
    expect(w.received.at(-1)!.pipelines[0]!.version).toBe(2);
    await h.scheduler.remove("Pipeline", "chain");
    expect(w.pipelines()).toEqual([]);
  });

  it("moves a worker's pipelines to the others when it stops heartbeating, changing only the sets it was in", async () => {
    h = await createHarness({ dataPlane: { replication: 2 } });
    for (const p of names(30)) await h.apply(pipelineYaml(p));
    await worker("dataflow-0");
    await worker("dataflow-1");
    await worker("dataflow-2");
    const before = new Map(names(30).map((p) => [p, owners(p)!]));
    h.clock.now += 5000;
    h.scheduler.workers.heartbeat("dataflow", "dataflow-0");
    h.scheduler.workers.heartbeat("dataflow", "dataflow-1");
    h.clock.now += 2000;
    await h.scheduler.checkHeartbeats();
    expect(h.scheduler.workers.view("dataflow", "dataflow-2")).toBeUndefined();
    for (const p of names(30)) {
      if (before.get(p)!.includes("dataflow-2")) expect([...owners(p)!].sort()).toEqual(["dataflow-0", "dataflow-1"]);
      else expect(owners(p)).toEqual(before.get(p));
    }
  });

  it("keeps pipelines off model gateways and buckets off dataflow workers", async () => {
    h = await createHarness({ dataPlane: { buckets: 4 } });
    await h.apply(pipelineYaml("chain"));
    const received: WorkerAssignments[] = [];
    await h.scheduler.workers.register({ kind: "modelgateway", id: "modelgateway-0" });
    h.scheduler.workers.watch("modelgateway", "modelgateway-0", { assignments: (a) => received.push(a), close() {} });
    expect(received.at(-1)!.pipelines).toEqual([]);
    expect(owners("chain")).toBeUndefined();
    const w = await worker("dataflow-0");
    expect(w.received.at(-1)!.buckets).toEqual([]);
    expect(owners("chain")).toEqual(["dataflow-0"]);
  });

  it("stores the owners in the pipeline records, so a standby serves the same assignments", async () => {
    h = await createHarness({ dataPlane: { replication: 2 } });
    for (const p of names(10)) await h.apply(pipelineYaml(p));
    await worker("dataflow-0");
    await worker("dataflow-1");
    const w2 = await worker("dataflow-2");
    const stored = await loadState(h.store);
    for (const p of names(10)) {
      expect(owners(p)).toHaveLength(2);
      expect(stored.state.pipelines.get(p)!.owners).toEqual(owners(p));
    }
    await h.scheduler.stop();

    standby = await createHarness({ store: h.store, dataPlane: { replication: 2 } });
    const again: WorkerAssignments[] = [];
    standby.scheduler.workers.watch("dataflow", "dataflow-2", { assignments: (a) => again.push(a), close() {} });
    expect(again[0]!.pipelines).toEqual(w2.received.at(-1)!.pipelines);
  });

  it("reports the replication, each worker's pipelines and each pipeline's owners in the dataflow status", async () => {
    h = await createHarness({ dataPlane: { replication: 2 } });
    await h.apply(pipelineYaml("b"));
    await h.apply(pipelineYaml("a"));
    const failed = { state: "PipelineFailed", reason: "step m: model m does not exist" };
    expect(h.scheduler.workers.status("dataflow").pipelines).toEqual([
      { pipeline: "a", version: 1, groupId: "tern.default.dataflow.pipeline.a", owners: [], ...failed },
      { pipeline: "b", version: 1, groupId: "tern.default.dataflow.pipeline.b", owners: [], ...failed },
    ]);
    await worker("dataflow-0");
    const status = h.scheduler.workers.status("dataflow");
    expect(status.replication).toBe(2);
    expect(status.replicas.map((r) => [r.id, r.pipelines])).toEqual([["dataflow-0", ["a", "b"]]]);
    expect(status.pipelines!.map((p) => p.owners)).toEqual([["dataflow-0"], ["dataflow-0"]]);
    expect(h.scheduler.workers.status("modelgateway").pipelines).toBeUndefined();
  });
});
