import { randomUUID } from "node:crypto";
import { hasCode, type MessageBus } from "@tern/core";
import { createKafkaBus, readTopicTails } from "@tern/kafka";
import { afterEach, describe, expect, inject, it } from "vitest";
import { testSettings } from "./test-settings.js";

// readTopicTails (what `tern pipeline inspect` reads with) on the real broker: the last N records of each partition as
// they were when the call began, in order, with keys, headers and values; a missing topic named.

const brokers = inject("kafkaBrokers");
const encoder = new TextEncoder();
const text = (value: Uint8Array) => new TextDecoder().decode(value);

describe("readTopicTails", () => {
  let bus: MessageBus | undefined;
  afterEach(async () => {
    await bus?.close();
    bus = undefined;
  });

  async function topicWith(counts: Record<number, number>): Promise<string> {
    bus = createKafkaBus({ brokers, settings: testSettings });
    const topic = `tern-it.tails.${randomUUID().slice(0, 8)}`;
    await bus.admin().ensureTopics([topic], 3);
    const producer = bus.producer();
    await producer.send(
      Object.entries(counts).flatMap(([partition, count]) =>
        Array.from({ length: count }, (_, i) => ({
          topic,
          partition: Number(partition),
          key: `${partition}.m.r${i}`,
          value: encoder.encode(`p${partition}-${i}`),
          headers: { pipeline: "p", n: String(i) },
        })),
      ),
    );
    return topic;
  }

  it("reads the last N of every partition, oldest first, with keys and headers; an empty partition gives none", async () => {
    const topic = await topicWith({ 0: 5, 1: 2 });
    const { records, unfinished } = await readTopicTails(brokers, { topics: [topic], last: 3, timeoutMs: 30_000 });
    expect(unfinished).toEqual([]);
    expect(records.map((r) => [r.partition, r.offset, r.key, text(r.value), r.headers.n])).toEqual([
      [0, "2", "0.m.r2", "p0-2", "2"],
      [0, "3", "0.m.r3", "p0-3", "3"],
      [0, "4", "0.m.r4", "p0-4", "4"],
      [1, "0", "1.m.r0", "p1-0", "0"],
      [1, "1", "1.m.r1", "p1-1", "1"],
    ]);
    expect(records.every((r) => r.topic === topic && r.headers.pipeline === "p")).toBe(true);
  });

  it("names the topics that do not exist", async () => {
    const topic = await topicWith({ 0: 1 });
    const missing = `tern-it.tails.missing-${randomUUID().slice(0, 8)}`;
    const err = await readTopicTails(brokers, { topics: [topic, missing], last: 1, timeoutMs: 30_000 }).catch(
      (e: unknown) => e,
    );
    expect(hasCode(err, "not_found")).toBe(true);
    expect((err as Error).message).toContain(`no such topic: ${missing}`);
  });
});
