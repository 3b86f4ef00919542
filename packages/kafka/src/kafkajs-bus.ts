import { setTimeout as sleep } from "node:timers/promises";
import {
  type BusAssignment,
  type BusBatchContext,
  type BusConsumer,
  type BusConsumerOptions,
  type BusMessage,
  type BusProducer,
  checkConsumerOptions,
  type EnsureTopicsResult,
  type MessageBus,
  type OutgoingMessage,
  TernError,
  type TopicAdmin,
} from "@tern/core";
// The only file of the repository that imports the Kafka client: swapping clients means rewriting this file alone.
import kafkajs, {
  type Admin,
  AssignerProtocol,
  type Consumer,
  type EachBatchPayload,
  type IHeaders,
  Kafka,
  type LogEntry,
  logLevel,
  PartitionAssigners,
  Partitioners,
  type Producer,
} from "kafkajs";
// kafkajs's per-connection request queue, corrected below (kafkajs has no exports map: the path is its file).
import RequestQueue from "kafkajs/src/network/requestQueue/index.js";
import { coPartitionedAssigner } from "./co-partitioned-assigner.js";
import { fromKafkaError, withDeadline } from "./errors.js";
import { type KafkaSecurity, kafkaClientSecurity } from "./security.js";
import {
  BROKER_MIN_SESSION_TIMEOUT_MS,
  type KafkaBusSettings,
  type KafkaBusSettingsInput,
  resolveKafkaSettings,
} from "./settings.js";

/** A pino-compatible logger (pino's `Logger` fits); the client's own log lines arrive here. */
export interface BusLogger {
  debug(fields: object, message: string): void;
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

const silent: BusLogger = { debug() {}, info() {}, warn() {}, error() {} };

/** Options of {@link createKafkaBus}. */
export interface KafkaBusOptions {
  /** Bootstrap brokers, `host:port`. */
  brokers: readonly string[];
  /** Client settings; what is left out takes the defaults documented in docs/kafka.md. */
  settings?: KafkaBusSettingsInput;
  /** Receives the client's log lines (its INFO as debug). @default silent */
  logger?: BusLogger;
  /** TLS and SASL (MSK IAM, PLAIN, SCRAM); see security.ts. @default none: PLAINTEXT, as the dev broker */
  security?: KafkaSecurity;
}

function createClient(
  brokers: readonly string[],
  settings: KafkaBusSettings,
  logger: BusLogger,
  security?: KafkaSecurity,
): Kafka {
  if (brokers.length === 0) throw new TernError("config.invalid", "kafka brokers: at least one host:port is needed");
  return new Kafka({
    clientId: settings.clientId,
    brokers: [...brokers],
    ...kafkaClientSecurity(security),
    connectionTimeout: settings.connectionTimeoutMs,
    requestTimeout: settings.requestTimeoutMs,
    enforceRequestTimeout: true,
    retry: {
      retries: settings.retries,
      initialRetryTime: settings.initialRetryTimeMs,
      maxRetryTime: settings.maxRetryTimeMs,
    },
    logLevel: logLevel.INFO,
    logCreator:
      () =>
      ({ namespace, level, log }: LogEntry) => {
        const { message, timestamp: _timestamp, ...fields } = log;
        const entry = { component: "kafkajs", namespace, ...fields };
        if (level === logLevel.ERROR) logger.error(entry, message);
        else if (level === logLevel.WARN) logger.warn(entry, message);
        else logger.debug(entry, message);
      },
  });
}

// ---------------------------------------------------------------------------------------------------------------
// A correction to kafkajs 2.2.4

/** How soon a queued request is looked at again when no broker throttle says when (kafkajs's own interval). */
const PENDING_CHECK_MS = 10;

/**
 * kafkajs 2.2.4's request queue (one per broker connection) re-arms a timer after every check of its pending
 * requests, even when none is pending and nothing throttles — with a negative delay, so 1 ms: from the first response
 * on, every connection runs a timer a millisecond for as long as it is open (kafkajs issues #1556 and #1704, not fixed
 * in a release). A Tern process holds several connections (a producer, each consumer's fetch and coordinator
 * connections), so this was a steady share of the CPU of every process on the data plane, busy or idle. The
 * replacement schedules a check only when a request waits (after the throttle, else after 10 ms, as kafkajs does) or
 * a throttle is running; a request pushed later schedules its own check, and a response already triggers one.
 */
function fixRequestQueueIdleLoop(): void {
  const proto = RequestQueue.prototype;
  if (typeof proto.scheduleCheckPendingRequests !== "function" || typeof proto.checkPendingRequests !== "function")
    return;
  proto.scheduleCheckPendingRequests = function scheduleCheckPendingRequests(this: RequestQueue): void {
    if (this.throttleCheckTimeoutId) return;
    const throttledForMs = this.throttledUntil - Date.now();
    if (this.pending.length === 0 && throttledForMs <= 0) return;
    this.throttleCheckTimeoutId = setTimeout(
      () => {
        this.throttleCheckTimeoutId = null;
        this.checkPendingRequests();
      },
      throttledForMs > 0 ? throttledForMs : PENDING_CHECK_MS,
    );
  };
}
fixRequestQueueIdleLoop();

// ---------------------------------------------------------------------------------------------------------------
// Topic admin

function checkPartitionCount(partitions: number): void {
  if (!Number.isInteger(partitions) || partitions < 1) {
    throw new TernError("bad_request", `partitions must be a positive integer (got ${partitions})`);
  }
}

function mismatch(topic: string, found: number, wanted: number): TernError {
  return new TernError(
    "kafka.partition_mismatch",
    `topic ${topic} has ${found} partitions, this installation uses ${wanted} (KAFKA_PARTITIONS)`,
  );
}

/** A new topic the broker's metadata does not show (or shows without leaders) yet: worth another look, not a failure. */
function isMetadataLag(err: unknown): boolean {
  const type = (err as { type?: unknown }).type;
  return type === "UNKNOWN_TOPIC_OR_PARTITION" || type === "LEADER_NOT_AVAILABLE";
}

/**
 * A {@link TopicAdmin} over one kafkajs admin client. Every call has a deadline (`adminTimeoutMs`), including the
 * waits for new topics to have leaders and for deleted ones to disappear from the metadata.
 */
function createTopicAdmin(connect: () => Promise<Admin>, settings: KafkaBusSettings, onChange: () => void): TopicAdmin {
  const timeoutMs = settings.adminTimeoutMs;

  async function counts(admin: Admin, names: readonly string[]): Promise<Record<string, number>> {
    const all = new Set(await admin.listTopics());
    const existing = [...new Set(names)].filter((name) => all.has(name));
    if (existing.length === 0) return {};
    const { topics } = await admin.fetchTopicMetadata({ topics: existing });
    return Object.fromEntries(topics.map((t) => [t.name, t.partitions.length]));
  }

  async function poll(what: string, deadline: number, check: () => Promise<boolean>): Promise<void> {
    while (!(await check())) {
      if (Date.now() > deadline) throw new TernError("timeout", `${what} after ${timeoutMs} ms`, { retriable: true });
      await sleep(100);
    }
  }

  async function run<T>(what: string, work: (admin: Admin, deadline: number) => Promise<T>): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    try {
      return await withDeadline(
        connect().then((admin) => work(admin, deadline)),
        timeoutMs,
        what,
      );
    } catch (err) {
      throw fromKafkaError(err, what);
    }
  }

