/**
 * Scheduler benchmark (not a test): placement of 10 000 models onto 1 000 server replicas across 20 servers, the
 * rescheduling after one server replica is lost, the scheduler's full reconcile pass (the pure function the live
 * scheduler runs after every change) before and after that loss, the route-table rebuild, and the route table's size.
 *
 *   npm run bench:scheduler            (node --import tsx bench/scheduler/run.ts)
 *
 * Optional: BENCH_BASELINE=<dir> also measures an older `reconcile.ts` and `build-routes.ts` kept in <dir> (see
 * bench/results/scheduler.md for the recipe), checks that they produce the same states and tables, and records both.
 *
 * Writes bench/results/scheduler.json and bench/results/scheduler.md. Inputs come from a seeded PRNG, so every run
 * measures the same cluster and model set. Each figure is the median of several runs after a warm-up run (the first,
 * cold run is recorded too).
 */
import { writeFileSync } from "node:fs";
import os from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { ModelResource, ReplicaState, ServerResource } from "@tern/core";
import { buildRouteTable, routeTableItemSize, routeTableToStore } from "../../packages/scheduler/src/build-routes.js";
import { newVersion } from "../../packages/scheduler/src/model-spec.js";
import {
  applyDecision,
  createPlacer,
  type ModelDemand,
  type PlacementDecision,
  type PlacementOptions,
  placeAll,
  placeModel,
  type ServerView,
} from "../../packages/scheduler/src/placement.js";
import { type ReconcileOptions, reconcile } from "../../packages/scheduler/src/reconcile.js";
import {
  type ClusterState,
  cloneClusterState,
  emptyClusterState,
  type ModelRecord,
  type ReplicaRecord,
  replicaId,
} from "../../packages/scheduler/src/records.js";

const SEED = 0x7e2a;
const MODELS = 10_000;
const SERVERS = 20;
const REPLICAS_PER_SERVER = 50; // 1 000 server replicas
const REPLICA_MEMORY = 8 * 2 ** 30;
const MI = 2 ** 20;
const OPTIONS: PlacementOptions = { overcommitPercent: 0 };
const RUNS = { placement: 7, reschedule: 21, routes: 21, reconcile: 21, reconcileFull: 7, baseline: 3 };
const TARGETS_MS = { placement: 1000, reschedule: 50, routes: 50 };
/** Model counts whose route-table JSON size is recorded (the table is one store item, capped near 400 KB). */
const ROUTE_SIZE_AT = [1_000, 10_000] as const;

/** Capability mixes of the server types, cycled over the 20 servers. */
const SERVER_TYPES: readonly string[][] = [
  ["onnx"],
  ["sklearn", "xgboost", "mlflow"],
  ["onnx", "sklearn"],
  ["onnx", "tensorflow", "pytorch", "triton"],
  ["sklearn", "xgboost", "gpu"],
];

/** mulberry32: a tiny seeded PRNG, so the benchmark's inputs are the same on every run. */
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

function buildCluster(): ServerView[] {
  return Array.from({ length: SERVERS }, (_, s) => ({
    name: `server-${String(s).padStart(2, "0")}`,
    capabilities: SERVER_TYPES[s % SERVER_TYPES.length]!,
    deleting: false,
    desiredReplicas: REPLICAS_PER_SERVER,
    replicas: Array.from({ length: REPLICAS_PER_SERVER }, (_, index) => ({
      index,
      connected: true,
      draining: false,
      memoryBytes: REPLICA_MEMORY,
      loadedBytes: 0,
      reservedBytes: 0,
      models: [],
    })),
  }));
}

