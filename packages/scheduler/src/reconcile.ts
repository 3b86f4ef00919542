import { effectiveReplicas, experimentCandidates } from "@tern/core";
import { serverScalingBounds } from "./autoscaling.js";
import { type BucketPlacementOptions, placeBuckets } from "./bucket-placement.js";
import { modelWantedReplicas } from "./model-spec.js";
import { type PipelinePlacementOptions, placePipelines } from "./pipeline-placement.js";
import { derivePipelineStates, type PipelineStateInputs } from "./pipeline-states.js";
import {
  createPlacer,
  type ModelDemand,
  type PlacementDecision,
  type Placer,
  type ReplicaView,
  type ServerView,
} from "./placement.js";
import {
  type ClusterState,
  type ModelRecord,
  type ModelReplicaRecord,
  type ModelVersionRecord,
  type ReplicaRecord,
  replicaId,
  SERVING_STATES,
  type ServerRecord,
  UNLOAD_STATES,
  WANTED_STATES,
} from "./records.js";
import { placementCapacity } from "./replica-memory.js";
import { resolveCapabilities } from "./server-types.js";

/**
 * The reconciler: a pure function from a cluster state to the next one. The service calls it after every change
 * (apply, delete, agent joined/left/drained, load or unload reported) and persists whatever differs.
 *
 * Rules it keeps (DESIGN §2):
 * - each model's latest version is (re)placed by the placement engine on every pass, so failed and under-replicated
 *   models are retried whenever capacity changes; the engine prefers where the model already is (no ping-pong);
 * - make before break: a replica that placement no longer wants is unloaded only once every wanted replica serves;
 *   older versions are unloaded only once the latest version is ModelAvailable;
 * - when placement fails, the replicas that hold the model keep serving (ScheduleFailed with availableReplicas),
 *   except on replicas that are leaving (scale-down, drain, server deletion), which must be able to finish leaving;
 * - a replica at or above its Server's `replicas` is leaving (scale-down removes the highest indexes); it is a
 *   placement candidate no more, and may stop once it holds nothing and every higher leaving replica may stop too.
 *
 * Cost: one placement session ({@link createPlacer}) per pass, so the cluster picture is built once, not once per
 * model; and a model that is settled (see {@link isSettledModel}) is skipped, because a pass provably leaves it as it
 * is. A pass over a steady cluster therefore costs about one scan of the replicas, whatever the number of models.
 */

export interface ReconcileOptions {
  /** Extra percentage of memory placement may commit on every replica, on top of the agent's own over-commit. @default 0 */
  overcommitPercent?: number;
  /**
   * Skip settled models (their next state is their current one). False sends every model through placement; the
   * result is the same either way (the unit tests check it), only slower.
   * @default true
   */
  skipSettled?: boolean;
  /** How model-gateway buckets are placed (count, topic names, whether topics must exist). */
  buckets?: BucketPlacementOptions;
  /** How pipelines are placed on dataflow workers (replication, topic names). */
  pipelines?: PipelinePlacementOptions;
  /** What pipeline states are derived from besides the state (the workers' reports, the clock). Absent: states are left as stored. */
  pipelineStates?: PipelineStateInputs;
}

/** Derived facts about one registered replica (not stored: computed from the state). */
export interface ReplicaDrainInfo {
  /** Leaving: asked to drain, scaled away (index ≥ Server replicas) or its Server is being deleted or unknown. */
  leaving: boolean;
  /** Holds no model replica any more. */
  drained: boolean;
  /** Leaving and drained, and (scale-down) every higher-index leaving replica may stop as well. */
  mayStop: boolean;
}

/**
 * Returns the next state. The input is not modified; records the pass leaves unchanged (servers, agents, pipelines,
 * settled models) are shared with it rather than copied, so treat both as immutable and clone before mutating (the
 * scheduler clones its state before every change).
 */
