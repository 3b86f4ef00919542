import {
  type AgentAssignments,
  type AgentEvent,
  type AgentHeartbeat,
  type AgentRegistered,
  type AgentRegistration,
  type AssignedModel,
  effectiveReplicas,
  emptyRouteTable,
  type Fence,
  hasCode,
  REPLICA_STATES,
  type Resource,
  type ResourceKind,
  type RouteTable,
  type StateStore,
  TernError,
  type WriteOp,
} from "@tern/core";
import type { Logger } from "pino";
import { type ActivationResult, createAutoscaler } from "./autoscaler.js";
import type { AutoscalingPolicy } from "./autoscaling.js";
import { buildRouteTable, routeTableToStore, sameRoutes } from "./build-routes.js";
import { createDataPlane, type DataPlaneOptions } from "./data-plane.js";
import { newVersion, versionKey } from "./model-spec.js";
import { loadState, versionKeyOf } from "./persistence.js";
import { type ReconcileOptions, type ReplicaDrainInfo, reconcile, replicaDrainInfo } from "./reconcile.js";
import {
  type ClusterState,
  COLLECTIONS,
  cloneClusterState,
  emptyClusterState,
  type ModelRecord,
  type PipelineRecord,
  REVISION_KEY,
  type ReplicaRecord,
  ROUTES_KEY,
  replicaId,
  type ServerRecord,
  UNLOAD_STATES,
  WANTED_STATES,
} from "./records.js";
import { processBytesChanged } from "./replica-memory.js";
import {
  type AgentViewWithStop,
  agentView,
  listStatuses,
  modelStatus,
  pipelineStatus,
  resourceStatus,
  serverStatus,
} from "./views.js";
import type { WorkerRegistry } from "./workers.js";

/** Options of {@link createScheduler}. */
export interface SchedulerOptions {
  store: StateStore;
  /** The lease fence every write carries; the store refuses writes once another scheduler holds the lease. */
  fence: Fence;
  logger: Logger;
  /** @default Date.now */
  now?: () => number;
  /** How often agents should heartbeat. @default 2000 */
  heartbeatIntervalMs?: number;
  /** An agent silent for this long is removed and its models rescheduled. @default 6000 (3 × the interval) */
  heartbeatTimeoutMs?: number;
  /** Over-commit percentage placement applies to every replica (on top of each agent's own). @default 0 */
  overcommitPercent?: number;
  /** Watch events kept for clients resuming from an older revision. @default 1000 */
  historyLimit?: number;
  /** Called once when a write is refused because the lease was lost: the process must stand by again. */
  onLeaseLost?: (error: unknown) => void;
  /** The Kafka data plane: partitions, topic names, model-gateway buckets, and the topic admin (absent: not configured). */
  dataPlane?: DataPlaneOptions;
  /** Model autoscaling knobs (docs/autoscaling.md). @default {@link DEFAULT_AUTOSCALING_POLICY} */
  autoscaling?: AutoscalingPolicy;
}

/** The autoscaling knobs when none are given: the TERN_AUTOSCALE_* defaults. */
export const DEFAULT_AUTOSCALING_POLICY: AutoscalingPolicy = {
  lagThreshold: 0.5,
  scaleUpWindowMs: 5_000,
  idleWindowMs: 60_000,
  cooldownMs: 5_000,
};

/** One change in a watch event. `status` is what `GET /v1/{kind}/{name}` would return (absent for deletes). */
export interface WatchChange {
  kind: "model" | "server" | "replica" | "pipeline" | "experiment" | "worker" | "bucket" | "routes";
  name: string;
  type: "put" | "delete";
  status?: unknown;
}

/** One committed transaction: everything that changed at one revision. */
export interface WatchEvent {
  revision: number;
  changes: WatchChange[];
}

export interface WatchSubscription {
  /** True when `fromRevision` was outside the kept history: the client must re-list (then watch from `revision`). */
  reset: boolean;
  /** The revision the stream continues from. */
  revision: number;
  unsubscribe(): void;
}

export interface WatchListener {
  event(event: WatchEvent): void;
  /** The scheduler stopped (deposed or shutting down): the stream must end. */
  close(): void;
}

export interface AssignmentsListener {
  assignments(a: AgentAssignments): void;
  close(): void;
}

/** Outcome of applying one resource, like kubectl's. */
export interface ApplyResult {
  kind: ResourceKind;
  name: string;
  action: "created" | "configured" | "unchanged";
  /** For models: the version the manifest maps to. */
  version?: number;
}

