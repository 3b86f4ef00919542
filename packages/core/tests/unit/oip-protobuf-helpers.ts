/**
 * protobufjs (loaded from packages/core/proto/oip.proto) as a second, independent encoder and decoder for the codec
 * tests, with the mapping between its plain objects and ours.
 */
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import protobuf from "protobufjs";
import type {
  InferParameter,
  InferParameters,
  InferTensor,
  InferTensorContents,
  ModelInferRequest,
  ModelInferResponse,
} from "../../src/oip-protobuf.js";

const root = new protobuf.Root();
root.loadSync(fileURLToPath(new URL("../../proto/oip.proto", import.meta.url)), { keepCase: true });
export const PbRequest = root.lookupType("inference.ModelInferRequest");
export const PbResponse = root.lookupType("inference.ModelInferResponse");
const TO_OBJECT: protobuf.IConversionOptions = { longs: String, oneofs: true, defaults: false, arrays: false };

type Obj = Record<string, unknown>;

function paramsToPb(p: InferParameters | undefined): Obj | undefined {
  if (!p) return undefined;
  const out: Obj = {};
  for (const [k, v] of Object.entries(p))
    out[k] = { [`${v.kind}_param`]: typeof v.value === "bigint" ? v.value.toString() : v.value };
  return out;
}

function contentsToPb(c: InferTensorContents): Obj {
  const out: Obj = {};
  if (c.bool_contents) out.bool_contents = Array.from(c.bool_contents, (v) => v !== 0);
  if (c.int_contents) out.int_contents = Array.from(c.int_contents);
  if (c.int64_contents) out.int64_contents = Array.from(c.int64_contents, String);
  if (c.uint_contents) out.uint_contents = Array.from(c.uint_contents);
  if (c.uint64_contents) out.uint64_contents = Array.from(c.uint64_contents, String);
  if (c.fp32_contents) out.fp32_contents = Array.from(c.fp32_contents);
  if (c.fp64_contents) out.fp64_contents = Array.from(c.fp64_contents);
  if (c.bytes_contents) out.bytes_contents = c.bytes_contents;
  return out;
}

function tensorToPb(t: InferTensor): Obj {
  return {
    name: t.name || undefined,
    datatype: t.datatype || undefined,
    shape: t.shape.map(String),
    parameters: paramsToPb(t.parameters),
    contents: t.contents && contentsToPb(t.contents),
  };
}

/** Our request as protobufjs encodes it. */
export function pbEncodeRequest(m: ModelInferRequest): Uint8Array {
  const obj = {
    model_name: m.model_name || undefined,
    model_version: m.model_version,
    id: m.id,
    parameters: paramsToPb(m.parameters),
    inputs: m.inputs.map(tensorToPb),
    outputs: m.outputs?.map((o) => ({ name: o.name || undefined, parameters: paramsToPb(o.parameters) })),
    raw_input_contents: m.raw_input_contents,
  };
  // A plain Uint8Array (protobufjs hands out a Buffer, whose subarrays are Buffers too).
  return new Uint8Array(PbRequest.encode(PbRequest.fromObject(obj)).finish());
}

/** Our response as protobufjs encodes it. */
export function pbEncodeResponse(m: ModelInferResponse): Uint8Array {
  const obj = {
    model_name: m.model_name || undefined,
    model_version: m.model_version,
    id: m.id,
    parameters: paramsToPb(m.parameters),
    outputs: m.outputs.map(tensorToPb),
    raw_output_contents: m.raw_output_contents,
  };
  return new Uint8Array(PbResponse.encode(PbResponse.fromObject(obj)).finish());
}

function paramsFromPb(p: unknown): InferParameters | undefined {
  if (!p || Object.keys(p as Obj).length === 0) return undefined;
  const out: InferParameters = {};
  for (const [k, v] of Object.entries(p as Record<string, Obj>)) {
    const choice = v.parameter_choice as string;
    const kind = choice.replace("_param", "") as InferParameter["kind"];
    const raw = v[choice];
    out[k] = { kind, value: kind === "int64" || kind === "uint64" ? BigInt(raw as string) : raw } as InferParameter;
  }
  return out;
}

function contentsFromPb(c: Obj): InferTensorContents {
  const out: InferTensorContents = {};
  const has = (k: string) => Array.isArray(c[k]) && (c[k] as unknown[]).length > 0;
  if (has("bool_contents")) out.bool_contents = Uint8Array.from(c.bool_contents as boolean[], (v) => (v ? 1 : 0));
  if (has("int_contents")) out.int_contents = Int32Array.from(c.int_contents as number[]);
  if (has("int64_contents")) out.int64_contents = BigInt64Array.from(c.int64_contents as string[], BigInt);
  if (has("uint_contents")) out.uint_contents = Uint32Array.from(c.uint_contents as number[]);
  if (has("uint64_contents")) out.uint64_contents = BigUint64Array.from(c.uint64_contents as string[], BigInt);
  if (has("fp32_contents")) out.fp32_contents = Float32Array.from(c.fp32_contents as number[]);
  if (has("fp64_contents")) out.fp64_contents = Float64Array.from(c.fp64_contents as number[]);
  if (has("bytes_contents")) out.bytes_contents = (c.bytes_contents as Uint8Array[]).map((b) => new Uint8Array(b));
  return out;
}

function tensorFromPb(t: Obj): InferTensor {
  const out: InferTensor = {
    name: (t.name as string) ?? "",
    datatype: (t.datatype as string) ?? "",
    shape: ((t.shape as string[]) ?? []).map(Number),
  };
  const parameters = paramsFromPb(t.parameters);
  if (parameters) out.parameters = parameters;
  if (t.contents) out.contents = contentsFromPb(t.contents as Obj);
  return out;
}