export function reconcile(input: ClusterState, options: ReconcileOptions = {}): ClusterState {
  const state: ClusterState = {
    models: new Map(input.models),
    servers: new Map(input.servers),
    replicas: new Map(input.replicas),
    pipelines: new Map(input.pipelines),
    experiments: new Map([...input.experiments].map(([id, e]) => [id, structuredClone(e)])),
    workers: new Map(input.workers),
    buckets: new Map(input.buckets),
  };
  const views = buildServerViews(state);
  // Created on first use, so that a pass with nothing to place validates nothing (as before sessions existed).
  let placer: Placer | undefined;
  const session = (): Placer => (placer ??= createPlacer(views, { overcommitPercent: options.overcommitPercent ?? 0 }));
  const leaving = (server: string, replica: number): boolean => isLeaving(state, server, replica);
  const settled = options.skipSettled === false ? undefined : settledCheck(views);

  const names: string[] = [];
  for (const [name, model] of state.models) if (settled === undefined || !settled(model)) names.push(name);
  for (const name of names.sort()) {
    // Copy on write: only the models this pass may change are cloned.
    const model = structuredClone(state.models.get(name)!);
    state.models.set(name, model);
    dropVanishedReplicas(state, model);
    if (model.deleting) {
      for (const version of model.versions) unloadAll(version);
    } else {
      reconcileLatest(model, session, leaving);
      reconcileOlder(model, leaving);
    }
    model.versions = model.versions.filter(
      (v, i) => v.replicas.length > 0 || (!model.deleting && i === model.versions.length - 1),
    );
    if (model.deleting && model.versions.length === 0) {
      state.models.delete(name);
      continue;
    }
    deriveModelState(model);
  }

  removeEmptyDeletedServers(state);
  state.buckets = placeBuckets(state, options.buckets);
  state.pipelines = placePipelines(state, options.pipelines);
  if (options.pipelineStates !== undefined) state.pipelines = derivePipelineStates(state, options.pipelineStates);
  // Last: a pipeline experiment follows its pipelines' states, derived just above.
  deriveExperiments(state);
  return state;
}

/** The placement engine's view of every Server (deleting ones included, flagged), sorted by name. */
export function buildServerViews(state: ClusterState): ServerView[] {
  const usage = replicaUsage(state);
  const views: ServerView[] = [];
  for (const server of [...state.servers.values()].sort((a, b) => cmp(a.name, b.name))) {
    const caps = resolveCapabilities(server.resource.spec);
    const desired = desiredServerReplicas(server);
    const replicas: ReplicaView[] = [];
    for (const agent of agentsOf(state, server.name)) {
      const use = usage.get(replicaId(server.name, agent.replica)) ?? { loaded: 0, reserved: 0, models: [] };
      replicas.push({
        index: agent.replica,
        connected: true,
        // Index ≥ desired (scale-down) is the engine's own "leaving" rule; deletion is `deleting` below.
        draining: agent.draining,
        memoryBytes: placementCapacity(agent),
        loadedBytes: use.loaded,
        reservedBytes: use.reserved,
        models: use.models,
      });
    }
    views.push({
      name: server.name,
      capabilities: caps.ok ? caps.capabilities : [],
      deleting: server.deleting,
      desiredReplicas: desired,
      replicas,
    });
  }
  return views;
}

/**
 * True when a reconcile pass provably leaves `model` exactly as it is, so it can be skipped: one version, not being
 * deleted, `ModelAvailable` with no reason and nothing failed or partial, and exactly the wanted number of replicas,
 * all serving on placement candidates (connected, not draining, not leaving) of the one Server the version lives on,
 * which still offers every requirement (and is the pinned one, if pinned). For such a model placement keeps exactly
 * its replicas (a server that already gives every wanted replica wins, and replicas that hold the version come first),
 * reserves nothing, and the derived state stays the same.
 */
export function isSettledModel(model: ModelRecord, views: readonly ServerView[]): boolean {
  return settledCheck(views)(model);
}

function settledCheck(views: readonly ServerView[]): (model: ModelRecord) => boolean {
  const servers = new Map<string, { caps: ReadonlySet<string>; candidates: ReadonlySet<number> }>();
  for (const view of views) {
    if (view.deleting) continue;
    const candidates = new Set<number>();
    for (const r of view.replicas) {
      if (r.connected && !r.draining && r.index < view.desiredReplicas) candidates.add(r.index);
    }
    servers.set(view.name, { caps: new Set(view.capabilities), candidates });
  }
  return (model) => {
    if (model.deleting || model.versions.length !== 1 || model.state !== "ModelAvailable") return false;
    if (model.reason !== undefined || model.scheduleFailure !== undefined || model.partialReason !== undefined) {
      return false;
    }
    // A Kafka path that failed must show in the reason, which only a pass writes.
    if (model.topics !== undefined && !model.topics.ready) return false;
    const version = model.versions[0]!;
    const wanted = modelWantedReplicas(model);
    if (wanted < 1 || model.targetCount !== wanted || version.replicas.length !== wanted) return false;
    const name = version.server;
    if (name === undefined || (version.pinnedServer !== undefined && version.pinnedServer !== name)) return false;
    const server = servers.get(name);
    if (server === undefined) return false;
    for (const req of version.requirements) if (!server.caps.has(req)) return false;
    for (let i = 0; i < version.replicas.length; i++) {
      const r = version.replicas[i]!;
      if (r.server !== name || !SERVING_STATES.has(r.state) || !server.candidates.has(r.replica)) return false;
      for (let j = 0; j < i; j++) if (version.replicas[j]!.replica === r.replica) return false;
    }
    return true;
  };
}

