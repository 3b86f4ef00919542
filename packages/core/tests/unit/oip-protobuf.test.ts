import fc from "fast-check";
import protobuf from "protobufjs";
import { describe, expect, it } from "vitest";
import { hasCode } from "../../src/errors.js";
import { floatToHalfBits, type OipDatatype, type OipTensor, type TensorData } from "../../src/oip.js";
import {
  decodeModelInferRequest,
  decodeModelInferResponse,
  encodeModelInferRequest,
  encodeModelInferResponse,
  type ModelInferRequest,
  type ModelInferResponse,
  parametersFromOip,
  parametersToOip,
  requestInputsToOip,
  responseOutputsToOip,
  tensorsFromOip,
} from "../../src/oip-protobuf.js";
import {
  pbDecodeRequest,
  pbDecodeResponse,
  pbEncodeRequest,
  pbEncodeResponse,
  requestArb,
  responseArb,
} from "./oip-protobuf-helpers.js";

// Fixed seed: the properties are deterministic functions of the generated inputs, so a fixed seed cannot flake.
const SEED = 20261201;
const utf8 = new TextEncoder();

/** One tensor per datatype, with the edge values of each. */
const SAMPLES: Record<OipDatatype, TensorData> = {
  BOOL: Uint8Array.of(1, 0, 1),
  UINT8: Uint8Array.of(0, 1, 255),
  UINT16: Uint16Array.of(0, 1, 65535),
  UINT32: Uint32Array.of(0, 1, 4294967295),
  UINT64: BigUint64Array.of(0n, 1n, 2n ** 64n - 1n),
  INT8: Int8Array.of(-128, 0, 127),
  INT16: Int16Array.of(-32768, 0, 32767),
  INT32: Int32Array.of(-2147483648, 0, 2147483647),
  INT64: BigInt64Array.of(-(2n ** 63n), -1n, 2n ** 63n - 1n),
  FP16: Uint16Array.of(floatToHalfBits(1.5), floatToHalfBits(-0.25), floatToHalfBits(65504)),
  FP32: Float32Array.of(5.1, -3.5e38, Number.NaN),
  FP64: Float64Array.of(Math.PI, -0, Number.MAX_VALUE),
  BYTES: [utf8.encode("héllo"), new Uint8Array(0), Uint8Array.of(0, 0xff, 0x80)],
};
const DATATYPES = Object.keys(SAMPLES) as OipDatatype[];
const tensorOf = (datatype: OipDatatype): OipTensor => ({
  name: `t_${datatype.toLowerCase()}`,
  datatype,
  shape: [1, 3],
  data: SAMPLES[datatype],
});

function codeOf(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return (err as { code?: unknown }).code;
  }
  return "no error";
}

