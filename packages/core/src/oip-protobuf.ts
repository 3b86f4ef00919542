import { TernError } from "./errors.js";
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
} from "./oip.js";
import {
  allocateOutput,
  decoded,
  int32Size,
  reserveDecoded,
  splitBigInt64,
  splitInt64,
  utf8Length,
  varint32Size,
  varint64Size,
  WIRE_FIXED32,
  WIRE_FIXED64,
  WIRE_LEN,
  WIRE_VARINT,
  WireReader,
  WireWriter,
} from "./protobuf-wire.js";

/**
 * The OIP gRPC messages `ModelInferRequest` and `ModelInferResponse` (field numbers of `packages/core/proto/oip.proto`,
 * which follow the public specification) to and from protobuf bytes: the value of a Kafka record on the
 * Seldon-compatible topics and the body of a gRPC ModelInfer call. Hand-written, so it bundles anywhere (no `.proto`
 * read at run time) and costs no per-element objects:
 *
 * - `raw_input_contents` / `raw_output_contents` and `bytes_contents` decode to views of the input (no copy): keep the
 *   input buffer unchanged while they are in use.
 * - typed `contents` decode to typed arrays (one copy of the packed bytes); packed and unpacked encodings are accepted.
 *   Small ones (up to 2 KiB) are views of a shared 8 KiB slab (as Node pools small Buffers): use their `byteOffset` with `.buffer`.
 * - 64-bit integers are `bigint` (tensor contents in BigInt64Array/BigUint64Array, parameters as `bigint`): no
 *   precision loss. Shapes are `number[]` (a dimension beyond 2^53 is refused as malformed).
 * - Field names are the proto's (snake_case, as in the REST JSON). Empty strings and empty lists are left out of a
 *   decoded message (proto3 cannot tell them from absent), so `decode(encode(m))` equals `m` for a message without them.
 * - Unknown fields are skipped; malformed bytes throw a `bad_request` TernError saying what and where.
 */

/** An `InferParameter`: exactly one of the oneof's choices. */
export type InferParameter =
  | { kind: "bool"; value: boolean }
  | { kind: "int64"; value: bigint }
  | { kind: "string"; value: string }
  | { kind: "double"; value: number }
  | { kind: "uint64"; value: bigint };
export type InferParameters = Record<string, InferParameter>;

/** `InferTensorContents`: only the field that matches the tensor's datatype is meant to be set. */
export interface InferTensorContents {
  /** 0 or 1 per element. */
  bool_contents?: Uint8Array;
  /** INT8, INT16, INT32. */
  int_contents?: Int32Array;
  int64_contents?: BigInt64Array;
  /** UINT8, UINT16, UINT32. */
  uint_contents?: Uint32Array;
  uint64_contents?: BigUint64Array;
  fp32_contents?: Float32Array;
  fp64_contents?: Float64Array;
  bytes_contents?: Uint8Array[];
}

/** `ModelInferRequest.InferInputTensor` and `ModelInferResponse.InferOutputTensor` (same fields and numbers). */
export interface InferTensor {
  name: string;
  /** As on the wire: not checked against the OIP datatypes here (see {@link requestInputsToOip}). */
  datatype: string;
  shape: number[];
  parameters?: InferParameters;
  contents?: InferTensorContents;
}

export interface InferRequestedOutputTensor {
  name: string;
  parameters?: InferParameters;
}

export interface ModelInferRequest {
  model_name: string;
  model_version?: string;
  id?: string;
  parameters?: InferParameters;
  inputs: InferTensor[];
  outputs?: InferRequestedOutputTensor[];
  raw_input_contents?: Uint8Array[];
}

export interface ModelInferResponse {
  model_name: string;
  model_version?: string;
  id?: string;
  parameters?: InferParameters;
  outputs: InferTensor[];
  raw_output_contents?: Uint8Array[];
}

// ---------------------------------------------------------------------------------------------------------------
// Decoding

