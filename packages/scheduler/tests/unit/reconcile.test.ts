import type { ModelResource, ReplicaState, ServerResource } from "@tern/core";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { newVersion } from "../../src/model-spec.js";
import { buildServerViews, isSettledModel, reconcile } from "../../src/reconcile.js";
import {
  type ClusterState,
  cloneClusterState,
  emptyClusterState,
  type ModelRecord,
  replicaId,
} from "../../src/records.js";

// Fixed seed: reconcile is a pure function of the generated inputs, so a fixed seed cannot flake.
const SEED = 2026_11;
const MI = 2 ** 20;

function modelResource(name: string, spec: Partial<ModelResource["spec"]>): ModelResource {
  return {
    apiVersion: "mlops.seldon.io/v1alpha1",
    kind: "Model",
    metadata: { name },
    spec: { storageUri: `file:///models/${name}`, ...spec },
  } as ModelResource;
}

function serverResource(name: string, spec: Partial<ServerResource["spec"]>): ServerResource {
  return {
    apiVersion: "mlops.seldon.io/v1alpha1",
    kind: "Server",
    metadata: { name },
    spec: { serverConfig: "tern-onnx", ...spec },
  } as ServerResource;
}

function addModel(state: ClusterState, name: string, spec: Partial<ModelResource["spec"]>): void {
  const resource = modelResource(name, spec);
  state.models.set(name, {
    name,
    resource,
    versions: [newVersion(resource, 1)],
    deleting: false,
    state: "ModelProgressing",
  });
}

function addServer(state: ClusterState, name: string, spec: Partial<ServerResource["spec"]>): void {
  state.servers.set(name, { name, resource: serverResource(name, spec), deleting: false });
}

function addAgent(state: ClusterState, server: string, replica: number, memoryBytes = 1024 * MI): void {
  state.replicas.set(replicaId(server, replica), {
    server,
    replica,
    capabilities: [],
    memoryBytes,
    endpoints: { http: `http://${server}-${replica}:9500` },
    loaded: [],
    draining: false,
    registeredAt: 0,
  });
}

/** Every replica the agents were asked to load reports it loaded; every unload completes. */
function agentsComply(state: ClusterState): void {
  for (const model of state.models.values()) {
    for (const version of model.versions) {
      version.replicas = version.replicas.filter((r) => r.state !== "UnloadRequested" && r.state !== "Unloading");
      for (const r of version.replicas) if (r.state === "LoadRequested" || r.state === "Loading") r.state = "Available";
    }
  }
}

/** Reconciles and lets the agents comply until nothing changes (a steady cluster). */
function settle(state: ClusterState): ClusterState {
  let current = state;
  for (let i = 0; i < 10; i++) {
    const next = reconcile(current);
    agentsComply(next);
    if (JSON.stringify([...next.models]) === JSON.stringify([...current.models])) return next;
    current = next;
  }
  return reconcile(current);
}

function steadyCluster(): ClusterState {
  const state = emptyClusterState();
  addServer(state, "onnx", { replicas: 3 });
  addServer(state, "mls", { serverConfig: "mlserver", replicas: 2 });
  for (let r = 0; r < 3; r++) addAgent(state, "onnx", r);
  for (let r = 0; r < 2; r++) addAgent(state, "mls", r);
  addModel(state, "iris", { requirements: ["onnx"], memory: "100Mi", replicas: 2 });
  addModel(state, "wine", { requirements: ["sklearn"], memory: "200Mi", replicas: 2 });
  addModel(state, "tiny", { requirements: ["onnx"], memory: "10Mi" });
  return settle(state);
}

/** mulberry32: the simulation's own seeded randomness, driven by a fast-check seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const CAPS = ["onnx", "sklearn", "gpu"] as const;
const SERVERS = ["alpha", "beta", "gamma"] as const;
const MODELS = ["m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7"] as const;

/** A random cluster: a few servers with agents of small memory and models of random shapes, none placed yet. */
function randomCluster(random: () => number): ClusterState {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const state = emptyClusterState();
  for (const name of SERVERS) {
    if (random() < 0.2) continue;
    const replicas = Math.floor(random() * 4);
    addServer(state, name, { capabilities: CAPS.filter(() => random() < 0.6).concat("onnx"), replicas });
    const agents = replicas + Math.floor(random() * 2);
    for (let r = 0; r < agents; r++)
      if (random() < 0.85) addAgent(state, name, r, (100 + Math.floor(random() * 400)) * MI);
  }
  for (const name of MODELS) {
    if (random() < 0.15) continue;
    const replicas = Math.floor(random() * 4);
    const spec: Partial<ModelResource["spec"]> = {
      requirements: random() < 0.8 ? [pick(CAPS)] : [],
      memory: `${10 + Math.floor(random() * 200)}Mi`,
      replicas,
    };
    if (random() < 0.2) spec.minReplicas = Math.floor(random() * (replicas + 1));
    if (random() < 0.15) spec.server = pick([...SERVERS, "ghost"]);
    addModel(state, name, spec);
  }
  return state;
}

