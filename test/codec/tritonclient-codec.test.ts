/**
 * The OIP protobuf codec against an outside encoder: NVIDIA tritonclient's generated protobuf classes (Python, in the
 * venv that scripts/python-env.sh makes). Python writes requests and responses with every datatype (raw and typed
 * contents) and parameters of every kind, ours decodes them; ours encodes the same, Python parses them. Both sides
 * describe a message in the same JSON "spec" (see tritonclient_codec.py), compared field by field.
 */
import { fileURLToPath } from "node:url";
import {
  CONTENTS_FIELD,
  decodeModelInferRequest,
  decodeModelInferResponse,
  encodeModelInferRequest,
  encodeModelInferResponse,
  floatToHalfBits,
  halfBitsToFloat,
  type InferParameter,
  type InferParameters,
  type InferTensor,
  type OipDatatype,
  type TensorData,
  tensorsFromOip,
  tensorsToOip,
} from "@tern/core";
import { beforeAll, describe, expect, it } from "vitest";
import { pythonEnv, runPython } from "../helpers/python.js";

const SCRIPT = fileURLToPath(new URL("./tritonclient_codec.py", import.meta.url));

type Kind = "request" | "response";
interface ParamSpec {
  kind: InferParameter["kind"];
  /** Decimal string for int64/uint64. */
  value: boolean | string | number;
}
type ParamsSpec = Record<string, ParamSpec>;
interface TensorSpec {
  name: string;
  datatype: OipDatatype;
  shape: number[];
  parameters: ParamsSpec;
  /** Numbers, booleans, decimal strings (INT64/UINT64) or base64 (BYTES). */
  values: Array<number | boolean | string>;
  /** What carried the data: "raw" or the contents field. */
  field: string;
}
interface MessageSpec {
  kind: Kind;
  model_name: string;
  model_version: string;
  id: string;
  parameters: ParamsSpec;
  raw: boolean;
  tensors: TensorSpec[];
  requested?: Array<{ name: string; parameters: ParamsSpec }>;
}

const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64");
const fromB64 = (s: string) => new Uint8Array(Buffer.from(s, "base64"));

/** Three values per datatype, with each datatype's extremes; floats are exact in their width. */
const VALUES: Record<OipDatatype, Array<number | boolean | string>> = {
  BOOL: [true, false, true],
  UINT8: [0, 7, 255],
  UINT16: [0, 300, 65535],
  UINT32: [0, 70000, 4294967295],
  UINT64: ["0", "1", "18446744073709551615"],
  INT8: [-128, 0, 127],
  INT16: [-32768, -1, 32767],
  INT32: [-2147483648, -5, 2147483647],
  INT64: ["-9223372036854775808", "-1", "9223372036854775807"],
  FP16: [1.5, -0.25, 65504],
  FP32: [0.5, -1.25, 3.4028234663852886e38],
  FP64: [Math.PI, -2.5, 1e-300],
  BYTES: [b64(new TextEncoder().encode("héllo ✓")), "", b64(Uint8Array.of(0, 0xff, 0x80))],
};
const PARAMS: ParamsSpec = {
  flag: { kind: "bool", value: true },
  count: { kind: "int64", value: "-9223372036854775808" },
  big: { kind: "uint64", value: "18446744073709551615" },
  text: { kind: "string", value: "ünïcode ✓" },
  ratio: { kind: "double", value: 0.1 },
};
const PARAM_KEYS = Object.keys(PARAMS);

function messageSpec(kind: Kind, raw: boolean): MessageSpec {
  const datatypes = (Object.keys(VALUES) as OipDatatype[]).filter((d) => raw || d !== "FP16");
  const spec: MessageSpec = {
    kind,
    model_name: "iris",
    model_version: "7",
    id: `${kind}-${raw ? "raw" : "contents"}-1`,
    parameters: PARAMS,
    raw,
    tensors: datatypes.map((datatype, i) => {
      // Each tensor carries one parameter, of a kind that changes from tensor to tensor.
      const key = PARAM_KEYS[i % PARAM_KEYS.length]!;
      return {
        name: `t_${datatype.toLowerCase()}`,
        datatype,
        shape: [1, 3],
        parameters: { [key]: PARAMS[key]! },
        values: VALUES[datatype],
        field: raw ? "raw" : CONTENTS_FIELD[datatype]!,
      };
    }),
  };
  if (kind === "request")
    spec.requested = [
      { name: "label", parameters: { binary_data: { kind: "bool", value: true } } },
      { name: "probabilities", parameters: {} },
    ];
  return spec;
}

const SPECS: Record<string, MessageSpec> = {
  requestRaw: messageSpec("request", true),
  requestContents: messageSpec("request", false),
  responseRaw: messageSpec("response", true),
  responseContents: messageSpec("response", false),
};

// ---------------------------------------------------------------------------------------------------------------
// Spec <-> our messages

function paramsToWire(spec: ParamsSpec): InferParameters {
  const out: InferParameters = {};
  for (const [key, p] of Object.entries(spec))
    out[key] = {
      kind: p.kind,
      value: p.kind === "int64" || p.kind === "uint64" ? BigInt(p.value as string) : p.value,
    } as InferParameter;
  return out;
}

function paramsFromWire(params: InferParameters | undefined): ParamsSpec {
  const out: ParamsSpec = {};
  for (const [key, p] of Object.entries(params ?? {}))
    out[key] = { kind: p.kind, value: typeof p.value === "bigint" ? p.value.toString() : p.value };
  return out;
}

