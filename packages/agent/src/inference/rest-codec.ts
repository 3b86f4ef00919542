import {
  decodeTensorData,
  describeJsonValue,
  elementCount,
  encodeTensorData,
  isOipDatatype,
  type OipInferenceResponse,
  type OipParameters,
  type OipResponseOutput,
  type OipTensor,
  TernError,
  tensorDataFromJson,
  tensorDataToJson,
} from "@tern/core";
import type { InferenceRequest, InferenceResult } from "./inference-service.js";

const bad = (message: string) => new TernError("bad_request", message);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function parseParameters(where: string, v: unknown): OipParameters | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) throw bad(`${where}: "parameters" must be an object`);
  for (const [k, value] of Object.entries(v)) {
    if (!["string", "number", "boolean"].includes(typeof value))
      throw bad(`${where}: parameter "${k}" must be a string, number or boolean`);
  }
  return v as OipParameters;
}

export function parseShape(where: string, v: unknown): number[] {
  if (!Array.isArray(v)) throw bad(`${where}: "shape" must be an array of non-negative integers`);
  for (const [i, d] of v.entries()) {
    if (typeof d !== "number" || !Number.isInteger(d) || d < 0)
      throw bad(
        v.length <= 64 && v.every((x) => typeof x !== "object" || x === null)
          ? `${where}: shape ${JSON.stringify(v)} must hold non-negative integers`
          : `${where}: shape must hold non-negative integers (dimension ${i} is ${describeJsonValue(d)})`,
      );
  }
  return v as number[];
}

/**
 * Turns a REST body (parsed JSON plus the optional binary part of the binary-tensor extension) into a decoded
 * request. Every structural problem is a `bad_request` naming the field or tensor.
 */
export function decodeRestRequest(body: unknown, binary: Uint8Array | undefined): InferenceRequest {
  if (!isObject(body)) throw bad('the request body must be a JSON object with an "inputs" array');
  if (body.id !== undefined && typeof body.id !== "string") throw bad('"id" must be a string');
  const parameters = parseParameters("request", body.parameters);
  if (!Array.isArray(body.inputs) || body.inputs.length === 0) throw bad('"inputs" must be a non-empty array');
  let offset = 0;
  const inputs: OipTensor[] = body.inputs.map((raw, index): OipTensor => {
    if (!isObject(raw)) throw bad(`inputs[${index}] must be an object`);
    if (typeof raw.name !== "string" || raw.name === "")
      throw bad(`inputs[${index}]: "name" must be a non-empty string`);
    const name = raw.name;
    const where = `input "${name}"`;
    if (!isOipDatatype(raw.datatype))
      throw bad(
        `${where}: datatype ${describeJsonValue(raw.datatype)} is not an OIP datatype (BOOL, UINT8..UINT64, INT8..INT64, FP16, FP32, FP64, BYTES)`,
      );
    const datatype = raw.datatype;
    const shape = parseShape(where, raw.shape);
    const inputParams = parseParameters(where, raw.parameters);
    const count = elementCount(shape);
    const binarySize = inputParams?.binary_data_size;
    if (binarySize !== undefined) {
      if (raw.data !== undefined) throw bad(`${where}: has both "data" and binary_data_size`);
      if (typeof binarySize !== "number" || !Number.isInteger(binarySize) || binarySize < 0)
        throw bad(`${where}: binary_data_size must be a non-negative integer`);
      if (binary === undefined)
        throw bad(
          `${where}: binary_data_size is set but the request has no binary part (Inference-Header-Content-Length missing)`,
        );
      if (offset + binarySize > binary.length)
        throw bad(
          `${where}: binary_data_size ${binarySize} runs past the end of the binary part (${binary.length - offset} bytes left)`,
        );
      const bytes = binary.subarray(offset, offset + binarySize);
      offset += binarySize;
      return { name, datatype, shape, data: decodeTensorData(name, datatype, bytes, count) };
    }
    if (raw.data === undefined) throw bad(`${where}: "data" is missing`);
    if (!Array.isArray(raw.data) && count !== 1) throw bad(`${where}: "data" must be an array`);
    const data = tensorDataFromJson(name, datatype, raw.data);
    if (data.length !== count)
      throw bad(`${where}: data has ${data.length} elements but shape ${JSON.stringify(shape)} needs ${count}`);
    return { name, datatype, shape, data };
  });
  if (binary !== undefined && offset !== binary.length)
    throw bad(`the binary part has ${binary.length - offset} bytes that no input claims (check binary_data_size)`);
  let outputs: InferenceRequest["outputs"] = [];
  if (body.outputs !== undefined) {
    if (!Array.isArray(body.outputs)) throw bad('"outputs" must be an array of {"name": ...}');
    outputs = body.outputs.map((o, i) => {
      if (!isObject(o) || typeof o.name !== "string") throw bad(`outputs[${i}] must be an object with a string "name"`);
      const p = parseParameters(`output "${o.name}"`, o.parameters);
      return p ? { name: o.name, parameters: p } : { name: o.name };
    });
  }
  return {
    ...(typeof body.id === "string" ? { id: body.id } : {}),
    ...(parameters ? { parameters } : {}),
    inputs,
    outputs,
  };
}

/** The REST response: JSON only, or JSON + binary part when any output is sent binary. */
export interface RestResponse {
  json: OipInferenceResponse;
  /** Present when some outputs travel in binary; the body is JSON bytes followed by these. */
  binary?: Uint8Array[];
}

export function encodeRestResponse(request: InferenceRequest, result: InferenceResult): RestResponse {
  const allBinary = request.parameters?.binary_data_output === true;
  const perOutput = new Map(request.outputs.map((o) => [o.name, o.parameters?.binary_data === true]));
  const binary: Uint8Array[] = [];
  const outputs: OipResponseOutput[] = result.outputs.map((t) => {
    if (perOutput.get(t.name) ?? allBinary) {
      const bytes = encodeTensorData(t.datatype, t.data);
      binary.push(bytes);
      return { name: t.name, datatype: t.datatype, shape: t.shape, parameters: { binary_data_size: bytes.length } };
    }
    return { name: t.name, datatype: t.datatype, shape: t.shape, data: tensorDataToJson(t.datatype, t.data) };
  });
  const json: OipInferenceResponse = {
    model_name: result.modelName,
    model_version: result.modelVersion,
    ...(result.id === undefined ? {} : { id: result.id }),
    outputs,
  };
  return binary.length > 0 ? { json, binary } : { json };
}