describe("OIP protobuf codec: tensors", () => {
  it.each(DATATYPES.filter((d) => d !== "FP16"))("round-trips %s in typed contents", (datatype) => {
    const { tensors } = tensorsFromOip([tensorOf(datatype)], false);
    const bytes = encodeModelInferRequest({ model_name: "m", inputs: tensors });
    const decoded = decodeModelInferRequest(bytes);
    expect(decoded.raw_input_contents).toBeUndefined();
    expect(requestInputsToOip(decoded)).toEqual([tensorOf(datatype)]);
    // The same bytes read by protobufjs hold the same tensor.
    expect(requestInputsToOip(pbDecodeRequest(bytes))).toEqual([tensorOf(datatype)]);
  });

  it.each(DATATYPES)("round-trips %s in raw_input_contents and raw_output_contents", (datatype) => {
    const wire = tensorsFromOip([tensorOf(datatype)], true);
    const req = decodeModelInferRequest(
      encodeModelInferRequest({ model_name: "m", inputs: wire.tensors, raw_input_contents: wire.raw! }),
    );
    expect(req.inputs[0]!.contents).toBeUndefined();
    expect(requestInputsToOip(req)).toEqual([tensorOf(datatype)]);
    const res = decodeModelInferResponse(
      encodeModelInferResponse({ model_name: "m", outputs: wire.tensors, raw_output_contents: wire.raw! }),
    );
    expect(responseOutputsToOip(res)).toEqual([tensorOf(datatype)]);
  });

  it("round-trips every datatype at once in response outputs, typed and raw", () => {
    const typed = DATATYPES.filter((d) => d !== "FP16").map(tensorOf);
    const asContents = tensorsFromOip(typed, false);
    const res = decodeModelInferResponse(encodeModelInferResponse({ model_name: "m", outputs: asContents.tensors }));
    expect(responseOutputsToOip(res)).toEqual(typed);
    const all = DATATYPES.map(tensorOf);
    const asRaw = tensorsFromOip(all, true);
    const raw = decodeModelInferResponse(
      encodeModelInferResponse({ model_name: "m", outputs: asRaw.tensors, raw_output_contents: asRaw.raw! }),
    );
    expect(responseOutputsToOip(raw)).toEqual(all);
  });

  it("decodes raw contents and bytes_contents as views of the input buffer (no copy)", () => {
    const big = new Uint8Array(4096).map((_, i) => i & 0xff);
    const bytes = encodeModelInferRequest({
      model_name: "m",
      inputs: [
        { name: "a", datatype: "UINT8", shape: [4096] },
        { name: "b", datatype: "BYTES", shape: [1], contents: { bytes_contents: [big.subarray(0, 100)] } },
      ],
      raw_input_contents: [big],
    });
    // A record value inside a larger buffer, as a Kafka client hands it over.
    const pool = new Uint8Array(bytes.length + 64);
    pool.set(bytes, 32);
    const value = pool.subarray(32, 32 + bytes.length);
    const decoded = decodeModelInferRequest(value);
    const raw = decoded.raw_input_contents![0]!;
    expect(raw.buffer).toBe(pool.buffer);
    expect(raw).toEqual(big);
    expect(raw.byteOffset).toBeGreaterThan(32);
    const item = decoded.inputs[1]!.contents!.bytes_contents![0]!;
    expect(item.buffer).toBe(pool.buffer);
    pool[raw.byteOffset] = 99;
    expect(raw[0]).toBe(99);
  });

  it("refuses tensors that do not fit their shape, datatype or raw entries, naming the tensor", () => {
    const input = { name: "x", datatype: "FP32", shape: [2, 2] };
    const cases: Array<[ModelInferRequest, RegExp]> = [
      [
        { model_name: "m", inputs: [{ ...input, contents: { fp32_contents: Float32Array.of(1) } }] },
        /input "x": fp32_contents has 1 elements but the shape needs 4/,
      ],
      [
        { model_name: "m", inputs: [input], raw_input_contents: [new Uint8Array(16), new Uint8Array(4)] },
        /raw_input_contents has 2 entries but there are 1 inputs/,
      ],
      [
        { model_name: "m", inputs: [input], raw_input_contents: [new Uint8Array(12)] },
        /input "x": binary data is 12 bytes/,
      ],
      [
        { model_name: "m", inputs: [{ ...input, datatype: "FP17" }] },
        /input "x": datatype "FP17" is not an OIP datatype/,
      ],
      [
        { model_name: "m", inputs: [{ ...input, datatype: "FP16" }] },
        /input "x": FP16 data must be sent in raw_input_contents/,
      ],
      [
        { model_name: "m", inputs: [{ ...input, shape: [-1, 4] }] },
        /input "x": shape \[-1,4\] must hold non-negative integers/,
      ],
      [{ model_name: "m", inputs: [{ ...input, name: "" }] }, /inputs\[0\]: name is empty/],
    ];
    for (const [req, message] of cases) {
      const decoded = decodeModelInferRequest(encodeModelInferRequest(req));
      expect(() => requestInputsToOip(decoded)).toThrow(message);
      expect(codeOf(() => requestInputsToOip(decoded))).toBe("bad_request");
    }
  });
});

