import type { BusAssignment, BusProducer, MessageBus } from "@tern/core";
import type { Logger } from "pino";
import type { PipelinePlan } from "./compile.js";
import type { ReplyWriter } from "./replies.js";
import { createPipelineRunner } from "./runner.js";

export interface PipelineHostOptions {
  bus: MessageBus;
  plan: PipelinePlan;
  /** The pipeline's consumer group; a new version of the pipeline that keeps it re-reads what the old one left. */
  groupId: string;
  partitions: number;
  errorsTopic: string;
  logger: Logger;
  workerId?: string;
  /** See `PipelineRunnerOptions.requestTimeoutMs`. */
  requestTimeoutMs?: number;
  /** See `PipelineRunnerOptions.maxOpen`. */
  maxOpen?: number;
  /** See `PipelineRunnerOptions.replies`; shared by every host of a worker. */
  replies?: ReplyWriter;
  /**
   * A producer shared with other hosts (a worker's one producer: each kafkajs producer holds its own broker
   * connections and buffers). The host then leaves it open on stop. @default a producer of its own
   */
  producer?: BusProducer;
  /**
   * The consumer stopped for good after `start()` resolved (see `BusConsumerOptions.onFailure`): nothing is read until
   * the owner stops this host and starts another.
   */
  onFailure?(error: unknown): void;
}

/** One pipeline on one worker: its consumer (co-partitioned, manual commits), its producer and its runner. */
export interface PipelineHost {
  /** Resolves once the consumer holds its assignment (it may hold nothing when the group has more members than partitions). */
  start(options?: { timeoutMs?: number }): Promise<void>;
  assignment(): BusAssignment;
  inFlight(): number;
  /** See `PipelineRunner.drain`. */
  drain(timeoutMs: number): Promise<{ unfinished: number }>;
  /** Commits what is done, leaves the group, closes its own producer (not a shared one). Idempotent. */
  stop(): Promise<void>;
}

/**
 * Runs one pipeline on one worker: one consumer in `groupId` over `plan.subscribe`, with the co-partitioning
 * assignment (partition k of every topic on one member, so a request's whole life stays on one worker) and manual
 * commits (the runner marks only what is finished). A group without committed offsets starts at the beginning of
 * each topic, so a request written before the first commit is replayed after a failover rather than skipped.
 */
export function createPipelineHost(options: PipelineHostOptions): PipelineHost {
  const ownProducer = options.producer === undefined;
  const producer = options.producer ?? options.bus.producer();
  const runner = createPipelineRunner({
    plan: options.plan,
    producer,
    partitions: options.partitions,
    errorsTopic: options.errorsTopic,
    logger: options.logger,
    ...(options.workerId === undefined ? {} : { workerId: options.workerId }),
    ...(options.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: options.requestTimeoutMs }),
    ...(options.maxOpen === undefined ? {} : { maxOpen: options.maxOpen }),
    ...(options.replies === undefined ? {} : { replies: options.replies }),
  });
  const consumer = options.bus.consumer({
    groupId: options.groupId,
    topics: runner.topics,
    assignment: "co-partitioned",
    commit: "manual",
    fromBeginning: true,
    onBatch: (messages, context) => runner.onBatch(messages, context),
    onAssignment: (assignment) => runner.onAssignment(assignment),
    ...(options.onFailure === undefined ? {} : { onFailure: options.onFailure }),
  });
  let stopped: Promise<void> | undefined;
  return {
    start: (startOptions) => consumer.start(startOptions),
    assignment: () => consumer.assignment(),
    inFlight: () => runner.inFlight(),
    drain: (timeoutMs) => runner.drain(timeoutMs),
    stop() {
      stopped ??= (async () => {
        // The runner first: batches in hand finish without producing more, then the consumer commits the marks
        // made so far and leaves the group.
        await runner.close();
        await consumer.stop();
        if (ownProducer) await producer.close();
      })();
      return stopped;
    },
  };
}