/** The replica count a Server wants now: what server autoscaling decided (within the spec's bounds), else the spec's. */
export function desiredServerReplicas(server: ServerRecord): number {
  const spec = server.resource.spec;
  const decided = server.autoscaling?.desiredReplicas;
  const bounds = serverScalingBounds(spec);
  if (decided === undefined || bounds === undefined) return effectiveReplicas(spec);
  return Math.min(Math.max(decided, bounds.min), bounds.max);
}

/** Drain facts of every registered replica, keyed by replica id. */
export function replicaDrainInfo(state: ClusterState): Map<string, ReplicaDrainInfo> {
  const holding = new Set<string>();
  for (const model of state.models.values()) {
    for (const version of model.versions) {
      for (const r of version.replicas) holding.add(replicaId(r.server, r.replica));
    }
  }
  const info = new Map<string, ReplicaDrainInfo>();
  for (const [id, agent] of state.replicas) {
    const leaving = isLeaving(state, agent.server, agent.replica);
    const drained = !holding.has(id);
    info.set(id, { leaving, drained, mayStop: leaving && drained });
  }
  // Highest index first: a leaving replica may stop only once every higher leaving replica of its server may.
  for (const [id, agent] of state.replicas) {
    const own = info.get(id)!;
    if (!own.mayStop) continue;
    for (const other of agentsOf(state, agent.server)) {
      if (other.replica <= agent.replica) continue;
      const o = info.get(replicaId(other.server, other.replica))!;
      if (o.leaving && !o.mayStop) own.mayStop = false;
    }
  }
  return info;
}

function isLeaving(state: ClusterState, server: string, replica: number): boolean {
  const agent = state.replicas.get(replicaId(server, replica));
  const record = state.servers.get(server);
  if (record === undefined || record.deleting) return true;
  return (agent?.draining ?? false) || replica >= desiredServerReplicas(record);
}

function agentsOf(state: ClusterState, server: string): ReplicaRecord[] {
  return [...state.replicas.values()].filter((a) => a.server === server).sort((a, b) => a.replica - b.replica);
}

interface Usage {
  loaded: number;
  reserved: number;
  models: { model: string; version: number }[];
}

/** Memory held (loaded or on its way out) and reserved (loads in flight) on each replica. */
function replicaUsage(state: ClusterState): Map<string, Usage> {
  const usage = new Map<string, Usage>();
  for (const model of state.models.values()) {
    for (const version of model.versions) {
      for (const r of version.replicas) {
        const id = replicaId(r.server, r.replica);
        let u = usage.get(id);
        if (u === undefined) {
          u = { loaded: 0, reserved: 0, models: [] };
          usage.set(id, u);
        }
        if (r.state === "LoadRequested" || r.state === "Loading") u.reserved += version.memoryBytes;
        else if (r.state !== "LoadFailed") u.loaded += version.memoryBytes;
        if (WANTED_STATES.has(r.state)) u.models.push({ model: model.name, version: version.version });
      }
    }
  }
  return usage;
}

/** Replicas whose agent is gone hold nothing any more. */
function dropVanishedReplicas(state: ClusterState, model: ModelRecord): void {
  for (const version of model.versions) {
    version.replicas = version.replicas.filter((r) => state.replicas.has(replicaId(r.server, r.replica)));
  }
}

/**
 * Asks the agent to unload. A replica the agent never confirmed (LoadRequested) or that failed to load holds nothing
 * we know of, so it is dropped at once (the agent, level-triggered, drops anything absent from its desired set).
 */
function unload(version: ModelVersionRecord, r: ModelReplicaRecord): void {
  if (r.state === "LoadRequested" || r.state === "LoadFailed") {
    version.replicas = version.replicas.filter((x) => x !== r);
  } else if (!UNLOAD_STATES.has(r.state)) {
    r.state = "UnloadRequested";
    delete r.reason;
  }
}

