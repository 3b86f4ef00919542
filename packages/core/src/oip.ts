import { TernError } from "./errors.js";

/**
 * Open Inference Protocol (V2) shapes shared by the agent, the gateway and the dataflow: the REST JSON bodies, the
 * datatypes, and a pure codec between JSON data, typed arrays and the raw little-endian bytes used by the binary-tensor
 * extension, gRPC `raw_input_contents` and Kafka records. No platform imports: typed arrays and DataView only.
 * The gRPC schema lives in `packages/core/proto/oip.proto`.
 */

export const OIP_DATATYPES = [
  "BOOL",
  "UINT8",
  "UINT16",
  "UINT32",
  "UINT64",
  "INT8",
  "INT16",
  "INT32",
  "INT64",
  "FP16",
  "FP32",
  "FP64",
  "BYTES",
] as const;
export type OipDatatype = (typeof OIP_DATATYPES)[number];

export function isOipDatatype(value: unknown): value is OipDatatype {
  return typeof value === "string" && (OIP_DATATYPES as readonly string[]).includes(value);
}

/** Header of the binary-tensor extension: the byte length of the JSON part that starts the body. */
export const INFERENCE_HEADER_CONTENT_LENGTH = "inference-header-content-length";

/**
 * Set (value `1`) by an agent on a 404 (REST header, gRPC trailer) that means "this server replica does not hold the
 * model", as opposed to "no such model". A router that sent the request from a slightly stale route table (the
 * replica was just scaled down, or an old version unloaded) may then try another replica of the model.
 */
export const REPLICA_MISS_HEADER = "x-tern-replica-miss";

export type OipParameterValue = string | number | boolean;
export type OipParameters = Record<string, OipParameterValue>;

export interface OipTensorMetadata {
  name: string;
  datatype: OipDatatype;
  /** -1 marks a dimension of variable size. */
  shape: number[];
}

export interface OipModelMetadata {
  name: string;
  versions?: string[];
  platform: string;
  inputs: OipTensorMetadata[];
  outputs: OipTensorMetadata[];
  parameters?: OipParameters;
}

export interface OipServerMetadata {
  name: string;
  version: string;
  extensions: string[];
}

export interface OipRequestInput {
  name: string;
  shape: number[];
  datatype: string;
  parameters?: OipParameters;
  /** Flat or nested array in row-major order; absent when the data travels in the binary part. */
  data?: unknown;
}

export interface OipRequestOutput {
  name: string;
  parameters?: OipParameters;
}

export interface OipInferenceRequest {
  id?: string;
  parameters?: OipParameters;
  inputs: OipRequestInput[];
  outputs?: OipRequestOutput[];
}

export interface OipResponseOutput {
  name: string;
  shape: number[];
  datatype: OipDatatype;
  parameters?: OipParameters;
  data?: unknown[];
}

export interface OipInferenceResponse {
  model_name: string;
  model_version?: string;
  id?: string;
  parameters?: OipParameters;
  outputs: OipResponseOutput[];
}

/**
 * Tensor elements in memory. BOOL is a Uint8Array of 0/1; FP16 is a Uint16Array of IEEE half-precision bit patterns;
 * BYTES is one Uint8Array per element.
 */
export type TensorData =
  | Uint8Array
  | Uint16Array
  | Uint32Array
  | BigUint64Array
  | Int8Array
  | Int16Array
  | Int32Array
  | BigInt64Array
  | Float32Array
  | Float64Array
  | Uint8Array[];

/** A decoded tensor: what runtimes consume and produce. */
export interface OipTensor {
  name: string;
  datatype: OipDatatype;
  shape: number[];
  data: TensorData;
  parameters?: OipParameters;
}

const BYTE_SIZE: Record<Exclude<OipDatatype, "BYTES">, number> = {
  BOOL: 1,
  UINT8: 1,
  UINT16: 2,
  UINT32: 4,
  UINT64: 8,
  INT8: 1,
  INT16: 2,
  INT32: 4,
  INT64: 8,
  FP16: 2,
  FP32: 4,
  FP64: 8,
};

/** Bytes per element, or undefined for BYTES (variable length). */
export function datatypeByteSize(datatype: OipDatatype): number | undefined {
  return datatype === "BYTES" ? undefined : BYTE_SIZE[datatype];
}

/** Number of elements a shape holds (1 for a scalar shape `[]`). */
export function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function bad(message: string): TernError {
  return new TernError("bad_request", message);
}

/** Allocates an empty typed array for a fixed-size datatype. */
export function allocateTensorData(datatype: OipDatatype, length: number): TensorData {
  switch (datatype) {
    case "BOOL":
    case "UINT8":
      return new Uint8Array(length);
    case "UINT16":
    case "FP16":
      return new Uint16Array(length);
    case "UINT32":
      return new Uint32Array(length);
    case "UINT64":
      return new BigUint64Array(length);
    case "INT8":
      return new Int8Array(length);
    case "INT16":
      return new Int16Array(length);
    case "INT32":
      return new Int32Array(length);
    case "INT64":
      return new BigInt64Array(length);
    case "FP32":
      return new Float32Array(length);
    case "FP64":
      return new Float64Array(length);
    case "BYTES":
      return Array.from({ length }, () => new Uint8Array(0));
  }
}

