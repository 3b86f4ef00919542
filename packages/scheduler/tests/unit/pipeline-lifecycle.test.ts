import { createMemoryTopicAdmin, type MemoryTopicAdmin, type PipelineRunReport, type StateStore } from "@tern/core";
import { afterEach, describe, expect, it } from "vitest";
import type { DataPlaneOptions } from "../../src/data-plane.js";
import type { WatchEvent } from "../../src/scheduler.js";
import { createMemoryStore } from "../../src/store/memory-store.js";
import type { PipelineStatus } from "../../src/views.js";
import { createHarness, type Harness, model, server } from "./helpers.js";

let h: Harness;
let standby: Harness | undefined;
afterEach(async () => {
  await standby?.close();
  standby = undefined;
  await h?.close();
});

function pipelineYaml(name: string, steps: string[], extra = ""): string {
  return `apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: ${name}}
spec:
  steps:
${steps.map((s, i) => `    - name: ${s}${i === 0 ? "" : `\n      inputs: [${steps[i - 1]}]`}`).join("\n")}
  output:
    steps: [${steps.at(-1)}]
${extra}`;
}

async function setup(admin: MemoryTopicAdmin, options: DataPlaneOptions = {}, store?: StateStore): Promise<void> {
  h = await createHarness({
    ...(store === undefined ? {} : { store }),
    dataPlane: {
      partitions: 4,
      replication: 2,
      topicAdmin: admin,
      topicRetry: { initialMs: 5, maxMs: 20 },
      ...options,
    },
  });
  await h.apply(server("onnx", 1));
  await h.agent("onnx", 0);
  await h.apply(`${model("a")}---\n${model("b")}`);
  await h.settle();
  await h.scheduler.topicsIdle();
}

const status = (name: string) => h.scheduler.get("Pipeline", name) as PipelineStatus | undefined;
const owners = (name: string) => h.scheduler.snapshot().pipelines.get(name)?.owners ?? [];

/** Every worker reports its assigned pipelines in `state` at their current versions (as a dataflow worker would). */
async function reportAll(ids: string[], state: PipelineRunReport["state"] = "Ready"): Promise<void> {
  const snapshot = h.scheduler.snapshot();
  for (const id of ids) {
    const pipelines = [...snapshot.pipelines.values()]
      .filter((p) => p.owners?.includes(id) === true)
      .map((p) => ({ pipeline: p.name, version: p.version ?? 1, state }));
    expect(await h.scheduler.workers.report("dataflow", id, { pipelines })).toBe(true);
  }
}

async function settleTopics(): Promise<void> {
  await h.scheduler.topicsIdle();
}

describe("pipeline experiments in the scheduler", () => {
  it("an experiment of pipelines is active once every candidate and its mirror is Ready, and inactive again when one goes", async () => {
    await setup(createMemoryTopicAdmin());
    await h.scheduler.workers.register({ kind: "dataflow", id: "dataflow-0" });
    await h.apply(
      [
        pipelineYaml("left", ["a"]),
        pipelineYaml("right", ["b"]),
        pipelineYaml("shadow", ["a", "b"]),
        "apiVersion: mlops.seldon.io/v1alpha1\nkind: Experiment\nmetadata: {name: lr}\nspec:\n  resourceType: pipeline\n  default: left\n  candidates: [{name: left, weight: 30}, {name: right, weight: 70}]\n  mirror: {name: shadow, percent: 25}\n",
      ].join("---\n"),
    );
    await settleTopics();
    expect(h.scheduler.get("Experiment", "lr")).toMatchObject({
      active: false,
      reason: "pipelines not serving yet: left, right, shadow",
    });
    await reportAll(["dataflow-0"]);
    expect(h.scheduler.get("Experiment", "lr")).toMatchObject({ active: true });
    expect(h.scheduler.routes().experiments.lr).toEqual({
      name: "lr",
      resourceType: "pipeline",
      default: "left",
      candidates: [
        { name: "left", weight: 30 },
        { name: "right", weight: 70 },
      ],
      mirror: { name: "shadow", percent: 25 },
      active: true,
    });
    await h.scheduler.remove("Pipeline", "shadow");
    expect(h.scheduler.get("Experiment", "lr")).toMatchObject({
      active: false,
      reason: "pipelines not serving yet: shadow",
    });
  });
});

