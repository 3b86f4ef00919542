import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  applyDecision,
  createPlacer,
  type ModelDemand,
  type PlacementDecision,
  placeAll,
  placeModel,
  type ReplicaView,
  replicaCapacity,
  type ServerView,
} from "../../src/placement.js";

// Fixed seed: the properties are deterministic functions of the generated inputs, so a fixed seed cannot flake.
const SEED = 3_2026;
const RUNS = 300;
const CAPS = ["onnx", "sklearn", "xgboost", "gpu"] as const;
const SERVER_NAMES = ["alpha", "beta", "gamma", "delta"] as const;

const replicaArb = (index: number): fc.Arbitrary<ReplicaView> =>
  fc
    .record({
      connected: fc.integer({ min: 0, max: 4 }).map((n) => n !== 0),
      draining: fc.integer({ min: 0, max: 5 }).map((n) => n === 0),
      memoryBytes: fc.integer({ min: 100, max: 1000 }),
      loadedPct: fc.integer({ min: 0, max: 100 }),
      reservedPct: fc.integer({ min: 0, max: 100 }),
    })
    .map(({ connected, draining, memoryBytes, loadedPct, reservedPct }) => {
      const loadedBytes = Math.floor((memoryBytes * loadedPct) / 200);
      const reservedBytes = Math.floor(((memoryBytes - loadedBytes) * reservedPct) / 200);
      return { index, connected, draining, memoryBytes, loadedBytes, reservedBytes, models: [] };
    });

const serverArb = (name: string): fc.Arbitrary<ServerView> =>
  fc.integer({ min: 0, max: 5 }).chain((count) =>
    fc.record({
      name: fc.constant(name),
      capabilities: fc.subarray([...CAPS], { minLength: 1 }),
      deleting: fc.integer({ min: 0, max: 7 }).map((n) => n === 0),
      desiredReplicas: fc.integer({ min: Math.max(0, count - 2), max: count + 1 }),
      replicas: fc.tuple(...Array.from({ length: count }, (_, i) => replicaArb(i))),
    }),
  );

const clusterArb: fc.Arbitrary<ServerView[]> = fc
  .subarray([...SERVER_NAMES], { minLength: 0 })
  .chain((names) => (names.length === 0 ? fc.constant([]) : fc.tuple(...names.map(serverArb))));

const modelArb = (name: string): fc.Arbitrary<ModelDemand> =>
  fc
    .record({
      version: fc.integer({ min: 1, max: 2 }),
      memoryBytes: fc.integer({ min: 0, max: 600 }),
      replicas: fc.integer({ min: 0, max: 5 }),
      minPick: fc.option(fc.integer({ min: 0, max: 5 }), { nil: undefined }),
      requirements: fc.subarray([...CAPS], { maxLength: 2 }),
      server: fc.option(fc.constantFrom(...SERVER_NAMES, "ghost"), { nil: undefined, freq: 4 }),
    })
    .map(({ minPick, ...m }) => {
      const demand: ModelDemand = { name, ...m };
      if (demand.server === undefined) delete demand.server;
      if (minPick !== undefined) demand.minReplicas = Math.min(minPick, m.replicas);
      return demand;
    });

const modelsArb: fc.Arbitrary<ModelDemand[]> = fc
  .integer({ min: 0, max: 14 })
  .chain((n) => (n === 0 ? fc.constant([]) : fc.tuple(...Array.from({ length: n }, (_, i) => modelArb(`m${i}`)))));

const optionsArb = fc.record({ overcommitPercent: fc.constantFrom(0, 10, 25, 100) });

function isCandidate(s: ServerView, r: ReplicaView): boolean {
  return r.connected && !r.draining && r.index < s.desiredReplicas;
}

function byName(servers: readonly ServerView[]): Map<string, ServerView> {
  return new Map(servers.map((s) => [s.name, s]));
}

function check(predicate: (servers: ServerView[], models: ModelDemand[], opts: { overcommitPercent: number }) => void) {
  fc.assert(fc.property(clusterArb, modelsArb, optionsArb, predicate), { seed: SEED, numRuns: RUNS });
}

