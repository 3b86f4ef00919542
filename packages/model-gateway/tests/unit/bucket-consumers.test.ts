import { type BusMessage, createMemoryBus } from "@tern/core";
import { waitFor } from "@tern/devstack";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { createBucketConsumers } from "../../src/bucket-consumers.js";
import type { AnswerRecord } from "../../src/record-processor.js";

describe("bucket consumers", () => {
  it("retries a bucket whose consumer failed to join, instead of leaving its models unserved", async () => {
    const bus = createMemoryBus();
    const producer = bus.producer();
    const handled: BusMessage[] = [];
    const consumers = createBucketConsumers({
      bus,
      producer,
      // Answers nothing: what is under test is which records get handled at all.
      processor: {
        async process(message): Promise<AnswerRecord[]> {
          handled.push(message);
          return [];
        },
      },
      logger: pino({ level: "silent" }),
      startTimeoutMs: 1_000,
      retry: { initialMs: 10, maxMs: 50 },
    });
    // The consumer cannot join: its topic does not exist yet (as when a broker is not ready, or topic creation lags).
    await consumers.apply([
      { bucket: 3, groupId: "g.bucket-3", models: [{ model: "m", inputTopic: "t.in", outputTopic: "t.out" }] },
    ]);
    await waitFor(() => consumers.status()[0]?.state === "failed", { timeoutMs: 5_000, description: "start failed" });

    await bus.admin().ensureTopics(["t.in", "t.out"], 2);
    await waitFor(() => consumers.status()[0]?.state === "running", {
      timeoutMs: 5_000,
      intervalMs: 10,
      description: "the bucket's consumer running after a retry",
    });
    await producer.send([{ topic: "t.in", partition: 1, key: "1.m.r1", value: new Uint8Array([1]), headers: {} }]);
    await waitFor(() => handled.length === 1, { timeoutMs: 5_000, intervalMs: 10, description: "the record handled" });
    expect(handled[0]!.key).toBe("1.m.r1");
    await consumers.stop();
    await bus.close();
  });
});
