import type { OipTensor, OipTensorMetadata } from "@tern/core";

/** What a runtime needs to load one model version. */
export interface LoadOptions {
  model: string;
  version: number;
  /** `Model.spec.parameters`, as name → value. */
  parameters: Readonly<Record<string, string>>;
  /** `Model.spec.requirements` (e.g. `["sklearn"]`); a runtime serving several frameworks picks one from them. */
  requirements?: readonly string[];
  /**
   * For runtimes whose models live in another process (MLServer): called when that process lost the model and the
   * runtime is getting it back (`Loading`), has it back (`Available`) or could not (`LoadFailed`), so that the replica's
   * state says so instead of the model being silently gone.
   */
  onStateChange?: (state: "Loading" | "Available" | "LoadFailed", reason?: string) => void;
}

/**
 * The inputs and outputs a loaded model declares; requests are checked against them. An empty list means "not
 * declared" (an MLServer model without `inputs` in its model-settings.json): the runtime then checks requests itself.
 */
export interface ModelSignature {
  inputs: OipTensorMetadata[];
  outputs: OipTensorMetadata[];
}

/** One model held in memory by a runtime. */
export interface LoadedModel {
  readonly signature: ModelSignature;
  /**
   * Runs the model. `inputs` are already checked against the signature; `outputs` names the outputs wanted (all when
   * empty). Returns the requested outputs in signature order.
   */
  infer(inputs: OipTensor[], outputs: readonly string[]): Promise<OipTensor[]>;
  /**
   * For models served by a process that speaks OIP REST itself (MLServer): forwards the caller's JSON request body as
   * it is and resolves with the JSON answer, whose `model_name`/`model_version` are the caller's. Nothing is decoded
   * or re-encoded on the way. Rejects with a TernError as `infer` does (4xx → `bad_request`, lost or not ready →
   * `unavailable`). Absent where requests must be decoded (ONNX).
   */
  forwardJson?(body: Uint8Array): Promise<Uint8Array<ArrayBuffer>>;
  /** Frees the model's memory; the object must not be used afterwards. */
  unload(): Promise<void>;
}

/**
 * The runtime port: one adapter per kind of model server. The built-in adapter is ONNX (`onnx-runtime.ts`); MLServer
 * (`mlserver-runtime.ts`) drives a process of its own through its model-repository API.
 */
export interface ModelRuntime {
  /** The `Server.spec.serverConfig` this runtime implements, e.g. `tern-onnx`. */
  readonly serverType: string;
  /** Capabilities offered to `Model.spec.requirements`, e.g. `["onnx"]`. */
  readonly capabilities: readonly string[];
  /** Reported as `platform` in OIP model metadata, e.g. `onnxruntime`. */
  readonly platform: string;
  /**
   * Loads the artifact at `artifactPath` (a local file). Fails with a TernError whose message can be shown to a person
   * as the replica's LoadFailed reason.
   */
  load(artifactPath: string, options: LoadOptions): Promise<LoadedModel>;
  /** Starts what the runtime runs besides the agent (a server process); the agent calls it before it serves. */
  start?(): Promise<void>;
  /** Stops it; the agent calls it last, after the models are unloaded. */
  stop?(): Promise<void>;
  /** Its loaded models have `forwardJson` (MLServer): JSON requests skip decoding. @default false */
  readonly forwardsJson?: boolean;
  /** Resident memory of the runtime's own process, bytes, where it has one (MLServer); undefined otherwise. */
  processBytes?(): number | undefined;
}
