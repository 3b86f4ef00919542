import type {
  AgentRegistration,
  ExperimentResource,
  ModelResource,
  ModelState,
  ParameterSpec,
  PipelineResource,
  PipelineState,
  ReplicaState,
  ServerResource,
  WorkerKind,
} from "@tern/core";

/**
 * The scheduler's state, exactly as it is persisted (one store item per record, see `collections` below). The
 * reconciler is a pure function of a {@link ClusterState}; the service keeps one in memory and writes every change
 * through the state store port.
 */

/**
 * Store collections. The ids are resource names, except replicas (`<server>/<index>`), workers (`<kind>/<id>`),
 * buckets (`modelgateway/<bucket>`) and the fixed items.
 */
export const COLLECTIONS = {
  model: "model",
  server: "server",
  replica: "replica",
  pipeline: "pipeline",
  experiment: "experiment",
  worker: "worker",
  bucket: "bucket",
  routes: "routes",
  meta: "meta",
} as const;

/** The route table item Lambda gateways read. */
export const ROUTES_KEY = { collection: COLLECTIONS.routes, id: "current" } as const;
/** The revision counter, bumped in the same transaction as every change. */
export const REVISION_KEY = { collection: COLLECTIONS.meta, id: "revision" } as const;

/** One replica of a model version on one server replica. */
export interface ModelReplicaRecord {
  server: string;
  replica: number;
  state: ReplicaState;
  reason?: string;
}

/** One version of a model: everything but the replica counts is fixed per version. */
export interface ModelVersionRecord {
  version: number;
  /** Canonical JSON of the spec fields that define a version; a different key makes a new version. */
  specKey: string;
  storageUri: string;
  /** `spec.secretName`, passed to the agents with each assignment. */
  secretName?: string;
  /** `spec.memory`, or the default guess when it is absent (see `memoryDefaulted`). */
  memoryBytes: number;
  /** `spec.memory` was absent: placement uses the default guess, agents are told 0 and account the artifact's size. */
  memoryDefaulted?: boolean;
  requirements: string[];
  parameters: ParameterSpec[];
  /** `spec.server`: the model is pinned to this Server. */
  pinnedServer?: string;
  /** The one Server this version's replicas live on (chosen by placement). */
  server?: string;
  replicas: ModelReplicaRecord[];
}

export interface ModelRecord {
  name: string;
  /** The manifest last applied. */
  resource: ModelResource;
  /** Ascending; the last one is the latest version, older ones keep serving until it is available. */
  versions: ModelVersionRecord[];
  deleting: boolean;
  /** Derived by the reconciler (kept in the record so that lists and standbys need no recomputation). */
  state: ModelState;
  reason?: string;
  /** Set when the last placement of the latest version failed. */
  scheduleFailure?: string;
  /** Set when placement could place only some replicas (at least `minReplicas`). */
  partialReason?: string;
  /** How many replicas of the latest version placement wants (what "all available" means). */
  targetCount?: number;
  /**
   * The Kafka path of the model (its topics), written by the topic lifecycle (`topics.ts`). Absent: not checked yet,
   * or no Kafka admin configured. Not ready: the model still serves over HTTP and `reason` says what is missing.
   */
  topics?: { ready: boolean; reason?: string };
  /**
   * What autoscaling decided (models with `minReplicas`/`maxReplicas`, docs/autoscaling.md). Absent until the first
   * decision: the manifest's replica count applies. The manifest itself is never rewritten.
   */
  autoscaling?: ModelScalingRecord;
}

/** The autoscaler's outcome for one model, stored so a standby and `tern status` see it. */
export interface ModelScalingRecord {
  /** The replica count placement works to (within the spec's bounds). */
  desiredReplicas: number;
  /** Epoch ms of the last change of `desiredReplicas` (the cool-down counts from it). */
  lastChangeAt?: number;
  /** The last decision that changed something or was blocked, with its reason. */
  lastDecision?: { at: number; from: number; to: number; reason: string };
  /** Server replicas the model wants beyond what its server has (server autoscaling acts on it). */
  wantsServerReplicas?: number;
}

export interface ServerRecord {
  name: string;
  resource: ServerResource;
  deleting: boolean;
  /**
   * What server autoscaling decided (Servers with `minReplicas`/`maxReplicas`, docs/autoscaling.md). Absent: the
   * manifest's replica count applies. The manifest itself is never rewritten.
   */
  autoscaling?: { desiredReplicas: number; lastChangeAt: number; reason: string };
}