  return {
    ensureTopics(names, partitions) {
      checkPartitionCount(partitions);
      const unique = [...new Set(names)];
      const what = `ensure topics ${unique.join(", ")}`;
      if (unique.length === 0) return Promise.resolve({ created: [], existing: [] });
      return run(what, async (admin, deadline): Promise<EnsureTopicsResult> => {
        const before = await counts(admin, unique);
        // A clash is final and nothing is created: co-partitioned joins cannot work over a topic of another size.
        for (const [topic, found] of Object.entries(before))
          if (found !== partitions) throw mismatch(topic, found, partitions);
        const missing = unique.filter((name) => before[name] === undefined);
        if (missing.length > 0) {
          // Not kafkajs's waitForLeaders: it fails at once with "This server does not host this topic-partition" when
          // the metadata lags behind a creation (seen whenever several callers create topics at once); our poll waits.
          await admin.createTopics({
            topics: missing.map((topic) => ({ topic, numPartitions: partitions })),
            waitForLeaders: false,
            timeout: Math.max(1, deadline - Date.now()),
          });
          onChange();
        }
        await poll(`leaders for ${unique.join(", ")}`, deadline, async () => {
          const { topics } = await admin.fetchTopicMetadata({ topics: unique }).catch((err: unknown) => {
            if (isMetadataLag(err)) return { topics: undefined };
            throw err;
          });
          if (topics === undefined) return false;
          // Someone else may have created a missing topic meanwhile, with another count.
          const wrong = topics.find((t) => t.partitions.length !== partitions);
          if (wrong !== undefined) throw mismatch(wrong.name, wrong.partitions.length, partitions);
          return topics.every((t) => t.partitions.every((p) => p.leader >= 0));
        });
        return { created: missing, existing: unique.filter((name) => before[name] !== undefined) };
      });
    },
    deleteTopics(names) {
      const unique = [...new Set(names)];
      const what = `delete topics ${unique.join(", ")}`;
      return run(what, async (admin, deadline) => {
        const existing = Object.keys(await counts(admin, unique));
        if (existing.length === 0) return;
        await admin.deleteTopics({ topics: existing, timeout: Math.max(1, deadline - Date.now()) });
        onChange();
        // Deletion is asynchronous on the broker: resolve once the metadata no longer lists them.
        await poll(`deletion of ${existing.join(", ")}`, deadline, async () => {
          const left = new Set(await admin.listTopics());
          return existing.every((name) => !left.has(name));
        });
      });
    },
    describeTopics(names) {
      return run(`describe topics ${names.join(", ")}`, (admin) => counts(admin, names));
    },
  };
}

/** Options of {@link probeKafka} and {@link ensureTopics}. */
export interface KafkaAdminCallOptions {
  /** Deadline of the whole call. @default 30000 (ensureTopics), 5000 (probeKafka) */
  timeoutMs?: number;
  logger?: BusLogger;
  /** TLS and SASL, as {@link KafkaBusOptions.security}. */
  security?: KafkaSecurity;
}

