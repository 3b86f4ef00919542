import { createTopicNames, type TopicAdmin, type TopicNames } from "@tern/core";
import type { Logger } from "pino";
import { type BucketPlacementOptions, DEFAULT_MODELGATEWAY_BUCKETS } from "./bucket-placement.js";
import { DEFAULT_DATAFLOW_REPLICATION, type PipelinePlacementOptions } from "./pipeline-placement.js";
import {
  DEFAULT_PIPELINE_TERMINATED_RETENTION_MS,
  type PipelineStateInputs,
  pipelineDeadlineDue,
} from "./pipeline-states.js";
import type { ClusterState } from "./records.js";
import { createTopicLifecycle, type TopicLifecycle, type TopicLifecycleOptions } from "./topics.js";
import { createWorkerRegistry, type WorkerRegistry } from "./workers.js";

/**
 * The scheduler's side of the Kafka data plane, composed in one place so `createScheduler` only hands it the state
 * and calls it after every change: the worker registry (model gateways, dataflow workers) and the topic lifecycle.
 */

/** Options of the Kafka data plane (the scheduler's `dataPlane` option). */
export interface DataPlaneOptions {
  /** KAFKA_PARTITIONS: every topic's partition count, and the most model gateways that may register. @default 4 */
  partitions?: number;
  /** Topic prefix and namespace. @default seldon/default */
  topicNames?: TopicNames;
  /** TERN_MODELGATEWAY_BUCKETS. @default 16 */
  buckets?: number;
  /** TERN_DATAFLOW_REPLICATION: the most dataflow workers that own one pipeline. @default 2 */
  replication?: number;
  /** TERN_DATAFLOW_CLEAN_TOPICS_ON_DELETE (a pipeline's `spec.dataflow.cleanTopicsOnDelete` overrides it). @default false */
  cleanTopicsOnDelete?: boolean;
  /** TERN_PIPELINE_TERMINATED_RETENTION_MS: how long a terminated pipeline stays visible. @default 24 h */
  terminatedRetentionMs?: number;
  /** The Kafka admin. Absent: topics are not managed and the status says Kafka is not configured. */
  topicAdmin?: TopicAdmin;
  /** Backoff of topic operations. */
  topicRetry?: TopicLifecycleOptions["retry"];
}

/** What the data plane needs from the scheduler composing it. */
export interface DataPlaneHost {
  logger: Logger;
  now: () => number;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  state(): ClusterState;
  revision(): number;
  change<T>(mutate: (draft: ClusterState) => T): Promise<T>;
  ensureRunning(): void;
}

export interface DataPlane {
  readonly workers: WorkerRegistry;
  /** What the reconciler places buckets with. */
  readonly bucketOptions: BucketPlacementOptions;
  /** What the reconciler places pipelines with. */
  readonly pipelineOptions: PipelinePlacementOptions;
  /** What the reconciler derives pipeline states from, now (the workers' reports, the clock). */
  pipelineStateInputs(): PipelineStateInputs;
  /** Runs a change when a pipeline's drain deadline or retention ended (called on the heartbeat timer). */
  checkDeadlines(): Promise<void>;
  adopted(before: ClusterState, after: ClusterState): void;
  topicsIdle(): Promise<void>;
  close(): void;
}

export function createDataPlane(options: DataPlaneOptions, host: DataPlaneHost): DataPlane {
  const partitions = options.partitions ?? 4;
  const topicNames = options.topicNames ?? createTopicNames();
  const buckets = options.buckets ?? DEFAULT_MODELGATEWAY_BUCKETS;
  const replication = options.replication ?? DEFAULT_DATAFLOW_REPLICATION;
  const workers = createWorkerRegistry({
    ...host,
    partitions,
    buckets,
    replication,
    topicNames,
    kafkaConfigured: options.topicAdmin !== undefined,
  });
  const topics: TopicLifecycle | undefined =
    options.topicAdmin === undefined
      ? undefined
      : createTopicLifecycle({
          admin: options.topicAdmin,
          names: topicNames,
          partitions,
          cleanTopicsOnDelete: options.cleanTopicsOnDelete ?? false,
          logger: host.logger,
          ...(options.topicRetry === undefined ? {} : { retry: options.topicRetry }),
          record: (model, outcome) =>
            host.change((draft) => {
              const record = draft.models.get(model);
              if (record === undefined || record.deleting) return;
              record.topics = outcome;
            }),
          recordPipeline: (pipeline, outcome) =>
            host.change((draft) => {
              const record = draft.pipelines.get(pipeline);
              if (record === undefined || record.deletedAt !== undefined || record.terminatedAt !== undefined) return;
              record.topics = outcome;
            }),
        });
  const pipelineStateInputs = (): PipelineStateInputs => ({
    now: host.now(),
    reports: workers.dataflowReports(),
    requireTopics: topics !== undefined,
    heartbeatTimeoutMs: host.heartbeatTimeoutMs,
    terminatedRetentionMs: options.terminatedRetentionMs ?? DEFAULT_PIPELINE_TERMINATED_RETENTION_MS,
  });
  return {
    workers,
    bucketOptions: { buckets, topicNames, requireTopics: topics !== undefined },
    pipelineOptions: { replication, topicNames },
    pipelineStateInputs,
    async checkDeadlines() {
      if (pipelineDeadlineDue(host.state(), pipelineStateInputs())) await host.change(() => undefined);
    },
    adopted(before, after) {
      topics?.adopted(before, after);
      workers.adopted(before, after);
    },
    topicsIdle: () => topics?.idle() ?? Promise.resolve(),
    close() {
      topics?.stop();
      workers.close();
    },
  };
}