function unloadAll(version: ModelVersionRecord): void {
  for (const r of [...version.replicas]) unload(version, r);
}

function latestOf(model: ModelRecord): ModelVersionRecord {
  return model.versions[model.versions.length - 1]!;
}

function reconcileLatest(
  model: ModelRecord,
  session: () => Placer,
  leaving: (server: string, replica: number) => boolean,
): void {
  const latest = latestOf(model);
  const wanted = modelWantedReplicas(model);
  const held = latest.replicas.filter((r) => WANTED_STATES.has(r.state));
  const demand: ModelDemand = {
    name: model.name,
    version: latest.version,
    memoryBytes: latest.memoryBytes,
    replicas: wanted,
    requirements: latest.requirements,
  };
  if (model.resource.spec.minReplicas !== undefined) demand.minReplicas = model.resource.spec.minReplicas;
  if (latest.pinnedServer !== undefined) demand.server = latest.pinnedServer;
  if (latest.server !== undefined && held.length > 0) {
    demand.current = {
      server: latest.server,
      replicas: held.filter((r) => r.server === latest.server).map((r) => r.replica),
    };
  } else if (held.length === 0) {
    // Held nowhere (the views list exactly the held replicas): say so, rather than have the session index every
    // holding in the cluster to find none. An empty `current` names no holder, so the server named does not matter.
    demand.current = { server: latest.server ?? model.name, replicas: [] };
  }
  // A chosen replica that already has a record of this version gets no new load (see below), so it must reserve no
  // memory for the decisions after this one: the record is unloading (its memory is counted as loaded) or failed.
  const decision: PlacementDecision = session().place(demand, {
    skipReservation: (server, replica) => latest.replicas.some((r) => r.server === server && r.replica === replica),
  });

  let target: { server: string; replicas: number[] } | undefined;
  if (decision.status === "failed") {
    model.scheduleFailure = decision.reason;
    if (decision.server !== undefined) target = { server: decision.server, replicas: decision.replicas };
  } else {
    delete model.scheduleFailure;
    target = { server: decision.server, replicas: decision.replicas };
    latest.server = decision.server;
  }
  model.partialReason = decision.status === "partial" ? decision.reason : undefined;

  if (target !== undefined) {
    for (const index of target.replicas) {
      const existing = latest.replicas.find((r) => r.server === target.server && r.replica === index);
      // A replica still unloading this version comes back once it is gone; a failed load is not retried
      // (it would fail the same way) until the model is applied again.
      if (existing !== undefined) continue;
      latest.replicas.push({ server: target.server, replica: index, state: "LoadRequested" });
    }
  }

  const inTarget = (r: ModelReplicaRecord): boolean =>
    target !== undefined && r.server === target.server && target.replicas.includes(r.replica);
  const targetServing =
    target === undefined ||
    target.replicas.every((index) =>
      latest.replicas.some((r) => r.server === target.server && r.replica === index && SERVING_STATES.has(r.state)),
    );
  for (const r of [...latest.replicas]) {
    if (inTarget(r) || !WANTED_STATES.has(r.state)) {
      if (r.state === "LoadFailed" && !inTarget(r)) unload(latest, r);
      continue;
    }
    if (!targetServing) continue;
    if (decision.status !== "failed" || leaving(r.server, r.replica)) unload(latest, r);
  }
  model.targetCount = target?.replicas.length ?? 0;
}

/** Older versions go once the latest one is fully available; until then they keep serving. */
function reconcileOlder(model: ModelRecord, leaving: (server: string, replica: number) => boolean): void {
  const latest = latestOf(model);
  // Scaled to 0: no version is wanted anywhere, so older ones go too.
  const latestAvailable = isLatestAvailable(model) || isScaledToZero(model);
  const latestServes = latest.replicas.some((r) => SERVING_STATES.has(r.state));
  for (const version of model.versions) {
    if (version === latest) continue;
    for (const r of [...version.replicas]) {
      // A leaving replica may let an old version go as soon as the new one serves somewhere.
      if (latestAvailable || (latestServes && leaving(r.server, r.replica)) || r.state === "LoadFailed") {
        unload(version, r);
      }
    }
  }
}

/** The spec asks for 0 replicas (and placement did not fail). */
function isScaledToZero(model: ModelRecord): boolean {
  return model.scheduleFailure === undefined && (model.targetCount ?? modelWantedReplicas(model)) === 0;
}

