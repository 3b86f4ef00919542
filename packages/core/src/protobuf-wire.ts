import { TernError } from "./errors.js";

/**
 * The protobuf wire format (public encoding spec), as much as the OIP messages need: varints (32- and 64-bit, the
 * latter as two 32-bit halves so that no BigInt arithmetic happens per element), fixed 32/64-bit values,
 * length-delimited fields and skipping of unknown fields. Pure: typed arrays and DataView only.
 *
 * The reader never reads past `end` and every loop advances, so malformed input fails with a `bad_request` TernError
 * naming what was wrong and where, never with a RangeError or a hang.
 */

export const WIRE_VARINT = 0;
export const WIRE_FIXED64 = 1;
export const WIRE_LEN = 2;
export const WIRE_START_GROUP = 3;
export const WIRE_END_GROUP = 4;
export const WIRE_FIXED32 = 5;

const utf8 = new TextDecoder("utf-8", { fatal: true });
const utf8Encoder = new TextEncoder();

/** A `bad_request` TernError about a protobuf message. */
export function malformed(what: string, message: string, at: number): TernError {
  return new TernError("bad_request", `malformed ${what}: ${message} (at byte ${at})`);
}

/** Reads one message (and its nested ones) from `buf`; `what` names the top-level message in errors. */
export class WireReader {
  readonly buf: Uint8Array;
  readonly view: DataView;
  pos = 0;
  /** Low and high 32 bits of the last {@link readVarint64}. */
  lo = 0;
  hi = 0;