/** Converts a float to IEEE 754 half-precision bits (round to nearest even). */
export function floatToHalfBits(value: number): number {
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  // A rounding carry out of the mantissa correctly bumps the exponent (up to infinity).
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return sign | half;
}

/** Converts IEEE 754 half-precision bits to a number. */
export function halfBitsToFloat(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >>> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (mant / 1024);
  if (exp === 0x1f) return mant ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * 2 ** (exp - 15) * (1 + mant / 1024);
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Deepest nesting of an input's JSON `data` the decoders accept. Row-major nesting needs one level per dimension; the
 * bound keeps a hostile body (e.g. 20,000 levels in 40 KB) from reaching anything recursive. Deeper data can be sent flat.
 */
export const MAX_DATA_DEPTH = 32;

/**
 * A short, safe rendering of a client's JSON value for an error message: primitives as JSON (long strings cut),
 * arrays and objects by kind only, so that no message depends on the depth or size of what was sent.
 */
export function describeJsonValue(value: unknown): string {
  if (typeof value === "number") return String(value);
  if (typeof value === "string") return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (value === null || typeof value === "boolean") return String(value);
  if (Array.isArray(value)) return "an array";
  if (value === undefined) return "undefined";
  return typeof value === "object" ? "an object" : typeof value;
}

/** Row-major elements of nested JSON data, without recursion; throws once the nesting passes MAX_DATA_DEPTH. */
function flatten(name: string, value: unknown): unknown[] {
  if (!Array.isArray(value)) return [value];
  let nested = false;
  for (const v of value) {
    if (Array.isArray(v)) {
      nested = true;
      break;
    }
  }
  if (!nested) return value;
  const out: unknown[] = [];
  const arrays: unknown[][] = [value];
  const positions: number[] = [0];
  while (arrays.length > 0) {
    const top = arrays.length - 1;
    const array = arrays[top]!;
    const i = positions[top]!;
    if (i === array.length) {
      arrays.pop();
      positions.pop();
      continue;
    }
    positions[top] = i + 1;
    const v = array[i];
    if (!Array.isArray(v)) {
      out.push(v);
      continue;
    }
    if (arrays.length === MAX_DATA_DEPTH)
      throw bad(
        `input "${name}": "data" is nested more than ${MAX_DATA_DEPTH} levels deep (the limit); send it flat in row-major order`,
      );
    arrays.push(v);
    positions.push(0);
  }
  return out;
}

const INT_RANGE: Partial<Record<OipDatatype, [number, number]>> = {
  UINT8: [0, 255],
  UINT16: [0, 65535],
  UINT32: [0, 4294967295],
  INT8: [-128, 127],
  INT16: [-32768, 32767],
  INT32: [-2147483648, 2147483647],
};

const BIG_RANGE = {
  INT64: [-(2n ** 63n), 2n ** 63n - 1n],
  UINT64: [0n, 2n ** 64n - 1n],
} as const;

/** Largest finite magnitude of each float type; a JSON number beyond it would become ±Infinity. */
const FLOAT_MAX = { FP16: 65504, FP32: 3.4028234663852886e38, FP64: Number.MAX_VALUE } as const;

/**
 * Turns the JSON `data` of one input (flat or nested, row-major) into typed data, checking every element against the
 * datatype and its range. Throws a `bad_request` TernError naming the tensor and the first bad element. JSON has no
 * NaN or Infinity; a number too large for a double parses as ±Infinity and is refused here like any value outside its
 * datatype's range (an FP32 element that would round to ±Infinity, an INT64 beyond ±2^63).
 */
export function tensorDataFromJson(name: string, datatype: OipDatatype, data: unknown): TensorData {
  const flat = flatten(name, data);
  const out = allocateTensorData(datatype, flat.length);
  for (let i = 0; i < flat.length; i++) {
    const v = flat[i];
    const fail = (want: string) =>
      bad(`input "${name}": element ${i} is ${describeJsonValue(v)}, expected ${want} for datatype ${datatype}`);
    switch (datatype) {
      case "BOOL":
        if (typeof v !== "boolean") throw fail("true or false");
        (out as Uint8Array)[i] = v ? 1 : 0;
        break;
      case "BYTES":
        if (typeof v !== "string") throw fail("a string");
        (out as Uint8Array[])[i] = encoder.encode(v);
        break;
      case "FP16":
      case "FP32":
      case "FP64": {
        if (typeof v !== "number") throw fail("a number");
        const max = FLOAT_MAX[datatype];
        if (datatype === "FP16") {
          const bits = floatToHalfBits(v);
          if ((bits & 0x7fff) === 0x7c00) throw fail(`a finite number within ±${max}`);
          (out as Uint16Array)[i] = bits;
        } else {
          const stored = datatype === "FP32" ? Math.fround(v) : v;
          if (!Number.isFinite(stored)) throw fail(`a finite number within ±${max}`);
          (out as Float32Array | Float64Array)[i] = v;
        }
        break;
      }
      case "INT64":
      case "UINT64": {
        if (typeof v !== "number" || !Number.isInteger(v)) throw fail("an integer");
        const big = BigInt(v);
        const [min, max] = BIG_RANGE[datatype];
        if (big < min || big > max) throw fail(`an integer in [${min}, ${max}]`);
        (out as BigInt64Array | BigUint64Array)[i] = big;
        break;
      }
      default: {
        const range = INT_RANGE[datatype]!;
        if (typeof v !== "number" || !Number.isInteger(v)) throw fail("an integer");
        if (v < range[0] || v > range[1]) throw fail(`an integer in [${range[0]}, ${range[1]}]`);
        (out as Int32Array)[i] = v;
      }
    }
  }
  return out;
}

/**
 * Checks integer tensor data that arrived as wider numbers (gRPC `int_contents` is int32 for INT8/INT16, `uint_contents`
 * uint32 for UINT8/UINT16) against the datatype's range. Throws a `bad_request` naming the tensor and the element.
 */
export function checkIntegerRange(name: string, datatype: OipDatatype, values: ArrayLike<number>): void {
  const range = INT_RANGE[datatype];
  if (!range) return;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (v < range[0] || v > range[1])
      throw bad(
        `input "${name}": element ${i} is ${v}, expected an integer in [${range[0]}, ${range[1]}] for datatype ${datatype}`,
      );
  }
}

