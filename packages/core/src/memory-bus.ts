import { TernError } from "./errors.js";
import { createMemoryTopicAdmin, type MemoryTopicAdmin } from "./memory-topic-admin.js";
import {
  type BusAssignment,
  type BusBatchContext,
  type BusConsumer,
  type BusConsumerOptions,
  type BusMessage,
  type BusProducer,
  checkConsumerOptions,
  type MessageBus,
  type OutgoingMessage,
} from "./message-bus.js";
import { assignCoPartitioned, assignRoundRobin } from "./partition-assignment.js";

/** Options of {@link createMemoryBus}. */
export interface MemoryBusOptions {
  /** The topic admin whose topics the bus uses. @default a new {@link createMemoryTopicAdmin} */
  admin?: MemoryTopicAdmin;
  /** Most records handed to one `onBatch` call. @default 100 */
  maxBatchSize?: number;
  /** Pause before a batch whose handler threw is handed to it again. @default 5 */
  retryBackoffMs?: number;
}

/** An in-memory {@link MessageBus} with a few read-outs for assertions. */
export interface MemoryBus extends MessageBus {
  admin(): MemoryTopicAdmin;
  /** The records of a topic-partition, in offset order. */
  records(topic: string, partition: number): readonly BusMessage[];
  /** The committed offset (the next one to read) of a group on a topic-partition; undefined when none. */
  committed(groupId: string, topic: string, partition: number): string | undefined;
  /**
   * Fails every running member of `groupId` as a client failure it does not recover from would: each finishes the
   * batch in hand, leaves the group holding nothing, and its `onFailure` is called. Answers how many failed.
   */
  crash(groupId: string, error?: Error): Promise<number>;
}

interface Member {
  id: string;
  options: BusConsumerOptions;
  state: "new" | "running" | "stopping" | "stopped";
  assignment: BusAssignment;
  /** Next offset to hand to the handler, per `topic#partition` held. */
  positions: Map<string, number>;
  /** The batch in hand, if any. */
  busy: Promise<void> | undefined;
  wake: () => void;
  /** Round-robin cursor over the held partitions, so one busy partition does not starve the others. */
  cursor: number;
}

interface Group {
  id: string;
  members: Member[];
  /** Committed offset (next to read) per `topic#partition`. */
  committed: Map<string, number>;
  rebalancing: boolean;
  /** Rebalances of one group run one after the other. */
  queue: Promise<void>;
}

const tp = (topic: string, partition: number) => `${topic}#${partition}`;

/**
 * An in-memory {@link MessageBus} for unit tests of the model gateway, the dataflow workers and the pipeline gateway.
 * It behaves like the Kafka adapter where the data plane's correctness depends on it (the shared contract suite
 * `packages/core/tests/contract/message-bus-contract.ts` runs against both):
 * - topics come from the {@link MemoryTopicAdmin}; a send to a missing topic or partition fails and appends nothing;
 * - a consumer group spreads partitions over its members, co-partitioned or round-robin, and rebalances eagerly when a
 *   member joins or leaves: the batches in hand finish first, then every member restarts from the committed offsets;
 * - `after-handler` commits a batch once its handler resolved; `manual` commits only what the handler marked, so
 *   records that were handled but not marked are handed again to whoever holds the partition after a rebalance;
 * - a handler that throws gets the same batch again (after `retryBackoffMs`) until it succeeds or the member stops;
 * - a group without a committed offset starts at the end of the partition, or at 0 with `fromBeginning`; with
 *   `commitStartOffsets` that start is committed at the join.
 */
