import { randomUUID } from "node:crypto";
import { hasCode, type MessageBus } from "@tern/core";
import { createKafkaBus, ensureTopics, probeKafka } from "@tern/kafka";
import { afterEach, describe, expect, inject, it } from "vitest";

const brokers = inject("kafkaBrokers");

function uniqueTopic(label: string): string {
  return `tern-it.${label}.${randomUUID().slice(0, 8)}`;
}

const buses: MessageBus[] = [];
afterEach(async () => {
  await Promise.all(buses.splice(0).map((bus) => bus.close()));
});

function bus(): MessageBus {
  const b = createKafkaBus({ brokers, settings: { adminTimeoutMs: 20_000 } });
  buses.push(b);
  return b;
}

describe("Kafka topic admin", () => {
  it("answers the readiness probe with the broker count", async () => {
    expect(await probeKafka(brokers)).toBe(1);
  });

  it("fails the probe of a port where no broker listens, within its deadline", async () => {
    const err = await probeKafka(["127.0.0.1:1"], { timeoutMs: 3_000 }).catch((e: unknown) => e);
    expect(hasCode(err, "unavailable") || hasCode(err, "timeout")).toBe(true);
  });

  it("creates a topic with 4 partitions, each with a leader", async () => {
    const topic = uniqueTopic("partitions");
    expect(await ensureTopics(brokers, [topic], 4)).toEqual({ created: [topic], existing: [] });
    expect(await bus().admin().describeTopics([topic])).toEqual({ [topic]: 4 });
  });

  it("ensures overlapping sets of new topics concurrently through one admin, as the scheduler does for several resources", async () => {
    // The scheduler ensures each model's and pipeline's topics with the shared errors topic, several at once.
    const admin = bus().admin();
    const shared = uniqueTopic("shared");
    const sets = Array.from({ length: 6 }, (_, i) => [uniqueTopic(`own-${i}`), uniqueTopic(`own-${i}b`), shared]);
    const results = await Promise.allSettled(sets.map((set) => admin.ensureTopics(set, 4)));
    expect(
      results.filter((r) => r.status === "rejected").map((r) => String((r as PromiseRejectedResult).reason)),
    ).toEqual([]);
    const all = [...new Set(sets.flat())];
    expect(await admin.describeTopics(all)).toEqual(Object.fromEntries(all.map((t) => [t, 4])));
  });

  it("leaves an existing topic alone when ensureTopics runs again", async () => {
    const topic = uniqueTopic("idempotent");
    await ensureTopics(brokers, [topic], 4);
    expect(await ensureTopics(brokers, [topic], 4)).toEqual({ created: [], existing: [topic] });
  });

  it("refuses a topic that already exists with another partition count, naming it and both counts", async () => {
    const topic = uniqueTopic("mismatch");
    const other = uniqueTopic("not-created");
    await ensureTopics(brokers, [topic], 2);
    const error = await ensureTopics(brokers, [other, topic], 4).catch((err: unknown) => err);
    expect(hasCode(error, "kafka.partition_mismatch")).toBe(true);
    expect((error as Error).message).toContain(`topic ${topic} has 2 partitions, this installation uses 4`);
    expect(await bus().admin().describeTopics([other])).toEqual({});
  });

  it("does not create a topic implicitly when a producer writes to an unknown one", async () => {
    const b = bus();
    const topic = uniqueTopic("missing");
    const err = await b
      .producer()
      .send([{ topic, partition: 0, key: "k", value: new Uint8Array([1]) }])
      .catch((e: unknown) => e);
    expect(hasCode(err, "not_found")).toBe(true);
    expect(await b.admin().describeTopics([topic])).toEqual({});
  });

  it("deletes topics and waits until they are gone; missing ones are not an error", async () => {
    const admin = bus().admin();
    const topic = uniqueTopic("delete");
    await admin.ensureTopics([topic], 2);
    await admin.deleteTopics([topic, uniqueTopic("never")]);
    expect(await admin.describeTopics([topic])).toEqual({});
  });
});
