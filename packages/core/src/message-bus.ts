/**
 * The message-bus port: what the data plane (model gateway, dataflow workers, pipeline gateway, scheduler topic
 * lifecycle) needs from Kafka, and nothing more. `@tern/kafka` is the real adapter (the only package that imports
 * kafkajs); an in-memory adapter serves unit tests. Records follow DESIGN §3: the producer always names the partition,
 * keys are `<partition>.<resource>.<requestId>`, values are OIP protobuf bytes.
 */

import { TernError } from "./errors.js";

/** One record as a consumer receives it. */
export interface BusMessage {
  topic: string;
  partition: number;
  /** Decimal offset (64-bit, so a string). */
  offset: string;
  key: string;
  value: Uint8Array;
  headers: Record<string, string>;
}

/** One record to produce. */
export interface OutgoingMessage {
  topic: string;
  /** Always named: Tern's partition function is not the client's default partitioner. */
  partition: number;
  key: string;
  value: Uint8Array;
  headers?: Record<string, string>;
}

export interface BusProducer {
  /** Sends the records (batched per topic-partition); resolves when the broker acknowledged them. */
  send(messages: OutgoingMessage[]): Promise<void>;
  close(): Promise<void>;
}

/** Partitions held by a consumer, per topic. */
export type BusAssignment = Record<string, number[]>;

export interface BusConsumerOptions {
  groupId: string;
  topics: string[];
  /**
   * Assignment strategy. `co-partitioned`: partition k of every subscribed topic goes to the same member (joins and
   * request-scoped state need it). `round-robin`: the client's default spread.
   * @default "co-partitioned"
   */
  assignment?: "co-partitioned" | "round-robin";
  /** Where a group with no committed offset starts reading. @default false (only new records) */
  fromBeginning?: boolean;
  /**
   * Commits, before `start()` resolves, where this consumer starts reading each partition its group has no committed
   * offset for (the end of the partition, or its beginning with `fromBeginning`). The group's next member then resumes
   * there, even on a partition this one read nothing from, instead of at the end as it is at that member's start:
   * a record written between a stop and the next start is read. For a group with one member at a time (a second
   * member could commit between this one's look-up and its commit); only with `after-handler` commits.
   * @default false
   */
  commitStartOffsets?: boolean;
  /**
   * Who commits. `after-handler`: the offsets of a batch are committed once `onBatch` resolved for it. `manual`: only
   * what the handler passes to {@link BusBatchContext.commit} is committed (at-least-once for work that outlives
   * the handler, e.g. a pipeline request waiting for its steps).
   * @default "after-handler"
   */
  commit?: "after-handler" | "manual";
  /** Handles the records fetched from one topic-partition, in offset order. A throw is retried, never skipped silently. */
  onBatch(messages: BusMessage[], context: BusBatchContext): Promise<void>;
  /** Called after every (re)assignment with the partitions this member now holds. */
  onAssignment?(assignment: BusAssignment): void;
  /**
   * Called once when the consumer stopped for good after `start()` resolved (a failure the client does not recover
   * from on its own): the member left its group and holds nothing. The owner must start a new consumer, or nothing is
   * read. Failures before `start()` resolved reject `start()` instead.
   */
  onFailure?(error: unknown): void;
}

/**
 * Refuses consumer options that cannot work together; every adapter calls it when a consumer is made.
 * @throws TernError `bad_request` for `commitStartOffsets` with `manual` commits.
 */
export function checkConsumerOptions(options: BusConsumerOptions): void {
  if (options.commitStartOffsets && options.commit === "manual") {
    // A manual consumer commits only what its handler marks: committing a start it never handled is not its to do.
    throw new TernError(
      "bad_request",
      `group ${options.groupId}: commitStartOffsets works only with after-handler commits, not manual`,
    );
  }
}

export interface BusBatchContext {
  /** Marks everything up to and including `offset` on this topic-partition as done (manual commit mode). */
  commit(topic: string, partition: number, offset: string): void;
  /** True while the consumer is still running; handlers with long loops check it. */
  isRunning(): boolean;
}

export interface BusConsumer {
  /**
   * Joins the group; resolves once this member holds an assignment and knows where it reads each partition from, so a
   * record produced after `start()` resolved is delivered even to a new group without `fromBeginning`. Rejects after
   * `timeoutMs` (`timeout`), or with `not_found` when a topic does not exist.
   */
  start(options?: { timeoutMs?: number }): Promise<void>;
  /** The partitions this member holds now (empty before the first assignment). */
  assignment(): BusAssignment;
  /** Finishes the batches in hand, commits, leaves the group. Idempotent. */
  stop(): Promise<void>;
}

/** What {@link TopicAdmin.ensureTopics} did. */
export interface EnsureTopicsResult {
  created: string[];
  existing: string[];
}

/** Topic lifecycle; the scheduler owns it (DESIGN §3). */
export interface TopicAdmin {
  /**
   * Creates the topics that are missing, each with `partitions` partitions.
   * @throws TernError `kafka.partition_mismatch` when an existing topic has another partition count (the message names it).
   */
  ensureTopics(topics: string[], partitions: number): Promise<EnsureTopicsResult>;
  /** Deletes the topics that exist; missing ones are not an error. */
  deleteTopics(topics: string[]): Promise<void>;
  /** Partition count per existing topic among `topics` (missing topics are absent). */
  describeTopics(topics: string[]): Promise<Record<string, number>>;
}

export interface MessageBus {
  producer(): BusProducer;
  consumer(options: BusConsumerOptions): BusConsumer;
  admin(): TopicAdmin;
  /** Closes every producer, consumer and admin client this bus opened. */
  close(): Promise<void>;
}