  constructor(
    buf: Uint8Array,
    readonly what: string,
  ) {
    this.buf = buf;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  fail(message: string, at = this.pos): TernError {
    return malformed(this.what, message, at);
  }

  /** A varint that must fit in 32 bits unsigned (tags, lengths): fails on larger values. */
  readVarint32(end: number): number {
    const buf = this.buf;
    const p = this.pos;
    if (p < end) {
      const b = buf[p]!;
      if (b < 0x80) {
        this.pos = p + 1;
        return b;
      }
    }
    this.readVarint64(end);
    if (this.hi !== 0) throw this.fail("varint does not fit in 32 bits", p);
    return this.lo;
  }

  /** A varint of up to 10 bytes into {@link lo}/{@link hi} (unsigned halves). */
  readVarint64(end: number): void {
    const buf = this.buf;
    const start = this.pos;
    let p = start;
    let lo = 0;
    let hi = 0;
    let b = 0;
    for (let shift = 0; shift < 28; shift += 7) {
      if (p >= end) throw this.fail("truncated varint", start);
      b = buf[p++]!;
      lo |= (b & 0x7f) << shift;
      if (b < 0x80) {
        this.pos = p;
        this.lo = lo >>> 0;
        this.hi = 0;
        return;
      }
    }
    if (p >= end) throw this.fail("truncated varint", start);
    b = buf[p++]!;
    lo |= (b & 0x0f) << 28;
    hi = (b & 0x7f) >> 4;
    if (b >= 0x80) {
      for (let shift = 3; ; shift += 7) {
        if (shift > 31) throw this.fail("varint longer than 10 bytes", start);
        if (p >= end) throw this.fail("truncated varint", start);
        b = buf[p++]!;
        hi |= (b & 0x7f) << shift;
        if (b < 0x80) break;
      }
    }
    this.pos = p;
    this.lo = lo >>> 0;
    this.hi = hi >>> 0;
  }

  /** An int64 varint as a number; fails when it is not a safe integer. */
  readInt64Number(end: number, field: string): number {
    const at = this.pos;
    this.readVarint64(end);
    return int64ToNumber(this.lo, this.hi, () => this.fail(`${field} is outside the safe integer range`, at));
  }

  /** The end offset of a length-delimited field whose length prefix starts at `pos`. */
  readLengthEnd(end: number): number {
    const at = this.pos;
    const len = this.readVarint32(end);
    if (len > end - this.pos) throw this.fail(`length ${len} runs past the end of the data`, at);
    return this.pos + len;
  }

  /** A length-delimited field as a view of the input (no copy). */
  readBytes(end: number): Uint8Array {
    const stop = this.readLengthEnd(end);
    const out = this.buf.subarray(this.pos, stop);
    this.pos = stop;
    return out;
  }

  readString(end: number, field: string): string {
    const at = this.pos;
    const stop = this.readLengthEnd(end);
    const buf = this.buf;
    let p = this.pos;
    // Short ASCII strings (names, datatypes, ids) are far cheaper to build by hand than through TextDecoder.
    if (stop - p <= 32) {
      let s = "";
      for (; p < stop; p++) {
        const c = buf[p]!;
        if (c >= 0x80) break;
        s += String.fromCharCode(c);
      }
      if (p === stop) {
        this.pos = stop;
        return s;
      }
      p = this.pos;
    }
    try {
      const s = utf8.decode(buf.subarray(p, stop));
      this.pos = stop;
      return s;
    } catch {
      throw this.fail(`${field} is not valid UTF-8`, at);
    }
  }

  readFloat32(end: number): number {
    if (end - this.pos < 4) throw this.fail("truncated fixed32 value");
    const v = this.view.getFloat32(this.pos, true);
    this.pos += 4;
    return v;
  }

  readFloat64(end: number): number {
    if (end - this.pos < 8) throw this.fail("truncated fixed64 value");
    const v = this.view.getFloat64(this.pos, true);
    this.pos += 8;
    return v;
  }

  /** Skips the value of a field with wire type `wt` (unknown fields, for forward compatibility). */
  skip(wt: number, field: number, end: number): void {
    switch (wt) {
      case WIRE_VARINT:
        this.readVarint64(end);
        return;
      case WIRE_FIXED64:
        if (end - this.pos < 8) throw this.fail(`truncated fixed64 field ${field}`);
        this.pos += 8;
        return;
      case WIRE_LEN:
        this.pos = this.readLengthEnd(end);
        return;
      case WIRE_FIXED32:
        if (end - this.pos < 4) throw this.fail(`truncated fixed32 field ${field}`);
        this.pos += 4;
        return;
      case WIRE_START_GROUP:
        this.skipGroup(field, end);
        return;
      default:
        throw this.fail(`field ${field} has invalid wire type ${wt}`);
    }
  }

  /** Skips a (deprecated) group up to its matching end tag, iteratively so that deep nesting cannot overflow the stack. */
  private skipGroup(field: number, end: number): void {
    const open = [field];
    while (open.length > 0) {
      if (this.pos >= end) throw this.fail(`group ${open[open.length - 1]} is not closed`);
      const tag = this.readTag(end);
      const wt = tag & 7;
      const f = tag >>> 3;
      if (wt === WIRE_END_GROUP) {
        if (open.pop() !== f) throw this.fail(`end of group ${f} does not match the open group`);
      } else if (wt === WIRE_START_GROUP) open.push(f);
      else this.skip(wt, f, end);
    }
  }

  /** A field tag; fails on field number 0. */
  readTag(end: number): number {
    const at = this.pos;
    const tag = this.readVarint32(end);
    if (tag >>> 3 === 0) throw this.fail("field number 0", at);
    return tag;
  }

  /** Fails for a known field that arrived with the wrong wire type. */
  wrongType(name: string, field: number, wt: number, want: number): TernError {
    return this.fail(`field ${field} (${name}) has wire type ${wt}, expected ${want}`);
  }

  /** The number of varints in [pos, end) (each ends with a byte below 0x80); fails when the last one is cut. */
  countVarints(end: number): number {
    const buf = this.buf;
    let n = 0;
    for (let p = this.pos; p < end; p++) if (buf[p]! < 0x80) n++;
    if (end > this.pos && buf[end - 1]! >= 0x80) throw this.fail("truncated varint in packed field", end - 1);
    return n;
  }
}

/** A signed 64-bit value given as two unsigned halves, as a number; `overflow` builds the error beyond 2^53. */
export function int64ToNumber(lo: number, hi: number, overflow: () => Error): number {
  if (hi & 0x80000000) {
    // Negative: two's complement back to a magnitude.
    const nlo = (~lo + 1) >>> 0;
    const nhi = (~hi + (nlo === 0 ? 1 : 0)) >>> 0;
    if (nhi > 0x1fffff) throw overflow();
    return -(nhi * 0x100000000 + nlo);
  }
  if (hi > 0x1fffff) throw overflow();
  return hi * 0x100000000 + lo;
}

/** Bytes of a varint holding the unsigned 32-bit `v`. */
export function varint32Size(v: number): number {
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5;
}

/** Bytes of a varint holding the unsigned 64-bit value with halves `lo`, `hi`. */
export function varint64Size(lo: number, hi: number): number {
  if (hi === 0) return varint32Size(lo);
  return hi < 0x8 ? 5 : hi < 0x400 ? 6 : hi < 0x20000 ? 7 : hi < 0x1000000 ? 8 : hi < 0x80000000 ? 9 : 10;
}

/** Bytes of an int32 varint (negative values take 10 bytes, sign-extended to 64 bits). */
export function int32Size(v: number): number {
  return v < 0 ? 10 : varint32Size(v);
}

/** Halves of an integral number as a 64-bit two's-complement value, into `out[0]` (lo) and `out[1]` (hi). */
export function splitInt64(n: number, out: [number, number]): void {
  const neg = n < 0;
  const m = neg ? -n : n;
  let lo = (m % 0x100000000) >>> 0;
  let hi = Math.floor(m / 0x100000000) >>> 0;
  if (neg) {
    lo = (~lo + 1) >>> 0;
    hi = (~hi + (lo === 0 ? 1 : 0)) >>> 0;
  }
  out[0] = lo;
  out[1] = hi;
}

/** Halves of a bigint taken modulo 2^64 (so int64 and uint64 values both fit). */
export function splitBigInt64(v: bigint, out: [number, number]): void {
  const u = BigInt.asUintN(64, v);
  out[0] = Number(u & 0xffffffffn);
  out[1] = Number(u >> 32n);
}

/** UTF-8 byte length of `s` as TextEncoder writes it (a lone surrogate becomes U+FFFD, 3 bytes). */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}

