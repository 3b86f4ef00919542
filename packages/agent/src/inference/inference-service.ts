import {
  elementCount,
  type OipModelMetadata,
  type OipParameters,
  type OipServerMetadata,
  type OipTensor,
  type OipTensorMetadata,
  TernError,
} from "@tern/core";
import type { ModelRegistry } from "../model-registry.js";
import type { ModelTraffic } from "../model-traffic.js";
import type { ModelSignature } from "../runtime/model-runtime.js";

/** A decoded inference request, independent of REST or gRPC. */
export interface InferenceRequest {
  id?: string;
  parameters?: OipParameters;
  inputs: OipTensor[];
  /** Outputs asked for (all when empty), with their per-output parameters (e.g. `binary_data`). */
  outputs: Array<{ name: string; parameters?: OipParameters }>;
}

export interface InferenceResult {
  modelName: string;
  modelVersion: string;
  id?: string;
  parameters?: OipParameters;
  outputs: OipTensor[];
}

/** The OIP operations, shared by the REST app and the gRPC server. */
export interface InferenceService {
  live(): boolean;
  ready(): boolean;
  serverMetadata(): OipServerMetadata;
  /** Throws `not_found` for an unknown model/version, `unavailable` when its signature is not known yet. */
  modelMetadata(model: string, version?: string): OipModelMetadata;
  /** Throws `not_found` for an unknown model/version. */
  modelReady(model: string, version?: string): boolean;
  infer(model: string, version: string | undefined, request: InferenceRequest): Promise<InferenceResult>;
  /** True when the runtime forwards JSON requests as they are (MLServer): see `forwardJson`. */
  readonly forwardsJson: boolean;
  /**
   * Sends a REST JSON request body to the model's runtime untouched and resolves with its JSON answer (under the
   * caller's model name and version); undefined when this model needs the decoding path (its runtime does not
   * forward, or its `drop_empty_outputs` parameter filters the outputs). Errors as `infer`.
   */
  forwardJson(
    model: string,
    version: string | undefined,
    body: Uint8Array,
  ): Promise<Uint8Array<ArrayBuffer> | undefined>;
  /** The metrics label for a model name: unknown names share one label so that callers cannot grow the series. */
  metricsLabel(model: string): string;
}

export interface InferenceServiceOptions {
  models: ModelRegistry;
  /** Server name reported by `GET /v2`. */
  serverName: string;
  serverVersion: string;
  /** Platform reported in model metadata. */
  platform: string;
  /** True while the agent takes traffic (lifecycle `running`). */
  isReady: () => boolean;
  /** Counts requests per model for autoscaling (reported with heartbeats). */
  traffic?: ModelTraffic;
  /** The runtime's `forwardsJson`. @default false */
  forwardsJson?: boolean;
}

const shapeText = (shape: readonly number[]) => `[${shape.join(",")}]`;

/**
 * Checks decoded inputs against the model's signature; every message names the tensor and the mismatch.
 * Element counts against the request's own shape are checked while decoding.
 */
export function checkInputs(model: string, signature: ModelSignature, inputs: readonly OipTensor[]): void {
  // Undeclared inputs (an MLServer model without them in its model-settings.json): its runtime checks them.
  if (signature.inputs.length === 0) return;
  const expected = new Map<string, OipTensorMetadata>(signature.inputs.map((i) => [i.name, i]));
  const seen = new Set<string>();
  const names = signature.inputs.map((i) => i.name).join(", ");
  for (const input of inputs) {
    if (seen.has(input.name)) throw new TernError("bad_request", `input "${input.name}" is given more than once`);
    seen.add(input.name);
    const meta = expected.get(input.name);
    if (!meta)
      throw new TernError("bad_request", `unknown input "${input.name}" for model ${model} (its inputs: ${names})`);
    if (input.datatype !== meta.datatype)
      throw new TernError(
        "bad_request",
        `input "${input.name}": datatype ${input.datatype} does not match the model's ${meta.datatype}`,
      );
    if (input.shape.length !== meta.shape.length)
      throw new TernError(
        "bad_request",
        `input "${input.name}": shape ${shapeText(input.shape)} has rank ${input.shape.length}, the model expects rank ${meta.shape.length} (${shapeText(meta.shape)})`,
      );
    for (const [i, dim] of meta.shape.entries()) {
      if (dim >= 0 && input.shape[i] !== dim)
        throw new TernError(
          "bad_request",
          `input "${input.name}": shape ${shapeText(input.shape)} does not match the model's ${shapeText(meta.shape)} at dimension ${i} (${input.shape[i]} ≠ ${dim})`,
        );
    }
  }
  for (const meta of signature.inputs) {
    if (!seen.has(meta.name))
      throw new TernError(
        "bad_request",
        `missing input "${meta.name}" for model ${model} (${meta.datatype} ${shapeText(meta.shape)})`,
      );
  }
}

