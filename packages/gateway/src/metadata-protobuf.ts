import type { ModelTensorLists, PipelineMetadata, PipelineTensorMetadata } from "./pipeline-metadata.js";

/**
 * The OIP `ModelMetadataResponse` on the wire (public spec; packages/core/proto/oip.proto), as much as pipeline metadata
 * over gRPC needs: read the tensor lists of a step model's answer, write a pipeline's answer. Fields: name 1, versions 2,
 * platform 3, inputs 4, outputs 5; a `TensorMetadata` is name 1, datatype 2, shape 3 (repeated int64, -1 for a
 * variable dimension; packed or not on input, packed on output). Not a hot path: shapes go through BigInt.
 */

const LEN = 2;
const VARINT = 0;

/**
 * The inputs and outputs a model's `ModelMetadataResponse` lists (other fields skipped).
 * @throws Error naming what is malformed
 */
export function decodeModelMetadataTensors(buf: Uint8Array): ModelTensorLists {
  const out: Required<ModelTensorLists> = { inputs: [], outputs: [] };
  walk(buf, 0, buf.length, (field, wire, start, end) => {
    if ((field === 4 || field === 5) && wire === LEN) {
      (field === 4 ? out.inputs : out.outputs).push(decodeTensor(buf, start, end));
    }
  });
  return out;
}

/** A pipeline's metadata as a `ModelMetadataResponse` (no versions; a tensor without datatype or shape leaves them empty). */
export function encodeModelMetadataResponse(meta: PipelineMetadata): Buffer {
  const parts: Buffer[] = [stringField(1, meta.name), stringField(3, meta.platform)];
  for (const t of meta.inputs) parts.push(lengthField(4, encodeTensor(t)));
  for (const t of meta.outputs) parts.push(lengthField(5, encodeTensor(t)));
  return Buffer.concat(parts);
}

function decodeTensor(
  buf: Uint8Array,
  start: number,
  end: number,
): { name: string; datatype?: string; shape?: number[] } {
  let name = "";
  let datatype: string | undefined;
  const shape: number[] = [];
  walk(buf, start, end, (field, wire, from, to, varint) => {
    if (field === 1 && wire === LEN) name = Buffer.from(buf.subarray(from, to)).toString("utf8");
    else if (field === 2 && wire === LEN) datatype = Buffer.from(buf.subarray(from, to)).toString("utf8");
    else if (field === 3 && wire === VARINT) shape.push(int64(varint!));
    else if (field === 3 && wire === LEN) {
      for (let pos = from; pos < to; ) {
        const v = readVarint(buf, pos, to);
        shape.push(int64(v.value));
        pos = v.next;
      }
    }
  });
  return { name, ...(datatype ? { datatype } : {}), shape };
}

function encodeTensor(t: PipelineTensorMetadata): Buffer {
  const parts = [stringField(1, t.name)];
  if (t.datatype) parts.push(stringField(2, t.datatype));
  if (t.shape && t.shape.length > 0) parts.push(lengthField(3, Buffer.concat(t.shape.map((d) => varint(BigInt(d))))));
  return Buffer.concat(parts);
}

type Visitor = (field: number, wire: number, start: number, end: number, varint?: bigint) => void;

/** Visits the fields of the message in [start, end): length-delimited ones by their bounds, varints by value. */
function walk(buf: Uint8Array, start: number, end: number, visit: Visitor): void {
  let pos = start;
  while (pos < end) {
    const tag = readVarint(buf, pos, end);
    pos = tag.next;
    const field = Number(tag.value >> 3n);
    const wire = Number(tag.value & 7n);
    if (field === 0) throw new Error("malformed ModelMetadataResponse: field number 0");
    if (wire === VARINT) {
      const v = readVarint(buf, pos, end);
      pos = v.next;
      visit(field, wire, 0, 0, v.value);
    } else if (wire === LEN) {
      const length = readVarint(buf, pos, end);
      const from = length.next;
      const to = from + Number(length.value);
      if (length.value > BigInt(end - from))
        throw new Error("malformed ModelMetadataResponse: field runs past the end");
      visit(field, wire, from, to);
      pos = to;
    } else if (wire === 1 || wire === 5) {
      pos += wire === 1 ? 8 : 4;
      if (pos > end) throw new Error("malformed ModelMetadataResponse: truncated fixed-size field");
    } else {
      throw new Error(`malformed ModelMetadataResponse: unsupported wire type ${wire}`);
    }
  }
}

function readVarint(buf: Uint8Array, start: number, end: number): { value: bigint; next: number } {
  let value = 0n;
  for (let i = 0, pos = start; i < 10; i++, pos++) {
    if (pos >= end) throw new Error("malformed ModelMetadataResponse: truncated varint");
    const byte = buf[pos]!;
    value |= BigInt(byte & 0x7f) << BigInt(7 * i);
    if (byte < 0x80) return { value, next: pos + 1 };
  }
  throw new Error("malformed ModelMetadataResponse: varint longer than 10 bytes");
}

/** A varint read as an int64 (two's complement), as a number. */
function int64(v: bigint): number {
  return Number(BigInt.asIntN(64, v));
}

function varint(n: bigint): Buffer {
  const bytes: number[] = [];
  let v = BigInt.asUintN(64, n);
  while (v >= 0x80n) {
    bytes.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  bytes.push(Number(v));
  return Buffer.from(bytes);
}

function lengthField(field: number, value: Buffer): Buffer {
  return Buffer.concat([varint(BigInt((field << 3) | LEN)), varint(BigInt(value.length)), value]);
}

function stringField(field: number, value: string): Buffer {
  return lengthField(field, Buffer.from(value, "utf8"));
}