function isLatestAvailable(model: ModelRecord): boolean {
  if (model.scheduleFailure !== undefined) return false;
  const latest = latestOf(model);
  const serving = latest.replicas.filter((r) => SERVING_STATES.has(r.state)).length;
  const needed = model.targetCount ?? modelWantedReplicas(model);
  return needed > 0 && serving >= needed && latest.replicas.every((r) => r.state !== "LoadFailed");
}

/** The newest version that has a serving replica: the one the route table sends traffic to. */
export function servingVersion(model: ModelRecord): ModelVersionRecord | undefined {
  for (let i = model.versions.length - 1; i >= 0; i--) {
    const v = model.versions[i]!;
    if (v.replicas.some((r) => SERVING_STATES.has(r.state))) return v;
  }
  return undefined;
}

function deriveModelState(model: ModelRecord): void {
  deriveServingState(model);
  // HTTP serving does not depend on Kafka: the state stays, the reason says what the Kafka path misses.
  const kafka = model.topics !== undefined && !model.topics.ready ? model.topics.reason : undefined;
  if (kafka !== undefined && !model.deleting)
    model.reason = model.reason === undefined ? kafka : `${model.reason}; ${kafka}`;
}

function deriveServingState(model: ModelRecord): void {
  const latest = latestOf(model);
  delete model.reason;
  if (model.deleting) {
    model.state = "ModelTerminating";
    return;
  }
  const failed = latest.replicas.filter((r) => r.state === "LoadFailed");
  if (failed.length > 0) {
    model.state = "ModelFailed";
    model.reason = failed
      .map((r) => `load failed on ${r.server}/${r.replica}: ${r.reason ?? "no reason given"}`)
      .join("; ");
    return;
  }
  if (model.scheduleFailure !== undefined) {
    model.state = "ScheduleFailed";
    model.reason = model.scheduleFailure;
    return;
  }
  if (isLatestAvailable(model)) {
    model.state = "ModelAvailable";
    if (model.partialReason !== undefined) model.reason = model.partialReason;
    return;
  }
  if (isScaledToZero(model)) {
    const left = model.versions.reduce((n, v) => n + v.replicas.length, 0);
    if (left === 0) {
      model.state = "ModelScaledDown";
      model.reason = "scaled to 0 replicas";
    } else {
      model.state = "ModelProgressing";
      model.reason = `scaling down to 0 replicas: ${left} still unloading`;
    }
    return;
  }
  model.state = "ModelProgressing";
  const serving = latest.replicas.filter((r) => SERVING_STATES.has(r.state)).length;
  model.reason = `${serving} of ${model.targetCount ?? modelWantedReplicas(model)} replicas available`;
}

function removeEmptyDeletedServers(state: ClusterState): void {
  for (const [name, server] of state.servers) {
    if (!server.deleting) continue;
    const holds = [...state.models.values()].some((m) =>
      m.versions.some((v) => v.replicas.some((r) => r.server === name)),
    );
    if (!holds) state.servers.delete(name);
  }
}

const SERVED_PIPELINE_STATES: ReadonlySet<string> = new Set(["PipelineReady", "PipelineRebalancing"]);

function deriveExperiments(state: ClusterState): void {
  for (const experiment of state.experiments.values()) {
    const spec = experiment.resource.spec;
    delete experiment.reason;
    // A mirror-only experiment waits for its default (its one candidate) and its mirror.
    const names = [...experimentCandidates(spec).map((c) => c.name), ...(spec.mirror ? [spec.mirror.name] : [])];
    if ((spec.resourceType ?? "model") === "pipeline") {
      // Pipelines serve while Ready or Rebalancing (the gateways' rule), so the experiment is active exactly then.
      const waiting = names.filter((n) => {
        const pipeline = state.pipelines.get(n);
        return (
          pipeline === undefined || pipeline.deletedAt !== undefined || !SERVED_PIPELINE_STATES.has(pipeline.state)
        );
      });
      experiment.active = waiting.length === 0;
      if (waiting.length > 0) experiment.reason = `pipelines not serving yet: ${waiting.join(", ")}`;
      continue;
    }
    const missing = names.filter((n) => {
      const model = state.models.get(n);
      return model === undefined || model.deleting || servingVersion(model) === undefined;
    });
    experiment.active = missing.length === 0;
    if (missing.length > 0) experiment.reason = `not serving yet: ${missing.join(", ")}`;
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
