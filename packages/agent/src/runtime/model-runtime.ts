import type { OipTensor, OipTensorMetadata } from "@tern/core";

/** What a runtime needs to load one model version. */
export interface LoadOptions {
  model: string;
  version: number;
  /** `Model.spec.parameters`, as name → value. */
  parameters: Readonly<Record<string, string>>;
}

/** The inputs and outputs a loaded model declares; requests are checked against them. */
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
  /** Frees the model's memory; the object must not be used afterwards. */
  unload(): Promise<void>;
}

/**
 * The runtime port: one adapter per kind of model server. The built-in adapter is ONNX (`onnx-runtime.ts`); external
 * OIP servers (MLServer, Triton) can be added as further adapters driven through their model-repository API.
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
}