/** A registered agent: one replica of a server. */
export interface ReplicaRecord extends AgentRegistration {
  /** The agent asked to be drained (it is shutting down). Scale-down draining is derived, not stored. */
  draining: boolean;
  registeredAt: number;
}

export interface PipelineRecord {
  name: string;
  resource: PipelineResource;
  /** Starts at 1 and goes up when an apply changes the spec. Absent in records stored before versions: 1. */
  version?: number;
  state: PipelineState;
  reason?: string;
  /**
   * The dataflow workers that own the pipeline, in ring order (`pipeline-placement.ts`), placed by the reconciler and
   * stored so a standby serves the same answer. Absent while no dataflow worker is registered.
   */
  owners?: string[];
  /**
   * The newest version that reached `PipelineReady` (absent: never ready since it was created or revived). While it is
   * set, owners changing or a new version starting is `PipelineRebalancing` — gateways keep serving it — not Creating.
   */
  readyVersion?: number;
  /**
   * The pipeline's own `inputs`/`outputs` topics, written by the topic lifecycle (`topics.ts`). Absent: not checked yet
   * (or no Kafka admin configured); not ready: `reason` says why, and the pipeline cannot be ready.
   */
  topics?: { ready: boolean; reason?: string };
  /** Epoch ms of the delete: the pipeline is `PipelineTerminating` until no worker runs it (or the drain deadline). */
  deletedAt?: number;
  /** Epoch ms it became `PipelineTerminated`; the record is kept for the retention time, then removed. */
  terminatedAt?: number;
}

export interface ExperimentRecord {
  name: string;
  resource: ExperimentResource;
  /** True when every candidate (and the mirror) can serve. */
  active: boolean;
  reason?: string;
}

/** A registered data-plane worker (model gateway, dataflow worker): not a server replica. */
export interface WorkerRecord {
  kind: WorkerKind;
  id: string;
  endpoint?: string;
  registeredAt: number;
}

/**
 * One model-gateway bucket as placed by the reconciler (`bucket-placement.ts`): stored, so a standby serves the same
 * answer. Stored only while at least one model gateway is registered.
 */
export interface BucketRecord {
  bucket: number;
  groupId: string;
  /** Worker id of the model gateway that owns it. */
  owner?: string;
  /** The bucket's models (sorted): those with a route whose Kafka path is usable. */
  models: string[];
}

/** Everything the reconciler decides from. Maps are keyed by store id. */
export interface ClusterState {
  models: Map<string, ModelRecord>;
  servers: Map<string, ServerRecord>;
  replicas: Map<string, ReplicaRecord>;
  pipelines: Map<string, PipelineRecord>;
  experiments: Map<string, ExperimentRecord>;
  workers: Map<string, WorkerRecord>;
  buckets: Map<string, BucketRecord>;
}

export function emptyClusterState(): ClusterState {
  return {
    models: new Map(),
    servers: new Map(),
    replicas: new Map(),
    pipelines: new Map(),
    experiments: new Map(),
    workers: new Map(),
    buckets: new Map(),
  };
}

export function cloneClusterState(state: ClusterState): ClusterState {
  return structuredClone(state);
}

/** Store id of a worker. */
export function workerId(kind: WorkerKind, id: string): string {
  return `${kind}/${id}`;
}

/** Store id of a model-gateway bucket. */
export function bucketId(bucket: number): string {
  return `modelgateway/${bucket}`;
}

/** Store id of a server replica. */
export function replicaId(server: string, replica: number): string {
  return `${server}/${replica}`;
}

/** Replica states in which the replica should hold the model (the agent's desired set). */
export const WANTED_STATES: ReadonlySet<ReplicaState> = new Set(["LoadRequested", "Loading", "Loaded", "Available"]);
/** Replica states on the way out. */
export const UNLOAD_STATES: ReadonlySet<ReplicaState> = new Set(["UnloadRequested", "Unloading", "Unloaded"]);
/** States that count as serving. Agents may report `Loaded` or `Available`; both can take traffic. */
export const SERVING_STATES: ReadonlySet<ReplicaState> = new Set(["Loaded", "Available"]);
