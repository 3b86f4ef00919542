import { randomUUID } from "node:crypto";
import { type BusMessage, hasCode, type MessageBus } from "@tern/core";
import { waitFor } from "@tern/devstack";
import { type BusLogger, createKafkaBus } from "@tern/kafka";
import { afterEach, describe, expect, inject, it } from "vitest";
import { describeMessageBusContract } from "../../packages/core/tests/contract/message-bus-contract.js";
import { testSettings } from "./test-settings.js";

const brokers = inject("kafkaBrokers");

describeMessageBusContract("Kafka (kafkajs)", {
  createBus: () => createKafkaBus({ brokers, settings: testSettings }),
  timeoutMs: 30_000,
});

describe("Kafka bus specifics", () => {
  const buses: MessageBus[] = [];
  afterEach(async () => {
    await Promise.all(buses.splice(0).map((bus) => bus.close()));
  });

  function bus(logger?: BusLogger): MessageBus {
    const b = createKafkaBus({ brokers, settings: testSettings, ...(logger ? { logger } : {}) });
    buses.push(b);
    return b;
  }

  it("rejects start() at its deadline with a timeout and leaves the member out of the group", async () => {
    const b = bus();
    const topic = `tern-it.deadline.${randomUUID().slice(0, 8)}`;
    await b.admin().ensureTopics([topic], 4);
    const consumer = b.consumer({
      groupId: `tern-it.deadline.${randomUUID()}`,
      topics: [topic],
      onBatch: async () => undefined,
    });
    const err = await consumer.start({ timeoutMs: 1 }).catch((e: unknown) => e);
    expect(hasCode(err, "timeout")).toBe(true);
    expect(consumer.assignment()).toEqual({});
    await consumer.stop();
  });

  it("sends the client's log lines to the injected logger, with their namespace", async () => {
    const lines: Array<{ level: string; fields: Record<string, unknown>; message: string }> = [];
    const record =
      (level: string) =>
      (fields: object, message: string): void => {
        lines.push({ level, fields: fields as Record<string, unknown>, message });
      };
    const b = bus({ debug: record("debug"), info: record("info"), warn: record("warn"), error: record("error") });
    const topic = `tern-it.logger.${randomUUID().slice(0, 8)}`;
    await b.admin().ensureTopics([topic], 1);
    const consumer = b.consumer({
      groupId: `tern-it.logger.${randomUUID()}`,
      topics: [topic],
      onBatch: async () => undefined,
    });
    await consumer.start({ timeoutMs: 30_000 });
    await consumer.stop();
    const joined = lines.find((l) => l.message === "Consumer has joined the group");
    expect(joined).toMatchObject({ level: "debug", fields: { component: "kafkajs", namespace: "ConsumerGroup" } });
  });

  it("refuses to send once the producer is closed", async () => {
    const producer = bus().producer();
    await producer.close();
    const err = await producer
      .send([{ topic: "any", partition: 0, key: "k", value: new Uint8Array() }])
      .catch((e: unknown) => e);
    expect(hasCode(err, "unavailable")).toBe(true);
  });
  it("a fresh producer's first burst of concurrent sends all succeed (one look-up of the topic, not one per send)", async () => {
    // A gateway's first 1,000 concurrent requests to a pipeline are 1,000 sends of a topic the producer has not seen:
    // each used to look its partition count up on its own, and kafkajs's concurrent metadata refreshes then failed
    // some sends with "Cannot read properties of null (reading 'topicMetadata')".
    const admin = bus();
    const topic = `tern-it.burst.${randomUUID().slice(0, 8)}`;
    await admin.admin().ensureTopics([topic], 4);
    const producer = bus().producer();
    const results = await Promise.allSettled(
      Array.from({ length: 1_000 }, (_, i) =>
        producer.send([{ topic, partition: i % 4, key: `${i % 4}.m.r${i}`, value: new Uint8Array([i % 256]) }]),
      ),
    );
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
    expect(failed.length, String(failed[0]?.reason)).toBe(0);
  });

  it("sends asked for while one is in flight all arrive, and one caller's missing topic fails that caller alone", async () => {
    // The producer has one request in flight and puts the sends asked for meanwhile together in the next.
    const b = bus();
    const topic = `tern-it.coalesce.${randomUUID().slice(0, 8)}`;
    await b.admin().ensureTopics([topic], 4);
    const producer = b.producer();
    await producer.send([{ topic, partition: 0, key: "0.m.warm", value: new Uint8Array([0]) }]);
    const sends = Array.from({ length: 200 }, (_, i) =>
      producer.send([{ topic, partition: i % 4, key: `${i % 4}.m.r${i}`, value: new Uint8Array([i % 256]) }]),
    );
    const missing = producer.send([{ topic: `${topic}.missing`, partition: 0, key: "0.m.x", value: new Uint8Array() }]);
    const [results, missed] = await Promise.all([Promise.allSettled(sends), missing.catch((e: unknown) => e)]);
    expect(results.filter((r) => r.status === "rejected")).toEqual([]);
    expect(hasCode(missed, "not_found")).toBe(true);
    const keys = new Set<string>();
    const consumer = b.consumer({
      groupId: `tern-it.coalesce.${randomUUID()}`,
      topics: [topic],
      fromBeginning: true,
      onBatch: async (messages: BusMessage[]) => {
        for (const m of messages) keys.add(m.key);
      },
    });
    await consumer.start({ timeoutMs: 30_000 });
    await waitFor(async () => keys.size === 201, { timeoutMs: 20_000, intervalMs: 50, description: "all 201 records" });
    for (let i = 0; i < 200; i++) expect(keys.has(`${i % 4}.m.r${i}`)).toBe(true);
    await consumer.stop();
  });

  it.each(["after-handler", "manual"] as const)(
    "%s: a member that stops commits what it finished, though the commit interval has not passed",
    async (commit) => {
      // Commits gather for commitIntervalMs (here far longer than the test); a stop must not lose them.
      const b = createKafkaBus({
        brokers,
        settings: { ...testSettings, consumer: { ...testSettings.consumer, commitIntervalMs: 600_000 } },
      });
      buses.push(b);
      const topic = `tern-it.stopcommit.${randomUUID().slice(0, 8)}`;
      await b.admin().ensureTopics([topic], 1);
      const groupId = `tern-it.stopcommit.${randomUUID()}`;
      const producer = b.producer();
      await producer.send(
        Array.from({ length: 5 }, (_, i) => ({ topic, partition: 0, key: `0.m.a${i}`, value: new Uint8Array([i]) })),
      );
      const first: string[] = [];
      const one = b.consumer({
        groupId,
        topics: [topic],
        fromBeginning: true,
        commit,
        onBatch: async (messages, context) => {
          for (const m of messages) {
            first.push(m.key);
            context.commit(m.topic, m.partition, m.offset);
          }
        },
      });
      await one.start({ timeoutMs: 30_000 });
      await waitFor(async () => first.length === 5, { timeoutMs: 20_000, intervalMs: 50, description: "5 records" });
      await one.stop();
      await producer.send([{ topic, partition: 0, key: "0.m.b", value: new Uint8Array([9]) }]);
      const second: string[] = [];
      const two = b.consumer({
        groupId,
        topics: [topic],
        fromBeginning: true,
        commit,
        onBatch: async (messages) => {
          for (const m of messages) second.push(m.key);
        },
      });
      await two.start({ timeoutMs: 30_000 });
      await waitFor(async () => second.includes("0.m.b"), { timeoutMs: 20_000, intervalMs: 50, description: "b" });
      expect(second).toEqual(["0.m.b"]);
      await two.stop();
    },
  );
});
