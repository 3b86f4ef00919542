import type * as grpc from "@grpc/grpc-js";
import {
  type ModelInferRequest,
  type ModelInferResponse,
  parametersFromOip,
  parametersToOip,
  requestInputsToOip,
  TernError,
  tensorsFromOip,
} from "@tern/core";
import type { InferenceRequest, InferenceResult } from "../inference/inference-service.js";

/**
 * ModelInfer over the shared OIP protobuf codec of @tern/core (the one the Kafka data plane uses), instead of
 * proto-loader objects: tensor data stays in typed arrays and raw contents are views of the call's buffer.
 * The other RPCs stay on proto-loader.
 */

/**
 * The service definition with ModelInfer passing bytes through: the handler gets the request as a Buffer and decodes
 * it itself (so malformed bytes answer INVALID_ARGUMENT through the handler's error mapping, where a failing
 * deserializer would answer INTERNAL), and returns the encoded response.
 */
export function withModelInferBytes(definition: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const infer = definition.ModelInfer;
  if (!infer) throw new Error("the OIP service definition has no ModelInfer method");
  return {
    ...definition,
    ModelInfer: {
      ...infer,
      requestDeserialize: (bytes: Buffer) => bytes,
      responseSerialize: (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
    },
  };
}

const bad = (message: string) => new TernError("bad_request", message);

/** The inference request a decoded ModelInferRequest asks for; checks tensors against their shapes and datatypes. */
export function decodeGrpcRequest(req: ModelInferRequest): InferenceRequest {
  if (req.inputs.length === 0) throw bad("inputs must not be empty");
  const inputs = requestInputsToOip(req);
  const parameters = parametersToOip(req.parameters);
  return {
    ...(req.id ? { id: req.id } : {}),
    ...(parameters ? { parameters } : {}),
    inputs,
    outputs: (req.outputs ?? []).map((o) => {
      const p = parametersToOip(o.parameters);
      return p ? { name: o.name, parameters: p } : { name: o.name };
    }),
  };
}

/**
 * The response to a request. Outputs travel in raw_output_contents when the request used raw inputs (what Triton and
 * Seldon clients send and expect) or when an output is FP16 (which has no typed field); otherwise in typed contents.
 */
export function encodeGrpcResponse(req: ModelInferRequest, result: InferenceResult): ModelInferResponse {
  const raw = (req.raw_input_contents?.length ?? 0) > 0 || result.outputs.some((o) => o.datatype === "FP16");
  const wire = tensorsFromOip(result.outputs, raw);
  const res: ModelInferResponse = { model_name: result.modelName, outputs: wire.tensors };
  if (result.modelVersion) res.model_version = result.modelVersion;
  if (result.id) res.id = result.id;
  const parameters = parametersFromOip(result.parameters);
  if (parameters) res.parameters = parameters;
  if (wire.raw) res.raw_output_contents = wire.raw;
  return res;
}