/** The active scheduler: the one process that may change state (it holds the lease). */
export interface Scheduler {
  readonly revision: number;
  /** Loads everything from the store and starts the heartbeat checker. */
  start(): Promise<void>;
  /** Stops timers and ends every stream. Writes nothing. */
  stop(): Promise<void>;
  apply(resources: Resource[]): Promise<ApplyResult[]>;
  remove(kind: ResourceKind, name: string): Promise<void>;
  list(kind: ResourceKind): unknown[];
  get(kind: ResourceKind, name: string): unknown;
  routes(): RouteTable;
  registerAgent(registration: AgentRegistration): Promise<AgentRegistered>;
  /** False when the agent is unknown (it must register again). `traffic` is its per-model report, if any. */
  heartbeat(server: string, replica: number, traffic?: AgentHeartbeat): boolean;
  /** A request arrived for a model scaled to zero: want one replica (idempotent; see `autoscaler.ts`). */
  activateModel(name: string): Promise<ActivationResult>;
  /** Runs one autoscaling pass now (it also runs on the heartbeat timer). */
  autoscale(): Promise<void>;
  /**
   * A heartbeat's `processBytes` (memory the agent's runtime process holds beyond its models): stored, and placement
   * run again, when it moved by PROCESS_BYTES_STEP or more since the stored value. No-op for an unknown agent.
   */
  reportProcessMemory(server: string, replica: number, processBytes: number): Promise<void>;
  reportEvent(server: string, replica: number, event: AgentEvent): Promise<void>;
  drainAgent(server: string, replica: number): Promise<void>;
  removeAgent(server: string, replica: number): Promise<void>;
  agentView(server: string, replica: number): AgentViewWithStop | undefined;
  /** Undefined when the agent is not registered. The listener gets the current set at once. */
  watchAssignments(server: string, replica: number, listener: AssignmentsListener): (() => void) | undefined;
  watch(fromRevision: number | undefined, listener: WatchListener): WatchSubscription;
  /** Removes agents whose heartbeat deadline passed (also runs on a timer). */
  checkHeartbeats(): Promise<void>;
  /** A snapshot of the state (a copy), for tests and diagnostics. */
  snapshot(): ClusterState;
  /** How many agents' last heartbeats are kept: never more than the registered replicas. For tests and diagnostics. */
  trackedHeartbeats(): number;
  /** Data-plane workers (model gateways, dataflow): registration, heartbeats, assignments. */
  readonly workers: WorkerRegistry;
  /** Resolves once no topic operation is running (for tests). */
  topicsIdle(): Promise<void>;
}

/** The items in one transaction besides the changed records: the revision and, when it changed, the route table. */
const RESERVED_OPS = 2;
/** The store takes at most 100 ops per write, one of which the fence uses. */
const MAX_OPS_PER_WRITE = 99;

/**
 * Creates the active scheduler. Every change runs through one queue: clone the state, apply the change, reconcile
 * (pure), write whatever differs in one fenced, version-conditional transaction that also bumps the revision (and the
 * route table when it changed), then swap the in-memory state and notify watchers and agents. A failed write leaves
 * memory untouched, so memory never runs ahead of the store.
 */