/** A short-lived admin client for one call, with few retries: these calls are polled by their callers. */
async function withAdmin<T>(
  brokers: readonly string[],
  clientId: string,
  options: KafkaAdminCallOptions & { timeoutMs: number },
  work: (admin: Admin, settings: KafkaBusSettings) => Promise<T>,
): Promise<T> {
  const settings = resolveKafkaSettings({
    clientId,
    connectionTimeoutMs: 2_000,
    requestTimeoutMs: 5_000,
    retries: 1,
    initialRetryTimeMs: 100,
    maxRetryTimeMs: 500,
    adminTimeoutMs: options.timeoutMs,
  });
  const admin = createClient(brokers, settings, options.logger ?? silent, options.security).admin();
  try {
    return await work(admin, settings);
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

/**
 * One readiness probe: a real metadata request (DescribeCluster). A TCP connect is not enough: kafkajs even reports a
 * successful `connect()` to a port that accepts and never answers. Resolves with the number of brokers; rejects when
 * the cluster does not answer within the deadline.
 */
export function probeKafka(brokers: readonly string[], options: KafkaAdminCallOptions = {}): Promise<number> {
  const timeoutMs = options.timeoutMs ?? 5_000;
  return withAdmin(brokers, "tern-probe", { ...options, timeoutMs }, (admin) =>
    withDeadline(
      (async () => {
        await admin.connect();
        const cluster = await admin.describeCluster();
        if (cluster.brokers.length === 0)
          throw new TernError("unavailable", "the cluster reports no brokers", { retriable: true });
        return cluster.brokers.length;
      })(),
      timeoutMs,
      `probe Kafka at ${brokers.join(",")}`,
    ).catch((err: unknown) => {
      throw fromKafkaError(err, `probe Kafka at ${brokers.join(",")}`);
    }),
  );
}

/**
 * Creates the topics that do not exist yet, each with `partitions` partitions, and resolves once every partition of
 * every named topic has a leader. A topic that already exists with another partition count is a
 * `kafka.partition_mismatch` error naming the topic and both counts, and nothing is created.
 */
export function ensureTopics(
  brokers: readonly string[],
  names: readonly string[],
  partitions: number,
  options: KafkaAdminCallOptions = {},
): Promise<EnsureTopicsResult> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  return withAdmin(brokers, "tern-topics", { ...options, timeoutMs }, async (admin, settings) => {
    let connected: Promise<Admin> | undefined;
    const topicAdmin = createTopicAdmin(
      () => (connected ??= admin.connect().then(() => admin)),
      settings,
      () => undefined,
    );
    return topicAdmin.ensureTopics([...names], partitions);
  });
}

/** Partitions of a consumer group to measure, per topic. */
export interface GroupPartitions {
  groupId: string;
  partitions: Record<string, readonly number[]>;
}

/**
 * The consumer lag of the given partitions of the given groups, summed: for each partition, its end offset minus the
 * group's committed offset — records written that the group has not finished. A partition the group never committed
 * counts 0 (a group without a commit starts at the partition's end, so nothing before it is waiting). One short-lived
 * admin client, one deadline for the whole call.
 * @throws TernError `unavailable` or `timeout` when the brokers do not answer in time.
 */
export function readConsumerLag(
  brokers: readonly string[],
  groups: readonly GroupPartitions[],
  options: KafkaAdminCallOptions = {},
): Promise<number> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const what = "read consumer lag";
  return withAdmin(brokers, "tern-lag", { ...options, timeoutMs }, (admin) =>
    withDeadline(
      (async () => {
        await admin.connect();
        const ends = new Map<string, Map<number, bigint>>();
        let lag = 0n;
        for (const group of groups) {
          const topics = Object.keys(group.partitions).filter((t) => (group.partitions[t] ?? []).length > 0);
          if (topics.length === 0) continue;
          for (const { topic, partitions } of await admin.fetchOffsets({ groupId: group.groupId, topics })) {
            let end = ends.get(topic);
            if (end === undefined) {
              end = new Map((await admin.fetchTopicOffsets(topic)).map((p) => [p.partition, BigInt(p.high)]));
              ends.set(topic, end);
            }
            const wanted = new Set(group.partitions[topic]);
            for (const p of partitions) {
              const committed = BigInt(p.offset);
              if (!wanted.has(p.partition) || committed < 0n) continue;
              const high = end.get(p.partition) ?? committed;
              if (high > committed) lag += high - committed;
            }
          }
        }
        return Number(lag);
      })(),
      timeoutMs,
      what,
    ).catch((err: unknown) => {
      throw fromKafkaError(err, what);
    }),
  );
}

// ---------------------------------------------------------------------------------------------------------------
// The bus

function headerText(value: IHeaders[string]): string {
  if (value === undefined) return "";
  const last = Array.isArray(value) ? value.at(-1) : value;
  return last === undefined ? "" : last.toString();
}

/** The co-partitioning assigner wired to kafkajs's wire codec, as `createKafkaBus` gives it to its consumers. */
export const kafkaCoPartitionedAssigner = coPartitionedAssigner(AssignerProtocol);

// kafkajs adds its error classes to its exports by spreading an object, which Node's ESM loader cannot see as named
// exports of a CommonJS module (vitest can): read them from the default export.
const { KafkaJSError } = kafkajs;

/** Thrown out of a batch handler to abandon the batch unresolved (kafkajs then neither resolves nor commits it). */
class BatchAbandoned extends KafkaJSError {
  constructor(reason: string) {
    super(reason, { retriable: true });
  }
}

/** A checked `send` waiting for its turn in a producer's next request. */
interface Waiting {
  messages: OutgoingMessage[];
  bytes: number;
  resolve(): void;
  reject(err: unknown): void;
}

/**
 * Upper bound on the value bytes of one coalesced produce request (a send larger than this goes alone): the broker
 * refuses a record batch above its `max.message.bytes` (1 MiB by default), and one refusal would fail every send in it.
 */
const MAX_COALESCED_BYTES = 512 * 1024;

/**
 * The Kafka adapter of the {@link MessageBus} port, over kafkajs 2.2.4. Producers name the partition of every record
 * and send one request per call (grouped per topic, then per partition by the client); consumers read with
 * `eachBatch`, spread partitions with the co-partitioning assigner unless asked for round-robin, and commit as the
 * port describes. Settings: see {@link KafkaBusSettings} and docs/kafka.md.
 */
