import {
  type AgentView,
  type DeploymentStrategy,
  effectiveReplicas,
  experimentCandidates,
  type ModelStatus,
  type PipelineResource,
  type PipelineState,
  type ReplicaPlacement,
  type ResourceKind,
  TernError,
} from "@tern/core";
import { scalingBounds, serverScalingBounds } from "./autoscaling.js";
import { modelWantedReplicas, wantedReplicas } from "./model-spec.js";
import { desiredServerReplicas, type ReplicaDrainInfo, replicaDrainInfo, servingVersion } from "./reconcile.js";
import {
  type ClusterState,
  type ExperimentRecord,
  type ModelRecord,
  type PipelineRecord,
  type ReplicaRecord,
  replicaId,
  SERVING_STATES,
  type ServerRecord,
} from "./records.js";
import { resolveCapabilities } from "./server-types.js";

/**
 * The shapes the control API returns, derived from the cluster state by pure functions, so the active scheduler
 * (in memory) and a standby (reading the store) answer the same way.
 */

/** `GET /v1/servers/{name}`: one Server and its registered replicas. */
export interface ServerStatus {
  name: string;
  serverConfig: string;
  capabilities: string[];
  /** `ServerReady` (all wanted replicas connected), `ServerProgressing`, `ServerFailed`, `ServerTerminating`. */
  state: "ServerReady" | "ServerProgressing" | "ServerFailed" | "ServerTerminating";
  reason?: string;
  /**
   * Replicas wanted now: the spec's, or what server autoscaling decided (what the controllers start agents for).
   */
  replicas: number;
  /** Replicas the manifest asks for (the starting point of an autoscaled Server; never rewritten). */
  specReplicas: number;
  /** Present for an autoscaled Server (one with `minReplicas` or `maxReplicas`). */
  autoscaling?: { minReplicas: number; maxReplicas?: number; reason?: string; lastChangeAt?: number };
  /** The manifest's `deploymentStrategy`, when it has one: how the ECS controller lets its agent tasks be replaced. */
  deploymentStrategy?: DeploymentStrategy;
  /** Connected replicas below the desired count (not leaving). */
  availableReplicas: number;
  /** Model replicas held across its replicas. */
  loadedModels: number;
  replicaStatus: ServerReplicaStatus[];
}

export interface ServerReplicaStatus {
  replica: number;
  memoryBytes: number;
  /** Memory its runtime process (MLServer) holds beyond its models, as the agent last reported it; 0 for none. */
  processBytes: number;
  /** Memory used by models held or loading on it. */
  usedBytes: number;
  draining: boolean;
  leaving: boolean;
  drained: boolean;
  /** The replica may stop now (drained; in a scale-down every higher leaving replica may stop too). */
  mayStop: boolean;
  endpoints: ReplicaRecord["endpoints"];
  models: { model: string; version: number; state: string }[];
}

/** The agent's own view (`GET /v1/agents/{server}/{replica}`): the fixed protocol shape plus `mayStop`. */
export interface AgentViewWithStop extends AgentView {
  /** True once this replica is leaving and drained: the agent may exit (scale-down goes highest index first). */
  mayStop: boolean;
  leaving: boolean;
}

export interface PipelineStatus {
  name: string;
  /** 1 when created, one more whenever an apply changed the spec. */
  version: number;
  state: PipelineState;
  reason?: string;
  steps: string[];
  /** The dataflow workers that own it, in ring order; absent while none is registered. */
  owners?: string[];
}

/** `GET /v1/pipelines/{p}/spec`: what a dataflow worker fetches when its assignment names a new version. */
export interface PipelineSpecView {
  name: string;
  version: number;
  owners: string[];
  /** The manifest last applied. */
  resource: PipelineResource;
}

export interface ExperimentStatus {
  name: string;
  /** `ExperimentReady` when every candidate serves, `ExperimentNotReady` otherwise. */
  state: "ExperimentReady" | "ExperimentNotReady";
  active: boolean;
  reason?: string;
  resourceType: "model" | "pipeline";
  default?: string;
  candidates: { name: string; weight: number }[];
}