describe("OIP protobuf codec: messages", () => {
  const params = {
    flag: { kind: "bool", value: true },
    off: { kind: "bool", value: false },
    small: { kind: "int64", value: -(2n ** 63n) },
    big: { kind: "uint64", value: 2n ** 64n - 1n },
    zero: { kind: "int64", value: 0n },
    text: { kind: "string", value: "content_type=np ✓" },
    empty: { kind: "string", value: "" },
    ratio: { kind: "double", value: -0.125 },
  } as const;
  const request: ModelInferRequest = {
    model_name: "iris",
    model_version: "3",
    id: "req-7f3a",
    parameters: { ...params },
    inputs: [
      {
        name: "predict",
        datatype: "FP32",
        shape: [1, 4],
        parameters: { content_type: { kind: "string", value: "np" }, n: { kind: "uint64", value: 7n } },
        contents: { fp32_contents: Float32Array.of(5.1, 3.5, 1.4, 0.2) },
      },
    ],
    outputs: [{ name: "label", parameters: { binary_data: { kind: "bool", value: true } } }, { name: "probabilities" }],
  };
  const response: ModelInferResponse = {
    model_name: "iris",
    model_version: "3",
    id: "req-7f3a",
    parameters: { ...params },
    outputs: [
      {
        name: "label",
        datatype: "INT64",
        shape: [1],
        parameters: { scale: { kind: "double", value: 2.5 }, count: { kind: "int64", value: -3n } },
        contents: { int64_contents: BigInt64Array.of(2n) },
      },
    ],
    raw_output_contents: [Uint8Array.of(1, 2, 3)],
  };

  it("round-trips ids, versions, requested outputs and parameters of every kind on every level", () => {
    expect(decodeModelInferRequest(encodeModelInferRequest(request))).toEqual(request);
    expect(decodeModelInferResponse(encodeModelInferResponse(response))).toEqual(response);
  });

  it("writes what protobufjs reads, and reads what protobufjs writes", () => {
    expect(pbDecodeRequest(encodeModelInferRequest(request))).toEqual(request);
    expect(pbDecodeResponse(encodeModelInferResponse(response))).toEqual(response);
    expect(decodeModelInferRequest(pbEncodeRequest(request))).toEqual(request);
    expect(decodeModelInferResponse(pbEncodeResponse(response))).toEqual(response);
  });

  it("encodes and decodes empty messages", () => {
    expect(encodeModelInferRequest({ model_name: "", inputs: [] })).toHaveLength(0);
    expect(encodeModelInferResponse({ model_name: "", outputs: [] })).toHaveLength(0);
    expect(decodeModelInferRequest(new Uint8Array(0))).toEqual({ model_name: "", inputs: [] });
    expect(decodeModelInferResponse(new Uint8Array(0))).toEqual({ model_name: "", outputs: [] });
    const bare = { model_name: "m", inputs: [{ name: "", datatype: "", shape: [] }] };
    expect(decodeModelInferRequest(encodeModelInferRequest(bare))).toEqual(bare);
  });

  it("round-trips any request and response, byte for byte as protobufjs encodes them (property)", () => {
    fc.assert(
      fc.property(requestArb, (m) => {
        const ours = encodeModelInferRequest(m);
        expect(decodeModelInferRequest(ours)).toEqual(m);
        expect(pbDecodeRequest(ours)).toEqual(m);
        const theirs = pbEncodeRequest(m);
        expect(decodeModelInferRequest(theirs)).toEqual(m);
        expect(ours).toEqual(theirs);
      }),
      { seed: SEED, numRuns: 150 },
    );
    fc.assert(
      fc.property(responseArb, (m) => {
        const ours = encodeModelInferResponse(m);
        expect(decodeModelInferResponse(ours)).toEqual(m);
        expect(pbDecodeResponse(ours)).toEqual(m);
        expect(decodeModelInferResponse(pbEncodeResponse(m))).toEqual(m);
      }),
      { seed: SEED, numRuns: 150 },
    );
  }, 60_000);

  it("writes every byte of a buffer from the allocate option, so one that is not zero-filled is fine (property)", () => {
    const dirty = (size: number) => new Uint8Array(size).fill(0xaa);
    fc.assert(
      fc.property(requestArb, responseArb, (req, res) => {
        expect(encodeModelInferRequest(req, { allocate: dirty })).toEqual(encodeModelInferRequest(req));
        expect(encodeModelInferResponse(res, { allocate: dirty })).toEqual(encodeModelInferResponse(res));
      }),
      { seed: SEED, numRuns: 100 },
    );
  });

  it("keeps every earlier result intact while pooled buffers fill up and roll over", () => {
    // Sizes around the pooling limits: tiny, just under and over 2 KiB, and larger than a slab.
    const lengths = [1, 3, 500, 511, 513, 3000];
    const messages = Array.from({ length: 600 }, (_, i) => {
      const n = lengths[i % lengths.length]!;
      return {
        model_name: `m${i}`,
        inputs: [
          {
            name: "x",
            datatype: "FP32",
            shape: [n],
            contents: { fp32_contents: Float32Array.from({ length: n }, (_, k) => i * 10_000 + k) },
          },
          { name: "y", datatype: "INT64", shape: [2], contents: { int64_contents: BigInt64Array.of(BigInt(i), -1n) } },
        ],
      } satisfies ModelInferRequest;
    });
    const encoded = messages.map((m) => encodeModelInferRequest(m));
    const decoded = encoded.map((b) => decodeModelInferRequest(b));
    messages.forEach((m, i) => {
      expect(decoded[i], `message ${i}`).toEqual(m);
      expect(pbDecodeRequest(encoded[i]!), `message ${i}`).toEqual(m);
    });
  });

  it("accepts unpacked repeated fields, and merges packed and unpacked runs in order", () => {
    const w = protobuf.Writer.create();
    w.uint32((3 << 3) | 0).int64(2); // shape, unpacked
    w.uint32((3 << 3) | 2)
      .fork()
      .int64(3)
      .ldelim(); // shape, packed
    const contents = protobuf.Writer.create();
    contents.uint32((6 << 3) | 5).float(1.5); // fp32, unpacked
    contents
      .uint32((6 << 3) | 2)
      .fork()
      .float(2.5)
      .float(3.5)
      .ldelim(); // fp32, packed
    contents.uint32((6 << 3) | 5).float(4.5);
    contents.uint32((2 << 3) | 0).int32(-7); // int32, unpacked (10-byte varint)
    contents.uint32((3 << 3) | 0).int64("-9007199254740993"); // int64 beyond 2^53
    contents.uint32((1 << 3) | 0).bool(true);
    contents.uint32((7 << 3) | 1).double(0.5);
    contents.uint32((4 << 3) | 0).uint32(4294967295);
    contents.uint32((5 << 3) | 0).uint64("18446744073709551615");
    w.uint32((5 << 3) | 2).bytes(contents.finish());
    const outer = protobuf.Writer.create();
    outer.uint32((5 << 3) | 2).bytes(w.finish());
    const decoded = decodeModelInferRequest(outer.finish());
    expect(decoded.inputs[0]).toEqual({
      name: "",
      datatype: "",
      shape: [2, 3],
      contents: {
        fp32_contents: Float32Array.of(1.5, 2.5, 3.5, 4.5),
        int_contents: Int32Array.of(-7),
        int64_contents: BigInt64Array.of(-9007199254740993n),
        bool_contents: Uint8Array.of(1),
        fp64_contents: Float64Array.of(0.5),
        uint_contents: Uint32Array.of(4294967295),
        uint64_contents: BigUint64Array.of(2n ** 64n - 1n),
      },
    });
  });

  it("skips unknown fields of every wire type, at every level", () => {
    const unknown = () => {
      const w = protobuf.Writer.create();
      w.uint32((90 << 3) | 0).uint64("18446744073709551615");
      w.uint32((91 << 3) | 1).fixed64(1);
      w.uint32((92 << 3) | 2).string("future");
      w.uint32((93 << 3) | 5).fixed32(1);
      w.uint32((94 << 3) | 3)
        .uint32((95 << 3) | 0)
        .uint32(1)
        .uint32((94 << 3) | 4); // a group
      return w.finish();
    };
    const withUnknown = (bytes: Uint8Array) => Uint8Array.from([...unknown(), ...bytes, ...unknown()]);
    /** A length-delimited field: tag, varint length, bytes. */
    const field = (n: number, bytes: Uint8Array) =>
      protobuf.Writer.create()
        .uint32((n << 3) | 2)
        .bytes(bytes)
        .finish();
    const cat = (...parts: Uint8Array[]) => Uint8Array.from(parts.flatMap((p) => [...p]));
    const contents = withUnknown(Uint8Array.of((6 << 3) | 5, 0, 0, 0xc0, 0x3f)); // fp32 1.5
    const param = withUnknown(Uint8Array.of((1 << 3) | 0, 1)); // bool_param true
    const entry = withUnknown(cat(field(1, utf8.encode("k")), field(2, param)));
    const tensor = withUnknown(cat(field(1, utf8.encode("x")), field(4, entry), field(5, contents)));
    const msg = withUnknown(cat(field(1, utf8.encode("m")), field(5, tensor)));
    expect(decodeModelInferRequest(msg)).toEqual({
      model_name: "m",
      inputs: [
        {
          name: "x",
          datatype: "",
          shape: [],
          parameters: { k: { kind: "bool", value: true } },
          contents: { fp32_contents: Float32Array.of(1.5) },
        },
      ],
    });
  });
});

