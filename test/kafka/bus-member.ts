/**
 * One consumer-group member in a process of its own, so a test can SIGKILL it (a crash: no leave, no commit).
 * Environment: KAFKA_BROKERS (comma-separated), TOPIC, GROUP. It commits manually and only the records whose value is
 * "done"; it prints `{"ready": assignment}` once it holds its partitions and `{"received": value, "offset": o}` per
 * record.
 */
import { createKafkaBus } from "@tern/kafka";

const brokers = (process.env.KAFKA_BROKERS ?? "").split(",").filter(Boolean);
const topic = process.env.TOPIC ?? "";
const groupId = process.env.GROUP ?? "";
const bus = createKafkaBus({ brokers, settings: { consumer: { sessionTimeoutMs: 6_000, heartbeatIntervalMs: 500 } } });
const decoder = new TextDecoder();
const consumer = bus.consumer({
  groupId,
  topics: [topic],
  commit: "manual",
  fromBeginning: true,
  async onBatch(messages, context) {
    for (const m of messages) {
      const value = decoder.decode(m.value);
      if (value === "done") context.commit(m.topic, m.partition, m.offset);
      console.log(JSON.stringify({ received: value, offset: m.offset }));
    }
  },
});
await consumer.start({ timeoutMs: 30_000 });
console.log(JSON.stringify({ ready: consumer.assignment() }));