export function modelStatus(model: ModelRecord): ModelStatus {
  const latest = model.versions[model.versions.length - 1]!;
  const serving = servingVersion(model);
  const placement: ReplicaPlacement[] = [...latest.replicas]
    .sort((a, b) => (a.server === b.server ? a.replica - b.replica : a.server < b.server ? -1 : 1))
    .map((r) => (r.reason === undefined ? { server: r.server, replica: r.replica, state: r.state } : { ...r }));
  const status: ModelStatus = {
    name: model.name,
    version: latest.version,
    state: model.state,
    replicas: wantedReplicas(model.resource.spec),
    desiredReplicas: modelWantedReplicas(model),
    // Replicas that can take traffic now: those of the version the route table sends traffic to.
    availableReplicas: serving === undefined ? 0 : serving.replicas.filter((r) => SERVING_STATES.has(r.state)).length,
    placement,
  };
  if (model.reason !== undefined) status.reason = model.reason;
  const bounds = scalingBounds(model.resource.spec);
  if (bounds !== undefined) {
    const scaling: NonNullable<ModelStatus["autoscaling"]> = { minReplicas: bounds.min };
    if (Number.isFinite(bounds.max)) scaling.maxReplicas = bounds.max;
    const record = model.autoscaling;
    if (record?.lastDecision !== undefined) scaling.lastDecision = { ...record.lastDecision };
    if (record?.wantsServerReplicas !== undefined) scaling.wantsServerReplicas = record.wantsServerReplicas;
    status.autoscaling = scaling;
  }
  const server = latest.server ?? serving?.server;
  if (server !== undefined) status.server = server;
  return status;
}

export function serverStatus(
  state: ClusterState,
  server: ServerRecord,
  drain: Map<string, ReplicaDrainInfo> = replicaDrainInfo(state),
): ServerStatus {
  const spec = server.resource.spec;
  const caps = resolveCapabilities(spec);
  const desired = desiredServerReplicas(server);
  const byReplica = new Map<number, ServerReplicaStatus["models"]>();
  const used = new Map<number, number>();
  for (const model of state.models.values()) {
    for (const version of model.versions) {
      for (const r of version.replicas) {
        if (r.server !== server.name) continue;
        const list = byReplica.get(r.replica) ?? [];
        list.push({ model: model.name, version: version.version, state: r.state });
        byReplica.set(r.replica, list);
        if (r.state !== "LoadFailed") used.set(r.replica, (used.get(r.replica) ?? 0) + version.memoryBytes);
      }
    }
  }
  const agents = [...state.replicas.values()]
    .filter((a) => a.server === server.name)
    .sort((a, b) => a.replica - b.replica);
  const replicaStatus: ServerReplicaStatus[] = agents.map((a) => {
    const info = drain.get(replicaId(a.server, a.replica));
    return {
      replica: a.replica,
      memoryBytes: a.memoryBytes,
      processBytes: a.processBytes ?? 0,
      usedBytes: used.get(a.replica) ?? 0,
      draining: a.draining,
      leaving: info?.leaving ?? false,
      drained: info?.drained ?? true,
      mayStop: info?.mayStop ?? false,
      endpoints: a.endpoints,
      models: (byReplica.get(a.replica) ?? []).sort((x, y) => (x.model < y.model ? -1 : x.model > y.model ? 1 : 0)),
    };
  });
  const available = agents.filter((a) => a.replica < desired && !a.draining).length;
  const status: ServerStatus = {
    name: server.name,
    serverConfig: spec.serverConfig,
    capabilities: caps.ok ? caps.capabilities : [],
    state: "ServerProgressing",
    replicas: desired,
    specReplicas: effectiveReplicas(spec),
    availableReplicas: available,
    loadedModels: [...byReplica.values()].reduce((n, l) => n + l.length, 0),
    replicaStatus,
  };
  const bounds = serverScalingBounds(spec);
  if (bounds !== undefined) {
    const scaling: NonNullable<ServerStatus["autoscaling"]> = { minReplicas: bounds.min };
    if (Number.isFinite(bounds.max)) scaling.maxReplicas = bounds.max;
    if (server.autoscaling !== undefined) {
      scaling.reason = server.autoscaling.reason;
      scaling.lastChangeAt = server.autoscaling.lastChangeAt;
    }
    status.autoscaling = scaling;
  }
  if (spec.deploymentStrategy !== undefined) status.deploymentStrategy = spec.deploymentStrategy;
  if (server.deleting) {
    status.state = "ServerTerminating";
  } else if (!caps.ok) {
    status.state = "ServerFailed";
    status.reason = caps.reason;
  } else if (available >= desired) {
    status.state = "ServerReady";
  } else {
    status.reason = `${available} of ${desired} replicas connected`;
  }
  return status;
}