function checkOutputs(model: string, signature: ModelSignature, wanted: readonly string[]): void {
  if (signature.outputs.length === 0) return;
  const known = new Set(signature.outputs.map((o) => o.name));
  const seen = new Set<string>();
  for (const name of wanted) {
    if (!known.has(name))
      throw new TernError(
        "bad_request",
        `unknown output "${name}" requested from model ${model} (its outputs: ${[...known].join(", ")})`,
      );
    if (seen.has(name)) throw new TernError("bad_request", `output "${name}" is requested more than once`);
    seen.add(name);
  }
}

export function createInferenceService(options: InferenceServiceOptions): InferenceService {
  const { models } = options;
  return {
    live: () => true,
    ready: options.isReady,
    serverMetadata: () => ({
      name: options.serverName,
      version: options.serverVersion,
      extensions: ["binary_tensor_data"],
    }),

    modelMetadata(model, version) {
      const record = models.resolve(model, version);
      if (!record.signature)
        throw new TernError(
          "unavailable",
          `model ${model} version ${record.version} is ${record.state}: no metadata yet`,
          {
            retriable: record.state === "Loading",
          },
        );
      const versions = models
        .list()
        .filter((r) => r.model === model)
        .map((r) => String(r.version));
      return {
        name: model,
        versions,
        platform: options.platform,
        inputs: record.signature.inputs,
        outputs: record.signature.outputs,
      };
    },

    modelReady(model, version) {
      return models.resolve(model, version).state === "Available" && options.isReady();
    },

    forwardsJson: options.forwardsJson ?? false,

    async forwardJson(model, version, body) {
      if (!options.isReady())
        throw new TernError("unavailable", "the server is not ready (starting or draining)", { retriable: true });
      let lease: Awaited<ReturnType<ModelRegistry["acquire"]>>;
      try {
        lease = await models.acquire(model, version);
      } catch (err) {
        // Counted as `infer` counts a request it cannot serve.
        options.traffic?.begin(model);
        options.traffic?.end(model);
        throw err;
      }
      const loaded = lease.model;
      if (loaded.forwardJson === undefined || lease.record.parameters.drop_empty_outputs === "true") {
        // The decoding path (`infer`) takes it, and counts it.
        lease.release();
        return undefined;
      }
      // Counted for autoscaling (its lag and the model's idle time) as `infer` counts.
      options.traffic?.begin(model);
      try {
        return await loaded.forwardJson(body);
      } finally {
        lease.release();
        options.traffic?.end(model);
      }
    },

    async infer(model, version, request) {
      if (!options.isReady())
        throw new TernError("unavailable", "the server is not ready (starting or draining)", { retriable: true });
      // Counted from before the model is acquired: waiting for it (a load in progress) is lag too.
      options.traffic?.begin(model);
      let lease: Awaited<ReturnType<ModelRegistry["acquire"]>>;
      try {
        lease = await models.acquire(model, version);
      } catch (err) {
        options.traffic?.end(model);
        throw err;
      }
      try {
        const signature = lease.model.signature;
        checkInputs(model, signature, request.inputs);
        const wanted = request.outputs.map((o) => o.name);
        checkOutputs(model, signature, wanted);
        let outputs = await lease.model.infer(request.inputs, wanted);
        // `choose`-style models mark the output they did not take with an empty tensor; with this parameter the
        // empty tensor is left out, so a pipeline sees it as absent (see samples/README.md).
        if (lease.record.parameters.drop_empty_outputs === "true")
          outputs = outputs.filter((o) => elementCount(o.shape) > 0);
        return {
          modelName: model,
          modelVersion: String(lease.record.version),
          ...(request.id === undefined ? {} : { id: request.id }),
          outputs,
        };
      } finally {
        lease.release();
        options.traffic?.end(model);
      }
    },

    metricsLabel(model) {
      return models.list().some((r) => r.model === model) ? model : "_unknown";
    },
  };
}
