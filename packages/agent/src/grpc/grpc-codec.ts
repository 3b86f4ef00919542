import {
  allocateTensorData,
  checkIntegerRange,
  decodeTensorData,
  elementCount,
  encodeTensorData,
  isOipDatatype,
  type OipDatatype,
  type OipParameters,
  type OipTensor,
  type TensorData,
  TernError,
} from "@tern/core";
import type { InferenceRequest, InferenceResult } from "../inference/inference-service.js";

/** InferParameter as proto-loader hands it over (`oneofs: true`, longs as strings). */
export interface GrpcParameter {
  parameter_choice?: "bool_param" | "int64_param" | "string_param" | "double_param" | "uint64_param";
  bool_param?: boolean;
  int64_param?: string;
  string_param?: string;
  double_param?: number;
  uint64_param?: string;
}

export interface GrpcContents {
  bool_contents?: boolean[];
  int_contents?: number[];
  int64_contents?: string[];
  uint_contents?: number[];
  uint64_contents?: string[];
  fp32_contents?: number[];
  fp64_contents?: number[];
  bytes_contents?: Uint8Array[];
}

export interface GrpcTensor {
  name: string;
  datatype: string;
  shape: string[];
  parameters?: Record<string, GrpcParameter>;
  contents?: GrpcContents | null;
}

export interface GrpcInferRequest {
  model_name: string;
  model_version: string;
  id: string;
  parameters?: Record<string, GrpcParameter>;
  inputs: GrpcTensor[];
  outputs: Array<{ name: string; parameters?: Record<string, GrpcParameter> }>;
  raw_input_contents: Uint8Array[];
}

export interface GrpcInferResponse {
  model_name: string;
  model_version: string;
  id: string;
  parameters: Record<string, GrpcParameter>;
  outputs: Array<{ name: string; datatype: string; shape: string[]; contents?: GrpcContents }>;
  raw_output_contents: Uint8Array[];
}

const bad = (message: string) => new TernError("bad_request", message);

