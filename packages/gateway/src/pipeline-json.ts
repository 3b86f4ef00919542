import {
  describeJsonValue,
  elementCount,
  isOipDatatype,
  type OipInferenceResponse,
  type OipTensor,
  tensorDataFromJson,
  tensorDataToJson,
} from "@tern/core";
import { GatewayError } from "./errors.js";

// The REST JSON side of a pipeline request: the gateway itself decodes the body (a model request is only forwarded),
// since it must put tensors on Kafka as an OIP ModelInferRequest. Binary tensors are a later part of issue 11.

const bad = (message: string) => new GatewayError("bad_request", message);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * The tensors of an OIP REST JSON body. Every structural problem is a `bad_request` naming the field or input.
 * @throws GatewayError `bad_request`; `unsupported` for the binary-tensor extension.
 */
export function pipelineInputsFromJson(headers: Headers, body: Uint8Array): OipTensor[] {
  if (headers.has("inference-header-content-length")) {
    throw new GatewayError("unsupported", "binary tensors are not supported on pipelines yet: send JSON data");
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString("utf8"));
  } catch (err) {
    throw bad(`request body is not valid JSON: ${(err as Error).message}`);
  }
  if (!isObject(parsed)) throw bad('the request body must be a JSON object with an "inputs" array');
  if (!Array.isArray(parsed.inputs) || parsed.inputs.length === 0) throw bad('"inputs" must be a non-empty array');
  return parsed.inputs.map((raw, index): OipTensor => {
    if (!isObject(raw)) throw bad(`inputs[${index}] must be an object`);
    if (typeof raw.name !== "string" || raw.name === "")
      throw bad(`inputs[${index}]: "name" must be a non-empty string`);
    const where = `input "${raw.name}"`;
    if (!isOipDatatype(raw.datatype)) {
      throw bad(`${where}: datatype ${describeJsonValue(raw.datatype)} is not an OIP datatype`);
    }
    const shape = raw.shape;
    if (!Array.isArray(shape) || !shape.every((d) => typeof d === "number" && Number.isInteger(d) && d >= 0)) {
      throw bad(`${where}: "shape" must be an array of non-negative integers`);
    }
    if (isObject(raw.parameters) && raw.parameters.binary_data_size !== undefined) {
      throw new GatewayError("unsupported", `${where}: binary tensors are not supported on pipelines yet`);
    }
    if (raw.data === undefined) throw bad(`${where}: "data" is missing`);
    const count = elementCount(shape as number[]);
    const data = tensorDataFromJson(raw.name, raw.datatype, raw.data);
    if (data.length !== count) {
      throw bad(`${where}: data has ${data.length} elements but shape ${JSON.stringify(shape)} needs ${count}`);
    }
    return { name: raw.name, datatype: raw.datatype, shape: shape as number[], data };
  });
}

/** The OIP REST JSON answer of a pipeline: `model_name` is the pipeline, `id` the gateway's request id. */
export function pipelineResponseJson(pipeline: string, requestId: string, outputs: OipTensor[]): OipInferenceResponse {
  return {
    model_name: pipeline,
    id: requestId,
    outputs: outputs.map((t) => ({
      name: t.name,
      datatype: t.datatype,
      shape: t.shape,
      data: tensorDataToJson(t.datatype, t.data),
    })),
  };
}

/** HTTP status for the gRPC status name an error record carries (`tern-error-status`). */
const HTTP_FOR_GRPC: Record<string, number> = {
  INVALID_ARGUMENT: 400,
  FAILED_PRECONDITION: 400,
  OUT_OF_RANGE: 400,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  ABORTED: 409,
  RESOURCE_EXHAUSTED: 413,
  CANCELLED: 499,
  UNIMPLEMENTED: 501,
  UNAVAILABLE: 503,
  DEADLINE_EXCEEDED: 504,
};

/** The HTTP status a pipeline error answer is returned with; 500 for `UNKNOWN`, `INTERNAL` and anything else. */
export function httpStatusForErrorRecord(status: string | undefined): number {
  if (status === undefined) return 500;
  return HTTP_FOR_GRPC[status.trim().toUpperCase()] ?? 500;
}
