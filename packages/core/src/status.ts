/** State names kept exactly as Seldon Core v2 reports them: people and tools already know them. */

export const MODEL_STATES = [
  "ModelProgressing",
  "ModelAvailable",
  "ModelFailed",
  "ScheduleFailed",
  "ModelTerminating",
  "ModelTerminated",
  "ModelTerminateFailed",
  "ModelScaledDown",
] as const;
export type ModelState = (typeof MODEL_STATES)[number];

export const REPLICA_STATES = [
  "LoadRequested",
  "Loading",
  "Loaded",
  "Available",
  "LoadFailed",
  "UnloadRequested",
  "Unloading",
  "Unloaded",
  "UnloadFailed",
  "Draining",
] as const;
export type ReplicaState = (typeof REPLICA_STATES)[number];

export const PIPELINE_STATES = [
  "PipelineCreating",
  "PipelineReady",
  "PipelineFailed",
  "PipelineTerminating",
  "PipelineTerminated",
  "PipelineRebalancing",
] as const;
export type PipelineState = (typeof PIPELINE_STATES)[number];

/** Where one replica of a model version sits and how it is doing. */
export interface ReplicaPlacement {
  server: string;
  replica: number;
  state: ReplicaState;
  reason?: string;
}

/** What `tern status model NAME --json` prints and the control API returns for a model. */
export interface ModelStatus {
  name: string;
  version: number;
  state: ModelState;
  reason?: string;
  /** Replicas asked for by the spec (the starting point of an autoscaled model; never rewritten). */
  replicas: number;
  /** Replicas placement works to now: `replicas`, or what autoscaling decided since. */
  desiredReplicas: number;
  availableReplicas: number;
  server?: string;
  placement: ReplicaPlacement[];
  /** Present for an autoscaled model (one with `minReplicas` or `maxReplicas`). */
  autoscaling?: ModelScalingStatus;
}

/** Autoscaling facts of one model (docs/autoscaling.md). */
export interface ModelScalingStatus {
  minReplicas: number;
  /** Absent: no maximum but the server's replicas. */
  maxReplicas?: number;
  /** The last decision that changed the desired count or was blocked, and why. */
  lastDecision?: { at: number; from: number; to: number; reason: string };
  /** Server replicas the model wants beyond what its server has. */
  wantsServerReplicas?: number;
}