export function createScheduler(options: SchedulerOptions): Scheduler {
  const { store, fence, logger } = options;
  const now = options.now ?? Date.now;
  const heartbeatIntervalMs = options.heartbeatIntervalMs ?? 2000;
  const heartbeatTimeoutMs = options.heartbeatTimeoutMs ?? 3 * heartbeatIntervalMs;
  const historyLimit = options.historyLimit ?? 1000;
  const reconcileOptions: ReconcileOptions = { overcommitPercent: options.overcommitPercent ?? 0 };

  let state: ClusterState = emptyClusterState();
  let drain = new Map<string, ReplicaDrainInfo>();
  let versions = new Map<string, number>();
  let revision = 0;
  let routes: RouteTable = emptyRouteTable();
  const history: WatchEvent[] = [];
  const watchers = new Set<WatchListener>();
  const assignmentListeners = new Map<string, Set<AssignmentsListener>>();
  const heartbeats = new Map<string, number>();
  let queue: Promise<unknown> = Promise.resolve();
  let stopped = false;
  let leaseLost = false;
  let timer: NodeJS.Timeout | undefined;

  function ensureRunning(): void {
    if (stopped || leaseLost) throw new TernError("unavailable", "not the active scheduler", { retriable: true });
  }

  const dataPlane = createDataPlane(options.dataPlane ?? {}, {
    logger,
    now,
    heartbeatIntervalMs,
    heartbeatTimeoutMs,
    state: () => state,
    revision: () => revision,
    change: (mutate) => change(mutate),
    ensureRunning,
  });
  const autoscaler = createAutoscaler({
    policy: options.autoscaling ?? DEFAULT_AUTOSCALING_POLICY,
    now,
    logger,
    state: () => state,
    change: (mutate) => change(mutate),
    staleMs: 2 * heartbeatIntervalMs + 500,
  });
  reconcileOptions.buckets = dataPlane.bucketOptions;
  reconcileOptions.pipelines = dataPlane.pipelineOptions;

  /** Serialises every change (apply, agent events, heartbeats lapsing) so each sees the previous one's state. */
  function serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = queue.then(fn, fn);
    queue = run.catch(() => undefined);
    return run;
  }

  function change<T>(mutate: (draft: ClusterState) => T): Promise<T> {
    return serial(async () => {
      ensureRunning();
      const draft = cloneClusterState(state);
      const result = mutate(draft);
      const next = reconcile(draft, { ...reconcileOptions, pipelineStates: dataPlane.pipelineStateInputs() });
      await persist(next);
      return result;
    });
  }

  type Collection = "model" | "server" | "replica" | "pipeline" | "experiment" | "worker" | "bucket";
  const MAPS: Array<[Collection, (s: ClusterState) => Map<string, unknown>]> = [
    ["model", (s) => s.models],
    ["server", (s) => s.servers],
    ["replica", (s) => s.replicas],
    ["pipeline", (s) => s.pipelines],
    ["experiment", (s) => s.experiments],
    ["worker", (s) => s.workers],
    ["bucket", (s) => s.buckets],
  ];

  function statusOf(
    next: ClusterState,
    kind: Collection,
    id: string,
    nextDrain: Map<string, ReplicaDrainInfo>,
  ): unknown {
    switch (kind) {
      case "model":
        return modelStatus(next.models.get(id)!);
      case "server":
        return serverStatus(next, next.servers.get(id)!, nextDrain);
      case "replica": {
        const agent = next.replicas.get(id)!;
        return agentView(agent, nextDrain.get(id), heartbeats.get(id) ?? now());
      }
      case "pipeline":
        return pipelineStatus(next.pipelines.get(id)!);
      case "experiment":
        return resourceStatus(next, "Experiment", id);
      case "worker":
      case "bucket":
        return next[`${kind}s`].get(id);
    }
  }

  async function persist(next: ClusterState): Promise<void> {
    const ops: WriteOp[] = [];
    const changes: WatchChange[] = [];
    const nextDrain = replicaDrainInfo(next);
    for (const [kind, mapOf] of MAPS) {
      const before = mapOf(state);
      const after = mapOf(next);
      const collection = COLLECTIONS[kind];
      for (const [id, value] of after) {
        const prev = before.get(id);
        if (prev !== undefined && JSON.stringify(prev) === JSON.stringify(value)) continue;
        ops.push({
          type: "put",
          key: { collection, id },
          value,
          expectedVersion: versions.get(versionKeyOf(collection, id)) ?? 0,
        });
        changes.push({ kind, name: id, type: "put", status: statusOf(next, kind, id, nextDrain) });
      }
      for (const id of before.keys()) {
        if (after.has(id)) continue;
        ops.push({
          type: "delete",
          key: { collection, id },
          expectedVersion: versions.get(versionKeyOf(collection, id)),
        });
        changes.push({ kind, name: id, type: "delete" });
      }
    }
    const nextRoutes = buildRouteTable(next, revision);
    const routesChanged = !sameRoutes(nextRoutes, routes);
    if (ops.length === 0 && !routesChanged) {
      // Nothing stored changed (drain facts derive from stored records, so they did not change either).
      adopt(next, nextDrain, routes);
      return;
    }

    // Usually one transaction; a change touching more items than one transaction holds is split, each part with
    // its own revision (the route table goes with the last part).
    const chunkSize = MAX_OPS_PER_WRITE - RESERVED_OPS;
    const chunks: WriteOp[][] = [];
    for (let i = 0; i < ops.length; i += chunkSize) chunks.push(ops.slice(i, i + chunkSize));
    if (chunks.length === 0) chunks.push([]);
    let changeIndex = 0;
    for (let c = 0; c < chunks.length; c++) {
      const rev = revision + 1;
      const chunk = [...chunks[c]!];
      const last = c === chunks.length - 1;
      const revisionKey = versionKeyOf(REVISION_KEY.collection, REVISION_KEY.id);
      chunk.push({
        type: "put",
        key: REVISION_KEY,
        value: { revision: rev },
        expectedVersion: versions.get(revisionKey) ?? 0,
      });
      let tableToWrite: RouteTable | undefined;
      if (last && routesChanged) {
        tableToWrite = { ...nextRoutes, revision: rev };
        const stored = routeTableToStore(tableToWrite);
        if (stored.fits) {
          chunk.push({
            type: "put",
            key: ROUTES_KEY,
            value: stored.value,
            expectedVersion: versions.get(versionKeyOf(ROUTES_KEY.collection, ROUTES_KEY.id)) ?? 0,
          });
        } else {
          // Not even packed does one store item hold it (far beyond 10 000 models). The watch stream and this
          // scheduler's memory still carry the new table; only Lambda gateways, which read the item, keep the last
          // stored one.
          logger.error(
            { bytes: stored.bytes, limit: stored.limit },
            "route table too large for one store item even packed: routes/current not updated",
          );
        }
      }
      try {
        const written = await store.write(chunk, { fence });
        for (const item of written) versions.set(versionKeyOf(item.collection, item.id), item.version);
        for (const op of chunk) if (op.type === "delete") versions.delete(versionKeyOf(op.key.collection, op.key.id));
      } catch (err) {
        await onWriteFailure(err, c > 0);
        throw err;
      }
      revision = rev;
      const opCount = chunks[c]!.length;
      const chunkChanges = changes.slice(changeIndex, last ? changes.length : changeIndex + opCount);
      changeIndex += opCount;
      if (tableToWrite !== undefined)
        chunkChanges.push({ kind: "routes", name: "current", type: "put", status: tableToWrite });
      if (last) adopt(next, nextDrain, tableToWrite ?? routes);
      emit({ revision: rev, changes: chunkChanges });
    }
  }

  async function onWriteFailure(err: unknown, partlyWritten: boolean): Promise<void> {
    if (hasCode(err, "lease.lost")) {
      if (!leaseLost) {
        leaseLost = true;
        logger.warn({ err }, "lease lost: this scheduler stops writing");
        closeStreams();
        options.onLeaseLost?.(err);
      }
      return;
    }
    logger.error({ err }, "state write failed");
    if (partlyWritten || hasCode(err, "conflict")) {
      // Memory may no longer match the store: re-read it (the store is the truth).
      try {
        await reload();
      } catch (reloadErr) {
        logger.error({ err: reloadErr }, "re-reading the state after a failed write failed too");
      }
    }
  }

  function adopt(next: ClusterState, nextDrain: Map<string, ReplicaDrainInfo>, nextRoutes: RouteTable): void {
    const beforeSets = desiredSets(state);
    const before = state;
    state = next;
    drain = nextDrain;
    routes = nextRoutes;
    const afterSets = desiredSets(state);
    for (const [id, listeners] of assignmentListeners) {
      const before = beforeSets.get(id) ?? "[]";
      const after = afterSets.get(id) ?? "[]";
      if (before === after) continue;
      const assignments = assignmentsFor(id);
      for (const l of listeners) l.assignments(assignments);
    }
    dataPlane.adopted(before, state);
  }

  function emit(event: WatchEvent): void {
    history.push(event);
    if (history.length > historyLimit) history.splice(0, history.length - historyLimit);
    for (const w of watchers) w.event(event);
  }

  /** Every replica's desired set as canonical JSON, to notice which agents need a new assignments event. */
  function desiredSets(s: ClusterState): Map<string, string> {
    const sets = new Map<string, AssignedModel[]>();
    for (const model of s.models.values()) {
      for (const version of model.versions) {
        for (const r of version.replicas) {
          if (!WANTED_STATES.has(r.state)) continue;
          const id = replicaId(r.server, r.replica);
          const list = sets.get(id) ?? [];
          list.push({
            model: model.name,
            version: version.version,
            storageUri: version.storageUri,
            ...(version.secretName === undefined ? {} : { secretName: version.secretName }),
            // Without spec.memory our figure is a guess; 0 lets the agent account the artifact's real size.
            memoryBytes: version.memoryDefaulted ? 0 : version.memoryBytes,
            requirements: version.requirements,
            parameters: version.parameters,
          });
          sets.set(id, list);
        }
      }
    }
    const out = new Map<string, string>();
    for (const [id, list] of sets) {
      list.sort((a, b) => (a.model < b.model ? -1 : a.model > b.model ? 1 : a.version - b.version));
      out.set(id, JSON.stringify(list));
    }
    return out;
  }

  function assignmentsFor(id: string): AgentAssignments {
    const json = desiredSets(state).get(id);
    return { revision, models: json === undefined ? [] : (JSON.parse(json) as AssignedModel[]) };
  }

  function closeStreams(): void {
    for (const w of [...watchers]) w.close();
    watchers.clear();
    for (const set of assignmentListeners.values()) for (const l of [...set]) l.close();
    assignmentListeners.clear();
    dataPlane.close();
  }

  async function reload(): Promise<void> {
    const loaded = await loadState(store);
    state = loaded.state;
    versions = loaded.versions;
    revision = loaded.revision;
    routes = loaded.routes ?? emptyRouteTable();
    drain = replicaDrainInfo(state);
  }

  function findModelReplica(draft: ClusterState, server: string, replica: number, event: AgentEvent) {
    const model = draft.models.get(event.model);
    const version = model?.versions.find((v) => v.version === event.version);
    const entry = version?.replicas.find((r) => r.server === server && r.replica === replica);
    return { model, version, entry };
  }

  function requireAgent(draft: ClusterState, server: string, replica: number): ReplicaRecord {
    const agent = draft.replicas.get(replicaId(server, replica));
    if (agent === undefined) throw new TernError("not_found", `unknown agent ${server}/${replica}: register again`);
    return agent;
  }

  const scheduler: Scheduler = {
    get revision() {
      return revision;
    },

    async start() {
      await reload();
      // Heartbeats are not persisted: every stored agent gets a full deadline from now to show up again.
      const t = now();
      for (const id of state.replicas.keys()) heartbeats.set(id, t);
      dataPlane.workers.started();
      history.length = 0;
      logger.info(
        { revision, models: state.models.size, servers: state.servers.size, replicas: state.replicas.size },
        "scheduler state loaded",
      );
      timer = setInterval(
        () => {
          scheduler.checkHeartbeats().catch((err: unknown) => logger.error({ err }, "heartbeat check failed"));
          scheduler.autoscale().catch((err: unknown) => logger.error({ err }, "autoscaling pass failed"));
        },
        Math.max(50, Math.floor(heartbeatIntervalMs / 2)),
      );
      timer.unref();
      // Reconcile once: capacity or specs may have changed while no scheduler was active.
      await change(() => undefined).catch((err: unknown) => logger.error({ err }, "initial reconciliation failed"));
    },

    async stop() {
      stopped = true;
      if (timer !== undefined) clearInterval(timer);
      closeStreams();
      await queue.catch(() => undefined);
    },

    apply(resources) {
      return change((draft) => resources.map((r) => applyOne(draft, r)));
    },

    remove(kind, name) {
      return change((draft) => {
        switch (kind) {
          case "Model": {
            const m = draft.models.get(name);
            if (m === undefined) throw notFound(kind, name);
            m.deleting = true;
            return;
          }
          case "Server": {
            const s = draft.servers.get(name);
            if (s === undefined) throw notFound(kind, name);
            s.deleting = true;
            return;
          }
          case "Pipeline": {
            const p = draft.pipelines.get(name);
            if (p === undefined) throw notFound(kind, name);
            // Its owners drop it from their assignments, drain and stop; the reconciler ends it (pipeline-states.ts).
            if (p.deletedAt === undefined && p.terminatedAt === undefined) p.deletedAt = now();
            return;
          }
          case "Experiment":
            if (!draft.experiments.delete(name)) throw notFound(kind, name);
            return;
        }
      });
    },

    list: (kind) => listStatuses(state, kind),
    get: (kind, name) => resourceStatus(state, kind, name),
    routes: () => routes,

    async registerAgent(reg) {
      const id = replicaId(reg.server, reg.replica);
      await change((draft) => {
        const prev = draft.replicas.get(id);
        const record: ReplicaRecord = {
          server: reg.server,
          replica: reg.replica,
          capabilities: [...reg.capabilities],
          memoryBytes: reg.memoryBytes,
          ...(reg.processBytes ? { processBytes: reg.processBytes } : {}),
          endpoints: reg.endpoints,
          loaded: [],
          draining: false,
          registeredAt: prev?.registeredAt ?? now(),
        };
        if (reg.overcommitPercent !== undefined) record.overcommitPercent = reg.overcommitPercent;
        draft.replicas.set(id, record);
        matchLoaded(draft, reg);
      });
      heartbeats.set(id, now());
      return { heartbeatIntervalMs, heartbeatTimeoutMs };
    },

    heartbeat(server, replica, traffic) {
      ensureRunning();
      const id = replicaId(server, replica);
      if (!state.replicas.has(id)) return false;
      heartbeats.set(id, now());
      if (traffic !== undefined) autoscaler.report(server, replica, traffic);
      return true;
    },

    activateModel(name) {
      return autoscaler.activate(name);
    },

    async autoscale() {
      if (stopped || leaseLost) return;
      await autoscaler.tick();
    },

    async reportProcessMemory(server, replica, processBytes) {
      const stored = state.replicas.get(replicaId(server, replica));
      if (stored === undefined || !processBytesChanged(stored.processBytes, processBytes)) return;
      await change((draft) => {
        const record = draft.replicas.get(replicaId(server, replica));
        if (record === undefined) return;
        if (processBytes > 0) record.processBytes = processBytes;
        else delete record.processBytes;
      });
    },

    reportEvent(server, replica, event) {
      if (!REPLICA_STATES.includes(event.state)) {
        return Promise.reject(new TernError("bad_request", `state: unknown replica state "${String(event.state)}"`));
      }
      // Only registered agents get an entry: unknown ones would grow the map without bound (they get 404 below).
      const id = replicaId(server, replica);
      if (state.replicas.has(id)) heartbeats.set(id, now());
      return change((draft) => {
        requireAgent(draft, server, replica);
        const { version, entry } = findModelReplica(draft, server, replica, event);
        // Events about models this replica was never given are stale (e.g. after a re-placement): ignore them.
        if (version === undefined || entry === undefined) return;
        switch (event.state) {
          case "Loading":
          case "LoadRequested":
            if (WANTED_STATES.has(entry.state)) entry.state = "Loading";
            break;
          case "Loaded":
          case "Available":
            if (WANTED_STATES.has(entry.state)) {
              entry.state = "Available";
              delete entry.reason;
            }
            break;
          case "LoadFailed":
            if (WANTED_STATES.has(entry.state)) {
              entry.state = "LoadFailed";
              entry.reason = event.reason ?? "the agent gave no reason";
            }
            break;
          case "UnloadRequested":
          case "Unloading":
            if (UNLOAD_STATES.has(entry.state)) entry.state = "Unloading";
            break;
          case "Unloaded":
          case "UnloadFailed":
            // Only an unload we asked for ends the replica; an agent evicting a model to make room (over-commit)
            // still holds the assignment and reloads on demand.
            if (UNLOAD_STATES.has(entry.state) || entry.state === "LoadFailed") {
              if (event.state === "UnloadFailed") {
                logger.warn({ server, replica, model: event.model, reason: event.reason }, "unload failed");
              }
              version.replicas = version.replicas.filter((r) => r !== entry);
            }
            break;
          case "Draining":
            break;
        }
      });
    },

    drainAgent(server, replica) {
      return change((draft) => {
        requireAgent(draft, server, replica).draining = true;
      });
    },

    removeAgent(server, replica) {
      return change((draft) => {
        requireAgent(draft, server, replica);
        draft.replicas.delete(replicaId(server, replica));
      }).then(() => {
        heartbeats.delete(replicaId(server, replica));
        closeAssignments(replicaId(server, replica));
      });
    },

    agentView(server, replica) {
      const id = replicaId(server, replica);
      const agent = state.replicas.get(id);
      return agent === undefined ? undefined : agentView(agent, drain.get(id), heartbeats.get(id) ?? 0);
    },

    watchAssignments(server, replica, listener) {
      ensureRunning();
      const id = replicaId(server, replica);
      if (!state.replicas.has(id)) return undefined;
      let set = assignmentListeners.get(id);
      if (set === undefined) {
        set = new Set();
        assignmentListeners.set(id, set);
      }
      set.add(listener);
      listener.assignments(assignmentsFor(id));
      return () => {
        set.delete(listener);
        if (set.size === 0 && assignmentListeners.get(id) === set) assignmentListeners.delete(id);
      };
    },

    watch(fromRevision, listener) {
      ensureRunning();
      let reset = false;
      const replay: WatchEvent[] = [];
      if (fromRevision !== undefined && fromRevision !== revision) {
        const oldest = history[0]?.revision;
        if (fromRevision > revision || oldest === undefined || fromRevision < oldest - 1) reset = true;
        else for (const e of history) if (e.revision > fromRevision) replay.push(e);
      }
      // Replay and subscribe in the same tick: no event can fall between them.
      for (const e of replay) listener.event(e);
      watchers.add(listener);
      return { reset, revision, unsubscribe: () => watchers.delete(listener) };
    },

    async checkHeartbeats() {
      if (stopped || leaseLost) return;
      // Keeps the map within the registered replicas whatever path removed one.
      for (const id of heartbeats.keys()) if (!state.replicas.has(id)) heartbeats.delete(id);
      await dataPlane.workers.checkHeartbeats();
      await dataPlane.checkDeadlines();
      const t = now();
      const expired = [...state.replicas.keys()].filter((id) => t - (heartbeats.get(id) ?? t) > heartbeatTimeoutMs);
      if (expired.length === 0) return;
      await change((draft) => {
        for (const id of expired) {
          // Re-check inside the queue: the agent may have come back while earlier changes ran.
          if (t - (heartbeats.get(id) ?? t) > heartbeatTimeoutMs) draft.replicas.delete(id);
        }
      });
      for (const id of expired) {
        if (!state.replicas.has(id)) {
          logger.warn(
            { replica: id, heartbeatTimeoutMs },
            "agent missed its heartbeat deadline: removed, its models rescheduled",
          );
          heartbeats.delete(id);
          closeAssignments(id);
        }
      }
    },

    snapshot: () => cloneClusterState(state),
    trackedHeartbeats: () => heartbeats.size,
    workers: dataPlane.workers,
    topicsIdle: () => dataPlane.topicsIdle(),
  };

  function closeAssignments(id: string): void {
    const set = assignmentListeners.get(id);
    if (set === undefined) return;
    assignmentListeners.delete(id);
    for (const l of set) l.close();
  }

  function applyOne(draft: ClusterState, resource: Resource): ApplyResult {
    const name = resource.metadata.name;
    switch (resource.kind) {
      case "Model": {
        const existing = draft.models.get(name);
        if (existing === undefined) {
          draft.models.set(name, {
            name,
            resource,
            versions: [newVersion(resource, 1)],
            deleting: false,
            state: "ModelProgressing",
          });
          return { kind: "Model", name, action: "created", version: 1 };
        }
        return applyModelUpdate(existing, resource);
      }
      case "Server": {
        const existing = draft.servers.get(name);
        const unchanged = existing !== undefined && !existing.deleting && sameJson(existing.resource, resource);
        const record: ServerRecord = { name, resource, deleting: false };
        // What server autoscaling decided survives a re-apply, unless the manifest's replica count changed.
        const kept = existing?.autoscaling;
        if (
          kept !== undefined &&
          !existing!.deleting &&
          effectiveReplicas(existing!.resource.spec) === effectiveReplicas(resource.spec)
        ) {
          record.autoscaling = kept;
        }
        draft.servers.set(name, record);
        return {
          kind: "Server",
          name,
          action: existing === undefined ? "created" : unchanged ? "unchanged" : "configured",
        };
      }
      case "Pipeline":
        return applyPipeline(draft, resource);
      case "Experiment": {
        const existing = draft.experiments.get(name);
        const unchanged = existing !== undefined && sameJson(existing.resource, resource);
        draft.experiments.set(name, { name, resource, active: existing?.active ?? false });
        return {
          kind: "Experiment",
          name,
          action: existing === undefined ? "created" : unchanged ? "unchanged" : "configured",
        };
      }
    }
  }

  return scheduler;
}