function buildModels(servers: ServerView[], random: () => number): ModelDemand[] {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  return Array.from({ length: MODELS }, (_, i) => {
    // Requirements: one or two capabilities of one server type, so that some server can always qualify.
    const type = pick(SERVER_TYPES);
    const first = pick(type);
    const requirements = random() < 0.3 ? [...new Set([first, pick(type)])] : [first];
    const demand: ModelDemand = {
      name: `model-${String(i).padStart(5, "0")}`,
      version: 1,
      memoryBytes: (64 + Math.floor(random() * 449)) * MI, // 64Mi–512Mi
      replicas: 1 + Math.floor(random() * 3), // 1–3
      requirements,
    };
    if (random() < 0.02) {
      const qualifying = servers.filter((s) => requirements.every((r) => s.capabilities.includes(r)));
      demand.server = pick(qualifying).name;
    }
    if (random() < 0.1) demand.minReplicas = 1;
    return demand;
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

let peakHeapUsed = 0;
function sampleMemory(): void {
  peakHeapUsed = Math.max(peakHeapUsed, process.memoryUsage().heapUsed);
}

interface Timing {
  coldMs: number;
  medianMs: number;
  minMs: number;
  maxMs: number;
  runs: number;
}

/** Runs `fn` once cold, then `runs` times; returns the median of those runs (and keeps the last result). */
function measure<T>(runs: number, fn: () => T): { timing: Timing; result: T } {
  let start = performance.now();
  let result = fn();
  const coldMs = performance.now() - start;
  sampleMemory();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    start = performance.now();
    result = fn();
    times.push(performance.now() - start);
    sampleMemory();
  }
  const round = (x: number) => Math.round(x * 100) / 100;
  return {
    timing: {
      coldMs: round(coldMs),
      medianMs: round(median(times)),
      minMs: round(Math.min(...times)),
      maxMs: round(Math.max(...times)),
      runs,
    },
    result,
  };
}

function counts(decisions: readonly PlacementDecision[]): Record<PlacementDecision["status"], number> {
  const c = { placed: 0, partial: 0, failed: 0 };
  for (const d of decisions) c[d.status]++;
  return c;
}

/** The demand as the reconciler would pass it once a version has replicas: with its current placement. */
function withCurrent(m: ModelDemand, d: PlacementDecision): ModelDemand {
  return d.replicas.length > 0 && d.server !== undefined
    ? { ...m, current: { server: d.server, replicas: d.replicas } }
    : m;
}

/**
 * The incremental path after an agent vanishes: drop the replica from the views, then re-place only the model
 * versions it held, one by one with placeModel against the updated views (each decision's reservations applied before
 * the next). Failed models are not retried here: a lost replica frees no memory anywhere else.
 */
function rescheduleAfterLoss(
  views: ServerView[],
  lost: { server: string; index: number },
  demands: ReadonlyMap<string, ModelDemand>,
  decisions: ReadonlyMap<string, PlacementDecision>,
  useSession = false,
): { decisions: PlacementDecision[]; moved: number } {
  const server = views.find((s) => s.name === lost.server)!;
  const gone = server.replicas.find((r) => r.index === lost.index)!;
  let next = views.map((s) =>
    s === server ? { ...s, replicas: s.replicas.filter((r) => r.index !== lost.index) } : s,
  );
  const out: PlacementDecision[] = [];
  let moved = 0;
  const placer = useSession ? createPlacer(next, OPTIONS) : undefined;
  for (const held of gone.models) {
    const demand = demands.get(held.model)!;
    const before = decisions.get(held.model)!;
    const current = withCurrent(demand, {
      ...before,
      replicas: before.replicas.filter((r) => !(before.server === lost.server && r === lost.index)),
    });
    let d: PlacementDecision;
    if (placer) {
      d = placer.place(current);
    } else {
      d = placeModel(current, next, OPTIONS);
      next = applyDecision(next, current, d);
    }
    if (d.server !== before.server) moved++;
    out.push(d);
  }
  return { decisions: out, moved };
}

/** The scheduler's records for a placed model set, every placed replica Available, and one agent per server replica. */
function clusterStateFor(
  models: readonly ModelDemand[],
  placements: readonly { server: string; replicas: number[] }[],
  servers: readonly ServerView[],
): ClusterState {
  const state = emptyClusterState();
  addAgents(state, servers);
  models.forEach((m, i) => {
    const placement = placements[i]!;
    const resource = {
      apiVersion: "mlops.seldon.io/v1alpha1",
      kind: "Model",
      metadata: { name: m.name },
      spec: { storageUri: `file:///models/${m.name}`, requirements: m.requirements, replicas: m.replicas },
    } as ModelResource;
    const record: ModelRecord = {
      name: m.name,
      resource,
      versions: [
        {
          version: m.version,
          specKey: m.name,
          storageUri: resource.spec.storageUri,
          memoryBytes: m.memoryBytes,
          requirements: m.requirements,
          parameters: [],
          server: placement.server,
          replicas: placement.replicas.map((replica) => ({
            server: placement.server,
            replica,
            state: "Available" as ReplicaState,
          })),
        },
      ],
      deleting: false,
      state: "ModelAvailable",
    };
    state.models.set(m.name, record);
  });
  return state;
}

/** One registered agent per server replica of the views, with HTTP and gRPC endpoints like an ECS task's. */
function addAgents(state: ClusterState, servers: readonly ServerView[]): void {
  for (const s of servers) {
    for (const r of s.replicas) {
      const agent: ReplicaRecord = {
        server: s.name,
        replica: r.index,
        capabilities: s.capabilities,
        memoryBytes: r.memoryBytes,
        endpoints: {
          http: `http://10.0.${s.name.slice(-2)}.${r.index}:9500`,
          grpc: `10.0.${s.name.slice(-2)}.${r.index}:9501`,
        },
        loaded: [],
        draining: false,
        registeredAt: 0,
      };
      state.replicas.set(replicaId(s.name, r.index), agent);
    }
  }
}

/**
 * The scheduler's records right after the 10 000 manifests were applied to a cluster whose agents are registered:
 * Server records (capabilities given explicitly), one agent per replica, and each Model with version 1 and no replicas.
 */
function appliedState(models: readonly ModelDemand[], servers: readonly ServerView[]): ClusterState {
  const state = emptyClusterState();
  for (const s of servers) {
    const resource = {
      apiVersion: "mlops.seldon.io/v1alpha1",
      kind: "Server",
      metadata: { name: s.name },
      spec: { serverConfig: "bench", capabilities: s.capabilities, replicas: s.desiredReplicas },
    } as ServerResource;
    state.servers.set(s.name, { name: s.name, resource, deleting: false });
  }
  addAgents(state, servers);
  for (const m of models) {
    const spec: ModelResource["spec"] = {
      storageUri: `s3://models/${m.name}`,
      requirements: m.requirements,
      memory: `${m.memoryBytes / MI}Mi`,
      replicas: m.replicas,
    };
    if (m.minReplicas !== undefined) spec.minReplicas = m.minReplicas;
    if (m.server !== undefined) spec.server = m.server;
    const resource = { apiVersion: "mlops.seldon.io/v1alpha1", kind: "Model", metadata: { name: m.name }, spec };
    state.models.set(m.name, {
      name: m.name,
      resource: resource as ModelResource,
      versions: [newVersion(resource as ModelResource, 1)],
      deleting: false,
      state: "ModelProgressing",
    });
  }
  return state;
}

/** What agents do between passes: every requested load completes, every requested unload too. */
function agentsComply(state: ClusterState): void {
  for (const model of state.models.values()) {
    for (const version of model.versions) {
      version.replicas = version.replicas.filter((r) => r.state !== "UnloadRequested" && r.state !== "Unloading");
      for (const r of version.replicas) if (r.state === "LoadRequested" || r.state === "Loading") r.state = "Available";
    }
  }
}

/** Model states and replica counts of a state, for the record. */
function stateCounts(state: ClusterState): { models: Record<string, number>; loadRequested: number; serving: number } {
  const models: Record<string, number> = {};
  let loadRequested = 0;
  let serving = 0;
  for (const m of state.models.values()) {
    models[m.state] = (models[m.state] ?? 0) + 1;
    for (const v of m.versions) {
      for (const r of v.replicas) {
        if (r.state === "LoadRequested") loadRequested++;
        if (r.state === "Available" || r.state === "Loaded") serving++;
      }
    }
  }
  return { models, loadRequested, serving };
}

/** The state with only the first `n` models (by name), for route-table sizes at smaller scales. */
function firstModels(state: ClusterState, n: number): ClusterState {
  const names = [...state.models.keys()].sort().slice(0, n);
  return { ...state, models: new Map(names.map((name) => [name, state.models.get(name)!])) };
}

type ReconcileFn = (state: ClusterState, options?: ReconcileOptions) => ClusterState;
type RouteFn = typeof buildRouteTable;

/** The older reconcile and route builder to compare with, when BENCH_BASELINE names a folder holding them. */
async function loadBaseline(): Promise<{ dir: string; reconcile: ReconcileFn; buildRouteTable: RouteFn } | undefined> {
  const dir = process.env.BENCH_BASELINE;
  if (dir === undefined || dir === "") return undefined;
  const r = (await import(join(dir, "reconcile.ts"))) as { reconcile: ReconcileFn };
  const b = (await import(join(dir, "build-routes.ts"))) as { buildRouteTable: RouteFn };
  return { dir, reconcile: r.reconcile, buildRouteTable: b.buildRouteTable };
}

/** JSON of a state with its maps as entry lists, to compare two implementations' outputs. */
function stateJson(state: ClusterState): string {
  return JSON.stringify(state, (_key, value: unknown) => (value instanceof Map ? [...value.entries()] : value));
}

async function main(): Promise<void> {
  const loadBefore = os.loadavg();
  const baseline = await loadBaseline();
  const random = prng(SEED);
  const servers = buildCluster();
  const models = buildModels(servers, random);
  sampleMemory();

  // 1. Full placement of the 10 000 models on the empty cluster (the engine's batch entry point).
  const full = measure(RUNS.placement, () => placeAll(models, servers, OPTIONS));
  const placed = full.result;
  const outcome = counts(placed.decisions);
  const replicasPlaced = placed.decisions.reduce((n, d) => n + (d.status === "failed" ? 0 : d.replicas.length), 0);

  // 2. One server replica lost: the one holding the most model replicas (the worst case for this step). The engine
  // alone: re-place only the versions it held.
  const demands = new Map(models.map((m) => [m.name, m]));
  const decisionsByModel = new Map(placed.decisions.map((d) => [d.model, d]));
  let lost = { server: "", index: -1, held: -1 };
  for (const s of placed.servers) {
    for (const r of s.replicas)
      if (r.models.length > lost.held) lost = { server: s.name, index: r.index, held: r.models.length };
  }
  const resched = measure(RUNS.reschedule, () => rescheduleAfterLoss(placed.servers, lost, demands, decisionsByModel));
  const reschedOutcome = counts(resched.result.decisions);
  const reschedSession = measure(RUNS.reschedule, () =>
    rescheduleAfterLoss(placed.servers, lost, demands, decisionsByModel, true),
  );

  // 2b. For comparison: a pass that re-places EVERY model with the engine alone.
  const placedWithCurrent = models.map((m) => withCurrent(m, decisionsByModel.get(m.name)!));
  const perModelPass = measure(3, () => {
    let views = placed.servers;
    for (const m of placedWithCurrent) views = applyDecision(views, m, placeModel(m, views, OPTIONS));
    return views;
  });
  const placerPass = measure(RUNS.placement, () => {
    const placer = createPlacer(placed.servers, OPTIONS);
    for (const m of placedWithCurrent) placer.place(m);
    return placer.views();
  });
  const batchPass = measure(RUNS.placement, () => placeAll(placedWithCurrent, placed.servers, OPTIONS));

  // 3. The scheduler's reconcile pass (packages/scheduler/src/reconcile.ts), the pure function the live scheduler runs
  // after every change, over the scheduler's own records.
  // 3a. Right after the 10 000 manifests are applied: the pass places every model.
  const applied = appliedState(models, servers);
  sampleMemory();
  const placingPass = measure(RUNS.reconcileFull, () => reconcile(applied));
  const placedCounts = stateCounts(placingPass.result);
  // 3b. Steady state: every load reported, one more pass derives ModelAvailable.
  const loaded = cloneClusterState(placingPass.result);
  agentsComply(loaded);
  const steady = reconcile(loaded);
  const steadyCounts = stateCounts(steady);
  sampleMemory();
  const steadyPass = measure(RUNS.reconcile, () => reconcile(steady));
  const steadyFull = measure(RUNS.reconcileFull, () => reconcile(steady, { skipSettled: false }));
  // 3c. The agent holding the most model replicas vanishes (the scheduler deletes its record, then reconciles).
  const holding = new Map<string, number>();
  for (const m of steady.models.values())
    for (const r of m.versions[0]!.replicas)
      holding.set(replicaId(r.server, r.replica), (holding.get(replicaId(r.server, r.replica)) ?? 0) + 1);
  const [lostId, lostHeld] = [...holding].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))[0]!;
  const afterLoss: ClusterState = { ...steady, replicas: new Map(steady.replicas) };
  afterLoss.replicas.delete(lostId);
  const lossPass = measure(RUNS.reconcile, () => reconcile(afterLoss));
  const lossFull = measure(RUNS.reconcileFull, () => reconcile(afterLoss, { skipSettled: false }));
  const lossCounts = stateCounts(lossPass.result);
  const lossMoved = [...lossPass.result.models.values()].filter((m) =>
    m.versions[0]!.replicas.some((r) => r.state === "LoadRequested"),
  ).length;
  // The two modes must agree (the unit tests check this on random histories; this checks it at scale).
  const modesAgree =
    stateJson(steadyPass.result) === stateJson(steadyFull.result) &&
    stateJson(lossPass.result) === stateJson(lossFull.result);

  // 4. Route-table rebuild from the steady records (the scheduler's own buildRouteTable); and the same for 10 000
  // models with 10 replicas each (Seldon's second figure).
  const routes = measure(RUNS.routes, () => buildRouteTable(steady, 1));
  const routedModels = Object.keys(routes.result.models).length;
  const routedEndpoints = Object.values(routes.result.models).reduce((n, r) => n + r.endpoints.length, 0);
  const tenEach = models.map((_, i) => {
    const s = servers[i % SERVERS]!;
    const start = (i * 7) % (REPLICAS_PER_SERVER - 10);
    return { server: s.name, replicas: Array.from({ length: 10 }, (_, k) => start + k) };
  });
  const state10 = clusterStateFor(models, tenEach, servers);
  sampleMemory();
  const routes10 = measure(RUNS.routes, () => buildRouteTable(state10, 1));
  const routed10Endpoints = Object.values(routes10.result.models).reduce((n, r) => n + r.endpoints.length, 0);
  sampleMemory();

  // 5. Size of the route table as one store item (routes/current).
  const routeSizes = ROUTE_SIZE_AT.map((n) => {
    const table = buildRouteTable(firstModels(steady, n), 1);
    const size = routeTableItemSize(table);
    const endpoints = Object.values(table.models).reduce((k, r) => k + r.endpoints.length, 0);
    return { models: n, endpoints, bytes: size.bytes, bytesPerModel: Math.round(size.bytes / n), fits: size.fits };
  });
  const size10 = routeTableItemSize(routes10.result);
  const itemLimit = routeTableItemSize(routes.result).limit;
  // What the scheduler stores when the plain table does not fit: the table packed (Brotli). Timed, as it runs on
  // every write that changes routes.
  const packed = measure(RUNS.routes, () => routeTableToStore(routes.result));
  const packed10 = measure(RUNS.routes, () => routeTableToStore(routes10.result));
  const packedOf = (p: typeof packed) => ({ ...p.timing, bytes: p.result.bytes, fits: p.result.fits });

  // 6. Optional: the older implementation on the same inputs.
  let before: Record<string, unknown> | undefined;
  if (baseline !== undefined) {
    const oldPlacing = measure(RUNS.baseline, () => baseline.reconcile(applied));
    const oldSteadyInput = cloneClusterState(oldPlacing.result);
    agentsComply(oldSteadyInput);
    const oldSteady = baseline.reconcile(oldSteadyInput);
    const oldSteadyPass = measure(RUNS.baseline, () => baseline.reconcile(steady));
    const oldLossPass = measure(RUNS.baseline, () => baseline.reconcile(afterLoss));
    const oldRoutes = measure(RUNS.routes, () => baseline.buildRouteTable(steady, 1));
    const oldRoutes10 = measure(RUNS.routes, () => baseline.buildRouteTable(state10, 1));
    before = {
      dir: baseline.dir,
      reconcilePlacingAll: oldPlacing.timing,
      reconcileSteady: oldSteadyPass.timing,
      reconcileAfterLoss: oldLossPass.timing,
      routeTableRebuild: oldRoutes.timing,
      routeTableRebuild10Replicas: oldRoutes10.timing,
      sameOutputs: {
        placingPass: stateJson(oldPlacing.result) === stateJson(placingPass.result),
        steadyState: stateJson(oldSteady) === stateJson(steady),
        steadyPass: stateJson(oldSteadyPass.result) === stateJson(steadyPass.result),
        afterLossPass: stateJson(oldLossPass.result) === stateJson(lossPass.result),
        routeTable: JSON.stringify(oldRoutes.result) === JSON.stringify(routes.result),
        routeTable10Replicas: JSON.stringify(oldRoutes10.result) === JSON.stringify(routes10.result),
      },
    };
  }

  const peakRssMiB = Math.round(process.resourceUsage().maxRSS / 1024);
  const peakHeapMiB = Math.round(peakHeapUsed / 2 ** 20);
  const cpu = os.cpus()[0]?.model ?? "unknown";
  const nproc = os.availableParallelism();
  const date = new Date().toISOString();
  const load = {
    before: loadBefore.map((x) => Math.round(x * 100) / 100),
    after: os.loadavg().map((x) => Math.round(x * 100) / 100),
  };

  const result = {
    command:
      baseline === undefined ? "npm run bench:scheduler" : `BENCH_BASELINE=${baseline.dir} npm run bench:scheduler`,
    date,
    machine: {
      nproc,
      cpu,
      node: process.version,
      platform: `${os.platform()} ${os.release()}`,
      totalMemGiB: Math.round(os.totalmem() / 2 ** 30),
      loadAverage1_5_15: load,
    },
    setup: {
      seed: SEED,
      models: MODELS,
      servers: SERVERS,
      serverReplicas: SERVERS * REPLICAS_PER_SERVER,
      replicaMemory: "8Gi",
      modelMemory: "64Mi–512Mi uniform",
      modelReplicas: "1–3 uniform",
      pinned: models.filter((m) => m.server !== undefined).length,
      withMinReplicas: models.filter((m) => m.minReplicas !== undefined).length,
      serverTypes: SERVER_TYPES,
      overcommitPercent: OPTIONS.overcommitPercent,
    },
    fullPlacement: { ...full.timing, outcome, replicasPlaced },
    replicaLossReschedule: {
      ...resched.timing,
      lostReplica: `${lost.server}/${lost.index}`,
      modelsOnIt: lost.held,
      outcome: reschedOutcome,
      movedToAnotherServer: resched.result.moved,
      withPlacerSession: reschedSession.timing,
    },
    fullRepassForComparison: {
      placeModelPerModel: perModelPass.timing,
      placerSession: placerPass.timing,
      placeAllWithCurrent: batchPass.timing,
    },
    reconcilePass: {
      placingAll: { ...placingPass.timing, result: placedCounts },
      steadyState: { counts: steadyCounts },
      steady: steadyPass.timing,
      steadyFullPass: steadyFull.timing,
      afterReplicaLoss: {
        ...lossPass.timing,
        lostReplica: lostId,
        modelReplicasOnIt: lostHeld,
        modelsGettingANewReplica: lossMoved,
        result: lossCounts,
      },
      afterReplicaLossFullPass: lossFull.timing,
      skipAndFullPassAgree: modesAgree,
    },
    routeTableRebuild: { ...routes.timing, models: routedModels, endpoints: routedEndpoints },
    routeTableRebuild10Replicas: {
      ...routes10.timing,
      models: Object.keys(routes10.result.models).length,
      endpoints: routed10Endpoints,
    },
    routeTableItem: {
      limitBytes: itemLimit,
      sizes: routeSizes,
      tenReplicasEach: { models: MODELS, endpoints: routed10Endpoints, bytes: size10.bytes, fits: size10.fits },
      packed: { twoReplicasEach: packedOf(packed), tenReplicasEach: packedOf(packed10) },
    },
    before,
    peakMemory: { rssMiB: peakRssMiB, heapUsedMiB: peakHeapMiB },
    targets: {
      fullPlacementMs: TARGETS_MS.placement,
      rescheduleMs: TARGETS_MS.reschedule,
      routeTableMs: TARGETS_MS.routes,
      met: {
        fullPlacement: full.timing.medianMs <= TARGETS_MS.placement,
        reschedule: resched.timing.medianMs <= TARGETS_MS.reschedule,
        rescheduleByReconcile: lossPass.timing.medianMs <= TARGETS_MS.reschedule,
        routeTable: routes.timing.medianMs <= TARGETS_MS.routes,
      },
    },
    seldonPublished: { routeUpdate10kModelsS: 0.4, routeUpdate10kModels10ReplicasS: 2.1 },
  };

  const ok = (b: boolean) => (b ? "met" : "MISSED");
  const kib = (b: number) => `${Math.round(b / 1024)} KiB`;
  const lines = [
    `full placement (10 000 models → 1 000 replicas): ${full.timing.medianMs} ms median (cold ${full.timing.coldMs} ms) — ${outcome.placed} placed, ${outcome.partial} partial, ${outcome.failed} failed, ${replicasPlaced} replicas`,
    `one-replica-loss rescheduling, engine only (${lost.held} models on ${lost.server}/${lost.index}): ${resched.timing.medianMs} ms median (cold ${resched.timing.coldMs} ms); with one placer session ${reschedSession.timing.medianMs} ms`,
    `  for comparison, the engine re-placing all 10 000: placeModel per model ${perModelPass.timing.medianMs} ms, one createPlacer session ${placerPass.timing.medianMs} ms, placeAll ${batchPass.timing.medianMs} ms`,
    `reconcile pass placing all 10 000 applied models: ${placingPass.timing.medianMs} ms median (cold ${placingPass.timing.coldMs} ms) — ${JSON.stringify(placedCounts.models)}, ${placedCounts.loadRequested} loads requested`,
    `reconcile pass, steady (${JSON.stringify(steadyCounts.models)}): ${steadyPass.timing.medianMs} ms median; every model through placement ${steadyFull.timing.medianMs} ms`,
    `reconcile pass after losing ${lostId} (${lostHeld} model replicas): ${lossPass.timing.medianMs} ms median (cold ${lossPass.timing.coldMs} ms); every model through placement ${lossFull.timing.medianMs} ms; ${lossMoved} models get a new replica; both modes agree: ${modesAgree}`,
    `route-table rebuild (${routedModels} models, ${routedEndpoints} endpoints): ${routes.timing.medianMs} ms median (cold ${routes.timing.coldMs} ms)`,
    `route-table rebuild, 10 replicas each (${routed10Endpoints} endpoints): ${routes10.timing.medianMs} ms median`,
    `route-table item size: ${routeSizes.map((r) => `${r.models} models ${kib(r.bytes)} (${r.fits ? "fits" : "TOO BIG"})`).join(", ")}, 10 000 × 10 replicas ${kib(size10.bytes)}; limit ${kib(itemLimit)}`,
    ...(before === undefined
      ? []
      : [
          `before (${baseline!.dir}): reconcile placing all ${(before.reconcilePlacingAll as Timing).medianMs} ms, steady ${(before.reconcileSteady as Timing).medianMs} ms, after loss ${(before.reconcileAfterLoss as Timing).medianMs} ms, route table ${(before.routeTableRebuild as Timing).medianMs} ms, ×10 replicas ${(before.routeTableRebuild10Replicas as Timing).medianMs} ms; same outputs: ${JSON.stringify(before.sameOutputs)}`,
        ]),
    `peak memory: rss ${peakRssMiB} MiB, heapUsed ${peakHeapMiB} MiB`,
    `targets: placement ≤ 1 s ${ok(result.targets.met.fullPlacement)}, rescheduling ≤ 50 ms ${ok(result.targets.met.reschedule)} (engine) / ${ok(result.targets.met.rescheduleByReconcile)} (reconcile pass), route table ≤ 50 ms ${ok(result.targets.met.routeTable)}`,
  ];
  for (const line of lines) console.log(line);

  const here = dirname(fileURLToPath(import.meta.url));
  const resultsDir = join(here, "..", "results");
  writeFileSync(join(resultsDir, "scheduler.json"), `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(join(resultsDir, "scheduler.md"), markdown(result, lines));
  console.log(`wrote ${join("bench", "results", "scheduler.json")} and scheduler.md`);
}

function markdown(r: ReturnType<typeof JSON.parse>, lines: string[]): string {
  const t = (x: Timing) => `${x.medianMs} ms (min ${x.minMs}, max ${x.maxMs}, cold ${x.coldMs}; ${x.runs} runs)`;
  const ok = (b: boolean) => (b ? "met" : "**MISSED**");
  const kib = (b: number) => `${Math.round(b / 1024)} KiB`;
  const rp = r.reconcilePass;
  const b = r.before;
  const was = (x: Timing | undefined) => (x === undefined ? "—" : `${x.medianMs} ms`);
  const sizes = r.routeTableItem.sizes as {
    models: number;
    endpoints: number;
    bytes: number;
    bytesPerModel: number;
    fits: boolean;
  }[];
  return `# Scheduler benchmark

Produced by \`${r.command}\` (\`node --import tsx bench/scheduler/run.ts\`) on ${r.date}.
Machine: ${r.machine.nproc} CPUs (\`nproc\`), ${r.machine.cpu}, ${r.machine.totalMemGiB} GiB, Node ${r.machine.node}, ${r.machine.platform}.
The machine is shared with other work: load average (1, 5, 15 min) was ${r.machine.loadAverage1_5_15.before.join(", ")} before
the run and ${r.machine.loadAverage1_5_15.after.join(", ")} after, on ${r.machine.nproc} CPUs. Every figure is a median of several runs after a warm-up run.

| Measurement (10 000 models, 1 000 server replicas in 20 servers) | Median | Before this change${b ? "" : " (not measured in this run)"} | Target | |
|---|---|---|---|---|
| Full placement (\`placeAll\` on the empty cluster) | ${r.fullPlacement.medianMs} ms | — | ≤ 1 000 ms | ${ok(r.targets.met.fullPlacement)} |
| Rescheduling after one replica loss, placement engine only | ${r.replicaLossReschedule.medianMs} ms | — | ≤ 50 ms | ${ok(r.targets.met.reschedule)} |
| Rescheduling after one replica loss, **the scheduler's full reconcile pass** | ${rp.afterReplicaLoss.medianMs} ms | ${was(b?.reconcileAfterLoss)} | ≤ 50 ms | ${ok(r.targets.met.rescheduleByReconcile)} |
| Reconcile pass, steady cluster (nothing to do) | ${rp.steady.medianMs} ms | ${was(b?.reconcileSteady)} | — | |
| Reconcile pass placing all 10 000 freshly applied models | ${rp.placingAll.medianMs} ms | ${was(b?.reconcilePlacingAll)} | — | |
| Route-table rebuild (${r.routeTableRebuild.models} models, ${r.routeTableRebuild.endpoints} endpoints) | ${r.routeTableRebuild.medianMs} ms | ${was(b?.routeTableRebuild)} | ≤ 50 ms | ${ok(r.targets.met.routeTable)} |
| Route-table rebuild, 10 replicas each (${r.routeTableRebuild10Replicas.endpoints} endpoints) | ${r.routeTableRebuild10Replicas.medianMs} ms | ${was(b?.routeTableRebuild10Replicas)} | — | |
| Peak memory (whole benchmark process) | RSS ${r.peakMemory.rssMiB} MiB, heapUsed ${r.peakMemory.heapUsedMiB} MiB | | — | |

Seldon Core v2's published micro-benchmark, for comparison: a route update for 10 000 models takes ~0.4 s, and ~2.1 s with
10 replicas each. (Different machines and different work: Seldon's figure is its Envoy route update; ours is building the
route table the gateways read: ${r.routeTableRebuild.medianMs} ms and ${r.routeTableRebuild10Replicas.medianMs} ms.)
${
  b
    ? `
"Before" is the committed implementation (commit b9c9d9e: \`reconcile.ts\` calling \`placeModel\` once per model, and
\`build-routes.ts\` with an object spread per endpoint and a copy-and-sort of every replica list), measured in the same
process on the same inputs. It produced exactly the same outputs: ${Object.entries(b.sameOutputs)
        .map(([k, v]) => `${k} ${v ? "same" : "**DIFFERENT**"}`)
        .join(", ")}.
To reproduce, put the old files in a folder with their imports made absolute, then run with \`BENCH_BASELINE\`:

\`\`\`sh
mkdir -p /tmp/sched-baseline && for f in reconcile build-routes; do git show b9c9d9e:packages/scheduler/src/$f.ts |
  sed -e "s#\\"@tern/core\\"#\\"$PWD/packages/core/src/index.ts\\"#" -e 's#"\\./reconcile\\.js"#"./reconcile.ts"#' \\
      -e "s#\\"\\./\\([a-z-]*\\)\\.js\\"#\\"$PWD/packages/scheduler/src/\\1.ts\\"#" > /tmp/sched-baseline/$f.ts; done
BENCH_BASELINE=/tmp/sched-baseline npm run bench:scheduler
\`\`\`
`
    : ""
}
## Route table size (one DynamoDB item)

The route table is stored as one item, \`routes/current\`; the store accepts at most ${r.routeTableItem.limitBytes} bytes of JSON
(DynamoDB's item limit is 400 KB).

| Models | Endpoints | JSON size | Per model | Fits one item |
|---|---|---|---|---|
${sizes.map((x) => `| ${x.models} | ${x.endpoints} | ${kib(x.bytes)} (${x.bytes} bytes) | ${x.bytesPerModel} bytes | ${x.fits ? "yes" : "**no**"} |`).join("\n")}
| ${r.routeTableItem.tenReplicasEach.models} × 10 replicas | ${r.routeTableItem.tenReplicasEach.endpoints} | ${kib(r.routeTableItem.tenReplicasEach.bytes)} | ${Math.round(r.routeTableItem.tenReplicasEach.bytes / r.routeTableItem.tenReplicasEach.models)} bytes | ${r.routeTableItem.tenReplicasEach.fits ? "yes" : "**no**"} |

Names here are short (\`model-01234\`, \`server-12\`, \`http://10.0.12.34:9500\`); longer names make it bigger. With two
replicas per model the plain table overflows one item at roughly 1 300 models; the scheduler then stores it packed
(Brotli, base64; \`routeTableToStore\`), timed here because it runs on every write that changes routes:

| Packed table | Stored size | Fits one item | Pack time (median) |
|---|---|---|---|
| ${r.setup.models} models, 2 replicas each | ${kib(r.routeTableItem.packed.twoReplicasEach.bytes)} | ${r.routeTableItem.packed.twoReplicasEach.fits ? "yes" : "**no**"} | ${r.routeTableItem.packed.twoReplicasEach.medianMs} ms |
| ${r.setup.models} models, 10 replicas each | ${kib(r.routeTableItem.packed.tenReplicasEach.bytes)} | ${r.routeTableItem.packed.tenReplicasEach.fits ? "yes" : "**no**"} | ${r.routeTableItem.packed.tenReplicasEach.medianMs} ms |

See docs/scheduler.md, "Route table".

## What was measured

- **Inputs** (seeded PRNG, seed ${r.setup.seed}): ${r.setup.servers} servers × ${r.setup.serverReplicas / r.setup.servers} replicas of ${r.setup.replicaMemory}; server types cycle over the
  capability mixes ${r.setup.serverTypes.map((x: string[]) => `[${x.join(", ")}]`).join(", ")}. ${r.setup.models} models: memory ${r.setup.modelMemory},
  replicas ${r.setup.modelReplicas}, one or two requirements taken from one server type, ${r.setup.pinned} pinned to a qualifying server,
  ${r.setup.withMinReplicas} with \`minReplicas: 1\`. Over-commit ${r.setup.overcommitPercent} %.
- **Full placement**: \`placeAll\` over the empty cluster — ${t(r.fullPlacement)}. Outcome: ${r.fullPlacement.outcome.placed} placed,
  ${r.fullPlacement.outcome.partial} partial, ${r.fullPlacement.outcome.failed} failed, ${r.fullPlacement.replicasPlaced} replicas placed.
- **Rescheduling after one replica loss, engine only**: from the placed views, the replica holding the most model replicas
  (${r.replicaLossReschedule.lostReplica}, ${r.replicaLossReschedule.modelsOnIt} models) is removed; only the versions it held are re-placed, one by one with \`placeModel\` and
  \`applyDecision\` — ${t(r.replicaLossReschedule)}; ${r.replicaLossReschedule.movedToAnotherServer} moved to another server. With one \`createPlacer\` session instead: ${t(r.replicaLossReschedule.withPlacerSession)}.
- **The engine re-placing every model** (current placements given, nothing moves): \`placeModel\` per model
  ${t(r.fullRepassForComparison.placeModelPerModel)}; one \`createPlacer\` session ${t(r.fullRepassForComparison.placerSession)};
  \`placeAll\` ${t(r.fullRepassForComparison.placeAllWithCurrent)}.
- **Reconcile pass**: \`reconcile()\` from packages/scheduler/src/reconcile.ts, the pure function the live scheduler runs after
  every change, over the scheduler's own records (Server records, one registered agent per replica, Model records).
  - Placing all 10 000 just-applied models: ${t(rp.placingAll)}. Result: ${JSON.stringify(rp.placingAll.result.models)}, ${rp.placingAll.result.loadRequested} loads
    requested. (Reconcile places models in name order, one by one; \`placeAll\` places the biggest first and packs tighter,
    which is why it fits all of them.)
  - Steady cluster (all loads reported, ${JSON.stringify(rp.steadyState.counts.models)}): ${t(rp.steady)}. With every model sent
    through placement (\`skipSettled: false\`): ${t(rp.steadyFullPass)}.
  - After the agent holding the most model replicas (${rp.afterReplicaLoss.lostReplica}, ${rp.afterReplicaLoss.modelReplicasOnIt}) is removed: ${t(rp.afterReplicaLoss)};
    ${rp.afterReplicaLoss.modelsGettingANewReplica} models get a new replica. With every model through placement: ${t(rp.afterReplicaLossFullPass)}.
    Both modes gave identical states: ${rp.skipAndFullPassAgree}.
  - Not included: what the scheduler does around the pass (cloning its state before a change, diffing records to find
    what to write, the store write itself).
- **Route-table rebuild**: \`buildRouteTable\` over the steady records — ${t(r.routeTableRebuild)}. With 10 replicas each
  (synthetic placement): ${t(r.routeTableRebuild10Replicas)}.
- **Peak memory**: \`process.resourceUsage().maxRSS\` (true peak of the process, which holds several 10 000-model states
  at once) and the highest \`process.memoryUsage().heapUsed\` sampled after every run.

## Console output

\`\`\`
${lines.join("\n")}
\`\`\`
`;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