describe("pipeline lifecycle in the scheduler", () => {
  it("creates the pipeline's topics and becomes Ready once its owners report the version Ready", async () => {
    const admin = createMemoryTopicAdmin();
    await setup(admin);
    const events: WatchEvent[] = [];
    h.scheduler.watch(h.scheduler.revision, { event: (e) => events.push(e), close() {} });
    await h.apply(pipelineYaml("chain", ["a", "b"]));
    await settleTopics();
    expect(admin.topics.get("seldon.default.pipeline.chain.inputs")).toBe(4);
    expect(admin.topics.get("seldon.default.pipeline.chain.outputs")).toBe(4);
    expect(h.scheduler.snapshot().pipelines.get("chain")!.topics).toEqual({ ready: true });
    expect(status("chain")).toMatchObject({ state: "PipelineCreating", reason: "no dataflow worker registered" });

    await h.scheduler.workers.register({ kind: "dataflow", id: "dataflow-0" });
    await h.scheduler.workers.register({ kind: "dataflow", id: "dataflow-1" });
    await reportAll(["dataflow-0"], "Starting");
    expect(status("chain")!.state).toBe("PipelineCreating");
    await reportAll(["dataflow-0", "dataflow-1"]);
    expect(status("chain")).toMatchObject({ state: "PipelineReady", version: 1 });
    expect(status("chain")!.reason).toBeUndefined();
    // The watch stream carried the state and the reason on the way.
    const seen = events.flatMap((e) => e.changes).filter((c) => c.kind === "pipeline" && c.name === "chain");
    expect(seen.map((c) => (c.status as PipelineStatus).state)).toContain("PipelineCreating");
    expect(seen.at(-1)!.status).toMatchObject({ state: "PipelineReady" });
    expect(h.scheduler.routes().pipelines.chain).toMatchObject({ name: "chain", state: "PipelineReady" });

    // The dataflow status shows what each owner reported.
    const placement = h.scheduler.workers.status("dataflow").pipelines!.find((p) => p.pipeline === "chain")!;
    expect(placement.state).toBe("PipelineReady");
    expect(placement.runs).toEqual([
      { worker: "dataflow-0", version: 1, state: "Ready" },
      { worker: "dataflow-1", version: 1, state: "Ready" },
    ]);
  });

  it("keeps state and version on an unchanged re-apply; a changed spec is a new version, Rebalancing until run", async () => {
    const admin = createMemoryTopicAdmin();
    await setup(admin);
    await h.apply(pipelineYaml("chain", ["a", "b"]));
    await settleTopics();
    await h.scheduler.workers.register({ kind: "dataflow", id: "dataflow-0" });
    await reportAll(["dataflow-0"]);
    expect(status("chain")!.state).toBe("PipelineReady");
    const revision = h.scheduler.revision;

    expect(await h.apply(pipelineYaml("chain", ["a", "b"]))).toEqual([
      { kind: "Pipeline", name: "chain", action: "unchanged" },
    ]);
    expect(status("chain")).toMatchObject({ state: "PipelineReady", version: 1 });
    expect(h.scheduler.revision).toBe(revision);

    await h.apply(pipelineYaml("chain", ["b", "a"]));
    expect(status("chain")).toMatchObject({
      state: "PipelineRebalancing",
      version: 2,
      reason: "waiting for its owners to run version 2: dataflow-0 has not started it",
    });
    await reportAll(["dataflow-0"]);
    expect(status("chain")).toMatchObject({ state: "PipelineReady", version: 2 });
  });

  it("goes Failed naming a step model that failed to schedule, and Ready again once it serves", async () => {
    const admin = createMemoryTopicAdmin();
    await setup(admin);
    await h.apply(pipelineYaml("chain", ["a", "big"]));
    await h.apply(model("big", "", 3));
    await settleTopics();
    await h.scheduler.workers.register({ kind: "dataflow", id: "dataflow-0" });
    await reportAll(["dataflow-0"]);
    expect(status("chain")!.state).toBe("PipelineFailed");
    expect(status("chain")!.reason).toMatch(/^step big: model big is ScheduleFailed \(.+\)$/);
    await h.apply(model("big", "", 1));
    await h.settle();
    await settleTopics();
    expect(status("chain")!.state).toBe("PipelineReady");
  });

  it("forgets a removed worker's report: the pipeline rebalances onto the others", async () => {
    const admin = createMemoryTopicAdmin();
    await setup(admin, { replication: 1 });
    await h.apply(pipelineYaml("chain", ["a"]));
    await settleTopics();
    await h.scheduler.workers.register({ kind: "dataflow", id: "dataflow-0" });
    await reportAll(["dataflow-0"]);
    expect(status("chain")!.state).toBe("PipelineReady");
    await h.scheduler.workers.register({ kind: "dataflow", id: "dataflow-1" });
    await reportAll(["dataflow-1"]);
    const owner = owners("chain")[0]!;
    const other = owner === "dataflow-0" ? "dataflow-1" : "dataflow-0";
    await h.scheduler.workers.remove("dataflow", owner);
    expect(h.scheduler.workers.dataflowReports().has(owner)).toBe(false);
    expect(owners("chain")).toEqual([other]);
    expect(status("chain")).toMatchObject({ state: "PipelineRebalancing" });
    await reportAll([other]);
    expect(status("chain")!.state).toBe("PipelineReady");
  });

  it("deletes: Terminating while a worker still runs it, Terminated when none does, its topics deleted when asked", async () => {
    const admin = createMemoryTopicAdmin();
    await setup(admin, { cleanTopicsOnDelete: true, terminatedRetentionMs: 30_000 });
    await h.apply(pipelineYaml("chain", ["a", "b"]));
    await settleTopics();
    await h.scheduler.workers.register({ kind: "dataflow", id: "dataflow-0" });
    await reportAll(["dataflow-0"]);
    expect(status("chain")!.state).toBe("PipelineReady");

    await h.scheduler.remove("Pipeline", "chain");
    expect(status("chain")).toMatchObject({
      state: "PipelineTerminating",
      reason: "waiting for dataflow worker dataflow-0 to stop running it",
    });
    expect(owners("chain")).toEqual([]);
    expect(admin.topics.has("seldon.default.pipeline.chain.inputs")).toBe(true);
    await h.scheduler.workers.report("dataflow", "dataflow-0", {
      pipelines: [{ pipeline: "chain", version: 1, state: "Draining" }],
    });
    expect(status("chain")!.state).toBe("PipelineTerminating");
    await h.scheduler.workers.report("dataflow", "dataflow-0", { pipelines: [] });
    expect(status("chain")!.state).toBe("PipelineTerminated");
    expect(h.scheduler.routes().pipelines.chain).toBeUndefined();
    await settleTopics();
    expect(admin.topics.has("seldon.default.pipeline.chain.inputs")).toBe(false);
    expect(admin.topics.has("seldon.default.pipeline.chain.outputs")).toBe(false);
    // The model topics and the errors topic stay.
    expect(admin.topics.has("seldon.default.model.a.inputs")).toBe(true);
    expect(admin.topics.has("seldon.default.errors.errors")).toBe(true);

    // Kept for the retention time, then gone.
    h.clock.now += 30_000;
    await h.scheduler.checkHeartbeats();
    expect(status("chain")).toBeUndefined();
  });

  it("keeps a deleted pipeline's topics by default, and revives one re-applied while Terminating as a new version", async () => {
    const admin = createMemoryTopicAdmin();
    await setup(admin);
    await h.apply(pipelineYaml("chain", ["a"]));
    await settleTopics();
    await h.scheduler.workers.register({ kind: "dataflow", id: "dataflow-0" });
    await reportAll(["dataflow-0"]);
    await h.scheduler.remove("Pipeline", "chain");
    expect(status("chain")!.state).toBe("PipelineTerminating");
    expect(await h.apply(pipelineYaml("chain", ["a"]))).toEqual([
      { kind: "Pipeline", name: "chain", action: "configured" },
    ]);
    expect(status("chain")).toMatchObject({ state: "PipelineCreating", version: 2 });
    expect(owners("chain")).toEqual(["dataflow-0"]);
    await reportAll(["dataflow-0"]);
    expect(status("chain")).toMatchObject({ state: "PipelineReady", version: 2 });

    await h.scheduler.remove("Pipeline", "chain");
    await h.scheduler.workers.report("dataflow", "dataflow-0", { pipelines: [] });
    expect(status("chain")!.state).toBe("PipelineTerminated");
    await settleTopics();
    expect(admin.topics.has("seldon.default.pipeline.chain.inputs")).toBe(true);
    // Re-applied after it terminated: created again, as the next version.
    expect(await h.apply(pipelineYaml("chain", ["a"]))).toEqual([
      { kind: "Pipeline", name: "chain", action: "created" },
    ]);
    expect(status("chain")).toMatchObject({ state: "PipelineCreating", version: 3 });
  });

  it("applies a report again on the next heartbeat when the write that would have applied it failed", async () => {
    const base = createMemoryStore();
    let failWrites = false;
    const store: StateStore = {
      ...base,
      write: (ops, options) => (failWrites ? Promise.reject(new Error("store unreachable")) : base.write(ops, options)),
    };
    await setup(createMemoryTopicAdmin(), {}, store);
    await h.apply(pipelineYaml("chain", ["a"]));
    await settleTopics();
    await h.scheduler.workers.register({ kind: "dataflow", id: "dataflow-0" });
    await reportAll(["dataflow-0"]);
    expect(status("chain")!.state).toBe("PipelineReady");
    const starting = { pipelines: [{ pipeline: "chain", version: 1, state: "Starting" as const }] };
    failWrites = true;
    await expect(h.scheduler.workers.report("dataflow", "dataflow-0", starting)).rejects.toThrow("store unreachable");
    failWrites = false;
    expect(status("chain")!.state).toBe("PipelineReady");
    // The worker heartbeats again with the same report: this time it takes.
    await h.scheduler.workers.report("dataflow", "dataflow-0", starting);
    expect(status("chain")!.state).toBe("PipelineRebalancing");
  });

  it("a standby taking over keeps Ready until the owners report, then decides from their reports", async () => {
    const admin = createMemoryTopicAdmin();
    await setup(admin);
    await h.apply(pipelineYaml("chain", ["a"]));
    await settleTopics();
    await h.scheduler.workers.register({ kind: "dataflow", id: "dataflow-0" });
    await reportAll(["dataflow-0"]);
    expect(status("chain")!.state).toBe("PipelineReady");
    await h.scheduler.stop();

    standby = await createHarness({
      store: h.store,
      dataPlane: { partitions: 4, replication: 2, topicAdmin: admin, topicRetry: { initialMs: 5, maxMs: 20 } },
    });
    const get = () => standby!.scheduler.get("Pipeline", "chain") as PipelineStatus;
    expect(get().state).toBe("PipelineReady");
    await standby.scheduler.workers.report("dataflow", "dataflow-0", {
      pipelines: [{ pipeline: "chain", version: 1, state: "Starting" }],
    });
    expect(get().state).toBe("PipelineRebalancing");
    await standby.scheduler.workers.report("dataflow", "dataflow-0", {
      pipelines: [{ pipeline: "chain", version: 1, state: "Ready" }],
    });
    expect(get().state).toBe("PipelineReady");
  });
});
