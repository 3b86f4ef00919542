import type {
  BucketAssignment,
  BusAssignment,
  BusConsumer,
  BusMessage,
  BusProducer,
  MessageBus,
  OutgoingMessage,
} from "@tern/core";
import type { Logger } from "pino";
import type { RecordProcessor } from "./record-processor.js";

/** What one bucket's consumer in this replica is doing. */
export interface BucketConsumerStatus {
  bucket: number;
  groupId: string;
  models: string[];
  /** Partitions this replica's consumer holds, per topic. */
  partitions: BusAssignment;
  state: "starting" | "running" | "failed";
  reason?: string;
}

export interface BucketConsumersOptions {
  bus: MessageBus;
  producer: BusProducer;
  processor: RecordProcessor;
  logger: Logger;
  /** Records of one fetched batch handled at once. @default 64 */
  concurrency?: number;
  /** Deadline for a bucket's consumer to join its group. @default 30000 */
  startTimeoutMs?: number;
  /**
   * A bucket whose consumer failed to start (no group coordinator yet on a fresh broker, a topic not created yet) is
   * started again after a backoff doubling from `initialMs` to `maxMs`, for as long as this replica holds the bucket.
   * @default { initialMs: 1000, maxMs: 30000 }
   */
  retry?: { initialMs?: number; maxMs?: number };
}

/**
 * Runs one consumer per held bucket. A change of a bucket's models restarts only that bucket's consumer (kafkajs
 * cannot change a running consumer's subscription); other buckets keep consuming. Records are committed after their
 * answers (or error records) were written: at-least-once.
 */
export interface BucketConsumers {
  /** Moves to exactly these buckets. Calls are applied one after another. */
  apply(assignments: readonly BucketAssignment[]): Promise<void>;
  status(): BucketConsumerStatus[];
  /** Stops every consumer (in-flight batches finish and commit). */
  stop(): Promise<void>;
}

interface Running {
  assignment: BucketAssignment;
  consumer: BusConsumer;
  status: BucketConsumerStatus;
}

export function createBucketConsumers(options: BucketConsumersOptions): BucketConsumers {
  const concurrency = options.concurrency ?? 64;
  const startTimeoutMs = options.startTimeoutMs ?? 30_000;
  const retryInitialMs = options.retry?.initialMs ?? 1_000;
  const retryMaxMs = options.retry?.maxMs ?? 30_000;
  const { bus, producer, processor, logger } = options;
  const running = new Map<number, Running>();
  let queue: Promise<void> = Promise.resolve();
  let stopped = false;

  async function handle(messages: BusMessage[]): Promise<void> {
    const out: OutgoingMessage[] = [];
    let next = 0;
    const worker = async () => {
      while (next < messages.length) {
        const message = messages[next++]!;
        for (const record of await processor.process(message)) out.push(record);
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, messages.length) }, worker));
    if (out.length > 0) await producer.send(out);
  }

  function start(assignment: BucketAssignment, attempt = 0): Running {
    const status: BucketConsumerStatus = {
      bucket: assignment.bucket,
      groupId: assignment.groupId,
      models: assignment.models.map((m) => m.model),
      partitions: {},
      state: "starting",
    };
    const consumer = bus.consumer({
      groupId: assignment.groupId,
      topics: assignment.models.map((m) => m.inputTopic),
      // Model topics are independent: no co-partitioning needed.
      assignment: "round-robin",
      // A model's topic is new to its bucket's group when the model is applied: requests produced before the
      // consumer subscribed must still be answered.
      fromBeginning: true,
      commit: "after-handler",
      onBatch: (messages) => handle(messages),
      onAssignment: (partitions) => {
        status.partitions = partitions;
      },
    });
    const entry: Running = { assignment, consumer, status };
    consumer.start({ timeoutMs: startTimeoutMs }).then(
      () => {
        if (status.state === "starting") status.state = "running";
      },
      (err: unknown) => {
        status.state = "failed";
        status.reason = (err as Error).message;
        const delayMs = Math.min(retryMaxMs, retryInitialMs * 2 ** attempt);
        logger.warn({ err, bucket: assignment.bucket, retryInMs: delayMs }, "bucket consumer did not join its group");
        // Without a retry the bucket's models would go unanswered until its assignment changed.
        const timer = setTimeout(() => {
          const result = queue.then(async () => {
            if (stopped || running.get(assignment.bucket) !== entry) return;
            await consumer.stop().catch(() => undefined);
            running.set(assignment.bucket, start(assignment, attempt + 1));
          });
          queue = result.catch((retryErr: unknown) => logger.error({ err: retryErr }, "restarting a bucket failed"));
        }, delayMs);
        timer.unref?.();
      },
    );
    return entry;
  }

  async function applyNow(assignments: readonly BucketAssignment[]): Promise<void> {
    const wanted = new Map(assignments.filter((a) => a.models.length > 0).map((a) => [a.bucket, a]));
    const stops: Array<Promise<void>> = [];
    for (const [bucket, entry] of running) {
      const next = wanted.get(bucket);
      if (next && sameAssignment(next, entry.assignment)) continue;
      running.delete(bucket);
      stops.push(entry.consumer.stop());
    }
    await Promise.all(stops);
    if (stopped) return;
    for (const [bucket, assignment] of wanted) {
      if (running.has(bucket)) continue;
      running.set(bucket, start(assignment));
      logger.info(
        { bucket, groupId: assignment.groupId, models: assignment.models.map((m) => m.model) },
        "bucket consumer started",
      );
    }
  }

  return {
    apply(assignments) {
      const result = queue.then(() => applyNow(assignments));
      queue = result.catch((err: unknown) => logger.error({ err }, "applying bucket assignments failed"));
      return result;
    },
    status: () => [...running.values()].map((r) => ({ ...r.status })).sort((a, b) => a.bucket - b.bucket),
    async stop() {
      stopped = true;
      await queue;
      const all = [...running.values()];
      running.clear();
      await Promise.all(all.map((r) => r.consumer.stop()));
    },
  };
}

function sameAssignment(a: BucketAssignment, b: BucketAssignment): boolean {
  if (a.groupId !== b.groupId || a.models.length !== b.models.length) return false;
  const topics = new Set(a.models.map((m) => m.inputTopic));
  return b.models.every((m) => topics.has(m.inputTopic));
}
