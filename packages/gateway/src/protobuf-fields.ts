/**
 * Just enough protobuf to proxy OIP gRPC without decoding tensors: read and replace the top-level string fields
 * 1 (`model_name` / `name`) and 2 (`model_version` / `version`), which every model-level OIP request has at those
 * numbers (public spec). Everything else is copied byte for byte, so the proxy costs a scan, not a decode/encode.
 */

export interface NameAndVersion {
  name: string;
  version: string;
}

/** Reads top-level fields 1 and 2 as strings (empty when absent). @throws Error on malformed input. */
export function readNameAndVersion(buf: Uint8Array): NameAndVersion {
  const out: NameAndVersion = { name: "", version: "" };
  walk(buf, (field, start, end) => {
    if (field === 1) out.name = decodeUtf8(buf, start, end);
    else if (field === 2) out.version = decodeUtf8(buf, start, end);
  });
  return out;
}

/** The message with fields 1 and 2 replaced (fields 1 and 2 first, then every other field as it was). */
export function withNameAndVersion(buf: Uint8Array, name: string, version: string): Buffer {
  const parts: Uint8Array[] = [encodeString(1, name)];
  if (version !== "") parts.push(encodeString(2, version));
  let copyFrom = 0;
  walk(buf, (field, _start, _end, tagStart, fieldEnd) => {
    if (field !== 1 && field !== 2) return;
    if (tagStart > copyFrom) parts.push(buf.subarray(copyFrom, tagStart));
    copyFrom = fieldEnd;
  });
  if (copyFrom < buf.length) parts.push(buf.subarray(copyFrom));
  return Buffer.concat(parts);
}

/** Encodes a message of string fields (in the given order) and bool fields; for the few responses the proxy makes itself. */
export function encodeFields(fields: Array<[number, string | boolean | string[]]>): Buffer {
  const parts: Uint8Array[] = [];
  for (const [field, value] of fields) {
    if (typeof value === "boolean") {
      if (value) parts.push(Uint8Array.of((field << 3) | 0, 1));
    } else if (Array.isArray(value)) {
      for (const v of value) parts.push(encodeString(field, v));
    } else if (value !== "") {
      parts.push(encodeString(field, value));
    }
  }
  return Buffer.concat(parts);
}

function encodeString(field: number, value: string): Buffer {
  const bytes = Buffer.from(value, "utf8");
  return Buffer.concat([encodeVarint((field << 3) | 2), encodeVarint(bytes.length), bytes]);
}

function encodeVarint(value: number): Buffer {
  const out: number[] = [];
  let v = value;
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Buffer.from(out);
}

type FieldVisitor = (field: number, valueStart: number, valueEnd: number, tagStart: number, fieldEnd: number) => void;

/** Visits every top-level length-delimited field; skips the others. */
function walk(buf: Uint8Array, visit: FieldVisitor): void {
  let pos = 0;
  while (pos < buf.length) {
    const tagStart = pos;
    const [tag, afterTag] = readVarint(buf, pos);
    pos = afterTag;
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    if (field === 0) throw new Error("malformed protobuf: field number 0");
    if (wire === 0) {
      pos = readVarint(buf, pos)[1];
    } else if (wire === 1) {
      pos += 8;
    } else if (wire === 5) {
      pos += 4;
    } else if (wire === 2) {
      const [length, start] = readVarint(buf, pos);
      const end = start + length;
      if (end > buf.length) throw new Error("malformed protobuf: field runs past the end");
      visit(field, start, end, tagStart, end);
      pos = end;
    } else {
      throw new Error(`malformed protobuf: unsupported wire type ${wire}`);
    }
    if (pos > buf.length) throw new Error("malformed protobuf: truncated field");
  }
}

function readVarint(buf: Uint8Array, start: number): [number, number] {
  let result = 0;
  let multiplier = 1;
  let pos = start;
  for (let i = 0; i < 10; i++) {
    if (pos >= buf.length) throw new Error("malformed protobuf: truncated varint");
    const byte = buf[pos++]!;
    result += (byte & 0x7f) * multiplier;
    if (byte < 0x80) return [result, pos];
    multiplier *= 128;
  }
  throw new Error("malformed protobuf: varint too long");
}

function decodeUtf8(buf: Uint8Array, start: number, end: number): string {
  return Buffer.from(buf.buffer, buf.byteOffset + start, end - start).toString("utf8");
}