/** Decodes a `ModelInferRequest`. @throws TernError `bad_request` on malformed bytes. */
export function decodeModelInferRequest(buf: Uint8Array): ModelInferRequest {
  const r = new WireReader(buf, "ModelInferRequest");
  const end = buf.length;
  const msg: ModelInferRequest = { model_name: "", inputs: [] };
  while (r.pos < end) {
    const tag = r.readTag(end);
    const field = tag >>> 3;
    const wt = tag & 7;
    switch (field) {
      case 1:
        expectType(r, "model_name", field, wt, WIRE_LEN);
        msg.model_name = r.readString(end, "model_name");
        break;
      case 2:
        expectType(r, "model_version", field, wt, WIRE_LEN);
        setString(msg, "model_version", r.readString(end, "model_version"));
        break;
      case 3:
        expectType(r, "id", field, wt, WIRE_LEN);
        setString(msg, "id", r.readString(end, "id"));
        break;
      case 4:
        expectType(r, "parameters", field, wt, WIRE_LEN);
        msg.parameters = readMapEntry(r, end, msg.parameters ?? {});
        break;
      case 5:
        expectType(r, "inputs", field, wt, WIRE_LEN);
        msg.inputs.push(readTensor(r, r.readLengthEnd(end)));
        break;
      case 6:
        expectType(r, "outputs", field, wt, WIRE_LEN);
        msg.outputs = append(msg.outputs, readRequestedOutput(r, r.readLengthEnd(end)));
        break;
      case 7:
        expectType(r, "raw_input_contents", field, wt, WIRE_LEN);
        msg.raw_input_contents = append(msg.raw_input_contents, r.readBytes(end));
        break;
      default:
        r.skip(wt, field, end);
    }
  }
  return msg;
}

/** Decodes a `ModelInferResponse`. @throws TernError `bad_request` on malformed bytes. */
export function decodeModelInferResponse(buf: Uint8Array): ModelInferResponse {
  const r = new WireReader(buf, "ModelInferResponse");
  const end = buf.length;
  const msg: ModelInferResponse = { model_name: "", outputs: [] };
  while (r.pos < end) {
    const tag = r.readTag(end);
    const field = tag >>> 3;
    const wt = tag & 7;
    switch (field) {
      case 1:
        expectType(r, "model_name", field, wt, WIRE_LEN);
        msg.model_name = r.readString(end, "model_name");
        break;
      case 2:
        expectType(r, "model_version", field, wt, WIRE_LEN);
        setString(msg, "model_version", r.readString(end, "model_version"));
        break;
      case 3:
        expectType(r, "id", field, wt, WIRE_LEN);
        setString(msg, "id", r.readString(end, "id"));
        break;
      case 4:
        expectType(r, "parameters", field, wt, WIRE_LEN);
        msg.parameters = readMapEntry(r, end, msg.parameters ?? {});
        break;
      case 5:
        expectType(r, "outputs", field, wt, WIRE_LEN);
        msg.outputs.push(readTensor(r, r.readLengthEnd(end)));
        break;
      case 6:
        expectType(r, "raw_output_contents", field, wt, WIRE_LEN);
        msg.raw_output_contents = append(msg.raw_output_contents, r.readBytes(end));
        break;
      default:
        r.skip(wt, field, end);
    }
  }
  return msg;
}

function append<T>(list: T[] | undefined, item: T): T[] {
  if (list === undefined) return [item];
  list.push(item);
  return list;
}

function expectType(r: WireReader, name: string, field: number, wt: number, want: number): void {
  if (wt !== want) throw r.wrongType(name, field, wt, want);
}

function setString<K extends string>(msg: { [key in K]?: string }, key: K, value: string): void {
  // proto3: the last occurrence wins, and an empty string is the same as absent.
  if (value === "") delete msg[key];
  else msg[key] = value;
}

function readTensor(r: WireReader, end: number): InferTensor {
  const t: InferTensor = { name: "", datatype: "", shape: [] };
  while (r.pos < end) {
    const tag = r.readTag(end);
    const field = tag >>> 3;
    const wt = tag & 7;
    switch (field) {
      case 1:
        expectType(r, "name", field, wt, WIRE_LEN);
        t.name = r.readString(end, "tensor name");
        break;
      case 2:
        expectType(r, "datatype", field, wt, WIRE_LEN);
        t.datatype = r.readString(end, "datatype");
        break;
      case 3:
        if (wt === WIRE_LEN) {
          const stop = r.readLengthEnd(end);
          while (r.pos < stop) t.shape.push(r.readInt64Number(stop, "shape dimension"));
        } else if (wt === WIRE_VARINT) t.shape.push(r.readInt64Number(end, "shape dimension"));
        else throw r.wrongType("shape", field, wt, WIRE_LEN);
        break;
      case 4:
        expectType(r, "parameters", field, wt, WIRE_LEN);
        t.parameters = readMapEntry(r, end, t.parameters ?? {});
        break;
      case 5:
        expectType(r, "contents", field, wt, WIRE_LEN);
        // A repeated occurrence of a message field merges into the first one (protobuf rule).
        t.contents = readContents(r, r.readLengthEnd(end), t.contents);
        break;
      default:
        r.skip(wt, field, end);
    }
  }
  return t;
}

