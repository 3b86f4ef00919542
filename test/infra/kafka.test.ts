import { randomUUID } from "node:crypto";
import { hasCode } from "@tern/core";
import { ensureTopics, waitFor } from "@tern/devstack";
import { type Consumer, Kafka, logLevel, type Producer } from "kafkajs";
import { afterEach, describe, expect, inject, it } from "vitest";

const brokers = inject("kafkaBrokers");
const kafka = new Kafka({ clientId: "tern-it", brokers, logLevel: logLevel.NOTHING });

function uniqueTopic(label: string): string {
  return `tern-it.${label}.${randomUUID().slice(0, 8)}`;
}

// Every client a test opens is closed after it, also when the test fails.
const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((close) => close().catch(() => undefined)));
});

async function connectedProducer(): Promise<Producer> {
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  closers.push(() => producer.disconnect());
  await producer.connect();
  return producer;
}

async function connectedConsumer(groupId: string): Promise<Consumer> {
  const consumer = kafka.consumer({ groupId, allowAutoTopicCreation: false });
  closers.push(() => consumer.disconnect());
  await consumer.connect();
  return consumer;
}

describe("Kafka broker", () => {
  it("creates a topic with 4 partitions, each with a leader", async () => {
    const topic = uniqueTopic("partitions");
    await ensureTopics(brokers, [topic], 4);

    const admin = kafka.admin();
    closers.push(() => admin.disconnect());
    await admin.connect();
    const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
    expect(topics).toHaveLength(1);
    expect(topics[0]!.partitions.map((p) => p.partitionId).sort()).toEqual([0, 1, 2, 3]);
    expect(topics[0]!.partitions.every((p) => p.leader >= 0)).toBe(true);
  });

  it("delivers a record produced to an explicit partition on that partition, with key and headers intact", async () => {
    const topic = uniqueTopic("roundtrip");
    await ensureTopics(brokers, [topic], 4);
    const producer = await connectedProducer();
    const requestId = randomUUID();
    const key = `2.iris.${requestId}`;
    await producer.send({
      topic,
      messages: [
        {
          partition: 2,
          key,
          value: JSON.stringify({ inputs: [1, 2, 3] }),
          headers: { pipeline: "iris-pipeline", "x-request-id": requestId },
        },
      ],
    });

    const consumer = await connectedConsumer(`tern-it-${randomUUID()}`);
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    const received: Array<{ partition: number; key: string; value: string; headers: Record<string, string> }> = [];
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        const headers: Record<string, string> = {};
        for (const [name, value] of Object.entries(message.headers ?? {})) headers[name] = String(value);
        received.push({
          partition,
          key: message.key?.toString() ?? "",
          value: message.value?.toString() ?? "",
          headers,
        });
      },
    });

    await waitFor(() => received.length > 0, { timeoutMs: 30_000, description: `a record on ${topic}` });
    expect(received).toEqual([
      {
        partition: 2,
        key,
        value: JSON.stringify({ inputs: [1, 2, 3] }),
        headers: { pipeline: "iris-pipeline", "x-request-id": requestId },
      },
    ]);
  });

  it("leaves an existing topic alone when ensureTopics runs again", async () => {
    const topic = uniqueTopic("idempotent");
    await ensureTopics(brokers, [topic], 4);
    await expect(ensureTopics(brokers, [topic], 4)).resolves.toBeUndefined();
  });

  it("refuses a topic that already exists with another partition count", async () => {
    const topic = uniqueTopic("mismatch");
    await ensureTopics(brokers, [topic], 2);
    const error = await ensureTopics(brokers, [topic], 4).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(hasCode(error, "conflict")).toBe(true);
    expect((error as Error).message).toContain(`topic ${topic} has 2 partitions, expected 4`);
  });

  it("does not create a topic implicitly when a producer writes to an unknown one", async () => {
    // No retries: the send is expected to fail, and kafkajs would otherwise retry for seconds.
    const impatient = new Kafka({ clientId: "tern-it", brokers, logLevel: logLevel.NOTHING, retry: { retries: 0 } });
    const producer = impatient.producer({ allowAutoTopicCreation: true });
    closers.push(() => producer.disconnect());
    await producer.connect();
    const topic = uniqueTopic("missing");
    await expect(producer.send({ topic, messages: [{ value: "x" }] })).rejects.toThrow();

    const admin = kafka.admin();
    closers.push(() => admin.disconnect());
    await admin.connect();
    expect(await admin.listTopics()).not.toContain(topic);
  });
});