function header(o: Obj) {
  return {
    model_name: (o.model_name as string) ?? "",
    ...(o.model_version ? { model_version: o.model_version as string } : {}),
    ...(o.id ? { id: o.id as string } : {}),
    ...(paramsFromPb(o.parameters) ? { parameters: paramsFromPb(o.parameters) } : {}),
  };
}

const listOrNone = <T>(v: unknown, map: (x: Obj) => T): T[] | undefined =>
  Array.isArray(v) && v.length > 0 ? v.map(map) : undefined;

/** Bytes decoded by protobufjs, mapped to our shape. */
export function pbDecodeRequest(buf: Uint8Array): ModelInferRequest {
  const o = PbRequest.toObject(PbRequest.decode(buf), TO_OBJECT) as Obj;
  const msg: ModelInferRequest = { ...header(o), inputs: listOrNone(o.inputs, tensorFromPb) ?? [] };
  const outputs = listOrNone(o.outputs, (x) => {
    const parameters = paramsFromPb(x.parameters);
    return parameters ? { name: (x.name as string) ?? "", parameters } : { name: (x.name as string) ?? "" };
  });
  if (outputs) msg.outputs = outputs;
  const raw = listOrNone(o.raw_input_contents, (b) => new Uint8Array(b as unknown as Uint8Array));
  if (raw) msg.raw_input_contents = raw;
  return msg;
}

/** Bytes decoded by protobufjs, mapped to our shape. */
export function pbDecodeResponse(buf: Uint8Array): ModelInferResponse {
  const o = PbResponse.toObject(PbResponse.decode(buf), TO_OBJECT) as Obj;
  const msg: ModelInferResponse = { ...header(o), outputs: listOrNone(o.outputs, tensorFromPb) ?? [] };
  const raw = listOrNone(o.raw_output_contents, (b) => new Uint8Array(b as unknown as Uint8Array));
  if (raw) msg.raw_output_contents = raw;
  return msg;
}

// ---------------------------------------------------------------------------------------------------------------
// Arbitraries: messages without empty optional strings or lists (proto3 cannot tell those from absent).

const text = fc.string({ unit: "binary", maxLength: 12 });
const nonEmptyText = fc.string({ unit: "binary", minLength: 1, maxLength: 12 });
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

export const parameterArb: fc.Arbitrary<InferParameter> = fc.oneof(
  fc.boolean().map((value) => ({ kind: "bool" as const, value })),
  fc.bigInt({ min: INT64_MIN, max: INT64_MAX }).map((value) => ({ kind: "int64" as const, value })),
  text.map((value) => ({ kind: "string" as const, value })),
  fc.double().map((value) => ({ kind: "double" as const, value })),
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map((value) => ({ kind: "uint64" as const, value })),
);
const parametersArb = fc.option(fc.dictionary(text, parameterArb, { minKeys: 1, maxKeys: 3, noNullPrototype: true }), {
  nil: undefined,
});

const some = <T>(arb: fc.Arbitrary<T>) => fc.array(arb, { minLength: 1, maxLength: 6 });
const contentsArb: fc.Arbitrary<InferTensorContents> = fc.record(
  {
    bool_contents: some(fc.boolean()).map((a) => Uint8Array.from(a, (v) => (v ? 1 : 0))),
    int_contents: some(fc.integer()).map((a) => Int32Array.from(a)),
    int64_contents: some(fc.bigInt({ min: INT64_MIN, max: INT64_MAX })).map((a) => BigInt64Array.from(a)),
    uint_contents: some(fc.nat({ max: 0xffffffff })).map((a) => Uint32Array.from(a)),
    uint64_contents: some(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })).map((a) => BigUint64Array.from(a)),
    fp32_contents: some(fc.float()).map((a) => Float32Array.from(a)),
    fp64_contents: some(fc.double()).map((a) => Float64Array.from(a)),
    bytes_contents: some(fc.uint8Array({ maxLength: 8 })),
  },
  { requiredKeys: [] },
);

const tensorArb: fc.Arbitrary<InferTensor> = fc
  .record({
    name: text,
    datatype: fc.constantFrom("FP32", "INT64", "BYTES", ""),
    shape: fc.array(fc.oneof(fc.integer({ min: -1, max: 1000 }), fc.maxSafeInteger()), { maxLength: 4 }),
    parameters: parametersArb,
    contents: fc.option(contentsArb, { nil: undefined }),
  })
  .map(dropUndefined);

const headerArbs = {
  model_name: text,
  model_version: fc.option(nonEmptyText, { nil: undefined }),
  id: fc.option(nonEmptyText, { nil: undefined }),
  parameters: parametersArb,
};
const raw = fc.option(some(fc.uint8Array({ maxLength: 16 })), { nil: undefined });

export const requestArb: fc.Arbitrary<ModelInferRequest> = fc
  .record({
    ...headerArbs,
    inputs: fc.array(tensorArb, { maxLength: 3 }),
    outputs: fc.option(some(fc.record({ name: text, parameters: parametersArb }).map(dropUndefined)), {
      nil: undefined,
    }),
    raw_input_contents: raw,
  })
  .map(dropUndefined);

export const responseArb: fc.Arbitrary<ModelInferResponse> = fc
  .record({ ...headerArbs, outputs: fc.array(tensorArb, { maxLength: 3 }), raw_output_contents: raw })
  .map(dropUndefined);

function dropUndefined<T extends object>(o: T): T {
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] === undefined) delete o[k];
  return o;
}
