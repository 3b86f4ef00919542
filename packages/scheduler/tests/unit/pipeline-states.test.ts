import type { ModelState, PipelineResource, PipelineRunReport, WorkerReport } from "@tern/core";
import { describe, expect, it } from "vitest";
import { placePipelines } from "../../src/pipeline-placement.js";
import {
  DEFAULT_JOIN_WINDOW_MS,
  derivePipelineStates,
  externalPipelines,
  type PipelineStateInputs,
  pipelineDeadlineDue,
} from "../../src/pipeline-states.js";
import {
  type ClusterState,
  emptyClusterState,
  type ModelRecord,
  type PipelineRecord,
  workerId,
} from "../../src/records.js";

const T0 = 1_000_000;
const HEARTBEAT_TIMEOUT = 6000;

function model(name: string, state: ModelState = "ModelAvailable", reason?: string): ModelRecord {
  const serving = state === "ModelAvailable";
  const record: ModelRecord = {
    name,
    resource: {
      apiVersion: "mlops.seldon.io/v1alpha1",
      kind: "Model",
      metadata: { name },
      spec: { storageUri: "file:///m" },
    },
    versions: [
      {
        version: 1,
        specKey: "k",
        storageUri: "file:///m",
        memoryBytes: 1,
        requirements: [],
        parameters: [],
        server: "s",
        replicas: serving ? [{ server: "s", replica: 0, state: "Available" }] : [],
      },
    ],
    deleting: false,
    state,
    topics: { ready: true },
  };
  if (reason !== undefined) record.reason = reason;
  return record;
}

function pipeline(name: string, steps: string[], extra: Partial<PipelineResource["spec"]> = {}): PipelineRecord {
  return {
    name,
    resource: {
      apiVersion: "mlops.seldon.io/v1alpha1",
      kind: "Pipeline",
      metadata: { name },
      spec: { steps: steps.map((s) => ({ name: s })), ...extra },
    },
    version: 1,
    state: "PipelineCreating",
    topics: { ready: true },
  };
}

interface World {
  state: ClusterState;
  reports: Map<string, WorkerReport>;
  now: number;
  requireTopics: boolean;
  replication: number;
}

function world(): World {
  const state = emptyClusterState();
  state.models.set("a", model("a"));
  state.models.set("b", model("b"));
  state.pipelines.set("chain", pipeline("chain", ["a", "b"]));
  return { state, reports: new Map(), now: T0, requireTopics: true, replication: 2 };
}

function addWorker(w: World, id: string): void {
  w.state.workers.set(workerId("dataflow", id), { kind: "dataflow", id, registeredAt: 0 });
}

function removeWorker(w: World, id: string): void {
  w.state.workers.delete(workerId("dataflow", id));
  w.reports.delete(id);
}

function inputs(w: World): PipelineStateInputs {
  return { now: w.now, reports: w.reports, requireTopics: w.requireTopics, heartbeatTimeoutMs: HEARTBEAT_TIMEOUT };
}

/** One reconcile pass over the pipelines: placement, then states; the result becomes the world's state. */
function pass(w: World): Map<string, PipelineRecord> {
  const placed = { ...w.state, pipelines: placePipelines(w.state, { replication: w.replication }) };
  w.state = { ...w.state, pipelines: derivePipelineStates(placed, inputs(w)) };
  return w.state.pipelines;
}

function run(
  pipelineName: string,
  version: number,
  state: PipelineRunReport["state"],
  reason?: string,
): PipelineRunReport {
  return reason === undefined
    ? { pipeline: pipelineName, version, state }
    : { pipeline: pipelineName, version, state, reason };
}

/** Every owner of `p` reports `state` for `version`. */
function ownersReport(w: World, p: string, version: number, state: PipelineRunReport["state"] = "Ready"): void {
  for (const owner of w.state.pipelines.get(p)!.owners ?? [])
    w.reports.set(owner, { pipelines: [run(p, version, state)] });
}

const chain = (w: World) => w.state.pipelines.get("chain")!;