/** One random round of what happens between passes: agents report, come and go, drain; people apply and delete. */
function randomEvents(state: ClusterState, random: () => number): void {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const next: Partial<Record<ReplicaState, () => ReplicaState | undefined>> = {
    LoadRequested: () => (random() < 0.1 ? "LoadFailed" : random() < 0.7 ? "Available" : "Loading"),
    Loading: () => (random() < 0.8 ? "Available" : "Loading"),
    UnloadRequested: () => (random() < 0.6 ? undefined : "Unloading"),
    Unloading: () => (random() < 0.7 ? undefined : "Unloading"),
  };
  for (const model of state.models.values()) {
    for (const version of model.versions) {
      const kept: typeof version.replicas = [];
      for (const r of version.replicas) {
        const step = next[r.state];
        if (step === undefined || random() < 0.2) {
          kept.push(r);
          continue;
        }
        const state = step();
        if (state === undefined) continue;
        r.state = state;
        if (state === "LoadFailed") r.reason = "simulated failure";
        kept.push(r);
      }
      version.replicas = kept;
    }
  }
  const roll = random();
  const agents = [...state.replicas.keys()];
  const servers = [...state.servers.values()];
  if (roll < 0.1 && agents.length > 0) {
    state.replicas.delete(pick(agents)); // an agent vanished
  } else if (roll < 0.2 && agents.length > 0) {
    state.replicas.get(pick(agents))!.draining = true;
  } else if (roll < 0.3 && servers.length > 0) {
    const s = pick(servers);
    s.resource.spec.replicas = Math.floor(random() * 4); // scale up or down
    for (let r = 0; r < s.resource.spec.replicas; r++) {
      if (!state.replicas.has(replicaId(s.name, r))) addAgent(state, s.name, r, 300 * MI);
    }
  } else if (roll < 0.35 && servers.length > 0) {
    pick(servers).resource.spec.capabilities = CAPS.filter(() => random() < 0.5).concat("onnx");
  } else if (roll < 0.38 && servers.length > 0) {
    pick(servers).deleting = true;
  } else if (roll < 0.48 && state.models.size > 0) {
    const model = pick([...state.models.values()]);
    model.resource.spec.replicas = Math.floor(random() * 4);
    delete model.resource.spec.minReplicas;
  } else if (roll < 0.56 && state.models.size > 0) {
    // A spec change: a new version that must take over from the old one.
    const model = pick([...state.models.values()]);
    const latest = model.versions[model.versions.length - 1]!;
    model.resource = modelResource(model.name, {
      ...model.resource.spec,
      memory: `${10 + Math.floor(random() * 150)}Mi`,
    });
    model.versions.push(newVersion(model.resource, latest.version + 1));
    model.deleting = false;
  } else if (roll < 0.62 && state.models.size > 0) {
    pick([...state.models.values()]).deleting = true;
  }
}

