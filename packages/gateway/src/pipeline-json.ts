import {
  decodeTensorData,
  describeJsonValue,
  elementCount,
  encodeTensorData,
  INFERENCE_HEADER_CONTENT_LENGTH,
  isOipDatatype,
  type OipInferenceResponse,
  type OipResponseOutput,
  type OipTensor,
  tensorDataFromJson,
  tensorDataToJson,
} from "@tern/core";
import { GatewayError } from "./errors.js";

// The REST side of a pipeline request: the gateway itself decodes the body (a model request is only forwarded, the
// agent decodes it), since it must put tensors on Kafka as an OIP ModelInferRequest. JSON and the binary-tensor
// extension (`Inference-Header-Content-Length`: a JSON part, then each binary input's raw little-endian bytes in the
// order of `inputs`) both decode to the same tensors; the tensor byte codec is core's, as for gRPC and Kafka.

const bad = (message: string) => new GatewayError("bad_request", message);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A decoded pipeline request: its tensors, and which outputs the caller wants back as binary. */
export interface PipelineRestRequest {
  inputs: OipTensor[];
  /** `parameters.binary_data_output: true`: every output binary unless the output names itself JSON. */
  binaryOutputs: boolean;
  /** Per-output choice from `outputs[].parameters.binary_data`, which wins over `binaryOutputs`. */
  outputBinary: Map<string, boolean>;
}

/**
 * The tensors of an OIP REST body, JSON or with the binary-tensor extension. Every structural problem is a
 * `bad_request` naming the field, header or input.
 * @throws GatewayError `bad_request`
 */
export function pipelineRequestFromRest(headers: Headers, body: Uint8Array): PipelineRestRequest {
  const headerLength = headers.get(INFERENCE_HEADER_CONTENT_LENGTH);
  let jsonPart = body;
  let binary: Uint8Array | undefined;
  if (headerLength !== null) {
    const n = Number(headerLength.trim());
    if (!/^\d+$/.test(headerLength.trim()) || !Number.isSafeInteger(n)) {
      throw bad(`Inference-Header-Content-Length must be a byte count, got ${JSON.stringify(headerLength)}`);
    }
    if (n > body.byteLength) {
      throw bad(`Inference-Header-Content-Length is ${n} but the body has only ${body.byteLength} bytes`);
    }
    jsonPart = body.subarray(0, n);
    binary = body.subarray(n);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(jsonPart.buffer, jsonPart.byteOffset, jsonPart.byteLength).toString("utf8"));
  } catch (err) {
    throw bad(`request body is not valid JSON: ${(err as Error).message}`);
  }
  if (!isObject(parsed)) throw bad('the request body must be a JSON object with an "inputs" array');
  if (!Array.isArray(parsed.inputs) || parsed.inputs.length === 0) throw bad('"inputs" must be a non-empty array');
  let offset = 0;
  const inputs = parsed.inputs.map((raw, index): OipTensor => {
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
    const count = elementCount(shape as number[]);
    const size = isObject(raw.parameters) ? raw.parameters.binary_data_size : undefined;
    if (size !== undefined) {
      if (raw.data !== undefined) throw bad(`${where}: has both "data" and binary_data_size`);
      if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) {
        throw bad(`${where}: binary_data_size must be a non-negative integer`);
      }
      if (binary === undefined) {
        throw bad(
          `${where}: binary_data_size is set but the request has no binary part (Inference-Header-Content-Length missing)`,
        );
      }
      if (offset + size > binary.byteLength) {
        throw bad(
          `${where}: binary_data_size ${size} runs past the end of the binary part (${binary.byteLength - offset} bytes left)`,
        );
      }
      const bytes = binary.subarray(offset, offset + size);
      offset += size;
      return {
        name: raw.name,
        datatype: raw.datatype,
        shape: shape as number[],
        data: decodeTensorData(raw.name, raw.datatype, bytes, count),
      };
    }
    if (raw.data === undefined) throw bad(`${where}: "data" is missing`);
    const data = tensorDataFromJson(raw.name, raw.datatype, raw.data);
    if (data.length !== count) {
      throw bad(`${where}: data has ${data.length} elements but shape ${JSON.stringify(shape)} needs ${count}`);
    }
    return { name: raw.name, datatype: raw.datatype, shape: shape as number[], data };
  });
  if (binary !== undefined && offset !== binary.byteLength) {
    throw bad(`the binary part has ${binary.byteLength - offset} bytes that no input claims (check binary_data_size)`);
  }
  const outputBinary = new Map<string, boolean>();
  if (parsed.outputs !== undefined) {
    if (!Array.isArray(parsed.outputs)) throw bad('"outputs" must be an array of {"name": ...}');
    parsed.outputs.forEach((o, i) => {
      if (!isObject(o) || typeof o.name !== "string") throw bad(`outputs[${i}] must be an object with a string "name"`);
      const flag = isObject(o.parameters) ? o.parameters.binary_data : undefined;
      if (typeof flag === "boolean") outputBinary.set(o.name, flag);
    });
  }
  const binaryOutputs = isObject(parsed.parameters) && parsed.parameters.binary_data_output === true;
  return { inputs, binaryOutputs, outputBinary };
}

/** The REST answer of a pipeline: a JSON object, or JSON then raw bytes when some output travels binary. */
export type PipelineRestResponse =
  | { kind: "json"; json: OipInferenceResponse }
  | { kind: "binary"; body: Uint8Array; jsonLength: number };

/**
 * The OIP REST answer of a pipeline (`model_name` is the pipeline, `id` the gateway's request id). Outputs asked for
 * as binary carry `parameters.binary_data_size` instead of `data`, and their bytes follow the JSON in output order.
 */
export function pipelineResponseRest(
  pipeline: string,
  requestId: string,
  outputs: OipTensor[],
  request: Pick<PipelineRestRequest, "binaryOutputs" | "outputBinary">,
): PipelineRestResponse {
  const parts: Uint8Array[] = [];
  const out = outputs.map((t): OipResponseOutput => {
    if (request.outputBinary.get(t.name) ?? request.binaryOutputs) {
      const bytes = encodeTensorData(t.datatype, t.data);
      parts.push(bytes);
      return { name: t.name, datatype: t.datatype, shape: t.shape, parameters: { binary_data_size: bytes.byteLength } };
    }
    return { name: t.name, datatype: t.datatype, shape: t.shape, data: tensorDataToJson(t.datatype, t.data) };
  });
  const json: OipInferenceResponse = { model_name: pipeline, id: requestId, outputs: out };
  if (parts.length === 0) return { kind: "json", json };
  const head = Buffer.from(JSON.stringify(json), "utf8");
  return { kind: "binary", body: Buffer.concat([head, ...parts]), jsonLength: head.byteLength };
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