export function agentView(
  agent: ReplicaRecord,
  info: ReplicaDrainInfo | undefined,
  lastHeartbeatAt: number,
): AgentViewWithStop {
  const { registeredAt: _r, ...registration } = agent;
  return {
    ...registration,
    draining: agent.draining || (info?.leaving ?? false),
    drained: info?.drained ?? true,
    leaving: info?.leaving ?? false,
    mayStop: info?.mayStop ?? false,
    lastHeartbeatAt,
  };
}

export function pipelineStatus(p: PipelineRecord): PipelineStatus {
  const status: PipelineStatus = {
    name: p.name,
    version: p.version ?? 1,
    state: p.state,
    steps: p.resource.spec.steps.map((s) => s.name),
  };
  if (p.reason !== undefined) status.reason = p.reason;
  if (p.owners !== undefined) status.owners = [...p.owners];
  return status;
}

/** The spec view of a stored pipeline, or undefined when there is none. */
export function pipelineSpecView(state: ClusterState, name: string): PipelineSpecView | undefined {
  const p = state.pipelines.get(name);
  if (p === undefined) return undefined;
  return { name: p.name, version: p.version ?? 1, owners: [...(p.owners ?? [])], resource: p.resource };
}

export function experimentStatus(e: ExperimentRecord): ExperimentStatus {
  const spec = e.resource.spec;
  const status: ExperimentStatus = {
    name: e.name,
    state: e.active ? "ExperimentReady" : "ExperimentNotReady",
    active: e.active,
    resourceType: spec.resourceType ?? "model",
    candidates: experimentCandidates(spec),
  };
  if (spec.default !== undefined) status.default = spec.default;
  if (e.reason !== undefined) status.reason = e.reason;
  return status;
}

/** Status of one resource, or undefined when it does not exist. */
export function resourceStatus(state: ClusterState, kind: ResourceKind, name: string): unknown {
  switch (kind) {
    case "Model": {
      const m = state.models.get(name);
      return m === undefined ? undefined : modelStatus(m);
    }
    case "Server": {
      const s = state.servers.get(name);
      return s === undefined ? undefined : serverStatus(state, s);
    }
    case "Pipeline": {
      const p = state.pipelines.get(name);
      return p === undefined ? undefined : pipelineStatus(p);
    }
    case "Experiment": {
      const e = state.experiments.get(name);
      return e === undefined ? undefined : experimentStatus(e);
    }
  }
}

/** Statuses of every resource of a kind, by name. */
export function listStatuses(state: ClusterState, kind: ResourceKind): unknown[] {
  const names = (map: Map<string, unknown>) => [...map.keys()].sort();
  switch (kind) {
    case "Model":
      return names(state.models).map((n) => modelStatus(state.models.get(n)!));
    case "Server": {
      const drain = replicaDrainInfo(state);
      return names(state.servers).map((n) => serverStatus(state, state.servers.get(n)!, drain));
    }
    case "Pipeline":
      return names(state.pipelines).map((n) => pipelineStatus(state.pipelines.get(n)!));
    case "Experiment":
      return names(state.experiments).map((n) => experimentStatus(state.experiments.get(n)!));
  }
}

const KIND_ALIASES: Record<string, ResourceKind> = {
  model: "Model",
  models: "Model",
  server: "Server",
  servers: "Server",
  pipeline: "Pipeline",
  pipelines: "Pipeline",
  experiment: "Experiment",
  experiments: "Experiment",
};

/** `model`, `models`, `Model` (any case) → `Model`; throws a `bad_request` TernError for anything else. */
export function parseKind(text: string): ResourceKind {
  const kind = KIND_ALIASES[text.toLowerCase()];
  if (kind === undefined) {
    throw new TernError("bad_request", `unknown kind "${text}": expected model, server, pipeline or experiment`);
  }
  return kind;
}