/**
 * A new pipeline starts Creating at version 1. An unchanged one is left exactly as it is (state and version). A changed
 * one gets the next version and keeps its state until the reconciler recomputes it (Rebalancing when it had been
 * ready: the owners drain the old version while they start the new one). A deleted one (Terminating or Terminated)
 * comes back as the next version, Creating.
 */
function applyPipeline(draft: ClusterState, resource: Resource & { kind: "Pipeline" }): ApplyResult {
  const name = resource.metadata.name;
  const existing = draft.pipelines.get(name);
  if (existing === undefined) {
    draft.pipelines.set(name, { name, resource, version: 1, state: "PipelineCreating" });
    return { kind: "Pipeline", name, action: "created" };
  }
  const version = existing.version ?? 1;
  if (existing.deletedAt !== undefined || existing.terminatedAt !== undefined) {
    const { deletedAt: _d, terminatedAt, readyVersion: _r, reason: _reason, topics, ...rest } = existing;
    const revived: PipelineRecord = { ...rest, resource, version: version + 1, state: "PipelineCreating" };
    // A terminated pipeline's topics may have been deleted (cleanTopicsOnDelete): ensure them again.
    if (terminatedAt === undefined && topics !== undefined) revived.topics = topics;
    draft.pipelines.set(name, revived);
    return { kind: "Pipeline", name, action: terminatedAt === undefined ? "configured" : "created" };
  }
  if (sameJson(existing.resource, resource)) return { kind: "Pipeline", name, action: "unchanged" };
  draft.pipelines.set(name, { ...existing, resource, version: version + 1 });
  return { kind: "Pipeline", name, action: "configured" };
}