describe("placeAll properties over random clusters and model sets", () => {
  it("never puts a replica over its capacity (with over-commit)", () => {
    check((servers, models, opts) => {
      const out = placeAll(models, servers, opts).servers;
      for (const s of out) {
        for (const r of s.replicas) {
          expect(r.loadedBytes + r.reservedBytes).toBeLessThanOrEqual(replicaCapacity(r.memoryBytes, opts));
        }
      }
    });
  });

  it("reserves exactly the memory of the replicas it decided, on those replicas", () => {
    check((servers, models, opts) => {
      const { decisions, servers: out } = placeAll(models, servers, opts);
      const expected = new Map<string, number>();
      decisions.forEach((d, i) => {
        if (d.status === "failed") return;
        for (const index of d.replicas) {
          const key = `${d.server}/${index}`;
          expected.set(key, (expected.get(key) ?? 0) + models[i]!.memoryBytes);
        }
      });
      servers.forEach((s, si) => {
        s.replicas.forEach((r, ri) => {
          const after = out[si]!.replicas[ri]!;
          expect(after.reservedBytes - r.reservedBytes).toBe(expected.get(`${s.name}/${r.index}`) ?? 0);
        });
      });
    });
  });

  it("puts a model version on one qualifying server, at most once per server replica, on candidate replicas", () => {
    check((servers, models, opts) => {
      const { decisions } = placeAll(models, servers, opts);
      const index = byName(servers);
      decisions.forEach((d, i) => {
        const m = models[i]!;
        expect(d.model).toBe(m.name);
        expect(d.version).toBe(m.version);
        expect(new Set(d.replicas).size).toBe(d.replicas.length);
        if (d.replicas.length === 0) return;
        const s = index.get(d.server!)!;
        expect(s.deleting).toBe(false);
        for (const req of m.requirements) expect(s.capabilities).toContain(req);
        if (m.server !== undefined) expect(d.server).toBe(m.server);
        for (const ri of d.replicas) {
          const r = s.replicas.find((x) => x.index === ri);
          expect(r).toBeDefined();
          expect(isCandidate(s, r!)).toBe(true);
        }
      });
    });
  });

  it("gives a placed model exactly its replicas and a partial one at least minReplicas; a new failed one none", () => {
    check((servers, models, opts) => {
      const { decisions } = placeAll(models, servers, opts);
      decisions.forEach((d, i) => {
        const m = models[i]!;
        if (d.status === "placed") expect(d.replicas.length).toBe(m.replicas);
        if (d.status === "partial") {
          expect(m.minReplicas).toBeDefined();
          expect(d.replicas.length).toBeGreaterThanOrEqual(Math.max(1, m.minReplicas!));
          expect(d.replicas.length).toBeLessThan(m.replicas);
          expect(d.reason).toContain(`model ${m.name}`);
        }
        if (d.status === "failed") {
          expect(d.replicas).toEqual([]); // nothing held anything yet
          expect(d.reason).toContain(`model ${m.name}`);
        }
      });
    });
  });

  it("respects a pinned server: placed there or failed", () => {
    check((servers, models, opts) => {
      const { decisions } = placeAll(models, servers, opts);
      decisions.forEach((d, i) => {
        const pinned = models[i]!.server;
        if (pinned !== undefined && d.status !== "failed") expect(d.server).toBe(pinned);
      });
    });
  });

  it("is deterministic, and the input order of models does not change the outcome", () => {
    fc.assert(
      fc.property(clusterArb, modelsArb, optionsArb, fc.nat(), (servers, models, opts, shift) => {
        const a = placeAll(models, servers, opts);
        const b = placeAll(models, servers, opts);
        expect(b).toEqual(a);
        const k = models.length === 0 ? 0 : shift % models.length;
        const rotated = [...models.slice(k), ...models.slice(0, k)].reverse();
        const c = placeAll(rotated, servers, opts);
        const byModel = (ds: PlacementDecision[]) => new Map(ds.map((d) => [d.model, d]));
        expect(byModel(c.decisions)).toEqual(byModel(a.decisions));
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it("is stable: placing again with the decisions as current placements moves nothing", () => {
    check((servers, models, opts) => {
      const first = placeAll(models, servers, opts);
      const again = models.map((m, i) => {
        const d = first.decisions[i]!;
        return d.replicas.length > 0 && d.server !== undefined
          ? { ...m, current: { server: d.server, replicas: d.replicas } }
          : m;
      });
      const second = placeAll(again, first.servers, opts);
      second.decisions.forEach((d, i) => {
        const before = first.decisions[i]!;
        if (models[i]!.replicas === 0) return; // no replica: the server it names carries no meaning
        expect({ status: d.status, server: d.server, replicas: d.replicas }).toEqual({
          status: before.status,
          server: before.server,
          replicas: before.replicas,
        });
      });
      // Nothing new was reserved either.
      expect(second.servers).toEqual(first.servers);
    });
  });

  it("agrees with placeModel for a single model", () => {
    fc.assert(
      fc.property(clusterArb, modelArb("solo"), optionsArb, (servers, m, opts) => {
        expect(placeAll([m], servers, opts).decisions[0]).toEqual(placeModel(m, servers, opts));
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it("a placer session decides like placeModel + applyDecision, model after model", () => {
    check((servers, models, opts) => {
      const placer = createPlacer(servers, opts);
      let views = servers;
      for (const m of models) {
        const expected = placeModel(m, views, opts);
        expect(placer.place(m)).toEqual(expected);
        views = applyDecision(views, m, expected);
      }
      expect(placer.views()).toEqual(views);
    });
  });
});