export function createMemoryBus(options: MemoryBusOptions = {}): MemoryBus {
  const admin = options.admin ?? createMemoryTopicAdmin();
  const maxBatchSize = options.maxBatchSize ?? 100;
  const retryBackoffMs = options.retryBackoffMs ?? 5;
  const logs = new Map<string, BusMessage[][]>();
  const groups = new Map<string, Group>();
  const consumers = new Set<BusConsumer>();
  let memberSeq = 0;

  function log(topic: string, partition: number): BusMessage[] {
    const count = admin.topics.get(topic) ?? 0;
    let partitions = logs.get(topic);
    if (partitions === undefined || partitions.length !== count) {
      // A deleted and re-created topic starts empty, as in Kafka.
      partitions = Array.from({ length: count }, (_, i) => partitions?.[i] ?? []);
      logs.set(topic, partitions);
    }
    return partitions[partition] ?? [];
  }

  function wakeAll(): void {
    for (const group of groups.values()) for (const member of group.members) member.wake();
  }

  function producer(): BusProducer {
    let closed = false;
    return {
      async send(messages: OutgoingMessage[]) {
        if (closed) throw new TernError("unavailable", "the producer is closed");
        const counts = await admin.describeTopics([...new Set(messages.map((m) => m.topic))]);
        for (const message of messages) {
          const count = counts[message.topic];
          if (count === undefined) throw new TernError("not_found", `topic ${message.topic} does not exist`);
          if (!Number.isInteger(message.partition) || message.partition < 0 || message.partition >= count) {
            throw new TernError(
              "bad_request",
              `partition ${message.partition} does not exist in topic ${message.topic} (it has ${count})`,
            );
          }
        }
        for (const message of messages) {
          const records = log(message.topic, message.partition);
          records.push({
            topic: message.topic,
            partition: message.partition,
            offset: String(records.length),
            key: message.key,
            value: Uint8Array.from(message.value),
            headers: { ...message.headers },
          });
        }
        wakeAll();
      },
      async close() {
        closed = true;
      },
    };
  }

  function commitOffset(group: Group, key: string, next: number): void {
    // Never backwards: a late commit of older work must not make the group re-read what another member finished.
    if (next > (group.committed.get(key) ?? -1)) group.committed.set(key, next);
  }

  function rebalance(group: Group): Promise<void> {
    group.queue = group.queue
      .catch(() => undefined)
      .then(async () => {
        group.rebalancing = true;
        // Eager, like Kafka's classic protocol: every member finishes the batch in hand, then gives up everything.
        await Promise.all(group.members.map((m) => m.busy));
        const members = group.members.filter((m) => m.state === "running");
        const topics: Array<{ topic: string; partitions: number }> = [];
        for (const member of members) {
          for (const topic of member.options.topics) {
            if (!topics.some((t) => t.topic === topic))
              topics.push({ topic, partitions: admin.topics.get(topic) ?? 0 });
          }
        }
        const ids = members.map((m) => m.id);
        // The group leader's strategy decides; members of one group are expected to agree.
        const leader = [...members].sort((a, b) => a.id.localeCompare(b.id))[0];
        const strategy = leader?.options.assignment === "round-robin" ? assignRoundRobin : assignCoPartitioned;
        const spread = strategy(ids, topics);
        for (const member of members) {
          const held: BusAssignment = {};
          for (const [topic, partitions] of Object.entries(spread[member.id] ?? {})) {
            if (member.options.topics.includes(topic) && partitions.length > 0) held[topic] = [...partitions];
          }
          member.assignment = held;
          member.positions = new Map();
          for (const [topic, partitions] of Object.entries(held)) {
            for (const partition of partitions) {
              const committed = group.committed.get(tp(topic, partition));
              const position = committed ?? (member.options.fromBeginning ? 0 : log(topic, partition).length);
              member.positions.set(tp(topic, partition), position);
              if (committed === undefined && member.options.commitStartOffsets) {
                group.committed.set(tp(topic, partition), position);
              }
            }
          }
        }
        group.rebalancing = false;
        for (const member of members) {
          try {
            member.options.onAssignment?.(structuredClone(member.assignment));
          } catch {
            // A callback's failure is the caller's (the Kafka adapter logs it); the group goes on regardless.
          }
        }
        wakeAll();
      });
    return group.queue;
  }

  function nextBatch(member: Member): { topic: string; partition: number; messages: BusMessage[] } | undefined {
    const held = Object.entries(member.assignment).flatMap(([topic, ps]) => ps.map((p) => ({ topic, partition: p })));
    for (let i = 0; i < held.length; i++) {
      const { topic, partition } = held[(member.cursor + i) % held.length]!;
      const position = member.positions.get(tp(topic, partition)) ?? 0;
      const records = log(topic, partition);
      if (position < records.length) {
        member.cursor = (member.cursor + i + 1) % held.length;
        const messages = records.slice(position, position + maxBatchSize).map((m) => ({
          ...m,
          value: Uint8Array.from(m.value),
          headers: { ...m.headers },
        }));
        return { topic, partition, messages };
      }
    }
    return undefined;
  }

  async function handle(
    group: Group,
    member: Member,
    batch: { topic: string; partition: number; messages: BusMessage[] },
  ): Promise<void> {
    const manual = member.options.commit === "manual";
    const context: BusBatchContext = {
      commit(topic, partition, offset) {
        if (!manual) return;
        const done = Number(offset);
        if (!Number.isInteger(done) || done < 0)
          throw new TernError("bad_request", `offset must be a decimal integer (got ${offset})`);
        // Only the current holder may commit: a partition that moved on is the new owner's to commit.
        if (member.state === "stopped" || !member.assignment[topic]?.includes(partition)) return;
        commitOffset(group, tp(topic, partition), done + 1);
      },
      isRunning: () => member.state === "running",
    };
    for (;;) {
      try {
        await member.options.onBatch(batch.messages, context);
        break;
      } catch {
        // Retried, never skipped; a stop or a rebalance abandons the batch uncommitted (the next holder replays it).
        if (member.state !== "running" || group.rebalancing) return;
        await new Promise((resolve) => setTimeout(resolve, retryBackoffMs));
        if (member.state !== "running" || group.rebalancing) return;
      }
    }
    const next = Number(batch.messages.at(-1)!.offset) + 1;
    member.positions.set(tp(batch.topic, batch.partition), next);
    if (!manual) commitOffset(group, tp(batch.topic, batch.partition), next);
  }

  async function pump(group: Group, member: Member): Promise<void> {
    while (member.state === "running") {
      const batch = group.rebalancing ? undefined : nextBatch(member);
      if (batch === undefined) {
        await new Promise<void>((resolve) => {
          member.wake = resolve;
        });
        continue;
      }
      member.busy = handle(group, member, batch);
      await member.busy;
      member.busy = undefined;
    }
  }

  function consumer(consumerOptions: BusConsumerOptions): BusConsumer {
    if (consumerOptions.topics.length === 0) throw new TernError("bad_request", "a consumer needs at least one topic");
    checkConsumerOptions(consumerOptions);
    const member: Member = {
      id: `${consumerOptions.groupId}.member-${String(++memberSeq).padStart(6, "0")}`,
      options: consumerOptions,
      state: "new",
      assignment: {},
      positions: new Map(),
      busy: undefined,
      wake: () => undefined,
      cursor: 0,
    };
    let started: Promise<void> | undefined;
    let stopped: Promise<void> | undefined;
    const handle: BusConsumer = {
      start(startOptions = {}) {
        started ??= (async () => {
          if (member.state !== "new") throw new TernError("bad_request", "a stopped consumer cannot start again");
          const counts = await admin.describeTopics(consumerOptions.topics);
          const missing = consumerOptions.topics.filter((t) => counts[t] === undefined);
          if (missing.length > 0) throw new TernError("not_found", `topics do not exist: ${missing.join(", ")}`);
          let group = groups.get(consumerOptions.groupId);
          if (group === undefined) {
            group = {
              id: consumerOptions.groupId,
              members: [],
              committed: new Map(),
              rebalancing: false,
              queue: Promise.resolve(),
            };
            groups.set(group.id, group);
          }
          member.state = "running";
          group.members.push(member);
          consumers.add(handle);
          const joined = rebalance(group);
          void pump(group, member);
          const timeoutMs = startOptions.timeoutMs ?? 30_000;
          let timer: NodeJS.Timeout | undefined;
          const deadline = new Promise<never>((_, reject) => {
            timer = setTimeout(
              () => reject(new TernError("timeout", `group ${group.id}: no assignment after ${timeoutMs} ms`)),
              timeoutMs,
            );
          });
          try {
            await Promise.race([joined, deadline]);
          } finally {
            clearTimeout(timer);
          }
        })();
        return started;
      },
      assignment: () => structuredClone(member.assignment),
      stop() {
        stopped ??= (async () => {
          consumers.delete(handle);
          const group = groups.get(consumerOptions.groupId);
          if (member.state !== "running" || group === undefined) {
            member.state = "stopped";
            return;
          }
          member.state = "stopping";
          member.wake();
          await member.busy;
          member.state = "stopped";
          member.assignment = {};
          group.members = group.members.filter((m) => m !== member);
          await rebalance(group);
        })();
        return stopped;
      },
    };
    return handle;
  }

  return {
    producer,
    consumer,
    admin: () => admin,
    records: (topic, partition) => log(topic, partition),
    committed(groupId, topic, partition) {
      const offset = groups.get(groupId)?.committed.get(tp(topic, partition));
      return offset === undefined ? undefined : String(offset);
    },
    async crash(groupId, error = new TernError("unavailable", `consumer of group ${groupId} crashed`)) {
      const group = groups.get(groupId);
      if (group === undefined) return 0;
      const failing = group.members.filter((m) => m.state === "running");
      for (const member of failing) {
        member.state = "stopping";
        member.wake();
        await member.busy;
        member.state = "stopped";
        member.assignment = {};
        group.members = group.members.filter((m) => m !== member);
      }
      if (failing.length > 0) await rebalance(group);
      for (const member of failing) member.options.onFailure?.(error);
      return failing.length;
    },
    async close() {
      await Promise.all([...consumers].map((c) => c.stop()));
    },
  };
}