function readRequestedOutput(r: WireReader, end: number): InferRequestedOutputTensor {
  const o: InferRequestedOutputTensor = { name: "" };
  while (r.pos < end) {
    const tag = r.readTag(end);
    const field = tag >>> 3;
    const wt = tag & 7;
    if (field === 1) {
      expectType(r, "name", field, wt, WIRE_LEN);
      o.name = r.readString(end, "output name");
    } else if (field === 2) {
      expectType(r, "parameters", field, wt, WIRE_LEN);
      o.parameters = readMapEntry(r, end, o.parameters ?? {});
    } else r.skip(wt, field, end);
  }
  return o;
}

/** One `map<string, InferParameter>` entry (a nested message: key = 1, value = 2) into `into`. */
function readMapEntry(r: WireReader, outerEnd: number, into: InferParameters): InferParameters {
  const end = r.readLengthEnd(outerEnd);
  let key = "";
  let value: InferParameter | undefined;
  while (r.pos < end) {
    const tag = r.readTag(end);
    const field = tag >>> 3;
    const wt = tag & 7;
    if (field === 1) {
      expectType(r, "parameter key", field, wt, WIRE_LEN);
      key = r.readString(end, "parameter key");
    } else if (field === 2) {
      expectType(r, "parameter value", field, wt, WIRE_LEN);
      value = readParameter(r, r.readLengthEnd(end), value);
    } else r.skip(wt, field, end);
  }
  // An InferParameter with no choice set carries nothing: it is left out.
  if (value !== undefined) into[key] = value;
  return into;
}

function readParameter(r: WireReader, end: number, prev: InferParameter | undefined): InferParameter | undefined {
  let p = prev;
  while (r.pos < end) {
    const tag = r.readTag(end);
    const field = tag >>> 3;
    const wt = tag & 7;
    switch (field) {
      case 1:
        expectType(r, "bool_param", field, wt, WIRE_VARINT);
        r.readVarint64(end);
        p = { kind: "bool", value: (r.lo | r.hi) !== 0 };
        break;
      case 2:
        expectType(r, "int64_param", field, wt, WIRE_VARINT);
        r.readVarint64(end);
        p = { kind: "int64", value: BigInt.asIntN(64, (BigInt(r.hi) << 32n) | BigInt(r.lo)) };
        break;
      case 3:
        expectType(r, "string_param", field, wt, WIRE_LEN);
        p = { kind: "string", value: r.readString(end, "string_param") };
        break;
      case 4:
        expectType(r, "double_param", field, wt, WIRE_FIXED64);
        p = { kind: "double", value: r.readFloat64(end) };
        break;
      case 5:
        expectType(r, "uint64_param", field, wt, WIRE_VARINT);
        r.readVarint64(end);
        p = { kind: "uint64", value: (BigInt(r.hi) << 32n) | BigInt(r.lo) };
        break;
      default:
        r.skip(wt, field, end);
    }
  }
  return p;
}

type Numeric = Uint8Array | Int32Array | Uint32Array | BigInt64Array | BigUint64Array | Float32Array | Float64Array;
type NumericKey = Exclude<keyof InferTensorContents, "bytes_contents">;
type NumericType = new (buffer: ArrayBuffer, byteOffset: number, length: number) => Numeric;

/** Each repeated scalar field of InferTensorContents: its name, element wire type and size in memory. */
const CONTENT_FIELDS: Record<number, { key: NumericKey; wt: number; type: NumericType; size: number }> = {
  1: { key: "bool_contents", wt: WIRE_VARINT, type: Uint8Array, size: 1 },
  2: { key: "int_contents", wt: WIRE_VARINT, type: Int32Array, size: 4 },
  3: { key: "int64_contents", wt: WIRE_VARINT, type: BigInt64Array, size: 8 },
  4: { key: "uint_contents", wt: WIRE_VARINT, type: Uint32Array, size: 4 },
  5: { key: "uint64_contents", wt: WIRE_VARINT, type: BigUint64Array, size: 8 },
  6: { key: "fp32_contents", wt: WIRE_FIXED32, type: Float32Array, size: 4 },
  7: { key: "fp64_contents", wt: WIRE_FIXED64, type: Float64Array, size: 8 },
};