describe("OIP protobuf codec: malformed input", () => {
  const cases: Array<[string, number[], RegExp]> = [
    ["a truncated varint", [(9 << 3) | 0, 0x80], /truncated varint/],
    ["a varint longer than 10 bytes", [(9 << 3) | 0, ...Array(10).fill(0xff), 1], /varint longer than 10 bytes/],
    ["a length past the end", [(1 << 3) | 2, 5, 0x61], /length 5 runs past the end of the data/],
    ["a known field with the wrong wire type", [(1 << 3) | 0, 1], /field 1 \(model_name\) has wire type 0, expected 2/],
    ["field number 0", [0, 1], /field number 0/],
    ["an invalid wire type", [(9 << 3) | 7], /field 9 has invalid wire type 7/],
    ["an unclosed group", [(9 << 3) | 3], /group 9 is not closed/],
    ["a mismatched end of group", [(9 << 3) | 3, (8 << 3) | 4], /end of group 8 does not match/],
    ["a string that is not UTF-8", [(3 << 3) | 2, 2, 0xc3, 0x28], /id is not valid UTF-8/],
    ["a truncated fixed64 unknown field", [(9 << 3) | 1, 1, 2], /truncated fixed64 field 9/],
    ["a tensor's length past its parent", [(5 << 3) | 2, 2, (1 << 3) | 2, 4], /runs past the end/],
    [
      "packed fp32 not a multiple of 4",
      [(5 << 3) | 2, 5, (5 << 3) | 2, 3, (6 << 3) | 2, 1, 0],
      /packed field 6 is 1 bytes, not a multiple of 4/,
    ],
    [
      "a packed varint cut at the end",
      [(5 << 3) | 2, 5, (5 << 3) | 2, 3, (2 << 3) | 2, 1, 0x80],
      /truncated varint in packed field/,
    ],
    [
      "a shape dimension beyond 2^53",
      [(5 << 3) | 2, 10, (3 << 3) | 2, 8, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10],
      /shape dimension is outside the safe integer range/,
    ],
    [
      "a double parameter with a varint",
      [(4 << 3) | 2, 6, (1 << 3) | 2, 0, (2 << 3) | 2, 2, (4 << 3) | 0, 1],
      /field 4 \(double_param\) has wire type 0, expected 1/,
    ],
  ];

  it.each(cases)("refuses %s with bad_request", (_what, bytes, message) => {
    const buf = Uint8Array.from(bytes);
    expect(() => decodeModelInferRequest(buf)).toThrow(message);
    expect(codeOf(() => decodeModelInferRequest(buf))).toBe("bad_request");
  });

  const decodeEither = (buf: Uint8Array) => {
    for (const decode of [decodeModelInferRequest, decodeModelInferResponse]) {
      try {
        decode(buf);
      } catch (err) {
        if (!hasCode(err, "bad_request")) throw err;
      }
    }
  };

  it("returns or throws bad_request for any bytes, never anything else (property)", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), decodeEither), { seed: SEED, numRuns: 3000 });
  });

  it("returns or throws bad_request for truncated or corrupted valid messages (property)", () => {
    const damaged = requestArb.chain((m) => {
      const bytes = encodeModelInferRequest(m);
      return fc.oneof(
        fc.nat({ max: bytes.length }).map((n) => bytes.slice(0, n)),
        fc.tuple(fc.nat({ max: Math.max(0, bytes.length - 1) }), fc.integer({ min: 0, max: 255 })).map(([i, b]) => {
          const copy = bytes.slice();
          if (copy.length > 0) copy[i] = b;
          return copy;
        }),
      );
    });
    fc.assert(fc.property(damaged, decodeEither), { seed: SEED, numRuns: 1000 });
  });
});

describe("OIP protobuf codec: parameters on the REST side", () => {
  it("maps parameters to and from OipParameters", () => {
    const wire = parametersFromOip({ a: true, b: "s", c: 3, d: 0.5 });
    expect(wire).toEqual({
      a: { kind: "bool", value: true },
      b: { kind: "string", value: "s" },
      c: { kind: "int64", value: 3n },
      d: { kind: "double", value: 0.5 },
    });
    expect(parametersToOip(wire)).toEqual({ a: true, b: "s", c: 3, d: 0.5 });
    expect(parametersToOip({ u: { kind: "uint64", value: 9n } })).toEqual({ u: 9 });
    expect(parametersToOip({})).toBeUndefined();
    expect(parametersFromOip({})).toBeUndefined();
  });
});