function dataOf(datatype: OipDatatype, values: TensorSpec["values"]): TensorData {
  const nums = values as number[];
  switch (datatype) {
    case "BOOL":
      return Uint8Array.from(values, (v) => (v ? 1 : 0));
    case "INT64":
      return BigInt64Array.from(values, (v) => BigInt(v as string));
    case "UINT64":
      return BigUint64Array.from(values, (v) => BigInt(v as string));
    case "FP16":
      return Uint16Array.from(nums, floatToHalfBits);
    case "BYTES":
      return (values as string[]).map(fromB64);
    case "UINT8":
      return Uint8Array.from(nums);
    case "UINT16":
      return Uint16Array.from(nums);
    case "UINT32":
      return Uint32Array.from(nums);
    case "INT8":
      return Int8Array.from(nums);
    case "INT16":
      return Int16Array.from(nums);
    case "INT32":
      return Int32Array.from(nums);
    case "FP32":
      return Float32Array.from(nums);
    case "FP64":
      return Float64Array.from(nums);
  }
}

function valuesOf(datatype: OipDatatype, data: TensorData): TensorSpec["values"] {
  if (datatype === "BYTES") return (data as Uint8Array[]).map(b64);
  if (datatype === "BOOL") return Array.from(data as Uint8Array, (v) => v !== 0);
  if (datatype === "FP16") return Array.from(data as Uint16Array, halfBitsToFloat);
  if (datatype === "INT64" || datatype === "UINT64") return Array.from(data as BigInt64Array, String);
  return Array.from(data as Float32Array);
}

function encodeSpec(spec: MessageSpec): Uint8Array {
  const wire = tensorsFromOip(
    spec.tensors.map((t) => ({
      name: t.name,
      datatype: t.datatype,
      shape: t.shape,
      data: dataOf(t.datatype, t.values),
    })),
    spec.raw,
  );
  const tensors: InferTensor[] = wire.tensors.map((t, i) => ({
    ...t,
    parameters: paramsToWire(spec.tensors[i]!.parameters),
  }));
  const header = {
    model_name: spec.model_name,
    model_version: spec.model_version,
    id: spec.id,
    parameters: paramsToWire(spec.parameters),
  };
  if (spec.kind === "request")
    return encodeModelInferRequest({
      ...header,
      inputs: tensors,
      outputs: spec.requested!.map((o) => ({ name: o.name, parameters: paramsToWire(o.parameters) })),
      ...(wire.raw ? { raw_input_contents: wire.raw } : {}),
    });
  return encodeModelInferResponse({
    ...header,
    outputs: tensors,
    ...(wire.raw ? { raw_output_contents: wire.raw } : {}),
  });
}

function decodeToSpec(kind: Kind, bytes: Uint8Array): MessageSpec {
  const msg = kind === "request" ? decodeModelInferRequest(bytes) : decodeModelInferResponse(bytes);
  const wireTensors = "inputs" in msg ? msg.inputs : msg.outputs;
  const raw = ("inputs" in msg ? msg.raw_input_contents : msg.raw_output_contents) ?? [];
  const tensors = tensorsToOip(kind === "request" ? "input" : "output", wireTensors, raw);
  const spec: MessageSpec = {
    kind,
    model_name: msg.model_name,
    model_version: msg.model_version ?? "",
    id: msg.id ?? "",
    parameters: paramsFromWire(msg.parameters),
    raw: raw.length > 0,
    tensors: tensors.map((t, i) => ({
      name: t.name,
      datatype: t.datatype,
      shape: t.shape,
      parameters: paramsFromWire(wireTensors[i]!.parameters),
      values: valuesOf(t.datatype, t.data),
      field: raw.length > 0 ? "raw" : CONTENTS_FIELD[t.datatype]!,
    })),
  };
  if ("inputs" in msg)
    spec.requested = (msg.outputs ?? []).map((o) => ({ name: o.name, parameters: paramsFromWire(o.parameters) }));
  return spec;
}

// ---------------------------------------------------------------------------------------------------------------

let python = "";

beforeAll(async () => {
  // A clean machine installs the pinned tritonclient venv here (about a minute); later runs reuse it.
  python = await pythonEnv("tritonclient");
}, 900_000);

describe("OIP protobuf codec against tritonclient's protobuf classes", () => {
  it("decodes every field of requests and responses that tritonclient writes", async () => {
    const written = JSON.parse(await runPython(python, [SCRIPT, "write"], JSON.stringify(SPECS))) as Record<
      string,
      string
    >;
    expect(Object.keys(written).sort()).toEqual(Object.keys(SPECS).sort());
    for (const [key, spec] of Object.entries(SPECS)) {
      expect(decodeToSpec(spec.kind, fromB64(written[key]!)), key).toEqual(spec);
    }
  });

  it("writes requests and responses whose every field tritonclient reads back", async () => {
    const messages = Object.fromEntries(
      Object.entries(SPECS).map(([key, spec]) => [key, { kind: spec.kind, bytes: b64(encodeSpec(spec)) }]),
    );
    const read = JSON.parse(await runPython(python, [SCRIPT, "read"], JSON.stringify(messages))) as Record<
      string,
      MessageSpec
    >;
    expect(Object.keys(read).sort()).toEqual(Object.keys(SPECS).sort());
    for (const [key, spec] of Object.entries(SPECS)) expect(read[key], key).toEqual(spec);
  });
});