function readContents(r: WireReader, end: number, prev: InferTensorContents | undefined): InferTensorContents {
  const c: InferTensorContents = prev ?? {};
  while (r.pos < end) {
    const tag = r.readTag(end);
    const field = tag >>> 3;
    const wt = tag & 7;
    if (field === 8) {
      expectType(r, "bytes_contents", field, wt, WIRE_LEN);
      c.bytes_contents = append(c.bytes_contents, r.readBytes(end));
      continue;
    }
    const spec = CONTENT_FIELDS[field];
    if (spec === undefined) {
      r.skip(wt, field, end);
      continue;
    }
    let chunk: Numeric;
    if (wt === WIRE_LEN) {
      // Packed (proto3's default): the elements back to back inside one length-delimited field.
      const stop = r.readLengthEnd(end);
      chunk = readPacked(r, field, spec.type, spec.size, stop);
    } else if (wt === spec.wt) {
      // Unpacked: one tagged element.
      chunk = readPacked(r, field, spec.type, spec.size, readOneEnd(r, wt, end));
    } else throw r.wrongType(spec.key, field, wt, WIRE_LEN);
    const had = c[spec.key];
    (c as Record<NumericKey, Numeric>)[spec.key] = had === undefined ? chunk : concat(had, chunk, spec.type);
  }
  return c;
}

/** The end of the single unpacked element starting at `r.pos`. */
function readOneEnd(r: WireReader, wt: number, end: number): number {
  if (wt === WIRE_FIXED32) return Math.min(end, r.pos + 4);
  if (wt === WIRE_FIXED64) return Math.min(end, r.pos + 8);
  // A varint ends at its first byte below 0x80 (at most 10 bytes); a cut one fails in readPacked.
  let p = r.pos;
  while (p < end && p - r.pos < 10 && r.buf[p]! >= 0x80) p++;
  return Math.min(end, p + 1);
}

/** Elements in [r.pos, stop) as a typed array of `type` (a view of a decode slab region, see reserveDecoded). */
function readPacked(r: WireReader, field: number, type: NumericType, size: number, stop: number): Numeric {
  const bytes = stop - r.pos;
  if (field === 6 || field === 7) {
    if (bytes % size !== 0) throw r.fail(`packed field ${field} is ${bytes} bytes, not a multiple of ${size}`);
    reserveDecoded(bytes);
    const { u8, offset } = decoded;
    const src = r.buf;
    if (bytes <= 64) for (let i = 0, p = r.pos; i < bytes; i++) u8[offset + i] = src[p + i]!;
    else u8.set(src.subarray(r.pos, stop), offset);
    r.pos = stop;
    return new type(decoded.buffer, offset, bytes / size);
  }
  const n = r.countVarints(stop);
  reserveDecoded(n * size);
  const { u8, u32, offset, buffer } = decoded;
  if (size === 8) {
    // int64 and uint64: both 32-bit halves, little-endian.
    for (let i = 0, k = offset >> 2; i < n; i++, k += 2) {
      r.readVarint64(stop);
      u32[k] = r.lo;
      u32[k + 1] = r.hi;
    }
  } else if (size === 1) {
    for (let i = 0; i < n; i++) {
      r.readVarint64(stop);
      u8[offset + i] = (r.lo | r.hi) !== 0 ? 1 : 0;
    }
  } else {
    // int32 and uint32: the low 32 bits (the typed array reads them as signed or unsigned).
    for (let i = 0, k = offset >> 2; i < n; i++, k++) {
      r.readVarint64(stop);
      u32[k] = r.lo;
    }
  }
  if (r.pos !== stop) throw r.fail(`packed field ${field} has trailing bytes`);
  return new type(buffer, offset, n);
}

function concat(a: Numeric, b: Numeric, type: NumericType): Numeric {
  reserveDecoded(a.byteLength + b.byteLength);
  const { u8, offset, buffer } = decoded;
  u8.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), offset);
  u8.set(new Uint8Array(b.buffer, b.byteOffset, b.byteLength), offset + a.byteLength);
  return new type(buffer, offset, a.length + b.length);
}

// ---------------------------------------------------------------------------------------------------------------
// Encoding: one pass measures (keeping the size of every nested message, in order), one writes into a buffer of
// exactly the final size.

/**
 * Encodes a `ModelInferRequest`. A small result may be a view of a shared slab (like Node's pooled Buffers): wrap it
 * with its `byteOffset` and `byteLength`, not its whole `.buffer`.
 */
export function encodeModelInferRequest(msg: ModelInferRequest, options?: EncodeOptions): Uint8Array {
  const e = encoder.reset();
  const size = e.measureMessage(msg, msg.inputs, msg.outputs, msg.raw_input_contents);
  const w = new WireWriter(options?.allocate?.(size) ?? allocateOutput(size));
  e.writeMessage(w, msg, msg.inputs, msg.outputs, msg.raw_input_contents, 7);
  return finished(w, size);
}

