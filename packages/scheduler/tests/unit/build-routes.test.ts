import {
  type ExperimentResource,
  experimentCandidates,
  type ModelResource,
  type ModelRoute,
  type PipelineResource,
  pipelineIo,
  type ReplicaState,
  type RouteTable,
  unpackRouteTable,
} from "@tern/core";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { buildRouteTable, routeTableItemSize, routeTableToStore, sameRoutes } from "../../src/build-routes.js";
import { servingVersion } from "../../src/reconcile.js";
import { type ClusterState, emptyClusterState, replicaId, SERVING_STATES } from "../../src/records.js";
import { MAX_VALUE_BYTES } from "../../src/store/table.js";

// Fixed seed: the tables are pure functions of the generated states, so a fixed seed cannot flake.
const SEED = 4_2026;

/**
 * The route-table builder as it was before it was tuned (object spread per endpoint, every replica list copied and
 * sorted): the reference the tuned one must match byte for byte.
 */
function referenceRouteTable(state: ClusterState, revision: number): RouteTable {
  const table: RouteTable = { revision, models: {}, pipelines: {}, experiments: {} };
  for (const name of [...state.models.keys()].sort()) {
    const model = state.models.get(name)!;
    if (model.deleting) continue;
    const version = servingVersion(model);
    if (version === undefined) continue;
    const route: ModelRoute = { name, version: version.version, state: model.state, endpoints: [] };
    for (const r of [...version.replicas].sort((a, b) => a.replica - b.replica)) {
      if (!SERVING_STATES.has(r.state)) continue;
      const agent = state.replicas.get(replicaId(r.server, r.replica));
      if (agent === undefined) continue;
      const endpoint = { server: r.server, replica: r.replica, version: version.version, http: agent.endpoints.http };
      route.endpoints.push(agent.endpoints.grpc === undefined ? endpoint : { ...endpoint, grpc: agent.endpoints.grpc });
    }
    if (route.endpoints.length > 0) table.models[name] = route;
  }
  for (const name of [...state.pipelines.keys()].sort()) {
    const p = state.pipelines.get(name)!;
    table.pipelines[name] = { name, state: p.state };
  }
  for (const name of [...state.experiments.keys()].sort()) {
    const e = state.experiments.get(name)!;
    const spec = e.resource.spec;
    table.experiments[name] = {
      name,
      resourceType: spec.resourceType ?? "model",
      candidates: experimentCandidates(spec),
      active: e.active,
      ...(spec.default === undefined ? {} : { default: spec.default }),
      ...(spec.mirror === undefined ? {} : { mirror: { name: spec.mirror.name, percent: spec.mirror.percent ?? 100 } }),
    };
  }
  return table;
}

const STATES: readonly ReplicaState[] = ["LoadRequested", "Loading", "Loaded", "Available", "LoadFailed", "Unloading"];
const SERVERS = ["a", "b", "c"] as const;

const replicaArb = fc.record({
  server: fc.constantFrom(...SERVERS),
  replica: fc.integer({ min: 0, max: 5 }),
  state: fc.constantFrom(...STATES),
});

const versionArb = fc.record({ replicas: fc.array(replicaArb, { maxLength: 5 }) });

