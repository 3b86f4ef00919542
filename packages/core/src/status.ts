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
  /** Replicas asked for by the spec. */
  replicas: number;
  availableReplicas: number;
  server?: string;
  placement: ReplicaPlacement[];
}