/** Encodes a `ModelInferResponse` (see {@link encodeModelInferRequest} about the result's buffer). */
export function encodeModelInferResponse(msg: ModelInferResponse, options?: EncodeOptions): Uint8Array {
  const e = encoder.reset();
  const size = e.measureMessage(msg, msg.outputs, undefined, msg.raw_output_contents);
  const w = new WireWriter(options?.allocate?.(size) ?? allocateOutput(size));
  e.writeMessage(w, msg, msg.outputs, undefined, msg.raw_output_contents, 6);
  return finished(w, size);
}

export interface EncodeOptions {
  /**
   * Allocates the output (exactly `size` bytes). Every byte gets written, so memory that is not zero-filled is fine:
   * Node's `Buffer.allocUnsafe` saves the zero-filling and page faults of a fresh buffer, which dominate the cost of
   * encoding a large raw tensor.
   * @default a fresh Uint8Array, or a slice of a shared slab for small messages
   */
  allocate?: (size: number) => Uint8Array;
}

/** The written buffer, after checking that the measuring and writing passes agreed (no byte left unwritten). */
function finished(w: WireWriter, size: number): Uint8Array {
  if (w.pos !== size || w.buf.length !== size)
    throw new TernError("internal", `protobuf encoder wrote ${w.pos} bytes into ${w.buf.length}, measured ${size}`);
  return w.buf;
}

interface Header {
  model_name: string;
  model_version?: string;
  id?: string;
  parameters?: InferParameters;
}

const lenField = (len: number) => 1 + varint32Size(len) + len;
const strField = (s: string | undefined) => (s ? lenField(utf8Length(s)) : 0);

/** Encoding is synchronous, so one encoder's scratch space serves every call. */
class Encoder {
  /** Sizes of nested messages and packed payloads, in the order the writer meets them. */
  private readonly sizes: number[] = [];
  private next = 0;
  private readonly halves: [number, number] = [0, 0];

  reset(): this {
    this.sizes.length = 0;
    this.next = 0;
    return this;
  }

  measureMessage(
    msg: Header,
    tensors: InferTensor[],
    requested: InferRequestedOutputTensor[] | undefined,
    raw: Uint8Array[] | undefined,
  ): number {
    let n = strField(msg.model_name) + strField(msg.model_version) + strField(msg.id) + this.paramsSize(msg.parameters);
    for (const t of tensors) n += lenField(this.measureTensor(t));
    if (requested) for (const o of requested) n += lenField(strField(o.name) + this.paramsSize(o.parameters));
    if (raw) for (const b of raw) n += lenField(b.length);
    return n;
  }

  writeMessage(
    w: WireWriter,
    msg: Header,
    tensors: InferTensor[],
    requested: InferRequestedOutputTensor[] | undefined,
    raw: Uint8Array[] | undefined,
    rawField: number,
  ): void {
    writeStr(w, 1, msg.model_name);
    writeStr(w, 2, msg.model_version);
    writeStr(w, 3, msg.id);
    this.writeParams(w, 4, msg.parameters);
    for (const t of tensors) {
      w.tag(5, WIRE_LEN);
      this.writeTensor(w, t);
    }
    if (requested)
      for (const o of requested) {
        w.tag(6, WIRE_LEN);
        w.varint32(strField(o.name) + this.paramsSize(o.parameters));
        writeStr(w, 1, o.name);
        this.writeParams(w, 2, o.parameters);
      }
    if (raw)
      for (const b of raw) {
        w.tag(rawField, WIRE_LEN);
        w.varint32(b.length);
        w.bytes(b);
      }
  }

  private measureTensor(t: InferTensor): number {
    const slot = this.sizes.push(0) - 1;
    let n = strField(t.name) + strField(t.datatype) + this.paramsSize(t.parameters);
    if (t.shape.length > 0) n += lenField(this.shapeSize(t.shape));
    if (t.contents) n += lenField(this.measureContents(t.contents));
    this.sizes[slot] = n;
    return n;
  }

  private writeTensor(w: WireWriter, t: InferTensor): void {
    w.varint32(this.sizes[this.next++]!);
    writeStr(w, 1, t.name);
    writeStr(w, 2, t.datatype);
    if (t.shape.length > 0) {
      w.tag(3, WIRE_LEN);
      w.varint32(this.shapeSize(t.shape));
      const h = this.halves;
      for (const d of t.shape) {
        splitInt64(d, h);
        w.varint64(h[0], h[1]);
      }
    }
    this.writeParams(w, 4, t.parameters);
    if (t.contents) {
      w.tag(5, WIRE_LEN);
      this.writeContents(w, t.contents);
    }
  }