export function parametersFromGrpc(params: Record<string, GrpcParameter> | undefined): OipParameters | undefined {
  if (!params) return undefined;
  const out: OipParameters = {};
  for (const [k, p] of Object.entries(params)) {
    const choice = p.parameter_choice;
    if (choice === "bool_param") out[k] = p.bool_param ?? false;
    else if (choice === "string_param") out[k] = p.string_param ?? "";
    else if (choice === "double_param") out[k] = p.double_param ?? 0;
    else if (choice === "int64_param") out[k] = Number(p.int64_param ?? 0);
    else if (choice === "uint64_param") out[k] = Number(p.uint64_param ?? 0);
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/** Which `InferTensorContents` field carries a datatype (FP16 has none: it must travel raw). */
const CONTENTS_FIELD: Record<OipDatatype, keyof GrpcContents | undefined> = {
  BOOL: "bool_contents",
  INT8: "int_contents",
  INT16: "int_contents",
  INT32: "int_contents",
  INT64: "int64_contents",
  UINT8: "uint_contents",
  UINT16: "uint_contents",
  UINT32: "uint_contents",
  UINT64: "uint64_contents",
  FP16: undefined,
  FP32: "fp32_contents",
  FP64: "fp64_contents",
  BYTES: "bytes_contents",
};

function dataFromContents(
  name: string,
  datatype: OipDatatype,
  contents: GrpcContents | null | undefined,
  count: number,
): TensorData {
  const field = CONTENTS_FIELD[datatype];
  if (field === undefined) throw bad(`input "${name}": ${datatype} data must be sent in raw_input_contents`);
  const values = (contents?.[field] ?? []) as unknown[];
  if (values.length !== count)
    throw bad(`input "${name}": ${field} has ${values.length} elements but the shape needs ${count}`);
  const out = allocateTensorData(datatype, count);
  if (datatype === "BYTES") {
    for (let i = 0; i < count; i++) (out as Uint8Array[])[i] = new Uint8Array(values[i] as Uint8Array);
  } else if (datatype === "INT64" || datatype === "UINT64") {
    for (let i = 0; i < count; i++) (out as BigInt64Array)[i] = BigInt(values[i] as string);
  } else if (datatype === "BOOL") {
    for (let i = 0; i < count; i++) (out as Uint8Array)[i] = values[i] ? 1 : 0;
  } else {
    // int_contents and uint_contents are 32-bit: an INT8 or UINT16 element can hold more than its datatype.
    checkIntegerRange(name, datatype, values as number[]);
    (out as Float32Array).set(values as number[]);
  }
  return out;
}

function shapeFromGrpc(name: string, shape: string[]): number[] {
  return shape.map((d) => {
    const n = Number(d);
    if (!Number.isSafeInteger(n) || n < 0)
      throw bad(`input "${name}": shape [${shape.join(",")}] must hold non-negative integers`);
    return n;
  });
}

export function decodeGrpcRequest(req: GrpcInferRequest): InferenceRequest {
  if (req.inputs.length === 0) throw bad("inputs must not be empty");
  const raw = req.raw_input_contents ?? [];
  if (raw.length > 0 && raw.length !== req.inputs.length)
    throw bad(`raw_input_contents has ${raw.length} entries but there are ${req.inputs.length} inputs`);
  const inputs: OipTensor[] = req.inputs.map((t, i) => {
    if (!t.name) throw bad(`inputs[${i}]: name is empty`);
    if (!isOipDatatype(t.datatype)) throw bad(`input "${t.name}": datatype "${t.datatype}" is not an OIP datatype`);
    const shape = shapeFromGrpc(t.name, t.shape);
    const count = elementCount(shape);
    const data =
      raw.length > 0
        ? decodeTensorData(t.name, t.datatype, raw[i]!, count)
        : dataFromContents(t.name, t.datatype, t.contents, count);
    return { name: t.name, datatype: t.datatype, shape, data };
  });
  const parameters = parametersFromGrpc(req.parameters);
  return {
    ...(req.id ? { id: req.id } : {}),
    ...(parameters ? { parameters } : {}),
    inputs,
    outputs: req.outputs.map((o) => {
      const p = parametersFromGrpc(o.parameters);
      return p ? { name: o.name, parameters: p } : { name: o.name };
    }),
  };
}

function contentsFrom(t: OipTensor): GrpcContents {
  const field = CONTENTS_FIELD[t.datatype]!;
  switch (t.datatype) {
    case "BYTES":
      return { bytes_contents: t.data as Uint8Array[] };
    case "BOOL":
      return { bool_contents: Array.from(t.data as Uint8Array, (v) => v !== 0) };
    case "INT64":
    case "UINT64":
      return { [field]: Array.from(t.data as BigInt64Array, (v) => v.toString()) };
    default:
      return { [field]: Array.from(t.data as Float32Array) };
  }
}

/**
 * Encodes a result. Outputs travel in raw_output_contents when the request used raw inputs (what Triton and Seldon
 * clients send and expect) or when an output is FP16 (which has no typed field); otherwise in typed contents.
 */
export function encodeGrpcResponse(req: GrpcInferRequest, result: InferenceResult): GrpcInferResponse {
  const raw = (req.raw_input_contents?.length ?? 0) > 0 || result.outputs.some((o) => o.datatype === "FP16");
  return {
    model_name: result.modelName,
    model_version: result.modelVersion,
    id: result.id ?? "",
    parameters: {},
    outputs: result.outputs.map((t) => ({
      name: t.name,
      datatype: t.datatype,
      shape: t.shape.map(String),
      ...(raw ? {} : { contents: contentsFrom(t) }),
    })),
    raw_output_contents: raw ? result.outputs.map((t) => encodeTensorData(t.datatype, t.data)) : [],
  };
}