describe("pipeline states", () => {
  it("is Creating with 'no dataflow worker registered' until a worker exists", () => {
    const w = world();
    pass(w);
    expect(chain(w)).toMatchObject({ state: "PipelineCreating", reason: "no dataflow worker registered" });
  });

  it("goes Creating → Ready once every owner reports Ready for the current version", () => {
    const w = world();
    addWorker(w, "dataflow-0");
    addWorker(w, "dataflow-1");
    pass(w);
    expect(chain(w).state).toBe("PipelineCreating");
    expect(chain(w).reason).toContain("dataflow-0, dataflow-1 have not reported yet");
    w.reports.set("dataflow-0", { pipelines: [run("chain", 1, "Ready")] });
    w.reports.set("dataflow-1", { pipelines: [run("chain", 1, "Starting")] });
    pass(w);
    expect(chain(w)).toMatchObject({
      state: "PipelineCreating",
      reason: "waiting for its owners to run version 1: dataflow-1 reports Starting",
    });
    ownersReport(w, "chain", 1);
    pass(w);
    expect(chain(w).state).toBe("PipelineReady");
    expect(chain(w).reason).toBeUndefined();
    expect(chain(w).readyVersion).toBe(1);
  });

  it("does not count a Ready report of another version", () => {
    const w = world();
    addWorker(w, "dataflow-0");
    pass(w);
    w.reports.set("dataflow-0", { pipelines: [run("chain", 2, "Ready")] });
    pass(w);
    expect(chain(w)).toMatchObject({
      state: "PipelineCreating",
      reason: "waiting for its owners to run version 1: dataflow-0 has not started it",
    });
  });

  it("names a missing step model, and one that failed, as PipelineFailed", () => {
    const w = world();
    addWorker(w, "dataflow-0");
    w.state.models.delete("b");
    pass(w);
    expect(chain(w)).toMatchObject({ state: "PipelineFailed", reason: "step b: model b does not exist" });
    w.state.models.set("b", model("b", "ScheduleFailed", "1 replicas requested, server s has 0"));
    pass(w);
    expect(chain(w)).toMatchObject({
      state: "PipelineFailed",
      reason: "step b: model b is ScheduleFailed (1 replicas requested, server s has 0)",
    });
  });

  it("waits (Creating) for a model that is still loading, naming it", () => {
    const w = world();
    addWorker(w, "dataflow-0");
    w.state.models.set("a", model("a", "ModelProgressing", "0 of 1 replicas available"));
    pass(w);
    expect(chain(w)).toMatchObject({
      state: "PipelineCreating",
      reason: "model a is not available yet (0 of 1 replicas available)",
    });
  });

  it("leaves Ready when a step model becomes unavailable, and comes back once it serves again", () => {
    const w = world();
    addWorker(w, "dataflow-0");
    pass(w);
    ownersReport(w, "chain", 1);
    pass(w);
    expect(chain(w).state).toBe("PipelineReady");
    w.state.models.set("a", model("a", "ModelFailed", "load failed on s/0: bad file"));
    pass(w);
    expect(chain(w)).toMatchObject({
      state: "PipelineFailed",
      reason: "step a: model a is ModelFailed (load failed on s/0: bad file)",
    });
    w.state.models.set("a", model("a", "ModelProgressing", "0 of 1 replicas available"));
    pass(w);
    expect(chain(w)).toMatchObject({
      state: "PipelineCreating",
      reason: "model a is not available yet (0 of 1 replicas available)",
    });
    w.state.models.set("a", model("a"));
    pass(w);
    expect(chain(w).state).toBe("PipelineReady");
  });

  it("waits for the topics of the pipeline and of its step models when the scheduler manages topics", () => {
    const w = world();
    addWorker(w, "dataflow-0");
    const p = chain(w);
    delete p.topics;
    w.state.models.get("a")!.topics = {
      ready: false,
      reason: "Kafka unreachable: topics for the Kafka path not created",
    };
    pass(w);
    expect(chain(w)).toMatchObject({
      state: "PipelineFailed",
      reason: "step a: model a's topics: Kafka unreachable: topics for the Kafka path not created",
    });
    w.state.models.get("a")!.topics = { ready: true };
    pass(w);
    expect(chain(w)).toMatchObject({ state: "PipelineCreating", reason: "the pipeline's topics are being created" });
    // Without a Kafka admin the scheduler manages no topics, so they are not waited for.
    w.requireTopics = false;
    ownersReport(w, "chain", 1);
    pass(w);
    expect(chain(w).state).toBe("PipelineReady");
  });

  it("is Failed with the owner's reason when an owner reports Failed", () => {
    const w = world();
    addWorker(w, "dataflow-0");
    addWorker(w, "dataflow-1");
    pass(w);
    w.reports.set("dataflow-0", { pipelines: [run("chain", 1, "Ready")] });
    w.reports.set("dataflow-1", {
      pipelines: [run("chain", 1, "Failed", "topic seldon.default.model.b.outputs is missing")],
    });
    pass(w);
    expect(chain(w)).toMatchObject({
      state: "PipelineFailed",
      reason: "dataflow worker dataflow-1 cannot run version 1: topic seldon.default.model.b.outputs is missing",
    });
  });

  it("goes Rebalancing when the owner set changes after it was ready, and Ready once the new owner reports", () => {
    const w = world();
    w.replication = 1;
    for (let i = 0; i < 3; i++) w.state.pipelines.set(`p${i}`, pipeline(`p${i}`, ["a"]));
    addWorker(w, "dataflow-0");
    pass(w);
    w.reports.set("dataflow-0", { pipelines: [...w.state.pipelines.keys()].map((p) => run(p, 1, "Ready")) });
    pass(w);
    for (const p of w.state.pipelines.values()) expect(p.state).toBe("PipelineReady");
    addWorker(w, "dataflow-1");
    w.reports.set("dataflow-1", { pipelines: [] });
    pass(w);
    const moved = [...w.state.pipelines.values()].filter((p) => p.owners![0] === "dataflow-1");
    expect(moved.length).toBeGreaterThan(0);
    for (const p of moved) {
      expect(p.state).toBe("PipelineRebalancing");
      expect(p.reason).toContain("dataflow-1 has not started it");
      expect(p.reason).toContain("dataflow-0 still runs it (no longer an owner)");
    }
    for (const p of w.state.pipelines.values()) if (!moved.includes(p)) expect(p.state).toBe("PipelineReady");
    // The new owner takes them; the old one still reports them (draining): not settled yet.
    w.reports.set("dataflow-1", { pipelines: moved.map((p) => run(p.name, 1, "Ready")) });
    pass(w);
    for (const p of moved) expect(w.state.pipelines.get(p.name)!.state).toBe("PipelineRebalancing");
    // The old owner lets them go.
    w.reports.set("dataflow-0", {
      pipelines: [...w.state.pipelines.values()]
        .filter((p) => p.owners![0] === "dataflow-0")
        .map((p) => run(p.name, 1, "Ready")),
    });
    pass(w);
    for (const p of w.state.pipelines.values()) expect(p.state).toBe("PipelineReady");
  });

  it("goes Rebalancing when an owner leaves, and Ready when the remaining set reports", () => {
    const w = world();
    w.replication = 2;
    for (const id of ["dataflow-0", "dataflow-1", "dataflow-2"]) addWorker(w, id);
    pass(w);
    ownersReport(w, "chain", 1);
    for (const id of ["dataflow-0", "dataflow-1", "dataflow-2"])
      if (!w.reports.has(id)) w.reports.set(id, { pipelines: [] });
    pass(w);
    expect(chain(w).state).toBe("PipelineReady");
    const gone = chain(w).owners![0]!;
    removeWorker(w, gone);
    pass(w);
    expect(chain(w).state).toBe("PipelineRebalancing");
    ownersReport(w, "chain", 1);
    pass(w);
    expect(chain(w).state).toBe("PipelineReady");
  });

  it("keeps Ready while a new leader has not heard from the owners yet, and decides once they report", () => {
    const w = world();
    addWorker(w, "dataflow-0");
    pass(w);
    ownersReport(w, "chain", 1);
    pass(w);
    expect(chain(w).state).toBe("PipelineReady");
    // A new leader: same stored state, no reports yet.
    w.reports = new Map();
    pass(w);
    expect(chain(w).state).toBe("PipelineReady");
    w.reports.set("dataflow-0", { pipelines: [run("chain", 1, "Starting")] });
    pass(w);
    expect(chain(w).state).toBe("PipelineRebalancing");
  });

  it("goes Rebalancing for a new version of a ready pipeline until the owners run it", () => {
    const w = world();
    addWorker(w, "dataflow-0");
    pass(w);
    ownersReport(w, "chain", 1);
    pass(w);
    w.state.pipelines.set("chain", { ...chain(w), version: 2 });
    pass(w);
    expect(chain(w)).toMatchObject({
      state: "PipelineRebalancing",
      reason: "waiting for its owners to run version 2: dataflow-0 has not started it",
    });
    w.reports.set("dataflow-0", { pipelines: [run("chain", 1, "Draining"), run("chain", 2, "Ready")] });
    pass(w);
    expect(chain(w)).toMatchObject({ state: "PipelineReady", readyVersion: 2 });
  });

  it("waits (Creating) for an external pipeline that does not exist, naming it", () => {
    const w = world();
    addWorker(w, "dataflow-0");
    w.state.pipelines.set(
      "tail",
      pipeline("tail", ["b"], { input: { externalInputs: ["chain.outputs.y", "head.step.a.outputs"] } }),
    );
    pass(w);
    expect(w.state.pipelines.get("tail")).toMatchObject({
      state: "PipelineCreating",
      reason: "pipeline head, which input.externalInputs reads, does not exist",
    });
    expect(externalPipelines(w.state.pipelines.get("tail")!)).toEqual(["chain", "head"]);
  });

  it("on delete: Terminating while a worker still runs it, then Terminated, then removed after the retention", () => {
    const w = world();
    addWorker(w, "dataflow-0");
    pass(w);
    ownersReport(w, "chain", 1);
    pass(w);
    w.state.pipelines.set("chain", { ...chain(w), deletedAt: w.now });
    pass(w);
    expect(chain(w).owners).toBeUndefined();
    expect(chain(w)).toMatchObject({
      state: "PipelineTerminating",
      reason: "waiting for dataflow worker dataflow-0 to stop running it",
    });
    w.reports.set("dataflow-0", { pipelines: [run("chain", 1, "Draining")] });
    w.now += 1000;
    pass(w);
    expect(chain(w).state).toBe("PipelineTerminating");
    w.reports.set("dataflow-0", { pipelines: [] });
    pass(w);
    expect(chain(w)).toMatchObject({ state: "PipelineTerminated", terminatedAt: w.now });
    expect(chain(w).reason).toBeUndefined();
    const retention = 60_000;
    const inRetention = { ...inputs(w), terminatedRetentionMs: retention };
    w.now += retention - 1;
    expect(pipelineDeadlineDue(w.state, { ...inRetention, now: w.now })).toBe(false);
    w.now += 1;
    expect(pipelineDeadlineDue(w.state, { ...inRetention, now: w.now })).toBe(true);
    expect(derivePipelineStates(w.state, { ...inRetention, now: w.now }).has("chain")).toBe(false);
  });

  it("terminates a deleted pipeline at the drain deadline (heartbeat timeout + longest join window) even if a worker still reports it", () => {
    const w = world();
    addWorker(w, "dataflow-0");
    w.state.pipelines.set("chain", { ...chain(w), deletedAt: T0 });
    w.reports.set("dataflow-0", { pipelines: [run("chain", 1, "Draining")] });
    w.now = T0 + HEARTBEAT_TIMEOUT + DEFAULT_JOIN_WINDOW_MS - 1;
    pass(w);
    expect(chain(w).state).toBe("PipelineTerminating");
    expect(pipelineDeadlineDue(w.state, inputs(w))).toBe(false);
    w.now += 1;
    expect(pipelineDeadlineDue(w.state, inputs(w))).toBe(true);
    pass(w);
    expect(chain(w)).toMatchObject({
      state: "PipelineTerminated",
      reason: "terminated at the drain deadline while dataflow-0 had not reported stopping it",
    });
  });

  it("terminates at once when no dataflow worker is registered", () => {
    const w = world();
    w.state.pipelines.set("chain", { ...chain(w), deletedAt: T0 });
    pass(w);
    expect(chain(w).state).toBe("PipelineTerminated");
  });

  it("returns unchanged records as the same objects, so only changed pipelines are written", () => {
    const w = world();
    addWorker(w, "dataflow-0");
    pass(w);
    ownersReport(w, "chain", 1);
    const first = pass(w);
    const again = derivePipelineStates(w.state, inputs(w));
    for (const [id, p] of again) expect(p).toBe(first.get(id));
  });
});
