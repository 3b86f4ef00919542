import { Kafka, logLevel } from "kafkajs";

/**
 * An outside Kafka client for tests: plain kafkajs, none of Tern's code (not `@tern/kafka`), so a test that produces
 * requests and reads answers with it shows that any Kafka client can use Tern's topics, as with Seldon.
 */
export interface OutsideRecord {
  topic: string;
  partition: number;
  key: string;
  value: Buffer;
  headers: Record<string, string>;
  /** Date.now() when this client received it. */
  at: number;
}

export interface OutsideKafka {
  send(
    topic: string,
    partition: number,
    key: string,
    value: Uint8Array,
    headers?: Record<string, string>,
  ): Promise<void>;
  /** Several records to one topic in one produce request (so a consumer sees them in one fetch). */
  sendMany(
    topic: string,
    messages: Array<{ partition: number; key: string; value: Uint8Array; headers?: Record<string, string> }>,
  ): Promise<void>;
  /** Reads `topics` from the beginning in a group of its own; every record lands in `records`. */
  read(topics: string[]): Promise<OutsideRecord[]>;
  close(): Promise<void>;
}

export async function createOutsideKafka(brokers: string[], name: string): Promise<OutsideKafka> {
  const kafka = new Kafka({ clientId: `outside-${name}`, brokers, logLevel: logLevel.NOTHING });
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  const consumers: Array<{ disconnect(): Promise<void> }> = [];
  let groups = 0;
  return {
    async send(topic, partition, key, value, headers = {}) {
      await producer.send({ topic, acks: 1, messages: [{ partition, key, value: Buffer.from(value), headers }] });
    },
    async sendMany(topic, messages) {
      await producer.send({
        topic,
        acks: 1,
        messages: messages.map((m) => ({ ...m, value: Buffer.from(m.value), headers: m.headers ?? {} })),
      });
    },
    async read(topics) {
      const records: OutsideRecord[] = [];
      const consumer = kafka.consumer({
        groupId: `outside-${name}-${process.pid}-${Date.now()}-${groups++}`,
        maxWaitTimeInMs: 100,
        sessionTimeout: 10_000,
      });
      consumers.push(consumer);
      await consumer.connect();
      await consumer.subscribe({ topics, fromBeginning: true });
      await consumer.run({
        eachMessage: async ({ topic, partition, message }) => {
          const headers: Record<string, string> = {};
          for (const [k, v] of Object.entries(message.headers ?? {})) if (v !== undefined) headers[k] = String(v);
          records.push({
            topic,
            partition,
            key: message.key?.toString() ?? "",
            value: message.value ?? Buffer.alloc(0),
            headers,
            at: Date.now(),
          });
        },
      });
      return records;
    },
    async close() {
      for (const c of consumers) await c.disconnect().catch(() => {});
      await producer.disconnect().catch(() => {});
    },
  };
}
