import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import type { BusConsumer, BusMessage, MessageBus } from "@tern/core";
import { createKafkaBus } from "@tern/kafka";
import { Kafka, logLevel } from "kafkajs";
import { afterEach, describe, expect, inject, it } from "vitest";
import { jsonLines, type PlatformProcess, startPlatformProcess } from "../helpers/platform-process.js";
import { testSettings } from "./test-settings.js";

const brokers = inject("kafkaBrokers");
const encoder = new TextEncoder();

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

async function waitUntil(check: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("a crashed member's partitions", () => {
  it("move to the next member, which gets every record the crashed one had not marked done", async () => {
    const bus: MessageBus = createKafkaBus({ brokers, settings: testSettings });
    cleanups.push(() => bus.close());
    const suffix = randomUUID().slice(0, 8);
    const topic = `tern-it.crash.${suffix}`;
    const group = `tern-it.crash-group.${suffix}`;
    await bus.admin().ensureTopics([topic], 4);

    const member: PlatformProcess<string> = await startPlatformProcess({
      script: "test/kafka/bus-member.ts",
      name: "bus member",
      env: { KAFKA_BROKERS: brokers.join(","), TOPIC: topic, GROUP: group },
      ready: (stdout) => (/"ready"/.test(stdout) ? "ready" : undefined),
      timeoutMs: 60_000,
    });
    cleanups.push(async () => {
      member.kill("SIGKILL");
      await member.exited;
    });
    const received = () =>
      jsonLines(member.output()).flatMap((l) => (typeof l.received === "string" ? [l.received] : []));

    const producer = bus.producer();
    const send = (value: string) => producer.send([{ topic, partition: 1, key: value, value: encoder.encode(value) }]);
    await send("done");
    await waitUntil(() => received().includes("done"), "the member to handle the first record");
    // Marks are committed every commitIntervalMs, not with each batch: wait until the broker has the commit of "done"
    // (read with plain kafkajs, an outside client) before the record the member will not mark.
    const admin = new Kafka({ clientId: "member-crash-test", brokers, logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    cleanups.push(() => admin.disconnect());
    const committedOnOne = async () => {
      const [offsets] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
      return offsets?.partitions.find((p) => p.partition === 1)?.offset;
    };
    const deadline = Date.now() + 30_000;
    while ((await committedOnOne()) !== "1") {
      if (Date.now() > deadline) throw new Error("the member's commit of the first record did not arrive in 30 s");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await send("pending");
    await waitUntil(() => received().includes("pending"), "the member to handle the second record");

    member.kill("SIGKILL");
    await member.exited;
    const crashedAt = performance.now();

    const got: BusMessage[] = [];
    const next: BusConsumer = bus.consumer({
      groupId: group,
      topics: [topic],
      commit: "manual",
      fromBeginning: true,
      async onBatch(messages) {
        got.push(...messages);
      },
    });
    cleanups.push(() => next.stop());
    // The coordinator keeps the dead member until its session times out (6 s here), then rebalances.
    await next.start({ timeoutMs: 45_000 });
    await waitUntil(() => got.length > 0, "the record the crashed member had not marked done");
    console.log(
      `[member-crash] failover took ${((performance.now() - crashedAt) / 1000).toFixed(1)} s (session timeout 6 s)`,
    );
    expect(
      got.map((m) => ({ value: new TextDecoder().decode(m.value), partition: m.partition, offset: m.offset })),
    ).toEqual([{ value: "pending", partition: 1, offset: "1" }]);
    expect(next.assignment()[topic]).toEqual([0, 1, 2, 3]);
  });
});