  private shapeSize(shape: number[]): number {
    const h = this.halves;
    let n = 0;
    for (const d of shape) {
      if (!Number.isSafeInteger(d)) throw new TernError("bad_request", `shape dimension ${d} is not an integer`);
      splitInt64(d, h);
      n += varint64Size(h[0], h[1]);
    }
    return n;
  }

  private measureContents(c: InferTensorContents): number {
    const sizes = this.sizes;
    const slot = sizes.push(0) - 1;
    let n = 0;
    // Each packed field's payload size goes to `sizes` for the writer.
    if (c.bool_contents?.length) n += lenField(sizes[sizes.push(c.bool_contents.length) - 1]!);
    if (c.int_contents?.length) {
      let len = 0;
      for (const v of c.int_contents) len += int32Size(v);
      n += lenField(sizes[sizes.push(len) - 1]!);
    }
    if (c.int64_contents?.length) n += lenField(sizes[sizes.push(varint64ArraySize(c.int64_contents)) - 1]!);
    if (c.uint_contents?.length) {
      let len = 0;
      for (const v of c.uint_contents) len += varint32Size(v);
      n += lenField(sizes[sizes.push(len) - 1]!);
    }
    if (c.uint64_contents?.length) n += lenField(sizes[sizes.push(varint64ArraySize(c.uint64_contents)) - 1]!);
    if (c.fp32_contents?.length) n += lenField(sizes[sizes.push(c.fp32_contents.byteLength) - 1]!);
    if (c.fp64_contents?.length) n += lenField(sizes[sizes.push(c.fp64_contents.byteLength) - 1]!);
    if (c.bytes_contents) for (const b of c.bytes_contents) n += lenField(b.length);
    sizes[slot] = n;
    return n;
  }

  /** Starts packed field `field` with the payload size the measuring pass recorded. */
  private startPacked(w: WireWriter, field: number): void {
    w.tag(field, WIRE_LEN);
    w.varint32(this.sizes[this.next++]!);
  }

  private writeContents(w: WireWriter, c: InferTensorContents): void {
    w.varint32(this.sizes[this.next++]!);
    if (c.bool_contents?.length) {
      this.startPacked(w, 1);
      for (const v of c.bool_contents) w.buf[w.pos++] = v ? 1 : 0;
    }
    if (c.int_contents?.length) {
      this.startPacked(w, 2);
      for (const v of c.int_contents) w.int32(v);
    }
    if (c.int64_contents?.length) {
      this.startPacked(w, 3);
      writeVarint64Array(w, c.int64_contents);
    }
    if (c.uint_contents?.length) {
      this.startPacked(w, 4);
      for (const v of c.uint_contents) w.varint32(v);
    }
    if (c.uint64_contents?.length) {
      this.startPacked(w, 5);
      writeVarint64Array(w, c.uint64_contents);
    }
    if (c.fp32_contents?.length) {
      this.startPacked(w, 6);
      w.bytes(bytesOf(c.fp32_contents));
    }
    if (c.fp64_contents?.length) {
      this.startPacked(w, 7);
      w.bytes(bytesOf(c.fp64_contents));
    }
    if (c.bytes_contents)
      for (const b of c.bytes_contents) {
        w.tag(8, WIRE_LEN);
        w.varint32(b.length);
        w.bytes(b);
      }
  }

  private paramsSize(params: InferParameters | undefined): number {
    if (!params) return 0;
    let n = 0;
    for (const key in params) n += lenField(entrySize(key, params[key]!, this.halves));
    return n;
  }

  private writeParams(w: WireWriter, field: number, params: InferParameters | undefined): void {
    if (!params) return;
    const h = this.halves;
    for (const key in params) {
      const p = params[key]!;
      w.tag(field, WIRE_LEN);
      w.varint32(entrySize(key, p, h));
      w.tag(1, WIRE_LEN);
      w.string(key);
      w.tag(2, WIRE_LEN);
      w.varint32(parameterSize(p, h));
      switch (p.kind) {
        case "bool":
          w.tag(1, WIRE_VARINT);
          w.varint32(p.value ? 1 : 0);
          break;
        case "int64":
        case "uint64":
          w.tag(p.kind === "int64" ? 2 : 5, WIRE_VARINT);
          splitBigInt64(p.value, h);
          w.varint64(h[0], h[1]);
          break;
        case "string": {
          w.tag(3, WIRE_LEN);
          w.string(p.value);
          break;
        }
        case "double":
          w.tag(4, WIRE_FIXED64);
          w.float64(p.value);
          break;
      }
    }
  }
}