/** A random cluster state: agents (some gone, some without gRPC), models with versions in random replica states. */
const stateArb: fc.Arbitrary<ClusterState> = fc
  .record({
    agents: fc.array(
      fc.record({
        server: fc.constantFrom(...SERVERS),
        replica: fc.integer({ min: 0, max: 5 }),
        grpc: fc.boolean(),
      }),
      { maxLength: 14 },
    ),
    models: fc.array(
      fc.record({
        name: fc.stringMatching(/^[a-z][a-z0-9-]{0,6}$/),
        deleting: fc.integer({ min: 0, max: 6 }).map((n) => n === 0),
        versions: fc.array(versionArb, { minLength: 1, maxLength: 3 }),
      }),
      { maxLength: 12 },
    ),
    experiments: fc.array(
      fc.record({
        name: fc.stringMatching(/^[a-z]{1,5}$/),
        active: fc.boolean(),
        withDefault: fc.boolean(),
        mirror: fc.option(fc.option(fc.integer({ min: 1, max: 100 }), { nil: undefined }), { nil: null }),
      }),
      { maxLength: 3 },
    ),
  })
  .map(({ agents, models, experiments }) => {
    const state = emptyClusterState();
    for (const a of agents) {
      state.replicas.set(replicaId(a.server, a.replica), {
        server: a.server,
        replica: a.replica,
        capabilities: [],
        memoryBytes: 1,
        endpoints: a.grpc
          ? { http: `http://${a.server}-${a.replica}`, grpc: `${a.server}-${a.replica}:9501` }
          : { http: `http://${a.server}-${a.replica}` },
        loaded: [],
        draining: false,
        registeredAt: 0,
      });
    }
    for (const m of models) {
      state.models.set(m.name, {
        name: m.name,
        resource: { kind: "Model", metadata: { name: m.name }, spec: {} } as ModelResource,
        deleting: m.deleting,
        state: "ModelAvailable",
        versions: m.versions.map((v, i) => ({
          version: i + 1,
          specKey: String(i),
          storageUri: "file:///m",
          memoryBytes: 1,
          requirements: [],
          parameters: [],
          replicas: v.replicas,
        })),
      });
    }
    for (const e of experiments) {
      const spec: Record<string, unknown> = { candidates: [{ name: "x", weight: 1 }] };
      if (e.withDefault) spec.default = "x";
      if (e.mirror !== null) spec.mirror = e.mirror === undefined ? { name: "y" } : { name: "y", percent: e.mirror };
      state.experiments.set(e.name, {
        name: e.name,
        resource: { kind: "Experiment", metadata: { name: e.name }, spec } as unknown as ExperimentResource,
        active: e.active,
      });
    }
    return state;
  });