function applyModelUpdate(existing: ModelRecord, resource: Resource & { kind: "Model" }): ApplyResult {
  const name = existing.name;
  const latest = existing.versions[existing.versions.length - 1]!;
  const wasDeleting = existing.deleting;
  existing.deleting = false;
  // A new replica count in the manifest is a new starting point: what autoscaling decided before is dropped.
  if (wasDeleting || effectiveReplicas(resource.spec) !== effectiveReplicas(existing.resource.spec)) {
    delete existing.autoscaling;
  }
  if (versionKey(resource.spec) !== latest.specKey || wasDeleting) {
    const version = latest.version + 1;
    existing.versions.push(newVersion(resource, version));
    existing.resource = resource;
    return { kind: "Model", name, action: "configured", version };
  }
  const unchanged = sameJson(existing.resource, resource);
  existing.resource = resource;
  // Applying the same spec again retries replicas that failed to load.
  const failed = latest.replicas.filter((r) => r.state === "LoadFailed").length;
  latest.replicas = latest.replicas.filter((r) => r.state !== "LoadFailed");
  return {
    kind: "Model",
    name,
    action: unchanged && failed === 0 ? "unchanged" : "configured",
    version: latest.version,
  };
}

/**
 * Matches what a (re-)registering agent says it holds against the stored state, so that nothing loaded is loaded
 * again: a replica it holds becomes Available; one it lost goes back to LoadRequested; a model version it holds that
 * the state does not place there is adopted when it is the latest version (the reconciler then keeps or unloads it).
 */
