import { hasCode, TernError } from "@tern/core";
import { describe, expect, it } from "vitest";
import { fromKafkaError, withDeadline } from "../../src/index.js";

/** Errors shaped as kafkajs 2.2.4 builds them (src/errors.js): name, message, retriable, type/code, cause. */
function kafkaError(fields: {
  name: string;
  message: string;
  retriable: boolean;
  type?: string;
  code?: unknown;
  cause?: unknown;
}) {
  return Object.assign(new Error(fields.message), fields);
}

describe("kafka errors", () => {
  it("maps an unknown topic to not_found, and never lets the client's numeric code through", () => {
    const err = fromKafkaError(
      kafkaError({
        name: "KafkaJSProtocolError",
        message: "This server does not host this topic-partition",
        retriable: true,
        type: "UNKNOWN_TOPIC_OR_PARTITION",
        code: 3,
      }),
      "send to t",
    );
    expect(err.code).toBe("not_found");
    expect(err.retriable).toBe(false);
    expect(err.message).toBe("send to t: This server does not host this topic-partition");
  });

  it("reads through exhausted retries to the cause: a refused connection is unavailable and retriable", () => {
    const refused = kafkaError({
      name: "KafkaJSConnectionError",
      message: "Connection error: connect ECONNREFUSED 127.0.0.1:1",
      retriable: true,
      code: "ECONNREFUSED",
    });
    const exhausted = kafkaError({
      name: "KafkaJSNumberOfRetriesExceeded",
      message: refused.message,
      retriable: false,
      cause: refused,
    });
    const err = fromKafkaError(exhausted, "probe Kafka");
    expect(hasCode(err, "unavailable")).toBe(true);
    expect(err.retriable).toBe(true);
    expect(err.message).toContain("ECONNREFUSED");
  });

  it("maps a request timeout to timeout", () => {
    const err = fromKafkaError(
      kafkaError({ name: "KafkaJSRequestTimeoutError", message: "Request Fetch timed out", retriable: true }),
      "fetch",
    );
    expect(err.code).toBe("timeout");
  });

  it("passes a TernError through unchanged", () => {
    const original = new TernError("kafka.partition_mismatch", "topic t has 2 partitions");
    expect(fromKafkaError(original, "ensure")).toBe(original);
  });

  it("rejects with a timeout naming the call when the work outlives its deadline, and resolves otherwise", async () => {
    const never = new Promise<never>(() => undefined);
    const err = await withDeadline(never, 10, "join group g").catch((e: unknown) => e);
    expect(hasCode(err, "timeout")).toBe(true);
    expect((err as Error).message).toBe("join group g: no answer within 10 ms");
    await expect(withDeadline(Promise.resolve(7), 1_000, "x")).resolves.toBe(7);
  });
});
