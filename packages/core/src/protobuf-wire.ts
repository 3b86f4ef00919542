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
  pos = 0;
  /** Low and high 32 bits of the last {@link readVarint64}. */
  lo = 0;
  hi = 0;
  private dataView: DataView | undefined;

  constructor(
    buf: Uint8Array,
    readonly what: string,
  ) {
    this.buf = buf;
  }

  /** Made on first use: most messages hold no fixed-width scalar outside packed fields. */
  private get view(): DataView {
    this.dataView ??= new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
    return this.dataView;
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

  /** A length-delimited field as a view of the input (no copy); a plain Uint8Array even when the input is a Buffer. */
  readBytes(end: number): Uint8Array {
    const stop = this.readLengthEnd(end);
    const buf = this.buf;
    const out = new Uint8Array(buf.buffer, buf.byteOffset + this.pos, stop - this.pos);
    this.pos = stop;
    return out;
  }

  readString(end: number, field: string): string {
    const at = this.pos;
    const stop = this.readLengthEnd(end);
    const buf = this.buf;
    const start = this.pos;
    this.pos = stop;
    const n = stop - start;
    // Short ASCII strings (names, datatypes, ids) are far cheaper to build by hand than through TextDecoder.
    if (n <= 64) {
      let ascii = true;
      for (let p = start; p < stop; p++)
        if (buf[p]! >= 0x80) {
          ascii = false;
          break;
        }
      if (ascii) {
        if (n <= 16) {
          let out = "";
          for (let p = start; p < stop; p++) out += String.fromCharCode(buf[p]!);
          return out;
        }
        const codes = new Uint8Array(buf.buffer, buf.byteOffset + start, n);
        return String.fromCharCode.apply(null, codes as unknown as number[]);
      }
    }
    try {
      return utf8.decode(new Uint8Array(buf.buffer, buf.byteOffset + start, n));
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

/**
 * Slabs are small (Node's Buffer pool is 8 KiB too) because one live view keeps its whole slab alive: a request held
 * in a join for a while retains at most 8 KiB beyond itself.
 */
const SLAB_SIZE = 8 * 1024;
/** Regions larger than this get a buffer of their own. */
const SLAB_MAX = 2 * 1024;

/**
 * Typed arrays decoded from packed fields come from a shared slab too: making a small typed array and then touching
 * its `.buffer` (to copy bytes into it) costs V8 far more than a view over an existing buffer.
 */
const DECODE_SLAB_SIZE = SLAB_SIZE;
let decodeSlab = new ArrayBuffer(DECODE_SLAB_SIZE);
let decodeSlabUsed = 0;

/** Where {@link reserveDecoded} put the last region: its buffer, byte and 32-bit views of it, and its byte offset. */
export const decoded = {
  buffer: decodeSlab,
  u8: new Uint8Array(decodeSlab),
  u32: new Uint32Array(decodeSlab),
  offset: 0,
};

/** Reserves `bytes` (8-byte aligned) for a decoded typed array; the region is described in {@link decoded}. */
export function reserveDecoded(bytes: number): void {
  if (bytes > SLAB_MAX) {
    const own = new ArrayBuffer((bytes + 7) & ~7);
    decoded.buffer = own;
    decoded.u8 = new Uint8Array(own);
    decoded.u32 = new Uint32Array(own);
    decoded.offset = 0;
    return;
  }
  if (decodeSlabUsed + bytes > DECODE_SLAB_SIZE || decoded.buffer !== decodeSlab) {
    if (decodeSlabUsed + bytes > DECODE_SLAB_SIZE) {
      decodeSlab = new ArrayBuffer(DECODE_SLAB_SIZE);
      decodeSlabUsed = 0;
    }
    decoded.buffer = decodeSlab;
    decoded.u8 = new Uint8Array(decodeSlab);
    decoded.u32 = new Uint32Array(decodeSlab);
  }
  decoded.offset = decodeSlabUsed;
  decodeSlabUsed = (decodeSlabUsed + bytes + 7) & ~7;
}

/** Small messages are cut from a shared slab (as Node's Buffer pool does): one allocation per slab. */
let slab = new Uint8Array(SLAB_SIZE);
let slabUsed = 0;

/** A zeroed region of `size` bytes: a fresh buffer for large sizes, a slice of the current slab for small ones. */
export function allocateOutput(size: number): Uint8Array {
  if (size > SLAB_MAX) return new Uint8Array(size);
  if (slabUsed + size > SLAB_SIZE) {
    slab = new Uint8Array(SLAB_SIZE);
    slabUsed = 0;
  }
  const out = slab.subarray(slabUsed, slabUsed + size);
  // 8-byte alignment keeps a caller's typed-array view over the result possible.
  slabUsed = (slabUsed + size + 7) & ~7;
  return out;
}

/**
 * Writes into a buffer allocated at its final size (the encoder measures first, then writes). Small buffers are views
 * of a shared slab: use `byteOffset`/`byteLength` with `.buffer`.
 */
export class WireWriter {
  readonly buf: Uint8Array;
  pos = 0;
  private dataView: DataView | undefined;

  /** @param buf exactly the size of the message to write */
  constructor(buf: Uint8Array) {
    this.buf = buf;
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

  /**
   * A length-delimited string field's length and bytes. A string of fewer than 43 UTF-16 units has at most 127 UTF-8
   * bytes, so its one-byte length is written after the bytes; longer ones are measured first.
   */
  string(s: string): void {
    const buf = this.buf;
    const n = s.length;
    if (n < 43) {
      const lenAt = this.pos;
      let p = lenAt + 1;
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        buf[p++] = c;
      }
      if (i < n) p += utf8Encoder.encodeInto(s.slice(i), buf.subarray(p)).written;
      buf[lenAt] = p - lenAt - 1;
      this.pos = p;
      return;
    }
    const len = utf8Length(s);
    this.varint32(len);
    utf8Encoder.encodeInto(s, buf.subarray(this.pos, this.pos + len));
    this.pos += len;
  }

  bytes(b: Uint8Array): void {
    const n = b.length;
    if (n <= 64) {
      // TypedArray.set costs more than a short loop.
      const buf = this.buf;
      const p = this.pos;
      for (let i = 0; i < n; i++) buf[p + i] = b[i]!;
    } else this.buf.set(b, this.pos);
    this.pos += n;
  }

  float64(v: number): void {
    this.dataView ??= new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
    this.dataView.setFloat64(this.pos, v, true);
    this.pos += 8;
  }
}