const encoder = new Encoder();

/** Size of one map entry: key (field 1, always written) and value (field 2, always written). */
function entrySize(key: string, p: InferParameter, h: [number, number]): number {
  return lenField(utf8Length(key)) + lenField(parameterSize(p, h));
}

/** Size of an InferParameter: the chosen field is written even when it holds its default (that is what marks it). */
function parameterSize(p: InferParameter, h: [number, number]): number {
  switch (p.kind) {
    case "bool":
      return 2;
    case "int64":
    case "uint64":
      splitBigInt64(p.value, h);
      return 1 + varint64Size(h[0], h[1]);
    case "string":
      return lenField(utf8Length(p.value));
    case "double":
      return 9;
  }
}

function writeStr(w: WireWriter, field: number, s: string | undefined): void {
  if (!s) return;
  w.tag(field, WIRE_LEN);
  w.string(s);
}

function varint64ArraySize(a: BigInt64Array | BigUint64Array): number {
  const halves = new Uint32Array(a.buffer, a.byteOffset, a.length * 2);
  let n = 0;
  for (let i = 0; i < halves.length; i += 2) n += varint64Size(halves[i]!, halves[i + 1]!);
  return n;
}

function writeVarint64Array(w: WireWriter, a: BigInt64Array | BigUint64Array): void {
  const halves = new Uint32Array(a.buffer, a.byteOffset, a.length * 2);
  for (let i = 0; i < halves.length; i += 2) w.varint64(halves[i]!, halves[i + 1]!);
}