/** Writes into a buffer allocated at its final size (the encoder measures first, then writes). */
export class WireWriter {
  readonly buf: Uint8Array;
  readonly view: DataView;
  pos = 0;

  constructor(size: number) {
    this.buf = new Uint8Array(size);
    this.view = new DataView(this.buf.buffer);
  }

  varint32(v: number): void {
    const buf = this.buf;
    let p = this.pos;
    let x = v >>> 0;
    while (x >= 0x80) {
      buf[p++] = (x & 0x7f) | 0x80;
      x >>>= 7;
    }
    buf[p++] = x;
    this.pos = p;
  }

  varint64(lo: number, hi: number): void {
    if (hi === 0) {
      this.varint32(lo);
      return;
    }
    const buf = this.buf;
    let p = this.pos;
    let l = lo >>> 0;
    let h = hi >>> 0;
    while (h > 0 || l >= 0x80) {
      buf[p++] = (l & 0x7f) | 0x80;
      l = ((l >>> 7) | (h << 25)) >>> 0;
      h >>>= 7;
    }
    buf[p++] = l;
    this.pos = p;
  }

  int32(v: number): void {
    if (v < 0) this.varint64(v >>> 0, 0xffffffff);
    else this.varint32(v);
  }

  tag(field: number, wt: number): void {
    this.varint32((field << 3) | wt);
  }

  /** A string of known UTF-8 length `len` (from {@link utf8Length}), without its length prefix. */
  stringBody(s: string, len: number): void {
    const buf = this.buf;
    let p = this.pos;
    if (len === s.length) {
      for (let i = 0; i < len; i++) buf[p++] = s.charCodeAt(i);
    } else {
      utf8Encoder.encodeInto(s, buf.subarray(p, p + len));
      p += len;
    }
    this.pos = p;
  }

  bytes(b: Uint8Array): void {
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  float64(v: number): void {
    this.view.setFloat64(this.pos, v, true);
    this.pos += 8;
  }
}