export function createKafkaBus(options: KafkaBusOptions): MessageBus {
  const settings = resolveKafkaSettings(options.settings);
  const logger = options.logger ?? silent;
  const kafka = createClient(options.brokers, settings, logger, options.security);
  const producers = new Set<BusProducer>();
  const consumers = new Set<BusConsumer>();
  let adminClient: Admin | undefined;
  let adminConnected: Promise<Admin> | undefined;
  /** Partition counts of topics a producer wrote to: a send is checked before anything goes out. */
  const partitionCounts = new Map<string, number>();

  function connectAdmin(): Promise<Admin> {
    adminConnected ??= (async () => {
      adminClient = kafka.admin({
        retry: {
          retries: settings.retries,
          initialRetryTime: settings.initialRetryTimeMs,
          maxRetryTime: settings.maxRetryTimeMs,
        },
      });
      await adminClient.connect();
      return adminClient;
    })().catch((err: unknown) => {
      adminConnected = undefined;
      throw err;
    });
    return adminConnected;
  }
  const topicAdmin = createTopicAdmin(connectAdmin, settings, () => partitionCounts.clear());

  /** Look-ups in flight per topic: a burst of sends to a new topic shares one, instead of one metadata round each. */
  const describing = new Map<string, Promise<void>>();

  async function partitionCountsOf(topics: string[]): Promise<Record<string, number>> {
    const unknown = topics.filter((t) => !partitionCounts.has(t));
    if (unknown.length > 0) {
      // Hundreds of concurrent look-ups on the one admin client (a gateway's first burst of requests to a pipeline)
      // made kafkajs fail some with "Cannot read properties of null (reading 'topicMetadata')" under load.
      const fresh = unknown.filter((t) => !describing.has(t));
      if (fresh.length > 0) {
        const lookup = topicAdmin.describeTopics(fresh).then((found) => {
          for (const [topic, count] of Object.entries(found)) partitionCounts.set(topic, count);
        });
        for (const t of fresh) describing.set(t, lookup);
        // Once settled, the next send looks again (after a failure) or finds the count cached.
        void lookup
          .catch(() => undefined)
          .finally(() => {
            for (const t of fresh) if (describing.get(t) === lookup) describing.delete(t);
          });
      }
      await Promise.all(unknown.map((t) => describing.get(t)));
    }
    return Object.fromEntries(topics.flatMap((t) => (partitionCounts.has(t) ? [[t, partitionCounts.get(t)!]] : [])));
  }

  function producer(): BusProducer {
    const client: Producer = kafka.producer({
      allowAutoTopicCreation: false,
      idempotent: settings.producer.idempotent,
      // Our partition is always named; the partitioner is set only so kafkajs does not warn about its default.
      createPartitioner: Partitioners.DefaultPartitioner,
      retry: {
        retries: settings.retries,
        initialRetryTime: settings.initialRetryTimeMs,
        maxRetryTime: settings.maxRetryTimeMs,
      },
      ...(settings.producer.idempotent ? { maxInFlightRequests: 1 } : {}),
    });
    let connected: Promise<void> | undefined;
    let closed = false;
    /** Checked sends waiting for the one in flight to end; they then go out together (see `send`). */
    let queue: Waiting[] = [];
    let inFlight = false;

    async function sendNow(batch: Waiting[]): Promise<void> {
      const byTopic = new Map<string, OutgoingMessage[]>();
      for (const w of batch)
        for (const m of w.messages) {
          const list = byTopic.get(m.topic);
          if (list === undefined) byTopic.set(m.topic, [m]);
          else list.push(m);
        }
      try {
        connected ??= client.connect().catch((err: unknown) => {
          connected = undefined;
          throw err;
        });
        await connected;
        await client.sendBatch({
          acks: settings.producer.acks,
          timeout: settings.producer.ackTimeoutMs,
          topicMessages: [...byTopic].map(([topic, records]) => ({
            topic,
            messages: records.map((m) => ({
              partition: m.partition,
              key: m.key,
              value: Buffer.from(m.value.buffer, m.value.byteOffset, m.value.byteLength),
              headers: { ...m.headers },
            })),
          })),
        });
      } catch (err) {
        for (const topic of byTopic.keys()) partitionCounts.delete(topic);
        throw fromKafkaError(err, `send to ${[...byTopic.keys()].join(", ")}`);
      }
    }

    function drain(): void {
      if (inFlight || queue.length === 0) return;
      let bytes = queue[0]!.bytes;
      let n = 1;
      while (n < queue.length && bytes + queue[n]!.bytes <= MAX_COALESCED_BYTES) bytes += queue[n++]!.bytes;
      const batch = queue.slice(0, n);
      queue = queue.slice(n);
      inFlight = true;
      sendNow(batch)
        .then(
          () => {
            for (const w of batch) w.resolve();
          },
          (err: unknown) => {
            for (const w of batch) w.reject(err);
          },
        )
        .finally(() => {
          inFlight = false;
          drain();
        });
    }

    const handle: BusProducer = {
      async send(messages: OutgoingMessage[]) {
        if (closed) throw new TernError("unavailable", "the producer is closed");
        if (messages.length === 0) return;
        const topicsOf = [...new Set(messages.map((m) => m.topic))];
        const counts = await partitionCountsOf(topicsOf);
        let bytes = 0;
        for (const m of messages) {
          const count = counts[m.topic];
          if (count === undefined) throw new TernError("not_found", `topic ${m.topic} does not exist`);
          if (!Number.isInteger(m.partition) || m.partition < 0 || m.partition >= count) {
            // kafkajs would silently drop a record for a partition it has no leader for.
            throw new TernError(
              "bad_request",
              `partition ${m.partition} does not exist in topic ${m.topic} (it has ${count})`,
            );
          }
          bytes += m.value.byteLength;
        }
        // One produce request at a time per producer: the sends asked for while one is in flight go together in the
        // next (the broker handles one connection's requests in turn anyway), so a busy worker pays the request's
        // fixed costs — framing, the broker's handling, the acknowledgement — once per round trip instead of once per
        // send. An idle producer sends at once. Only checked records are queued, so one caller's bad topic or
        // partition never fails the others.
        await new Promise<void>((resolve, reject) => {
          queue.push({ messages, bytes, resolve, reject });
          drain();
        });
      },
      async close() {
        closed = true;
        producers.delete(handle);
        if (connected !== undefined) await client.disconnect().catch(() => undefined);
      },
    };
    producers.add(handle);
    return handle;
  }

  function consumer(consumerOptions: BusConsumerOptions): BusConsumer {
    if (consumerOptions.topics.length === 0) throw new TernError("bad_request", "a consumer needs at least one topic");
    checkConsumerOptions(consumerOptions);
    const manual = consumerOptions.commit === "manual";
    const { groupId } = consumerOptions;
    const c = settings.consumer;
    let state: "new" | "running" | "stopping" | "stopped" = "new";
    let client: Consumer | undefined;
    let assignment: BusAssignment = {};
    /** Manual mode: offsets to commit (last done + 1) per `topic#partition`, and the last ones committed. */
    const pending = new Map<string, { topic: string; partition: number; offset: bigint }>();
    const committed = new Map<string, bigint>();
    let flushing: Promise<void> = Promise.resolve();
    let started: Promise<void> | undefined;
    let stopped: Promise<void> | undefined;
    const key = (topic: string, partition: number) => `${topic}#${partition}`;
    const holds = (topic: string, partition: number) => assignment[topic]?.includes(partition) ?? false;

    type Commit = (offsets: Array<{ topic: string; partition: number; offset: string }>) => Promise<void>;
    /** Commits the pending marks, one flush after another; a failed commit keeps its marks for the next flush. */
    function flush(commit: Commit): Promise<void> {
      flushing = flushing.then(async () => {
        const batch = [...pending.values()].filter((p) => holds(p.topic, p.partition));
        pending.clear();
        if (batch.length === 0) return;
        try {
          await commit(batch.map((p) => ({ topic: p.topic, partition: p.partition, offset: p.offset.toString() })));
          for (const p of batch) committed.set(key(p.topic, p.partition), p.offset);
        } catch (err) {
          logger.warn({ groupId, err }, "commit failed; the marks are kept for the next commit");
          for (const p of batch) {
            const k = key(p.topic, p.partition);
            if ((pending.get(k)?.offset ?? -1n) < p.offset) pending.set(k, p);
          }
          if (state === "running") commitSoon();
        }
      });
      return flushing;
    }
    const commitWithClient: Commit = async (offsets) => {
      await client?.commitOffsets(offsets);
    };

    /** The timer of the next commit: marks gather for `commitIntervalMs`, then go in one OffsetCommit request. */
    let commitTimer: NodeJS.Timeout | undefined;
    function commitSoon(): void {
      if (commitTimer !== undefined) return;
      commitTimer = setTimeout(() => {
        commitTimer = undefined;
        if (state === "running" && pending.size > 0) void flush(commitWithClient);
      }, c.commitIntervalMs);
      commitTimer.unref();
    }

    /** Records everything up to `offset` on the partition as done; committed with the next flush. */
    function markDone(topic: string, partition: number, next: bigint): void {
      // Only the holder commits: a partition that moved on is its new owner's to commit.
      if (next <= 0n || !holds(topic, partition)) return;
      const k = key(topic, partition);
      if (next <= (pending.get(k)?.offset ?? committed.get(k) ?? 0n)) return;
      pending.set(k, { topic, partition, offset: next });
      commitSoon();
    }

    function mark(topic: string, partition: number, offset: string): void {
      if (!manual) return;
      let next: bigint;
      try {
        next = BigInt(offset) + 1n;
      } catch {
        throw new TernError("bad_request", `offset must be a decimal integer (got ${offset})`);
      }
      markDone(topic, partition, next);
    }

    async function eachBatch(payload: EachBatchPayload): Promise<void> {
      const { batch, heartbeat, isRunning, isStale } = payload;
      const messages: BusMessage[] = batch.messages.map((m) => ({
        topic: batch.topic,
        partition: batch.partition,
        offset: m.offset,
        key: m.key?.toString() ?? "",
        value: m.value ?? new Uint8Array(),
        headers: Object.fromEntries(Object.entries(m.headers ?? {}).map(([name, value]) => [name, headerText(value)])),
      }));
      const context: BusBatchContext = {
        commit: mark,
        isRunning: () => state === "running" && isRunning(),
      };
      // kafkajs heartbeats only between batches: keep the membership alive while a slow handler works.
      const keepAlive = setInterval(() => {
        heartbeat().catch(() => undefined);
      }, c.heartbeatIntervalMs);
      try {
        for (let attempt = 0; ; attempt++) {
          try {
            await consumerOptions.onBatch(messages, context);
            break;
          } catch (err) {
            logger.warn(
              { groupId, topic: batch.topic, partition: batch.partition, offset: batch.firstOffset(), attempt, err },
              "batch handler failed; retrying the same batch",
            );
            if (state !== "running" || !isRunning() || isStale()) throw new BatchAbandoned("consumer stopping");
            await sleep(c.handlerRetryBackoffMs * 2 ** Math.min(attempt, 4));
            // Throws when the group rebalances: the batch is abandoned and its next holder replays it.
            await heartbeat();
            if (state !== "running" || !isRunning() || isStale()) throw new BatchAbandoned("consumer stopping");
          }
        }
      } finally {
        clearInterval(keepAlive);
      }
      // After-handler mode: the batch is done, up to its last offset (which counts records the client filtered out).
      if (!manual) markDone(batch.topic, batch.partition, BigInt(batch.lastOffset()) + 1n);
      if (state === "stopping" && pending.size > 0) {
        // A batch that finished while the consumer stops: commit through the batch's own commit, which works then.
        await flush(async (offsets) => {
          const topics = new Map<string, Array<{ partition: number; offset: string }>>();
          for (const o of offsets)
            topics.set(o.topic, [...(topics.get(o.topic) ?? []), { partition: o.partition, offset: o.offset }]);
          await payload.commitOffsetsIfNecessary({
            topics: [...topics].map(([topic, partitions]) => ({ topic, partitions })),
          });
        });
      }
    }

    /** Where each partition the group has no committed offset for starts: its end, or its beginning with fromBeginning. */
    async function uncommittedStarts(): Promise<Map<string, string>> {
      for (let attempt = 0; ; attempt++) {
        try {
          const admin = await connectAdmin();
          const starts = new Map<string, string>();
          const offsets = await admin.fetchOffsets({ groupId, topics: [...consumerOptions.topics] });
          for (const { topic, partitions } of offsets) {
            const none = new Set(partitions.filter((p) => BigInt(p.offset) < 0n).map((p) => p.partition));
            if (none.size === 0) continue;
            for (const p of await admin.fetchTopicOffsets(topic)) {
              if (none.has(p.partition))
                starts.set(key(topic, p.partition), consumerOptions.fromBeginning ? p.low : p.high);
            }
          }
          return starts;
        } catch (err) {
          // kafkajs does not retry an offset fetch: a group new to the broker meets NOT_COORDINATOR while its
          // coordinator loads. start()'s deadline bounds the retries.
          if (state !== "running" || (err as { retriable?: unknown }).retriable !== true) throw err;
          await sleep(Math.min(settings.maxRetryTimeMs, settings.initialRetryTimeMs * 2 ** attempt));
        }
      }
    }

    async function disconnect(): Promise<void> {
      const current = client;
      client = undefined;
      if (current === undefined) return;
      await withDeadline(current.disconnect(), c.rebalanceTimeoutMs, `stop consumer of group ${groupId}`).catch(
        (err: unknown) => logger.warn({ groupId, err }, "consumer did not stop cleanly"),
      );
    }

    const handle: BusConsumer = {
      start(startOptions = {}) {
        started ??= (async () => {
          if (state !== "new") throw new TernError("bad_request", "a stopped consumer cannot start again");
          state = "running";
          consumers.add(handle);
          const timeoutMs = startOptions.timeoutMs ?? 30_000;
          const what = `join group ${groupId}`;
          let joined!: () => void;
          let failed!: (err: unknown) => void;
          let startedOk = false;
          const holding = new Promise<void>((resolve, reject) => {
            joined = () => {
              startedOk = true;
              resolve();
            };
            failed = reject;
          });
          holding.catch(() => undefined);
          let awaitingFetch = false;
          try {
            await withDeadline(
              (async () => {
                const counts = await topicAdmin.describeTopics(consumerOptions.topics);
                const missing = consumerOptions.topics.filter((t) => counts[t] === undefined);
                if (missing.length > 0) throw new TernError("not_found", `topics do not exist: ${missing.join(", ")}`);
                // commitStartOffsets: per `topic#partition` the group has no committed offset for, where reading starts;
                // the join seeks there and the first fetch after it commits those offsets (the bus commits by itself,
                // kafkajs's autoCommit is off, so a seek alone is not committed) before start() resolves.
                const starts = consumerOptions.commitStartOffsets
                  ? await uncommittedStarts()
                  : new Map<string, string>();
                // The deadline (or a stop) may have passed meanwhile: then create nothing.
                if (state !== "running") throw new TernError("timeout", `${what}: abandoned`);
                const created = kafka.consumer({
                  groupId,
                  partitionAssigners: [
                    consumerOptions.assignment === "round-robin"
                      ? PartitionAssigners.roundRobin
                      : kafkaCoPartitionedAssigner,
                  ],
                  sessionTimeout: c.sessionTimeoutMs,
                  heartbeatInterval: c.heartbeatIntervalMs,
                  rebalanceTimeout: c.rebalanceTimeoutMs,
                  maxWaitTimeInMs: c.maxWaitTimeInMs,
                  minBytes: c.minBytes,
                  maxBytes: c.maxBytes,
                  maxBytesPerPartition: c.maxBytesPerPartition,
                  allowAutoTopicCreation: false,
                  retry: {
                    retries: settings.retries,
                    initialRetryTime: settings.initialRetryTimeMs,
                    maxRetryTime: settings.maxRetryTimeMs,
                    // After a retriable crash (broker gone a while) kafkajs rejoins, as long as we are running.
                    restartOnFailure: async () => state === "running",
                  },
                });
                client = created;
                let seeded: Array<{ topic: string; partition: number; offset: string }> = [];
                created.on(created.events.GROUP_JOIN, ({ payload }) => {
                  assignment = Object.fromEntries(
                    Object.entries(payload.memberAssignment).map(([topic, ps]) => [
                      topic,
                      [...ps].sort((a, b) => a - b),
                    ]),
                  );
                  for (const [k, p] of pending) if (!holds(p.topic, p.partition)) pending.delete(k);
                  committed.clear();
                  for (const [topic, ps] of Object.entries(assignment)) {
                    for (const partition of ps) {
                      const offset = starts.get(key(topic, partition));
                      // Once: after this commit the group has an offset there, which a later rejoin must not undo.
                      if (offset === undefined) continue;
                      starts.delete(key(topic, partition));
                      created.seek({ topic, partition, offset });
                      seeded.push({ topic, partition, offset });
                    }
                  }
                  try {
                    consumerOptions.onAssignment?.(structuredClone(assignment));
                  } catch (err) {
                    // A throw here would escape into kafkajs's join and break it.
                    logger.error({ groupId, err }, "onAssignment callback failed");
                  }
                  awaitingFetch = true;
                });
                // kafkajs resolves where a group without a committed offset starts (the end of the partition, unless
                // fromBeginning) in its first fetch after the join, not at the join: a record produced between the
                // two would be skipped. So start() resolves after that first fetch, and a record produced once
                // start() resolved is always read.
                created.on(created.events.FETCH, () => {
                  if (!awaitingFetch) return;
                  awaitingFetch = false;
                  if (seeded.length === 0) return joined();
                  const offsets = seeded;
                  seeded = [];
                  created.commitOffsets(offsets).then(joined, (err: unknown) => failed(fromKafkaError(err, what)));
                });
                created.on(created.events.REBALANCING, () => {
                  logger.debug({ groupId }, "group rebalancing");
                  // What is done goes in before the partitions may move (the coordinator still takes commits of the
                  // old generation while the members rejoin); what does not make it is replayed by the next holder.
                  if (state === "running" && pending.size > 0) void flush(commitWithClient);
                });
                created.on(created.events.CRASH, ({ payload }) => {
                  logger.error({ groupId, err: payload.error, restart: payload.restart }, "consumer crashed");
                  if (!payload.restart) {
                    assignment = {};
                    const error = fromKafkaError(payload.error, what);
                    // Before start() resolved, start() rejects; after, only the owner can bring a consumer back.
                    if (startedOk && state === "running") {
                      try {
                        consumerOptions.onFailure?.(error);
                      } catch (err) {
                        logger.error({ groupId, err }, "onFailure callback failed");
                      }
                    } else failed(error);
                  }
                });
                // After each step: if start was abandoned meanwhile, the cleanup's disconnect may have run before
                // this step reconnected the client, so disconnect again rather than leave a member running.
                const stillWanted = async () => {
                  if (state === "running") return;
                  await created.disconnect().catch(() => undefined);
                  throw new TernError("timeout", `${what}: abandoned`);
                };
                await created.connect();
                await stillWanted();
                await created.subscribe({
                  topics: [...consumerOptions.topics],
                  fromBeginning: consumerOptions.fromBeginning ?? false,
                });
                await stillWanted();
                await created.run({
                  // Commits are ours in both modes (see commitSoon): kafkajs's auto-commit sends one OffsetCommit
                  // request after every batch, which at a few records per batch cost more than the records.
                  autoCommit: false,
                  eachBatchAutoResolve: true,
                  partitionsConsumedConcurrently: c.partitionsConsumedConcurrently,
                  eachBatch,
                });
                await stillWanted();
                await holding;
              })(),
              timeoutMs,
              what,
            );
          } catch (err) {
            state = "stopped";
            consumers.delete(handle);
            assignment = {};
            await disconnect();
            throw fromKafkaError(err, what);
          }
        })();
        return started;
      },
      assignment: () => structuredClone(assignment),
      stop() {
        stopped ??= (async () => {
          // A stop during start waits for the join (or its deadline) so no client is left behind.
          await started?.catch(() => undefined);
          consumers.delete(handle);
          if (state !== "running") {
            state = "stopped";
            return;
          }
          clearTimeout(commitTimer);
          commitTimer = undefined;
          await flush(commitWithClient);
          state = "stopping";
          await disconnect();
          await flushing;
          state = "stopped";
          assignment = {};
        })();
        return stopped;
      },
    };
    return handle;
  }

  return {
    producer,
    consumer,
    admin: () => topicAdmin,
    async close() {
      await Promise.all([...consumers].map((consumer) => consumer.stop()));
      await Promise.all([...producers].map((producer) => producer.close()));
      const admin = adminClient;
      adminClient = undefined;
      adminConnected = undefined;
      await admin?.disconnect().catch(() => undefined);
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Reading the tail of topics (`tern pipeline inspect`)

/** One record read by {@link readTopicTails}: a {@link BusMessage} with the broker's timestamp. */
export interface TailRecord extends BusMessage {
  /** Milliseconds since the epoch, as the record carries it (a string, like kafkajs gives it). */
  timestamp: string;
}

/** Options of {@link readTopicTails}. */
export interface ReadTopicTailsOptions {
  /** The topics to read; each must exist. */
  topics: readonly string[];
  /** How many of the latest records to read per partition. */
  last: number;
  /** Deadline of the whole call: connecting, the offsets, joining the throwaway group, reading. */
  timeoutMs: number;
  /** Names the throwaway consumer group: `<groupPrefix>-<random>`. @default "tern-inspect" */
  groupPrefix?: string;
  logger?: BusLogger;
}

/** What {@link readTopicTails} read. */
export interface TopicTails {
  /** The records, by topic (in the order asked), partition and offset. */
  records: TailRecord[];
  /**
   * `topic[partition]` of the partitions not read up to their end (as it was when the call began) by the deadline;
   * empty when everything was read.
   */
  unfinished: string[];
}

/**
 * Reads the last `last` records of every partition of `topics`, as they were when the call began (records produced
 * meanwhile are left out), and returns them decoded into topic, partition, offset, key, headers and value bytes.
 *
 * kafkajs has no consumer outside a group (no manual assignment), so this uses a throwaway group of its own
 * (`<groupPrefix>-<random>`): it seeks each partition to its start offset as soon as the group is joined, commits
 * nothing, and deletes the group when done. The group never shares a name with a group of the platform, so reading
 * moves nobody's offsets. At the deadline it returns what it has read and names the partitions it did not finish.
 *
 * @throws TernError `not_found` naming the topics that do not exist; `bad_request` for `last` < 1; `unavailable`
 * or `timeout` when the brokers do not answer in time.
 */
export async function readTopicTails(brokers: readonly string[], options: ReadTopicTailsOptions): Promise<TopicTails> {
  const { topics, last, timeoutMs } = options;
  if (!Number.isSafeInteger(last) || last < 1) {
    throw new TernError("bad_request", `the number of records per partition must be at least 1 (got ${last})`);
  }
  const deadline = Date.now() + timeoutMs;
  const remaining = () => Math.max(1, deadline - Date.now());
  const logger = options.logger ?? silent;
  const settings = resolveKafkaSettings({
    clientId: "tern-inspect",
    connectionTimeoutMs: Math.min(3_000, timeoutMs),
    requestTimeoutMs: Math.min(10_000, timeoutMs),
    retries: 2,
    initialRetryTimeMs: 100,
    maxRetryTimeMs: 1_000,
    adminTimeoutMs: timeoutMs,
  });
  const kafka = createClient(brokers, settings, logger);
  const admin = kafka.admin();
  const groupId = `${options.groupPrefix ?? "tern-inspect"}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
  let consumer: Consumer | undefined;
  try {
    /** Per `topic#partition`: where reading starts and the end offset (exclusive) at the start of the call. */
    const ranges = new Map<string, { topic: string; partition: number; start: bigint; end: bigint }>();
    await withDeadline(
      (async () => {
        await admin.connect();
        const existing = new Set(await admin.listTopics());
        const missing = topics.filter((t) => !existing.has(t));
        if (missing.length > 0) throw new TernError("not_found", `no such topic: ${missing.join(", ")}`);
        for (const topic of new Set(topics)) {
          for (const p of await admin.fetchTopicOffsets(topic)) {
            const end = BigInt(p.high);
            const low = BigInt(p.low);
            const start = end - BigInt(last) > low ? end - BigInt(last) : low;
            if (start < end) ranges.set(`${topic}#${p.partition}`, { topic, partition: p.partition, start, end });
          }
        }
      })(),
      remaining(),
      `read the offsets of ${topics.join(", ")}`,
    );
    const wanted = [...new Set(topics)].filter((t) => [...ranges.values()].some((r) => r.topic === t));
    const read = new Map<string, TailRecord>();
    /** Partitions not yet read to their end. */
    const open = new Set(ranges.keys());
    if (open.size > 0) {
      const created = kafka.consumer({
        groupId,
        // One member: every partition comes here whatever the assigner.
        partitionAssigners: [PartitionAssigners.roundRobin],
        sessionTimeout: BROKER_MIN_SESSION_TIMEOUT_MS,
        heartbeatInterval: 1_000,
        rebalanceTimeout: Math.max(1_000, Math.min(30_000, timeoutMs)),
        maxWaitTimeInMs: 100,
        allowAutoTopicCreation: false,
        retry: { retries: 2, initialRetryTime: 100, maxRetryTime: 1_000 },
      });
      consumer = created;
      let finish: () => void = () => undefined;
      const done = new Promise<void>((resolve) => {
        finish = resolve;
      });
      // Seeks made here, inside the join and before the first fetch, are where the first fetch starts.
      created.on(created.events.GROUP_JOIN, ({ payload }) => {
        for (const [topic, partitions] of Object.entries(payload.memberAssignment)) {
          for (const partition of partitions) {
            const range = ranges.get(`${topic}#${partition}`);
            if (range !== undefined) created.seek({ topic, partition, offset: range.start.toString() });
          }
        }
      });
      await withDeadline(
        (async () => {
          await created.connect();
          await created.subscribe({ topics: wanted, fromBeginning: true });
          await created.run({
            autoCommit: false,
            eachBatch: async ({ batch }) => {
              const k = `${batch.topic}#${batch.partition}`;
              const range = ranges.get(k);
              if (range === undefined) return;
              for (const m of batch.messages) {
                const offset = BigInt(m.offset);
                if (offset < range.start || offset >= range.end) continue;
                read.set(`${k}#${m.offset}`, {
                  topic: batch.topic,
                  partition: batch.partition,
                  offset: m.offset,
                  key: m.key?.toString() ?? "",
                  value: m.value ?? new Uint8Array(),
                  headers: Object.fromEntries(
                    Object.entries(m.headers ?? {}).map(([name, value]) => [name, headerText(value)]),
                  ),
                  timestamp: m.timestamp,
                });
              }
              // lastOffset() counts records the client filtered out (e.g. transaction markers) too.
              if (BigInt(batch.lastOffset()) >= range.end - 1n) {
                open.delete(k);
                if (open.size === 0) finish();
              }
            },
          });
        })(),
        remaining(),
        `join the throwaway group ${groupId}`,
      );
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([done, new Promise<void>((resolve) => (timer = setTimeout(resolve, remaining())))]);
      clearTimeout(timer);
    }
    const order = new Map(topics.map((t, i) => [t, i]));
    const records = [...read.values()].sort(
      (a, b) =>
        order.get(a.topic)! - order.get(b.topic)! ||
        a.partition - b.partition ||
        (BigInt(a.offset) < BigInt(b.offset) ? -1 : 1),
    );
    return {
      records,
      unfinished: [...open].map((k) => {
        const r = ranges.get(k)!;
        return `${r.topic}[${r.partition}]`;
      }),
    };
  } catch (err) {
    throw fromKafkaError(err, `read ${topics.join(", ")}`);
  } finally {
    await consumer?.disconnect().catch(() => undefined);
    // The group holds no offsets (nothing was committed); deleting it leaves the broker as it was.
    if (consumer !== undefined) {
      await withDeadline(admin.deleteGroups([groupId]), 5_000, `delete group ${groupId}`).catch((err: unknown) =>
        logger.warn({ groupId, err }, "could not delete the throwaway consumer group; it expires on its own"),
      );
    }
    await admin.disconnect().catch(() => undefined);
  }
}