describe("buildRouteTable", () => {
  it("builds the same table, byte for byte, as the reference builder on random clusters", () => {
    fc.assert(
      fc.property(stateArb, fc.nat(), (state, revision) => {
        expect(JSON.stringify(buildRouteTable(state, revision))).toBe(
          JSON.stringify(referenceRouteTable(state, revision)),
        );
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  it("lists a model's serving endpoints by replica index, on the newest version that serves", () => {
    const state = emptyClusterState();
    for (const r of [0, 1, 2]) {
      state.replicas.set(replicaId("s", r), {
        server: "s",
        replica: r,
        capabilities: [],
        memoryBytes: 1,
        endpoints: r === 1 ? { http: `http://s-${r}` } : { http: `http://s-${r}`, grpc: `s-${r}:9501` },
        loaded: [],
        draining: false,
        registeredAt: 0,
      });
    }
    state.models.set("m", {
      name: "m",
      resource: { kind: "Model", metadata: { name: "m" }, spec: {} } as ModelResource,
      deleting: false,
      state: "ModelProgressing",
      versions: [
        {
          version: 1,
          specKey: "1",
          storageUri: "file:///m",
          memoryBytes: 1,
          requirements: [],
          parameters: [],
          replicas: [{ server: "s", replica: 0, state: "Available" }],
        },
        {
          version: 2,
          specKey: "2",
          storageUri: "file:///m",
          memoryBytes: 1,
          requirements: [],
          parameters: [],
          replicas: [
            { server: "s", replica: 2, state: "Available" },
            { server: "s", replica: 0, state: "Loading" },
            { server: "s", replica: 1, state: "Loaded" },
          ],
        },
      ],
    });
    expect(buildRouteTable(state, 7).models.m).toEqual({
      name: "m",
      version: 2,
      state: "ModelProgressing",
      endpoints: [
        { server: "s", replica: 1, version: 2, http: "http://s-1" },
        { server: "s", replica: 2, version: 2, http: "http://s-2", grpc: "s-2:9501" },
      ],
    });
  });

  it("leaves the state's replica lists in their order", () => {
    fc.assert(
      fc.property(stateArb, (state) => {
        const before = JSON.stringify([...state.models.values()]);
        buildRouteTable(state, 1);
        expect(JSON.stringify([...state.models.values()])).toBe(before);
      }),
      { seed: SEED, numRuns: 100 },
    );
  });

  it("lists each pipeline with its state and its inputs and outputs read from its spec; a terminated one not at all", () => {
    const state = emptyClusterState();
    const resource = (name: string): PipelineResource => ({
      apiVersion: "mlops.seldon.io/v1alpha1",
      kind: "Pipeline",
      metadata: { name },
      spec: { steps: [{ name: "add10" }, { name: "mul10", inputs: ["add10"] }], output: { steps: ["mul10"] } },
    });
    state.pipelines.set("chain", { name: "chain", resource: resource("chain"), state: "PipelineReady" });
    state.pipelines.set("gone", { name: "gone", resource: resource("gone"), state: "PipelineTerminated" });
    expect(buildRouteTable(state, 1).pipelines).toEqual({
      chain: { name: "chain", state: "PipelineReady", io: pipelineIo("chain", resource("chain").spec) },
    });
    expect(buildRouteTable(state, 1).pipelines.chain?.io).toEqual({
      inputs: [{ model: "add10", side: "inputs" }],
      outputs: [{ model: "mul10", side: "outputs" }],
    });
  });

  it("treats tables that differ only in revision as the same routes", () => {
    fc.assert(
      fc.property(stateArb, (state) => {
        expect(sameRoutes(buildRouteTable(state, 1), buildRouteTable(state, 2))).toBe(true);
      }),
      { seed: SEED, numRuns: 50 },
    );
  });
});

describe("routeTableItemSize", () => {
  it("measures the table's JSON in UTF-8 bytes and compares it with the store's item limit", () => {
    const table: RouteTable = { revision: 1, models: {}, pipelines: {}, experiments: {} };
    const small = routeTableItemSize(table);
    expect(small).toEqual({ bytes: Buffer.byteLength(JSON.stringify(table)), fits: true, limit: MAX_VALUE_BYTES });
    // Multi-byte characters count as bytes, not characters.
    table.pipelines.ü = { name: "ü".repeat(MAX_VALUE_BYTES / 2), state: "PipelineReady" };
    const big = routeTableItemSize(table);
    expect(big.bytes).toBe(Buffer.byteLength(JSON.stringify(table), "utf8"));
    expect(big.bytes).toBeGreaterThan(MAX_VALUE_BYTES);
    expect(big.fits).toBe(false);
  });
});

describe("routeTableToStore", () => {
  function tableOf(models: number): RouteTable {
    const table: RouteTable = { revision: 3, models: {}, pipelines: {}, experiments: {} };
    for (let i = 0; i < models; i++) {
      const endpoints = [0, 1].map((r) => ({
        server: `srv-${i % 20}`,
        replica: (i + r) % 50,
        version: 1,
        http: `http://srv-${i % 20}-${(i + r) % 50}.tern.internal:9500`,
        grpc: `srv-${i % 20}-${(i + r) % 50}.tern.internal:9501`,
      }));
      table.models[`m${i}`] = { name: `m${i}`, version: 1, state: "ModelAvailable", endpoints };
    }
    return table;
  }

  it("stores a table that fits one item as it is", () => {
    const table = tableOf(10);
    const stored = routeTableToStore(table);
    expect(stored).toMatchObject({ packed: false, fits: true });
    expect(stored.value).toBe(table);
  });

  it("packs a table of 10 000 two-replica models into one item, and it unpacks to the same table", () => {
    const table = tableOf(10_000);
    expect(routeTableItemSize(table).fits).toBe(false);
    const stored = routeTableToStore(table);
    expect(stored).toMatchObject({ packed: true, fits: true, limit: MAX_VALUE_BYTES });
    expect(stored.bytes).toBe(Buffer.byteLength(JSON.stringify(stored.value)));
    expect(unpackRouteTable(JSON.parse(JSON.stringify(stored.value)))).toEqual(table);
  });
});
