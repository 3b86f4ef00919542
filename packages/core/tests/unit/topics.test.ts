import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { murmur3 } from "../../src/hash-ring.js";
import {
  createTopicNames,
  DEFAULT_TOPIC_NAMESPACE,
  DEFAULT_TOPIC_PREFIX,
  formatRecordKey,
  MAX_TOPIC_NAME_LENGTH,
  PIPELINE_HEADER,
  parseRecordKey,
  parseTopic,
  partitionForRequest,
  REQUEST_ID_HEADER,
  SELDON_MODEL_HEADER,
  SELDON_ROUTE_HEADER,
} from "../../src/topics.js";

const SEED = 20240607;
const segmentChar = fc.constantFrom(..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-");
const segment = fc.string({ unit: segmentChar, minLength: 1, maxLength: 30 });

function thrown(fn: () => unknown): { code?: unknown; message?: string } | undefined {
  try {
    fn();
  } catch (err) {
    return err as { code?: unknown; message?: string };
  }
  return undefined;
}

describe("createTopicNames", () => {
  it("names topics like Seldon Core v2 with the default prefix and namespace", () => {
    const topics = createTopicNames();
    expect(topics.prefix).toBe(DEFAULT_TOPIC_PREFIX);
    expect(topics.namespace).toBe(DEFAULT_TOPIC_NAMESPACE);
    expect(topics.modelInputs("iris")).toBe("seldon.default.model.iris.inputs");
    expect(topics.modelOutputs("iris")).toBe("seldon.default.model.iris.outputs");
    expect(topics.pipelineInputs("tfsimples")).toBe("seldon.default.pipeline.tfsimples.inputs");
    expect(topics.pipelineOutputs("tfsimples")).toBe("seldon.default.pipeline.tfsimples.outputs");
    expect(topics.errors()).toBe("seldon.default.errors.errors");
  });

  it("uses the configured prefix and namespace", () => {
    const topics = createTopicNames({ prefix: "tern", namespace: "seldon-mesh" });
    expect(topics.modelInputs("m_1")).toBe("tern.seldon-mesh.model.m_1.inputs");
    expect(topics.errors()).toBe("tern.seldon-mesh.errors.errors");
  });

  it("rejects a prefix or namespace that is empty or holds a dot or an illegal character with config.invalid", () => {
    for (const prefix of ["", "a.b", "sel don", "séldon", "a/b"]) {
      const err = thrown(() => createTopicNames({ prefix }));
      expect(err?.code, prefix).toBe("config.invalid");
      expect(err?.message).toMatch(/topic prefix/);
    }
    const err = thrown(() => createTopicNames({ namespace: "ns.x" }));
    expect(err?.code).toBe("config.invalid");
    expect(err?.message).toMatch(/topic namespace/);
  });

  it("rejects model and pipeline names Kafka or the key format cannot carry, naming the kind", () => {
    const topics = createTopicNames();
    for (const name of ["", "a.b", "a b", "a/b", "ü", "a:b"]) {
      const model = thrown(() => topics.modelInputs(name));
      expect(model?.code, name).toBe("bad_request");
      expect(model?.message).toMatch(/model name/);
      const pipeline = thrown(() => topics.pipelineOutputs(name));
      expect(pipeline?.code, name).toBe("bad_request");
      expect(pipeline?.message).toMatch(/pipeline name/);
    }
  });

  it("rejects a topic name longer than Kafka's 249 characters and accepts one exactly that long", () => {
    const topics = createTopicNames();
    const fixed = "seldon.default.model..outputs".length;
    const longest = "m".repeat(MAX_TOPIC_NAME_LENGTH - fixed);
    expect(topics.modelOutputs(longest)).toHaveLength(MAX_TOPIC_NAME_LENGTH);
    const err = thrown(() => topics.modelOutputs(`${longest}m`));
    expect(err?.code).toBe("bad_request");
    expect(err?.message).toMatch(/249/);
    // "inputs" is one character shorter, so the same name still fits there.
    expect(topics.modelInputs(`${longest}m`)).toHaveLength(MAX_TOPIC_NAME_LENGTH);
  });

  it("parses only its own prefix and namespace", () => {
    const topics = createTopicNames({ namespace: "prod" });
    expect(topics.parse("seldon.prod.model.iris.inputs")).toEqual({
      prefix: "seldon",
      namespace: "prod",
      kind: "model",
      name: "iris",
      direction: "inputs",
    });
    expect(topics.parse("seldon.default.model.iris.inputs")).toBeNull();
    expect(topics.parse("other.prod.model.iris.inputs")).toBeNull();
    expect(topics.parse("seldon.prod.errors.errors")).toEqual({ prefix: "seldon", namespace: "prod", kind: "errors" });
  });

  it("round-trips every generated topic through parse", () => {
    fc.assert(
      fc.property(segment, segment, segment, (prefix, namespace, name) => {
        const topics = createTopicNames({ prefix, namespace });
        const cases = [
          [topics.modelInputs(name), "model", "inputs"],
          [topics.modelOutputs(name), "model", "outputs"],
          [topics.pipelineInputs(name), "pipeline", "inputs"],
          [topics.pipelineOutputs(name), "pipeline", "outputs"],
        ] as const;
        for (const [topic, kind, direction] of cases) {
          expect(parseTopic(topic)).toEqual({ prefix, namespace, kind, name, direction });
          expect(topics.parse(topic)).toEqual({ prefix, namespace, kind, name, direction });
        }
        expect(parseTopic(topics.errors())).toEqual({ prefix, namespace, kind: "errors" });
      }),
      { seed: SEED, numRuns: 200 },
    );
  });
});

describe("parseTopic", () => {
  it("returns null for names that are not Tern or Seldon topics", () => {
    const foreign = [
      "",
      "iris",
      "__consumer_offsets",
      "seldon.default.model.iris",
      "seldon.default.model.iris.input",
      "seldon.default.model.iris.inputs.extra",
      "seldon.default.models.iris.inputs",
      "seldon.default.errors.errors.x",
      "seldon.default.errors.outputs",
      "seldon.default.errors",
      "seldon..model.iris.inputs",
      "seldon.default.model..inputs",
      ".default.model.iris.inputs",
      "seldon.default.model.ir is.inputs",
      "seldon.default.model.iris/x.inputs",
      `seldon.default.model.${"m".repeat(250)}.inputs`,
    ];
    for (const topic of foreign) expect(parseTopic(topic), topic).toBeNull();
    expect(parseTopic(42 as unknown as string)).toBeNull();
  });

  it("never throws on arbitrary input", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (s) => {
        const parsed = parseTopic(s);
        if (parsed !== null) expect(["model", "pipeline", "errors"]).toContain(parsed.kind);
      }),
      { seed: SEED, numRuns: 500 },
    );
  });
});

