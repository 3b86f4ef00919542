import { describe, expect, it } from "vitest";
import { decodeModelMetadataTensors, encodeModelMetadataResponse } from "../../src/metadata-protobuf.js";

// The ModelMetadataResponse codec beside the proto-loader round trips of grpc-pipeline.test.ts: the forms proto-loader
// never writes (unpacked shapes), and malformed answers.

/** A varint of a non-negative number below 2^31, or of -1 as int64 (ten bytes). */
function varint(n: number): number[] {
  if (n === -1) return [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
  const out: number[] = [];
  let v = n;
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  out.push(v);
  return out;
}
const len = (field: number, bytes: number[]) => [(field << 3) | 2, ...varint(bytes.length), ...bytes];
const str = (field: number, s: string) => len(field, [...Buffer.from(s, "utf8")]);

describe("decodeModelMetadataTensors", () => {
  it("reads shapes packed and unpacked, -1 included, and skips fields it does not need", () => {
    const packed = [...str(1, "x"), ...str(2, "FP32"), ...len(3, [...varint(-1), ...varint(300)])];
    const unpacked = [...str(1, "y"), ...str(2, "INT64"), 3 << 3, ...varint(-1), 3 << 3, ...varint(2)];
    const message = Uint8Array.from([
      ...str(1, "m"),
      ...str(2, "1"),
      ...str(3, "onnx"),
      ...len(4, packed),
      ...len(5, unpacked),
      (9 << 3) | 0,
      ...varint(7),
    ]);
    expect(decodeModelMetadataTensors(message)).toEqual({
      inputs: [{ name: "x", datatype: "FP32", shape: [-1, 300] }],
      outputs: [{ name: "y", datatype: "INT64", shape: [-1, 2] }],
    });
  });

  it("throws on a field that runs past the end and on a truncated varint", () => {
    expect(() => decodeModelMetadataTensors(Uint8Array.from([(4 << 3) | 2, 5, 1]))).toThrow(/runs past the end/);
    expect(() => decodeModelMetadataTensors(Uint8Array.from([(4 << 3) | 2, 0x80]))).toThrow(/truncated varint/);
  });
});

describe("encodeModelMetadataResponse", () => {
  it("writes what it reads back; a tensor known by name only has no datatype and no shape", () => {
    const meta = {
      name: "p",
      platform: "tern-pipeline" as const,
      inputs: [{ name: "x", datatype: "FP32", shape: [-1, 3] }, { name: "ok" }],
      outputs: [{ name: "y", datatype: "FP32", shape: [2 ** 40, 1] }],
    };
    expect(decodeModelMetadataTensors(encodeModelMetadataResponse(meta))).toEqual({
      inputs: [
        { name: "x", datatype: "FP32", shape: [-1, 3] },
        { name: "ok", shape: [] },
      ],
      outputs: [{ name: "y", datatype: "FP32", shape: [2 ** 40, 1] }],
    });
  });
});
