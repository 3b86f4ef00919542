import { randomUUID } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { hasCode } from "../../src/errors.js";
import type { BusAssignment, BusConsumer, BusConsumerOptions, BusMessage, MessageBus } from "../../src/message-bus.js";

/**
 * The behaviour every {@link MessageBus} adapter must share. It runs against the in-memory bus in the core unit tests
 * (`packages/core/tests/unit/memory-bus.test.ts`) and against Kafka in the integration tests
 * (`test/kafka/kafkajs-bus.test.ts`), so the in-memory bus cannot drift from the real one.
 */
export interface BusContractHarness {
  /** A bus for one test; the suite closes it afterwards. */
  createBus(): MessageBus;
  /** Deadline of every wait in the suite. */
  timeoutMs: number;
}

const PARTITIONS = 4;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Polls `check` until it holds; fails naming `what` at the deadline. Never a fixed sleep. */
async function waitUntil(check: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function text(message: BusMessage): string {
  return decoder.decode(message.value);
}

function partitionsOf(assignment: BusAssignment, topic: string): number[] {
  return [...(assignment[topic] ?? [])].sort((a, b) => a - b);
}

export function describeMessageBusContract(adapter: string, harness: BusContractHarness): void {
  describe(`message bus contract: ${adapter}`, () => {
    let bus: MessageBus | undefined;
    const consumers: BusConsumer[] = [];

    afterEach(async () => {
      await Promise.all(consumers.splice(0).map((c) => c.stop()));
      await bus?.close();
      bus = undefined;
    });

    const unique = (label: string) => `tern-contract.${label}.${randomUUID().slice(0, 8)}`;

    async function setup(topicCount = 1): Promise<{ bus: MessageBus; topics: string[]; group: string }> {
      bus = harness.createBus();
      const topics = Array.from({ length: topicCount }, (_, i) => unique(`t${i}`));
      await bus.admin().ensureTopics(topics, PARTITIONS);
      return { bus, topics, group: unique("group") };
    }

    function consumer(b: MessageBus, options: BusConsumerOptions): BusConsumer {
      const c = b.consumer(options);
      consumers.push(c);
      return c;
    }

    /** A consumer that records what it received; `onMessage` may mark a record done (manual mode). */
    function recording(
      b: MessageBus,
      options: Omit<BusConsumerOptions, "onBatch">,
      onMessage: (m: BusMessage, commit: () => void) => void = () => undefined,
    ) {
      const received: BusMessage[] = [];
      const c = consumer(b, {
        ...options,
        async onBatch(messages, context) {
          for (const m of messages) {
            received.push(m);
            onMessage(m, () => context.commit(m.topic, m.partition, m.offset));
          }
        },
      });
      return { consumer: c, received };
    }

    it("delivers a record on the partition it was sent to, with key, value and headers intact", async () => {
      const { bus, topics, group } = await setup();
      const topic = topics[0]!;
      const { consumer: c, received } = recording(bus, { groupId: group, topics, fromBeginning: true });
      await c.start({ timeoutMs: harness.timeoutMs });
      const producer = bus.producer();
      const requestId = randomUUID();
      await producer.send([
        {
          topic,
          partition: 2,
          key: `2.iris.${requestId}`,
          value: encoder.encode("hello"),
          headers: { pipeline: "iris-pipeline", "x-request-id": requestId },
        },
      ]);
      await waitUntil(() => received.length === 1, "the record", harness.timeoutMs);
      const [m] = received;
      expect({ topic: m!.topic, partition: m!.partition, key: m!.key, value: text(m!), headers: m!.headers }).toEqual({
        topic,
        partition: 2,
        key: `2.iris.${requestId}`,
        value: "hello",
        headers: { pipeline: "iris-pipeline", "x-request-id": requestId },
      });
      expect(m!.offset).toBe("0");
      await producer.close();
    });

    it("keeps the order of records within a partition across several sends", async () => {
      const { bus, topics, group } = await setup();
      const topic = topics[0]!;
      const { consumer: c, received } = recording(bus, { groupId: group, topics, fromBeginning: true });
      await c.start({ timeoutMs: harness.timeoutMs });
      const producer = bus.producer();
      for (let batch = 0; batch < 3; batch++) {
        await producer.send(
          Array.from({ length: 10 }, (_, i) => ({
            topic,
            partition: (batch * 10 + i) % PARTITIONS,
            key: `k${batch * 10 + i}`,
            value: encoder.encode(String(batch * 10 + i)),
          })),
        );
      }
      await waitUntil(() => received.length === 30, "30 records", harness.timeoutMs);
      for (let p = 0; p < PARTITIONS; p++) {
        const values = received.filter((m) => m.partition === p).map((m) => Number(text(m)));
        expect(values).toEqual([...values].sort((a, b) => a - b));
        expect(values.every((v) => v % PARTITIONS === p)).toBe(true);
      }
    });

    it("refuses a record for a missing topic or partition, naming it, and sends nothing of that call", async () => {
      const { bus, topics, group } = await setup();
      const topic = topics[0]!;
      const producer = bus.producer();
      const missing = unique("missing");
      const noTopic = await producer
        .send([{ topic: missing, partition: 0, key: "k", value: encoder.encode("x") }])
        .catch((e: unknown) => e);
      expect(hasCode(noTopic, "not_found")).toBe(true);
      expect((noTopic as Error).message).toContain(missing);

      const badPartition = await producer
        .send([
          { topic, partition: 0, key: "k", value: encoder.encode("dropped") },
          { topic, partition: PARTITIONS, key: "k", value: encoder.encode("x") },
        ])
        .catch((e: unknown) => e);
      expect(hasCode(badPartition, "bad_request")).toBe(true);
      expect((badPartition as Error).message).toContain(`partition ${PARTITIONS}`);

      const { consumer: c, received } = recording(bus, { groupId: group, topics, fromBeginning: true });
      await c.start({ timeoutMs: harness.timeoutMs });
      await producer.send([{ topic, partition: 0, key: "k", value: encoder.encode("kept") }]);
      await waitUntil(() => received.some((m) => text(m) === "kept"), "the later record", harness.timeoutMs);
      expect(received.map(text)).toEqual(["kept"]);
      expect((await bus.admin().describeTopics([missing]))[missing]).toBeUndefined();
    });

    it("refuses to start a consumer on a topic that does not exist", async () => {
      const { bus, topics, group } = await setup();
      const missing = unique("missing");
      const c = consumer(bus, { groupId: group, topics: [topics[0]!, missing], onBatch: async () => undefined });
      const err = await c.start({ timeoutMs: harness.timeoutMs }).catch((e: unknown) => e);
      expect(hasCode(err, "not_found")).toBe(true);
      expect((err as Error).message).toContain(missing);
    });

    it("gives two members of a co-partitioned group the same partition numbers on both topics", async () => {
      const { bus, topics, group } = await setup(2);
      const [a, b] = [0, 1].map(() => consumer(bus, { groupId: group, topics, onBatch: async () => undefined }));
      await Promise.all([a!.start({ timeoutMs: harness.timeoutMs }), b!.start({ timeoutMs: harness.timeoutMs })]);
      await waitUntil(
        () => partitionsOf(a!.assignment(), topics[0]!).length + partitionsOf(b!.assignment(), topics[0]!).length === 4,
        "both members to hold all partitions",
        harness.timeoutMs,
      );
      for (const member of [a!, b!]) {
        const assignment = member.assignment();
        expect(partitionsOf(assignment, topics[0]!)).toHaveLength(2);
        expect(partitionsOf(assignment, topics[1]!)).toEqual(partitionsOf(assignment, topics[0]!));
      }
    });

    it("splits partition numbers across topics with round-robin for 3 members × 4 partitions, and not when co-partitioned", async () => {
      const { bus, topics } = await setup(2);
      async function holdings(assignment: "round-robin" | "co-partitioned"): Promise<BusAssignment[]> {
        const group = unique(`group-${assignment}`);
        const members = [0, 1, 2].map(() =>
          consumer(bus, { groupId: group, topics, assignment, onBatch: async () => undefined }),
        );
        await Promise.all(members.map((m) => m.start({ timeoutMs: harness.timeoutMs })));
        const total = () => members.reduce((sum, m) => sum + Object.values(m.assignment()).flat().length, 0);
        await waitUntil(() => total() === 8, `${assignment}: all 8 topic-partitions held`, harness.timeoutMs);
        return members.map((m) => m.assignment());
      }
      const split = (held: BusAssignment[]) =>
        held.some((a) => partitionsOf(a, topics[0]!).join() !== partitionsOf(a, topics[1]!).join());
      expect(split(await holdings("round-robin"))).toBe(true);
      expect(split(await holdings("co-partitioned"))).toBe(false);
    });

    it("keeps the group working when a member's onAssignment callback throws", async () => {
      const { bus, topics, group } = await setup();
      const faulty = consumer(bus, {
        groupId: group,
        topics,
        onBatch: async () => undefined,
        onAssignment: () => {
          throw new Error("callback bug");
        },
      });
      await faulty.start({ timeoutMs: harness.timeoutMs });
      const healthy = consumer(bus, { groupId: group, topics, onBatch: async () => undefined });
      await healthy.start({ timeoutMs: harness.timeoutMs });
      const held = () => [faulty, healthy].map((c) => partitionsOf(c.assignment(), topics[0]!));
      await waitUntil(
        () => held().flat().length === PARTITIONS,
        "both members to hold all partitions",
        harness.timeoutMs,
      );
      expect(held().map((ps) => ps.length)).toEqual([2, 2]);
      await faulty.stop();
      await waitUntil(
        () => partitionsOf(healthy.assignment(), topics[0]!).length === PARTITIONS,
        "the healthy member to take over",
        harness.timeoutMs,
      );
    });

    it("tells the handler about every assignment and holds nothing after stop", async () => {
      const { bus, topics, group } = await setup();
      const seen: BusAssignment[] = [];
      const c = consumer(bus, {
        groupId: group,
        topics,
        onBatch: async () => undefined,
        onAssignment: (assignment) => seen.push(assignment),
      });
      await c.start({ timeoutMs: harness.timeoutMs });
      expect(partitionsOf(c.assignment(), topics[0]!)).toEqual([0, 1, 2, 3]);
      expect(seen.map((a) => partitionsOf(a, topics[0]!))).toContainEqual([0, 1, 2, 3]);
      await c.stop();
      await c.stop();
      expect(c.assignment()).toEqual({});
    });

    it("hands a batch whose handler threw to it again, skipping nothing", async () => {
      const { bus, topics, group } = await setup();
      const topic = topics[0]!;
      let failures = 0;
      const handled: string[] = [];
      const c = consumer(bus, {
        groupId: group,
        topics,
        fromBeginning: true,
        async onBatch(messages) {
          if (failures < 2 && messages.some((m) => text(m) === "poison-once")) {
            failures++;
            throw new Error("transient failure");
          }
          handled.push(...messages.map(text));
        },
      });
      await c.start({ timeoutMs: harness.timeoutMs });
      const producer = bus.producer();
      await producer.send(
        ["a", "poison-once", "b"].map((v) => ({ topic, partition: 1, key: v, value: encoder.encode(v) })),
      );
      await waitUntil(() => handled.includes("b"), "the batch after the failures", harness.timeoutMs);
      expect(failures).toBe(2);
      expect(handled.filter((v) => v !== "a")).toEqual(["poison-once", "b"]);
    });

    it("after-handler: a member that joins after another stopped reads only what was not handled", async () => {
      const { bus, topics, group } = await setup();
      const topic = topics[0]!;
      const producer = bus.producer();
      const first = recording(bus, { groupId: group, topics, fromBeginning: true });
      await first.consumer.start({ timeoutMs: harness.timeoutMs });
      await producer.send(["1", "2", "3"].map((v) => ({ topic, partition: 0, key: v, value: encoder.encode(v) })));
      await waitUntil(() => first.received.length === 3, "3 records on the first member", harness.timeoutMs);
      await first.consumer.stop();

      const second = recording(bus, { groupId: group, topics, fromBeginning: true });
      await second.consumer.start({ timeoutMs: harness.timeoutMs });
      await producer.send([{ topic, partition: 0, key: "4", value: encoder.encode("4") }]);
      await waitUntil(() => second.received.length > 0, "the new record", harness.timeoutMs);
      expect(second.received.map(text)).toEqual(["4"]);
    });

    it("manual: records not marked done go to the next member after their holder stops", async () => {
      const { bus, topics, group } = await setup();
      const topic = topics[0]!;
      const producer = bus.producer();
      const first = recording(bus, { groupId: group, topics, fromBeginning: true, commit: "manual" }, (m, commit) => {
        if (text(m) === "done") commit();
      });
      await first.consumer.start({ timeoutMs: harness.timeoutMs });
      await producer.send(
        ["done", "pending-1", "pending-2"].map((v) => ({ topic, partition: 3, key: v, value: encoder.encode(v) })),
      );
      await waitUntil(() => first.received.length === 3, "3 records on the first member", harness.timeoutMs);
      await first.consumer.stop();

      const second = recording(bus, { groupId: group, topics, fromBeginning: true, commit: "manual" });
      await second.consumer.start({ timeoutMs: harness.timeoutMs });
      await waitUntil(() => second.received.length === 2, "the two records not marked done", harness.timeoutMs);
      expect(second.received.map(text)).toEqual(["pending-1", "pending-2"]);
      expect(second.received.map((m) => m.offset)).toEqual(["1", "2"]);
    });

    it("manual: a mark made after the handler returned still commits", async () => {
      const { bus, topics, group } = await setup();
      const topic = topics[0]!;
      const producer = bus.producer();
      const later: Array<() => void> = [];
      const first = recording(bus, { groupId: group, topics, fromBeginning: true, commit: "manual" }, (_m, commit) =>
        later.push(commit),
      );
      await first.consumer.start({ timeoutMs: harness.timeoutMs });
      await producer.send(["x", "y"].map((v) => ({ topic, partition: 2, key: v, value: encoder.encode(v) })));
      await waitUntil(() => later.length === 2, "both records handled", harness.timeoutMs);
      // The work finishes later (e.g. a pipeline request whose steps answered): mark both done now.
      for (const commit of later) commit();
      await first.consumer.stop();

      const second = recording(bus, { groupId: group, topics, fromBeginning: true, commit: "manual" });
      await second.consumer.start({ timeoutMs: harness.timeoutMs });
      await producer.send([{ topic, partition: 2, key: "z", value: encoder.encode("z") }]);
      await waitUntil(() => second.received.length > 0, "the new record", harness.timeoutMs);
      expect(second.received.map(text)).toEqual(["z"]);
    });

    it("starts a new group at the end of the partitions unless fromBeginning is set", async () => {
      const { bus, topics } = await setup();
      const topic = topics[0]!;
      const producer = bus.producer();
      await producer.send([{ topic, partition: 0, key: "old", value: encoder.encode("old") }]);
      const latest = recording(bus, { groupId: unique("latest"), topics });
      const earliest = recording(bus, { groupId: unique("earliest"), topics, fromBeginning: true });
      await Promise.all([
        latest.consumer.start({ timeoutMs: harness.timeoutMs }),
        earliest.consumer.start({ timeoutMs: harness.timeoutMs }),
      ]);
      await producer.send([{ topic, partition: 0, key: "new", value: encoder.encode("new") }]);
      await waitUntil(() => latest.received.length > 0, "the new record (latest)", harness.timeoutMs);
      await waitUntil(() => earliest.received.length === 2, "both records (earliest)", harness.timeoutMs);
      expect(latest.received.map(text)).toEqual(["new"]);
      expect(earliest.received.map(text)).toEqual(["old", "new"]);
    });

    it("commitStartOffsets: the next member resumes where the first started, also on partitions it read nothing from", async () => {
      const { bus, topics, group } = await setup();
      const topic = topics[0]!;
      const producer = bus.producer();
      await producer.send([{ topic, partition: 1, key: "old", value: encoder.encode("old") }]);
      const first = recording(bus, { groupId: group, topics, commitStartOffsets: true });
      await first.consumer.start({ timeoutMs: harness.timeoutMs });
      await first.consumer.stop();
      expect(first.received).toEqual([]);
      // Written while the group has no member, on a partition no member ever read a record from: without the option
      // the group has no committed offset there and the next member would start after it, at the end.
      await producer.send([{ topic, partition: 1, key: "between", value: encoder.encode("between") }]);
      const second = recording(bus, { groupId: group, topics, commitStartOffsets: true });
      await second.consumer.start({ timeoutMs: harness.timeoutMs });
      await producer.send([{ topic, partition: 1, key: "new", value: encoder.encode("new") }]);
      await waitUntil(() => second.received.length >= 2, "the record written between the members", harness.timeoutMs);
      expect(second.received.map(text)).toEqual(["between", "new"]);
    });

    it("commitStartOffsets is refused with manual commits, naming both options", () => {
      bus = harness.createBus();
      let err: unknown;
      try {
        bus.consumer({
          groupId: unique("group"),
          topics: [unique("t")],
          commit: "manual",
          commitStartOffsets: true,
          onBatch: async () => undefined,
        });
      } catch (e) {
        err = e;
      }
      expect(hasCode(err, "bad_request")).toBe(true);
      expect((err as Error).message).toMatch(/commitStartOffsets.*manual/);
    });

    it("topic admin: ensures, describes and deletes topics; refuses a partition mismatch naming both counts", async () => {
      bus = harness.createBus();
      const admin = bus.admin();
      const [a, b] = [unique("admin-a"), unique("admin-b")];
      expect(await admin.ensureTopics([a], 2)).toEqual({ created: [a], existing: [] });
      expect(await admin.ensureTopics([a, b], 2)).toEqual({ created: [b], existing: [a] });
      expect(await admin.describeTopics([a, b, unique("none")])).toEqual({ [a]: 2, [b]: 2 });
      const err = await admin.ensureTopics([a], 4).catch((e: unknown) => e);
      expect(hasCode(err, "kafka.partition_mismatch")).toBe(true);
      expect((err as Error).message).toContain(`topic ${a} has 2 partitions`);
      expect((err as Error).message).toContain("4");
      await admin.deleteTopics([a, unique("never-existed")]);
      expect(Object.keys(await admin.describeTopics([a, b]))).toEqual([b]);
      await admin.deleteTopics([b]);
    });
  });
}