/** Plain JSON values for a tensor's data (64-bit integers beyond 2^53 lose precision in JSON numbers). */
export function tensorDataToJson(datatype: OipDatatype, data: TensorData): unknown[] {
  if (datatype === "BYTES") return (data as Uint8Array[]).map((b) => decoder.decode(b));
  if (datatype === "BOOL") return Array.from(data as Uint8Array, (v) => v !== 0);
  if (datatype === "FP16") return Array.from(data as Uint16Array, halfBitsToFloat);
  if (datatype === "INT64" || datatype === "UINT64") return Array.from(data as BigInt64Array, (v) => Number(v));
  return Array.from(data as Float32Array);
}

/** Number of elements held by typed data. */
export function tensorDataLength(data: TensorData): number {
  return data.length;
}

/** Encodes tensor data as raw little-endian bytes; BYTES elements get a 4-byte little-endian length prefix. */
export function encodeTensorData(datatype: OipDatatype, data: TensorData): Uint8Array {
  if (datatype === "BYTES") {
    const items = data as Uint8Array[];
    const total = items.reduce((a, b) => a + 4 + b.length, 0);
    const out = new Uint8Array(total);
    const view = new DataView(out.buffer);
    let offset = 0;
    for (const item of items) {
      view.setUint32(offset, item.length, true);
      out.set(item, offset + 4);
      offset += 4 + item.length;
    }
    return out;
  }
  // Typed arrays use the platform's byte order; every platform Node supports is little-endian, as the protocol requires.
  const typed = data as Exclude<TensorData, Uint8Array[]>;
  return new Uint8Array(typed.buffer.slice(typed.byteOffset, typed.byteOffset + typed.byteLength));
}

/**
 * Decodes raw little-endian bytes into typed data for `count` elements. Throws a `bad_request` TernError naming the
 * tensor when the byte length does not match.
 */
export function decodeTensorData(name: string, datatype: OipDatatype, bytes: Uint8Array, count: number): TensorData {
  if (datatype === "BYTES") {
    const items: Uint8Array[] = [];
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let offset = 0;
    while (offset < bytes.length) {
      if (offset + 4 > bytes.length) throw bad(`input "${name}": truncated BYTES element length at byte ${offset}`);
      const len = view.getUint32(offset, true);
      if (offset + 4 + len > bytes.length)
        throw bad(
          `input "${name}": BYTES element ${items.length} claims ${len} bytes, only ${bytes.length - offset - 4} left`,
        );
      items.push(bytes.slice(offset + 4, offset + 4 + len));
      offset += 4 + len;
    }
    if (items.length !== count)
      throw bad(`input "${name}": binary data holds ${items.length} BYTES elements, shape needs ${count}`);
    return items;
  }
  const size = BYTE_SIZE[datatype];
  if (bytes.length !== size * count)
    throw bad(
      `input "${name}": binary data is ${bytes.length} bytes, shape and datatype ${datatype} need ${size * count} (${count} × ${size})`,
    );
  const out = allocateTensorData(datatype, count) as Exclude<TensorData, Uint8Array[]>;
  new Uint8Array(out.buffer).set(bytes);
  if (datatype === "BOOL") {
    for (let i = 0; i < out.length; i++) if ((out as Uint8Array)[i]! > 1) (out as Uint8Array)[i] = 1;
  }
  return out;
}
