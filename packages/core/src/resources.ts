/**
 * The shapes of the four Seldon Core v2 resource kinds Tern accepts (`apiVersion: mlops.seldon.io/v1alpha1`), as they
 * come out of manifest parsing and validation (see `manifest.ts`). Field names follow Seldon's CRDs exactly, so a
 * manifest written for Seldon reads the same here. The zod schemas in `schemas.ts` are checked against these types.
 */

export const API_VERSION = "mlops.seldon.io/v1alpha1" as const;

export type ResourceKind = "Model" | "Server" | "Pipeline" | "Experiment";
export const RESOURCE_KINDS: readonly ResourceKind[] = ["Model", "Server", "Pipeline", "Experiment"];

export interface ObjectMeta {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** Other Kubernetes metadata (uid, generation, resourceVersion, ...) is accepted and kept as given. */
  [key: string]: unknown;
}

export interface ScalingSpec {
  replicas?: number;
  minReplicas?: number;
  maxReplicas?: number;
}

export interface ParameterSpec {
  name: string;
  value: string;
}

export interface ModelSpec extends ScalingSpec {
  /**
   * `file://`, `s3://`, `http(s)://`, or a bare absolute path (a local path, like `file://`). Other schemes parse but
   * fail at load time with a clear reason.
   */
  storageUri: string;
  modelType?: string;
  artifactVersion?: number;
  schemaUri?: string;
  secretName?: string;
  /** Capabilities the server must offer (e.g. `onnx`, `sklearn`). */
  requirements?: string[];
  /** Kubernetes quantity per replica, e.g. `100Ki`. */
  memory?: string;
  /** Pin to one Server by name. */
  server?: string;
  preloaded?: boolean;
  dedicated?: boolean;
  logger?: { percent?: number; uri?: string };
  explainer?: { type?: string; modelRef?: string; pipelineRef?: string };
  llm?: { modelRef?: string; pipelineRef?: string };
  parameters?: ParameterSpec[];
  dataflow?: { cleanTopicsOnDelete?: boolean };
}

export interface ServerSpec extends ScalingSpec {
  /** A named server type (`mlserver`, `triton`, `tern-onnx`): fixes the runtime and its capabilities. */
  serverConfig: string;
  /** Replaces the server type's capability list. */
  capabilities?: string[];
  /** Adds to the server type's capability list. */
  extraCapabilities?: string[];
  disableAutoUpdate?: boolean;
  /**
   * How Kubernetes replaces the Server's pods (a Deployment strategy, as Seldon accepts it). On ECS it becomes the
   * agent service's deployment configuration (packages/control/src/deployment-strategy.ts); the local controller
   * never replaces a running agent, so it has no effect there (`tern validate` prints a warning saying so).
   */
  deploymentStrategy?: DeploymentStrategy;
  /** Kubernetes-only fields: accepted for compatibility, ignored by Tern. */
  imageOverrides?: Record<string, unknown>;
  podSpec?: Record<string, unknown>;
  statefulSetPersistentVolumeClaimRetentionPolicy?: Record<string, unknown>;
}

/** A Kubernetes Deployment strategy. Bounds are a replica count or a percentage string such as `25%`. */
export interface DeploymentStrategy {
  /** @default "RollingUpdate" */
  type?: "RollingUpdate" | "Recreate";
  rollingUpdate?: { maxUnavailable?: number | string; maxSurge?: number | string };
}

export type JoinType = "inner" | "outer" | "any";

export interface PipelineBatch {
  size?: number;
  windowMs?: number;
  rolling?: boolean;
}

export interface PipelineStep {
  /** Named after the model it runs. */
  name: string;
  /** References `<step|pipeline>.<inputs|outputs>[.<tensor>]`; a bare step name means its outputs; none means the pipeline's inputs. */
  inputs?: string[];
  joinWindowMs?: number;
  /** Renames tensors: reference → new tensor name. */
  tensorMap?: Record<string, string>;
  triggers?: string[];
  inputsJoinType?: JoinType;
  triggersJoinType?: JoinType;
  batch?: PipelineBatch;
}

export interface PipelineInput {
  externalInputs?: string[];
  externalTriggers?: string[];
  joinWindowMs?: number;
  joinType?: JoinType;
  triggersJoinType?: JoinType;
  tensorMap?: Record<string, string>;
}

export interface PipelineOutput {
  steps?: string[];
  joinWindowMs?: number;
  stepsJoin?: JoinType;
  tensorMap?: Record<string, string>;
}

export interface PipelineSpec {
  input?: PipelineInput;
  steps: PipelineStep[];
  output?: PipelineOutput;
  dataflow?: { cleanTopicsOnDelete?: boolean };
  /** Lets steps form a cycle (a feedback loop); without it a cycle is a validation error. @default false */
  allowCycles?: boolean;
  /** How many times one request may revisit a step of a cycle before the request fails. @default 0 */
  maxStepRevisits?: number;
}

export interface ExperimentCandidate {
  name: string;
  weight: number;
}

export interface ExperimentSpec {
  /** The model or pipeline whose endpoint this experiment takes over. */
  default?: string;
  /**
   * Required unless there is a `mirror`. A mirror-only experiment (no candidates) serves its `default` with all the
   * traffic and copies it to the mirror: see `experimentCandidates` in schemas.ts.
   */
  candidates?: ExperimentCandidate[];
  mirror?: { name: string; percent?: number };
  /** @default "model" */
  resourceType?: "model" | "pipeline";
}

interface ResourceBase<K extends ResourceKind, S> {
  apiVersion: typeof API_VERSION;
  kind: K;
  metadata: ObjectMeta;
  spec: S;
}

export type ModelResource = ResourceBase<"Model", ModelSpec>;
export type ServerResource = ResourceBase<"Server", ServerSpec>;
export type PipelineResource = ResourceBase<"Pipeline", PipelineSpec>;
export type ExperimentResource = ResourceBase<"Experiment", ExperimentSpec>;
export type Resource = ModelResource | ServerResource | PipelineResource | ExperimentResource;
