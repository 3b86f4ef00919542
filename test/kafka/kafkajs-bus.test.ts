import { randomUUID } from "node:crypto";
import { hasCode, type MessageBus } from "@tern/core";
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
});