describe("reconcile", () => {
  it("skipping settled models gives exactly the result of a full pass, at every step of random histories", () => {
    fc.assert(
      fc.property(fc.integer(), (seed) => {
        const random = prng(seed);
        let state = randomCluster(random);
        for (let step = 0; step < 14; step++) {
          const before = JSON.stringify(cloneClusterState(state), replacer);
          const fast = reconcile(state);
          const full = reconcile(state, { skipSettled: false });
          expect(JSON.stringify(fast, replacer)).toBe(JSON.stringify(full, replacer));
          // Pure: the input is left as it was.
          expect(JSON.stringify(state, replacer)).toBe(before);
          state = cloneClusterState(fast);
          randomEvents(state, random);
        }
      }),
      { seed: SEED, numRuns: 150 },
    );
  });

  it("passes a steady cluster's models through untouched, and a second pass changes nothing", () => {
    const state = steadyCluster();
    for (const model of state.models.values()) expect(model.state).toBe("ModelAvailable");
    const views = buildServerViews(state);
    for (const model of state.models.values()) expect(isSettledModel(model, views)).toBe(true);
    const next = reconcile(state);
    for (const [name, model] of state.models) expect(next.models.get(name)).toBe(model);
  });

  it("reschedules the models of an agent that vanished, leaving the others as they were", () => {
    const state = steadyCluster();
    const iris = state.models.get("iris")!.versions[0]!;
    const lost = iris.replicas[0]!;
    state.replicas.delete(replicaId(lost.server, lost.replica));
    const next = reconcile(state);
    const moved = next.models.get("iris")!;
    expect(moved.state).toBe("ModelProgressing");
    const replicas = moved.versions[0]!.replicas;
    expect(replicas.some((r) => r.server === lost.server && r.replica === lost.replica)).toBe(false);
    expect(replicas.filter((r) => r.state === "LoadRequested")).toHaveLength(1);
    expect(replicas.filter((r) => r.state === "Available")).toHaveLength(1);
    expect(next.models.get("wine")).toBe(state.models.get("wine"));
  });

  it("re-places a settled model when its server stops offering a requirement", () => {
    const state = steadyCluster();
    state.servers.get("mls")!.resource.spec.capabilities = ["xgboost"];
    const wine = state.models.get("wine")!;
    expect(isSettledModel(wine, buildServerViews(state))).toBe(false);
    const next = reconcile(state);
    expect(next.models.get("wine")!.state).toBe("ScheduleFailed");
    expect(next.models.get("wine")!.reason).toContain("sklearn");
  });

  it("moves a settled model off a replica leaving in a scale-down, keeping it serving until the move is done", () => {
    const state = steadyCluster();
    const tiny = state.models.get("tiny")!;
    // iris took onnx replicas 0 and 1 (lowest indexes first), so tiny went to replica 2, the one a scale-down removes.
    expect(tiny.versions[0]!.replicas.map((r) => `${r.server}/${r.replica}`)).toEqual(["onnx/2"]);
    state.servers.get("onnx")!.resource.spec.replicas = 2;
    expect(isSettledModel(tiny, buildServerViews(state))).toBe(false);
    const next = reconcile(state);
    const replicas = next.models.get("tiny")!.versions[0]!.replicas;
    expect(replicas.map((r) => `${r.server}/${r.replica} ${r.state}`).sort()).toEqual([
      "onnx/0 LoadRequested",
      "onnx/2 Available",
    ]);
  });

  it("reserves no memory on a replica where the model failed to load or is still unloading (no load is sent there)", () => {
    for (const [held, memory, next] of [
      ["LoadFailed", "250Mi", "b"],
      ["UnloadRequested", "150Mi", "b"],
    ] as const) {
      const state = emptyClusterState();
      addServer(state, "onnx", { replicas: 1 });
      addAgent(state, "onnx", 0, 300 * MI);
      addModel(state, "a", { requirements: ["onnx"], memory: "100Mi" });
      state.models.get("a")!.versions[0]!.replicas.push({ server: "onnx", replica: 0, state: held });
      addModel(state, next, { requirements: ["onnx"], memory });
      const after = reconcile(state);
      // "a" is placed on replica 0 again, where it has a record already: nothing new is loaded for it...
      expect(after.models.get("a")!.versions[0]!.replicas).toEqual([{ server: "onnx", replica: 0, state: held }]);
      // ...so the memory it would take stays free for the next model (300Mi minus what is really held there).
      expect(after.models.get(next)!.versions[0]!.replicas).toEqual([
        { server: "onnx", replica: 0, state: "LoadRequested" },
      ]);
    }
  });

  it("scales a model to 0: every replica unloads, then the model is ModelScaledDown; scaled up again it serves", () => {
    const state = steadyCluster();
    state.models.get("iris")!.resource.spec.replicas = 0;
    const unloading = reconcile(state);
    const iris = unloading.models.get("iris")!;
    expect(iris.versions[0]!.replicas.map((r) => r.state)).toEqual(["UnloadRequested", "UnloadRequested"]);
    expect(iris.state).toBe("ModelProgressing");
    expect(iris.reason).toBe("scaling down to 0 replicas: 2 still unloading");
    const down = settle(unloading).models.get("iris")!;
    expect(down.state).toBe("ModelScaledDown");
    expect(down.reason).toBe("scaled to 0 replicas");
    expect(down.versions.flatMap((v) => v.replicas)).toEqual([]);

    const again = settle(settle(unloading));
    again.models.get("iris")!.resource.spec.replicas = 2;
    const up = settle(again).models.get("iris")!;
    expect(up.state).toBe("ModelAvailable");
    expect(up.versions.at(-1)!.replicas.filter((r) => r.state === "Available")).toHaveLength(2);
  });

  it("does not treat a model whose replica count changed as settled", () => {
    const state = steadyCluster();
    const tiny: ModelRecord = state.models.get("tiny")!;
    tiny.resource.spec.replicas = 3;
    expect(isSettledModel(tiny, buildServerViews(state))).toBe(false);
    const next = reconcile(state);
    expect(next.models.get("tiny")!.versions[0]!.replicas).toHaveLength(3);
  });
});

/** JSON of a state with its maps as entry lists (JSON.stringify drops Map contents). */
function replacer(_key: string, value: unknown): unknown {
  return value instanceof Map ? [...value.entries()] : value;
}
