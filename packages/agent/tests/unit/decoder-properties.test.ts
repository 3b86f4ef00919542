import {
  decodeTensorData,
  encodeTensorData,
  hasCode,
  OIP_DATATYPES,
  type OipDatatype,
  tensorDataFromJson,
} from "@tern/core";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { decodeRestRequest } from "../../src/inference/rest-codec.js";
import { createTestStack, sampleUri } from "./helpers.js";

// Properties of the OIP decoders: whatever a client sends, the answer is a result or a `bad_request` (REST: 200 or a
// 4xx with an OIP error), never another error, a 500 or a hang. fast-check prints the seed and the smallest failing
// input when one breaks.

const stack = createTestStack({ maxBodyBytes: 256 * 1024 });

beforeAll(async () => {
  for (const m of ["iris", "sum-diff"]) {
    const r = await stack.models.load({ model: m, version: 1, storageUri: sampleUri(m) });
    expect(r.state).toBe("Available");
  }
});

/** Runs `f`; true when it returned or threw a bad_request, otherwise the property fails with what it threw. */
function returnsOrBadRequest(f: () => unknown): boolean {
  try {
    f();
    return true;
  } catch (err) {
    if (hasCode(err, "bad_request")) return true;
    throw err;
  }
}

const datatype = fc.oneof(
  fc.constantFrom<OipDatatype | string>(...OIP_DATATYPES),
  fc.constantFrom("FLOAT", "fp32", "", "INT128"),
);
const dim = fc.oneof(fc.nat(6), fc.integer({ min: -3, max: 3 }), fc.constant(1_000_000_000), fc.double());
const shape = fc.oneof(fc.array(dim, { maxLength: 4 }), fc.jsonValue({ maxDepth: 2 }));
/** Numbers at the edges of every datatype's range, plus anything JSON holds. */
const element = fc.oneof(
  fc.double({ noNaN: true }),
  fc.integer(),
  fc.constantFrom(
    0,
    -1,
    127,
    128,
    255,
    256,
    65504,
    65520,
    2 ** 31,
    2 ** 32,
    2 ** 53,
    2 ** 63,
    2 ** 64,
    -(2 ** 63),
    1e39,
  ),
  fc.boolean(),
  fc.string({ maxLength: 4 }),
  fc.jsonValue({ maxDepth: 2 }),
);
/** Flat or nested data, sometimes nested past the depth limit (`maxDepth` levels at most). */
const dataUpTo = (maxDepth: number) =>
  fc.oneof(
    fc.array(element, { maxLength: 12 }),
    fc.array(fc.array(element, { maxLength: 4 }), { maxLength: 4 }),
    element,
    fc
      .oneof(fc.nat(60), fc.constant(maxDepth))
      .map((depth) => JSON.parse(`${"[".repeat(depth)}1${"]".repeat(depth)}`) as unknown),
  );
/** For the decoders called directly: as deep as a 40 KB body can nest. */
const data = dataUpTo(20_000);
const parameters = fc.oneof(
  fc.constant(undefined),
  fc.record({ binary_data_size: fc.oneof(fc.nat(64), fc.integer(), fc.string()) }, { requiredKeys: [] }),
  fc.dictionary(fc.string({ maxLength: 3 }), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 2 }),
);
const inputWith = (d: fc.Arbitrary<unknown>) =>
  fc.record(
    {
      name: fc.oneof(fc.constantFrom("predict", "a", "b", ""), fc.string({ maxLength: 5 }), fc.integer()),
      datatype,
      shape,
      data: d,
      parameters,
    },
    { requiredKeys: [] },
  );
/** A body shaped like an OIP request, with every field sometimes wrong. */
const oipBodyWith = (d: fc.Arbitrary<unknown>) =>
  fc.record(
    {
      id: fc.oneof(fc.string({ maxLength: 4 }), fc.integer()),
      inputs: fc.oneof(fc.array(inputWith(d), { maxLength: 3 }), fc.jsonValue({ maxDepth: 2 })),
      outputs: fc.oneof(
        fc.array(fc.record({ name: fc.constantFrom("label", "probabilities", "sum", "q") }), { maxLength: 3 }),
        fc.jsonValue({ maxDepth: 1 }),
      ),
      parameters: fc.oneof(fc.constant({ binary_data_output: true }), fc.jsonValue({ maxDepth: 1 })),
    },
    { requiredKeys: ["inputs"] },
  );
const oipBody = oipBodyWith(data);
/** Bodies the test can still JSON.stringify (V8's stringify recurses): nested to 1,000 levels at most. */
const sendableOipBody = oipBodyWith(dataUpTo(1_000));
/** Iris requests that are right apart from their values, so that 200s are part of the sample. */
const irisBody = fc.integer({ min: 1, max: 3 }).chain((rows) =>
  fc.record({
    inputs: fc.tuple(
      fc.record({
        name: fc.constant("predict"),
        datatype: fc.constant("FP32"),
        shape: fc.constant([rows, 4]),
        // Mostly finite float32 values, so that most of these bodies are served; now and then any element.
        data: fc.array(
          fc.oneof(
            { weight: 12, arbitrary: fc.float({ noNaN: true, noDefaultInfinity: true }) },
            { weight: 1, arbitrary: element },
          ),
          { minLength: rows * 4, maxLength: rows * 4 },
        ),
      }),
    ),
  }),
);