function matchLoaded(draft: ClusterState, reg: AgentRegistration): void {
  const held = new Set(reg.loaded.map((l) => `${l.model}\u0000${l.version}`));
  const matched = new Set<string>();
  for (const model of draft.models.values()) {
    for (const version of model.versions) {
      const key = `${model.name}\u0000${version.version}`;
      for (const r of [...version.replicas]) {
        if (r.server !== reg.server || r.replica !== reg.replica) continue;
        if (held.has(key)) {
          matched.add(key);
          if (r.state === "LoadRequested" || r.state === "Loading" || r.state === "Loaded") r.state = "Available";
        } else if (r.state === "Loading" || r.state === "Loaded" || r.state === "Available") {
          r.state = "LoadRequested";
        } else if (UNLOAD_STATES.has(r.state)) {
          version.replicas = version.replicas.filter((x) => x !== r);
        }
      }
    }
  }
  for (const ref of reg.loaded) {
    const key = `${ref.model}\u0000${ref.version}`;
    if (matched.has(key)) continue;
    const model = draft.models.get(ref.model);
    if (model === undefined || model.deleting) continue;
    const latest = model.versions[model.versions.length - 1]!;
    if (latest.version !== ref.version) continue;
    if (latest.server !== undefined && latest.server !== reg.server) continue;
    latest.server = reg.server;
    latest.replicas.push({ server: reg.server, replica: reg.replica, state: "Available" });
  }
}

function notFound(kind: ResourceKind, name: string): TernError {
  return new TernError("not_found", `${kind} ${name} not found`);
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
