export { type Agent, type AgentLifecycle, type AgentOptions, createAgent } from "./agent.js";
export {
  type Artifact,
  type ArtifactFetcher,
  type ArtifactFetcherOptions,
  type ArtifactSource,
  createArtifactFetcher,
  type DownloadLimits,
  defaultArtifactRoots,
} from "./artifacts/artifact-fetcher.js";
export { DEFAULT_ARTIFACT_MAX_BYTES } from "./artifacts/download-guards.js";
export { createGcsSource, DEFAULT_GCS_ENDPOINT, type GcsSourceOptions } from "./artifacts/gcs-source.js";
export { createHttpSource, type HttpSourceOptions } from "./artifacts/http-source.js";
export { createS3Source, type S3SourceOptions } from "./artifacts/s3-source.js";
export { createSecretsDir, type SecretsSource, type StorageCredentials } from "./artifacts/secrets.js";
export { type AgentConfig, agentEnvSchema, loadAgentConfig } from "./config.js";
export { type AgentGrpcServer, createGrpcServer, type GrpcServerDeps } from "./grpc/grpc-server.js";
export { loadOipService, OIP_LOADER_OPTIONS, OIP_PROTO_PATH } from "./grpc/oip-proto.js";
export { type AgentAppDeps, createAgentApp } from "./http/app.js";
export {
  createInferenceService,
  type InferenceRequest,
  type InferenceResult,
  type InferenceService,
} from "./inference/inference-service.js";
export { type AgentMetrics, createAgentMetrics } from "./metrics.js";
export {
  createModelRegistry,
  type ModelLease,
  type ModelLoadSpec,
  type ModelRecord,
  type ModelRegistry,
} from "./model-registry.js";
export {
  createMlserverProcess,
  type MlserverProcess,
  type MlserverProcessOptions,
} from "./runtime/mlserver-process.js";
export {
  createMlserverRuntime,
  MLSERVER_CAPABILITIES,
  type MlserverRuntime,
  type MlserverRuntimeOptions,
  MODEL_SETTINGS_FILE,
} from "./runtime/mlserver-runtime.js";
export type { LoadedModel, LoadOptions, ModelRuntime, ModelSignature } from "./runtime/model-runtime.js";
export { createOnnxRuntime, type OnnxRuntimeOptions } from "./runtime/onnx-runtime.js";
export { createSchedulerClient } from "./scheduler-client.js";