describe("record keys", () => {
  it("formats <partition>.<resource>.<requestId>", () => {
    expect(formatRecordKey({ partition: 3, resource: "tfsimples", requestId: "abc" })).toBe("3.tfsimples.abc");
    expect(formatRecordKey({ partition: 0, resource: "iris", requestId: "r" })).toBe("0.iris.r");
  });

  it("keeps dots in the request id: it splits on the first two dots only", () => {
    const key = formatRecordKey({ partition: 12, resource: "p-1", requestId: "a.b.c" });
    expect(key).toBe("12.p-1.a.b.c");
    expect(parseRecordKey(key)).toEqual({ partition: 12, resource: "p-1", requestId: "a.b.c" });
    expect(parseRecordKey("0.m..")).toEqual({ partition: 0, resource: "m", requestId: "." });
  });

  it("round-trips any partition, resource name and request id", () => {
    fc.assert(
      fc.property(fc.nat(), segment, fc.string({ minLength: 1 }), (partition, resource, requestId) => {
        const key = formatRecordKey({ partition, resource, requestId });
        expect(parseRecordKey(key)).toEqual({ partition, resource, requestId });
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  it("formats back every key it parses", () => {
    // A small alphabet heavy in digits and dots so that many generated strings are (nearly) keys.
    const keyish = fc.string({ unit: fc.constantFrom("0", "1", "7", ".", ".", "a", "-", " ", "é"), maxLength: 20 });
    fc.assert(
      fc.property(keyish, (s) => {
        const parsed = parseRecordKey(s);
        if (parsed !== null) expect(formatRecordKey(parsed)).toBe(s);
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  it("rejects bad parts with bad_request naming the field", () => {
    const cases: [Parameters<typeof formatRecordKey>[0], RegExp][] = [
      [{ partition: -1, resource: "m", requestId: "r" }, /partition/],
      [{ partition: 1.5, resource: "m", requestId: "r" }, /partition/],
      [{ partition: Number.NaN, resource: "m", requestId: "r" }, /partition/],
      [{ partition: 0, resource: "a.b", requestId: "r" }, /resource/],
      [{ partition: 0, resource: "", requestId: "r" }, /resource/],
      [{ partition: 0, resource: "m", requestId: "" }, /requestId/],
    ];
    for (const [key, field] of cases) {
      const err = thrown(() => formatRecordKey(key));
      expect(err?.code, JSON.stringify(key)).toBe("bad_request");
      expect(err?.message).toMatch(field);
    }
  });

  it("returns null for keys of another shape", () => {
    for (const key of [
      "",
      "3",
      "3.m",
      "3.m.",
      ".m.r",
      "x.m.r",
      "-1.m.r",
      "+1.m.r",
      "01.m.r",
      "1e3.m.r",
      "3..r",
      "3.a b.r",
      "99999999999999999999.m.r",
    ]) {
      expect(parseRecordKey(key), key).toBeNull();
    }
    expect(parseRecordKey(undefined as unknown as string)).toBeNull();
  });
});

describe("partitionForRequest", () => {
  it("is the ring's hash of the request id modulo the partition count", () => {
    fc.assert(
      fc.property(fc.string(), fc.integer({ min: 1, max: 1000 }), (requestId, partitions) => {
        const p = partitionForRequest(requestId, partitions);
        expect(Number.isInteger(p) && p >= 0 && p < partitions).toBe(true);
        expect(p).toBe(murmur3(requestId) % partitions);
        expect(partitionForRequest(requestId, partitions)).toBe(p);
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  it("uses partition 0 when there is one partition and spreads ids over many", () => {
    expect(partitionForRequest("anything", 1)).toBe(0);
    const counts = new Array<number>(8).fill(0);
    for (let i = 0; i < 8000; i++) counts[partitionForRequest(`req-${i}`, 8)]! += 1;
    // Fair share is 1000 per partition; a hash this good stays far inside these bounds for a fixed id set.
    for (const count of counts) {
      expect(count).toBeGreaterThan(800);
      expect(count).toBeLessThan(1200);
    }
  });

  it("rejects a partition count that is not a positive integer", () => {
    for (const partitions of [0, -2, 2.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      const err = thrown(() => partitionForRequest("r", partitions));
      expect(err?.code, String(partitions)).toBe("bad_request");
      expect(err?.message).toMatch(/partitions/);
    }
    expect(thrown(() => partitionForRequest(7 as unknown as string, 4))?.code).toBe("bad_request");
  });
});

describe("header names", () => {
  it("are the names Seldon clients send and read", () => {
    expect(PIPELINE_HEADER).toBe("pipeline");
    expect(REQUEST_ID_HEADER).toBe("x-request-id");
    expect(SELDON_MODEL_HEADER).toBe("seldon-model");
    expect(SELDON_ROUTE_HEADER).toBe("x-seldon-route");
  });
});