// Thousands of generated inputs each: far from the default 5 s when the machine is shared.
describe("OIP decoders (property)", { timeout: 60_000 }, () => {
  it("tensorDataFromJson returns data or throws bad_request for any datatype and JSON data", () => {
    fc.assert(
      fc.property(fc.constantFrom(...OIP_DATATYPES), data, (dt, d) =>
        returnsOrBadRequest(() => tensorDataFromJson("x", dt, d)),
      ),
      { numRuns: 2000 },
    );
  });

  it("decodeTensorData returns data or throws bad_request for any bytes and element count", () => {
    fc.assert(
      fc.property(fc.constantFrom(...OIP_DATATYPES), fc.uint8Array({ maxLength: 64 }), fc.nat(40), (dt, bytes, n) =>
        returnsOrBadRequest(() => decodeTensorData("x", dt, bytes, n)),
      ),
      { numRuns: 2000 },
    );
  });

  it("decodeTensorData reads back what encodeTensorData wrote", () => {
    fc.assert(
      fc.property(fc.array(fc.string({ maxLength: 6 }), { maxLength: 8 }), (items) => {
        const data = items.map((t) => new TextEncoder().encode(t));
        const decoded = decodeTensorData("x", "BYTES", encodeTensorData("BYTES", data), data.length);
        expect(decoded).toEqual(data);
      }),
    );
  });

  it("decodeRestRequest returns a request or throws bad_request for any JSON body and binary part", () => {
    fc.assert(
      fc.property(
        fc.oneof(oipBody, irisBody, fc.jsonValue({ maxDepth: 3 })),
        fc.option(fc.uint8Array({ maxLength: 48 })),
        (body, binary) => returnsOrBadRequest(() => decodeRestRequest(body, binary ?? undefined)),
      ),
      { numRuns: 2000 },
    );
  });
});

/** What the REST app answered: a 200, or a 4xx whose body is an OIP error. */
async function answer(body: Uint8Array | string, headers: Record<string, string>, model: string) {
  const res = await stack.app.request(`/v2/models/${model}/infer`, { method: "POST", headers, body });
  const text = await res.text();
  if (res.status === 200) return 200;
  expect(res.status, text).toBeGreaterThanOrEqual(400);
  expect(res.status, text).toBeLessThan(500);
  expect(typeof (JSON.parse(text) as { error?: unknown }).error, text).toBe("string");
  return res.status;
}

describe("the agent's REST app (property)", { timeout: 60_000 }, () => {
  const model = fc.constantFrom("iris", "sum-diff");

  it("answers any JSON body with 200 or a 4xx and an error message", async () => {
    const statuses = new Set<number>();
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(sendableOipBody, irisBody, irisBody, fc.jsonValue({ maxDepth: 3 })),
        model,
        async (b, m) => {
          statuses.add(await answer(JSON.stringify(b) ?? "", { "content-type": "application/json" }, m));
        },
      ),
      { numRuns: 400 },
    );
    // The sample reached both sides: real predictions and refusals.
    expect(statuses.has(200)).toBe(true);
    expect(statuses.has(400)).toBe(true);
  });

  it("answers any binary-extension body (any header length, any bytes) with 200 or a 4xx", async () => {
    const header = fc.record({
      inputs: fc.array(
        fc.record({
          name: fc.constantFrom("predict", "a", "b"),
          datatype: fc.constantFrom<string>(...OIP_DATATYPES),
          shape: fc.array(fc.nat(4), { maxLength: 3 }),
          parameters: fc.record({ binary_data_size: fc.nat(64) }),
        }),
        { minLength: 1, maxLength: 2 },
      ),
    });
    await fc.assert(
      fc.asyncProperty(
        header,
        fc.uint8Array({ maxLength: 80 }),
        fc.oneof(fc.constant("exact"), fc.nat(300).map(String), fc.string({ maxLength: 4 })),
        model,
        async (h, bytes, length, m) => {
          const json = new TextEncoder().encode(JSON.stringify(h));
          const body = new Uint8Array(json.length + bytes.length);
          body.set(json);
          body.set(bytes, json.length);
          const headerLength = length === "exact" ? String(json.length) : length;
          await answer(
            body,
            { "content-type": "application/octet-stream", "inference-header-content-length": headerLength },
            m,
          );
        },
      ),
      { numRuns: 400 },
    );
  });

  it("answers arbitrary bytes with 200 or a 4xx", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 200 }), model, async (bytes, m) => {
        await answer(bytes, { "content-type": "application/json" }, m);
      }),
      { numRuns: 300 },
    );
  });
});
