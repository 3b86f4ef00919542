import type { ModelStatus } from "@tern/core";
import { afterEach, describe, expect, it } from "vitest";
import { loadState } from "../../src/persistence.js";
import type { ServerStatus } from "../../src/views.js";
import { createHarness, type Harness, model, server } from "./helpers.js";

let h: Harness;
afterEach(async () => {
  await h?.close();
});

function status(name: string): ModelStatus {
  return h.scheduler.get("Model", name) as ModelStatus;
}

function placedOn(name: string): number[] {
  return status(name)
    .placement.filter((p) => p.state === "Available")
    .map((p) => p.replica)
    .sort();
}

describe("scheduler reconciliation", () => {
  it("assigns an applied model to a registered agent and reports it available once loaded", async () => {
    h = await createHarness();
    await h.apply(server("onnx", 1));
    const a0 = await h.agent("onnx", 0, { auto: false });
    await h.apply(model("iris"));
    expect(a0.received.at(-1)?.models.map((m) => m.model)).toEqual(["iris"]);
    expect(a0.received.at(-1)?.models[0]).toMatchObject({
      version: 1,
      memoryBytes: 100 * 1024,
      storageUri: "file:///models/iris",
    });
    expect(status("iris").state).toBe("ModelProgressing");
    expect(status("iris").placement).toEqual([{ server: "onnx", replica: 0, state: "LoadRequested" }]);
    await a0.complete();
    expect(status("iris")).toMatchObject({
      state: "ModelAvailable",
      availableReplicas: 1,
      replicas: 1,
      server: "onnx",
    });
    expect(h.scheduler.routes().models.iris?.endpoints).toEqual([
      { server: "onnx", replica: 0, version: 1, http: "http://127.0.0.1:9500" },
    ]);
  });

  it("tells the agent memoryBytes 0 for a model without spec.memory, so it accounts the artifact's size", async () => {
    h = await createHarness();
    await h.apply(server("onnx", 1));
    const a0 = await h.agent("onnx", 0, { auto: false });
    await h.apply(model("iris").replace("  memory: 100Ki\n", ""));
    expect(a0.received.at(-1)?.models[0]).toMatchObject({ model: "iris", memoryBytes: 0 });
    // Placement still reserves the default guess for it.
    expect(h.scheduler.snapshot().models.get("iris")!.versions[0]!.memoryBytes).toBe(1024 * 1024);
  });

  it("reports ScheduleFailed naming both numbers when a model asks for more replicas than its server has, then recovers when the server grows", async () => {
    h = await createHarness();
    await h.apply(server("onnx", 2));
    await h.agent("onnx", 0);
    await h.agent("onnx", 1);
    await h.apply(model("iris", "", 3));
    const failed = status("iris");
    expect(failed.state).toBe("ScheduleFailed");
    expect(failed.reason).toMatch(/3 replicas requested/);
    expect(failed.reason).toMatch(/server onnx has 2/);

    await h.apply(server("onnx", 3));
    await h.agent("onnx", 2);
    await h.settle();
    expect(status("iris")).toMatchObject({ state: "ModelAvailable", availableReplicas: 3 });
    expect(placedOn("iris")).toEqual([0, 1, 2]);
  });

  it("makes a mirror-only experiment active once its default and its mirror serve, routing all traffic to the default", async () => {
    h = await createHarness();
    await h.apply(server("onnx", 1));
    const a0 = await h.agent("onnx", 0, { auto: false });
    await h.apply(
      [
        model("iris"),
        model("iris-shadow"),
        "apiVersion: mlops.seldon.io/v1alpha1\nkind: Experiment\nmetadata: {name: shadowed}\nspec:\n  default: iris\n  mirror: {name: iris-shadow, percent: 50}\n",
      ].join("---\n"),
    );
    expect(h.scheduler.get("Experiment", "shadowed")).toMatchObject({
      active: false,
      reason: "not serving yet: iris, iris-shadow",
      candidates: [{ name: "iris", weight: 100 }],
    });
    await a0.complete();
    expect(h.scheduler.get("Experiment", "shadowed")).toMatchObject({ state: "ExperimentReady", active: true });
    expect(h.scheduler.routes().experiments.shadowed).toEqual({
      name: "shadowed",
      resourceType: "model",
      candidates: [{ name: "iris", weight: 100 }],
      active: true,
      default: "iris",
      mirror: { name: "iris-shadow", percent: 50 },
    });
  });

  it("makes a new version on a spec change and unloads the old one only after the new one is available", async () => {
    h = await createHarness();
    await h.apply(server("onnx", 1));
    const a0 = await h.agent("onnx", 0, { auto: false });
    await h.apply(model("iris"));
    await a0.complete();
    await h.apply(model("iris").replace("file:///models/iris", "file:///models/iris-v2"));
    expect(status("iris").version).toBe(2);
    // Old version still wanted (serving), new one requested.
    const set = a0.received.at(-1)!.models.map((m) => `${m.model}@${m.version}`);
    expect(set).toEqual(["iris@1", "iris@2"]);
    expect(h.scheduler.routes().models.iris?.version).toBe(1);
    expect(a0.unloads).toEqual([]);
    await a0.complete();
    expect(status("iris").state).toBe("ModelAvailable");
    expect(a0.received.at(-1)!.models.map((m) => `${m.model}@${m.version}`)).toEqual(["iris@2"]);
    await a0.complete();
    expect(a0.unloads).toEqual(["iris@1"]);
    expect(h.scheduler.routes().models.iris?.version).toBe(2);
    expect(
      h.scheduler
        .snapshot()
        .models.get("iris")!
        .versions.map((v) => v.version),
    ).toEqual([2]);
  });

  it("changing only the replica count keeps the version", async () => {
    h = await createHarness();
    await h.apply(server("onnx", 2));
    await h.agent("onnx", 0);
    await h.agent("onnx", 1);
    await h.apply(model("iris", "", 1));
    await h.apply(model("iris", "", 2));
    await h.settle();
    expect(status("iris")).toMatchObject({ version: 1, state: "ModelAvailable", availableReplicas: 2 });
  });

  it("scales a server down highest index first, draining it before it may stop", async () => {
    h = await createHarness();
    await h.apply(server("onnx", 3));
    await h.agent("onnx", 0);
    await h.agent("onnx", 1);
    const a2 = await h.agent("onnx", 2, { auto: false });
    await h.apply(model("a", "", 3));
    await a2.complete();
    await h.apply(model("a", "", 1));
    // Lowest indexes are kept: the copy on replica 2 goes.
    await a2.complete();
    expect(a2.unloads).toEqual(["a@1"]);
    expect(placedOn("a")).toEqual([0]);

    await h.apply(server("onnx", 2));
    await h.settle();
    const view = h.scheduler.agentView("onnx", 2)!;
    expect(view.leaving).toBe(true);
    expect(view.drained).toBe(true);
    expect(view.mayStop).toBe(true);
    expect(h.scheduler.agentView("onnx", 1)!.leaving).toBe(false);
  });

  it("moves a model off a replica leaving in a scale-down before that replica may stop", async () => {
    h = await createHarness();
    await h.apply(server("onnx", 2));
    const a0 = await h.agent("onnx", 0, { memoryBytes: 10 * 1024 * 1024 });
    const a1 = await h.agent("onnx", 1, { auto: false });
    await h.apply(model("big", "", 1));
    // Replica 1 had more free memory, so the model went there.
    await a1.complete();
    expect(placedOn("big")).toEqual([1]);
    await h.apply(server("onnx", 1));
    await h.settle();
    expect(h.scheduler.agentView("onnx", 1)).toMatchObject({ leaving: true, drained: false, mayStop: false });
    // Make before break: the model lands on replica 0 first; replica 1 keeps serving meanwhile.
    expect(a0.held.has("big@1")).toBe(true);
    expect(status("big").state).toBe("ModelAvailable");
    await a1.complete();
    expect(a1.unloads).toEqual(["big@1"]);
    expect(h.scheduler.agentView("onnx", 1)).toMatchObject({ drained: true, mayStop: true });
  });

  it("lets the highest leaving replica stop first", async () => {
    h = await createHarness();
    await h.apply(server("onnx", 3));
    await h.agent("onnx", 0);
    await h.agent("onnx", 1);
    const a2 = await h.agent("onnx", 2, { auto: false });
    await h.apply(model("m", "", 3));
    await a2.complete();
    await h.settle();
    await h.apply(`${server("onnx", 1)}---\n${model("m", "  minReplicas: 1", 3)}`);
    await h.settle();
    // Replica 1 is empty once its copy goes; replica 2 still holds one until its agent unloads it.
    expect(h.scheduler.agentView("onnx", 1)).toMatchObject({ leaving: true, drained: true, mayStop: false });
    expect(h.scheduler.agentView("onnx", 2)).toMatchObject({ leaving: true, drained: false, mayStop: false });
    await a2.complete();
    expect(h.scheduler.agentView("onnx", 2)!.mayStop).toBe(true);
    expect(h.scheduler.agentView("onnx", 1)!.mayStop).toBe(true);
  });

  it("keeps the remaining replicas serving when a server scales below the model's replicas, and recovers", async () => {
    h = await createHarness();
    await h.apply(server("onnx", 3));
    await h.agent("onnx", 0);
    await h.agent("onnx", 1);
    const a2 = await h.agent("onnx", 2);
    await h.apply(model("iris", "", 3));
    await h.settle();
    expect(status("iris").availableReplicas).toBe(3);

    await h.apply(server("onnx", 2));
    await h.settle();
    const s = status("iris");
    expect(s.state).toBe("ScheduleFailed");
    expect(s.availableReplicas).toBe(2);
    expect(s.reason).toMatch(/3 replicas requested/);
    expect(h.scheduler.routes().models.iris?.endpoints.map((e) => e.replica)).toEqual([0, 1]);
    expect(h.scheduler.agentView("onnx", 2)!.mayStop).toBe(true);
    a2.disconnect();
    await h.scheduler.removeAgent("onnx", 2);

    await h.apply(server("onnx", 3));
    await h.agent("onnx", 2);
    await h.settle();
    expect(status("iris")).toMatchObject({ state: "ModelAvailable", availableReplicas: 3 });
  });

  it("removes an agent that misses its heartbeat deadline and reschedules its models at once", async () => {
    h = await createHarness();
    await h.apply(server("onnx", 2));
    const a0 = await h.agent("onnx", 0);
    const a1 = await h.agent("onnx", 1);
    await h.apply(model("iris", "", 1));
    await h.settle();
    const first = placedOn("iris")[0]!;
    const survivor = first === 0 ? 1 : 0;
    (first === 0 ? a0 : a1).disconnect();
    h.clock.now += 3000;
    expect(h.scheduler.heartbeat("onnx", survivor)).toBe(true);
    h.clock.now += 4000;
    await h.scheduler.checkHeartbeats();
    await h.settle();
    expect(h.scheduler.agentView("onnx", first)).toBeUndefined();
    expect(placedOn("iris")).toEqual([survivor]);
    expect(status("iris").state).toBe("ModelAvailable");
    expect(h.scheduler.heartbeat("onnx", first)).toBe(false);
  });

  it("reports ModelFailed with the agent's reason when a load fails, and retries on re-apply", async () => {
    h = await createHarness();
    await h.apply(server("onnx", 1));
    const a0 = await h.agent("onnx", 0, { failing: { bad: "no such file" } });
    await h.apply(model("bad"));
    await h.settle();
    expect(status("bad")).toMatchObject({ state: "ModelFailed" });
    expect(status("bad").reason).toMatch(/no such file/);
    expect(a0.received.at(-1)!.models).toEqual([]);
    await h.apply(model("bad"));
    await h.settle();
    expect(a0.received.length).toBeGreaterThan(2);
  });

  it("unloads and forgets a deleted model", async () => {
    h = await createHarness();
    await h.apply(server("onnx", 1));
    const a0 = await h.agent("onnx", 0);
    await h.apply(model("iris"));
    await h.settle();
    await h.scheduler.remove("Model", "iris");
    expect(status("iris").state).toBe("ModelTerminating");
    await h.settle();
    expect(a0.unloads).toEqual(["iris@1"]);
    expect(h.scheduler.get("Model", "iris")).toBeUndefined();
    expect(h.scheduler.routes().models.iris).toBeUndefined();
  });

  it("fails a model whose requirement no server offers, naming the capability", async () => {
    h = await createHarness();
    await h.apply(server("onnx", 1));
    await h.agent("onnx", 0);
    await h.apply(model("sk").replace("[onnx]", "[sklearn]"));
    expect(status("sk").state).toBe("ScheduleFailed");
    expect(status("sk").reason).toMatch(/sklearn/);
  });

  it("persists every change with a bumped revision, and a restarted scheduler resumes without reloading", async () => {
    h = await createHarness();
    await h.apply(server("onnx", 1));
    const a0 = await h.agent("onnx", 0);
    await h.apply(model("iris"));
    await h.settle();
    const before = h.scheduler.revision;
    const stored = await loadState(h.store);
    expect(stored.revision).toBe(before);
    expect(stored.routes?.models.iris?.endpoints).toHaveLength(1);
    expect(stored.state.models.get("iris")!.state).toBe("ModelAvailable");
    await h.scheduler.stop();

    const h2 = await createHarness({ store: h.store });
    try {
      expect(h2.scheduler.revision).toBe(before);
      expect((h2.scheduler.get("Model", "iris") as ModelStatus).state).toBe("ModelAvailable");
      const again = await h2.agent("onnx", 0, { auto: false, loaded: [{ model: "iris", version: 1 }] });
      expect(again.received.at(-1)!.models.map((m) => m.model)).toEqual(["iris"]);
      expect(again.loads).toEqual([]);
      expect((h2.scheduler.get("Model", "iris") as ModelStatus).state).toBe("ModelAvailable");
      expect(a0.loads).toEqual(["iris@1"]);
    } finally {
      await h2.scheduler.stop();
    }
  });

  it("lists servers with their replicas and what they hold", async () => {
    h = await createHarness();
    await h.apply(server("onnx", 2));
    await h.agent("onnx", 0);
    await h.apply(model("iris"));
    await h.settle();
    const s = h.scheduler.get("Server", "onnx") as ServerStatus;
    expect(s).toMatchObject({
      name: "onnx",
      replicas: 2,
      availableReplicas: 1,
      state: "ServerProgressing",
      loadedModels: 1,
    });
    expect(s.replicaStatus[0]!.models).toEqual([{ model: "iris", version: 1, state: "Available" }]);
  });

  it("stops writing once another scheduler takes the lease over", async () => {
    let lost = 0;
    h = await createHarness({ onLeaseLost: () => lost++ });
    await h.apply(server("onnx", 1));
    // Another holder takes the lease once it has expired (a clock ten minutes ahead).
    const other = await h.store.acquireLease("scheduler", "other", 60_000, Date.now() + 10 * 60_000);
    expect(other).toBeDefined();
    await expect(h.apply(server("onnx", 2))).rejects.toMatchObject({ code: "lease.lost" });
    expect(lost).toBe(1);
    await expect(h.apply(server("onnx", 3))).rejects.toMatchObject({ code: "unavailable" });
    const stored = await loadState(h.store);
    expect(stored.state.servers.get("onnx")!.resource.spec.replicas).toBe(1);
  });
});