function bytesOf(a: Float32Array | Float64Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

// ---------------------------------------------------------------------------------------------------------------
// Conversions to and from the REST-side structures of oip.ts

/**
 * Parameters as the REST side holds them. 64-bit integers become numbers (exact up to 2^53, as in JSON).
 * @returns undefined when there are none
 */
export function parametersToOip(params: InferParameters | undefined): OipParameters | undefined {
  if (!params) return undefined;
  const out: OipParameters = {};
  let any = false;
  for (const key in params) {
    const p = params[key]!;
    out[key] = typeof p.value === "bigint" ? Number(p.value) : p.value;
    any = true;
  }
  return any ? out : undefined;
}

/**
 * Parameters for the wire: booleans and strings as such, integral numbers as int64 (as Triton maps JSON integers),
 * other numbers as double.
 * @returns undefined when there are none
 */
export function parametersFromOip(params: OipParameters | undefined): InferParameters | undefined {
  if (!params) return undefined;
  const out: InferParameters = {};
  let any = false;
  for (const key in params) {
    const v = params[key]!;
    if (typeof v === "boolean") out[key] = { kind: "bool", value: v };
    else if (typeof v === "string") out[key] = { kind: "string", value: v };
    else if (Number.isSafeInteger(v)) out[key] = { kind: "int64", value: BigInt(v) };
    else out[key] = { kind: "double", value: v };
    any = true;
  }
  return any ? out : undefined;
}

/** Which `InferTensorContents` field carries a datatype (FP16 has none: it must travel raw). */
export const CONTENTS_FIELD: Record<OipDatatype, keyof InferTensorContents | undefined> = {
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

const bad = (message: string) => new TernError("bad_request", message);

/** Typed data of a tensor from its `contents`, checked against the shape's element count. */
function dataFromContents(
  side: string,
  name: string,
  datatype: OipDatatype,
  contents: InferTensorContents | undefined,
  count: number,
): TensorData {
  const field = CONTENTS_FIELD[datatype];
  if (field === undefined) throw bad(`${side} "${name}": ${datatype} data must be sent in raw_${side}_contents`);
  const values = contents?.[field];
  const length = values?.length ?? 0;
  if (length !== count) throw bad(`${side} "${name}": ${field} has ${length} elements but the shape needs ${count}`);
  if (values === undefined) return allocateTensorData(datatype, 0);
  // int_contents and uint_contents are 32-bit: an INT8 or UINT16 element can hold more than its datatype.
  if (datatype === "INT8" || datatype === "INT16" || datatype === "UINT8" || datatype === "UINT16") {
    checkIntegerRange(name, datatype, values as Int32Array | Uint32Array);
  }
  switch (datatype) {
    case "INT8":
      return new Int8Array(values as Int32Array);
    case "INT16":
      return new Int16Array(values as Int32Array);
    case "UINT8":
      return new Uint8Array(values as Uint32Array);
    case "UINT16":
      return new Uint16Array(values as Uint32Array);
    default:
      return values;
  }
}

function shapeChecked(side: string, name: string, shape: number[]): number[] {
  for (const d of shape)
    if (d < 0) throw bad(`${side} "${name}": shape [${shape.join(",")}] must hold non-negative integers`);
  return shape;
}

/**
 * The tensors of a wire message as OipTensors: from the raw contents when there are any (one entry per tensor, in
 * order), else from the typed `contents`. Checks names, datatypes, shapes and element counts; raw data is copied into
 * typed arrays (aligned, owned by the result).
 * @param side `input` or `output`, for error messages
 * @throws TernError `bad_request` naming the tensor and what is wrong
 */
export function tensorsToOip(side: "input" | "output", tensors: InferTensor[], raw: Uint8Array[] = []): OipTensor[] {
  if (raw.length > 0 && raw.length !== tensors.length)
    throw bad(`raw_${side}_contents has ${raw.length} entries but there are ${tensors.length} ${side}s`);
  return tensors.map((t, i) => {
    if (!t.name) throw bad(`${side}s[${i}]: name is empty`);
    if (!isOipDatatype(t.datatype)) throw bad(`${side} "${t.name}": datatype "${t.datatype}" is not an OIP datatype`);
    const shape = shapeChecked(side, t.name, t.shape);
    const count = elementCount(shape);
    const data =
      raw.length > 0
        ? decodeTensorData(t.name, t.datatype, raw[i]!, count)
        : dataFromContents(side, t.name, t.datatype, t.contents, count);
    const parameters = parametersToOip(t.parameters);
    return parameters
      ? { name: t.name, datatype: t.datatype, shape, data, parameters }
      : { name: t.name, datatype: t.datatype, shape, data };
  });
}

/** The inputs of a request as OipTensors (see {@link tensorsToOip}). */
export function requestInputsToOip(req: ModelInferRequest): OipTensor[] {
  return tensorsToOip("input", req.inputs, req.raw_input_contents);
}

/** The outputs of a response as OipTensors (see {@link tensorsToOip}). */
export function responseOutputsToOip(res: ModelInferResponse): OipTensor[] {
  return tensorsToOip("output", res.outputs, res.raw_output_contents);
}

/** Typed `contents` for a tensor's data (views where the typed array already fits, else one converted copy). */
export function contentsFromData(datatype: OipDatatype, data: TensorData): InferTensorContents {
  switch (datatype) {
    case "BYTES":
      return { bytes_contents: data as Uint8Array[] };
    case "BOOL":
      return { bool_contents: data as Uint8Array };
    case "INT8":
    case "INT16":
      return { int_contents: new Int32Array(data as Int8Array) };
    case "INT32":
      return { int_contents: data as Int32Array };
    case "UINT8":
    case "UINT16":
      return { uint_contents: new Uint32Array(data as Uint8Array) };
    case "UINT32":
      return { uint_contents: data as Uint32Array };
    case "INT64":
      return { int64_contents: data as BigInt64Array };
    case "UINT64":
      return { uint64_contents: data as BigUint64Array };
    case "FP32":
      return { fp32_contents: data as Float32Array };
    case "FP64":
      return { fp64_contents: data as Float64Array };
    case "FP16":
      throw bad("FP16 has no typed contents field: it must travel in raw contents");
  }
}

/**
 * OipTensors as wire tensors: with `raw`, the data goes to one raw entry per tensor (what Triton and Seldon clients
 * send and expect; FP16 has no other way); without, into typed `contents`.
 */
export function tensorsFromOip(tensors: OipTensor[], raw: boolean): { tensors: InferTensor[]; raw?: Uint8Array[] } {
  const out = tensors.map((t): InferTensor => {
    const wire: InferTensor = { name: t.name, datatype: t.datatype, shape: t.shape };
    const parameters = parametersFromOip(t.parameters);
    if (parameters) wire.parameters = parameters;
    if (!raw) wire.contents = contentsFromData(t.datatype, t.data);
    return wire;
  });
  return raw ? { tensors: out, raw: tensors.map((t) => rawBytes(t.datatype, t.data)) } : { tensors: out };
}

/** Raw little-endian bytes of tensor data: a view of fixed-size data (no copy), an encoding of BYTES. */
function rawBytes(datatype: OipDatatype, data: TensorData): Uint8Array {
  if (Array.isArray(data)) return encodeTensorData(datatype, data);
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}
