import type { MessageBus, TopicNames } from "@tern/core";
import { createBalancer, createGrpcUpstream, type RouteSource } from "@tern/gateway";
import type { Logger } from "pino";
import type { AssignmentSource } from "./assignment-source.js";
import { type BucketConsumerStatus, createBucketConsumers } from "./bucket-consumers.js";
import { createRecordProcessor } from "./record-processor.js";

export interface ModelGatewayOptions {
  bus: MessageBus;
  routes: RouteSource;
  assignments: AssignmentSource;
  topics: TopicNames;
  logger: Logger;
  /** @default 64 */
  concurrency?: number;
  /** @default 60000 */
  deadlineMs?: number;
  /** @default 5000 */
  routeWaitMs?: number;
}

export type ModelGatewayState = "starting" | "running" | "draining" | "stopped";

/** One model-gateway replica: follows its bucket assignment and runs the buckets' consumers. */
export interface ModelGateway {
  readonly state: ModelGatewayState;
  start(): Promise<void>;
  buckets(): BucketConsumerStatus[];
  /** Stops taking records, finishes and commits those in hand, leaves the groups, closes everything. Idempotent. */
  stop(): Promise<void>;
}

export function createModelGateway(options: ModelGatewayOptions): ModelGateway {
  const { bus, routes, assignments, topics, logger } = options;
  const upstream = createGrpcUpstream({ balancer: createBalancer() });
  const producer = bus.producer();
  const processor = createRecordProcessor({
    topics,
    routes,
    upstream,
    logger,
    ...(options.deadlineMs === undefined ? {} : { deadlineMs: options.deadlineMs }),
    ...(options.routeWaitMs === undefined ? {} : { routeWaitMs: options.routeWaitMs }),
  });
  const consumers = createBucketConsumers({
    bus,
    producer,
    processor,
    logger,
    ...(options.concurrency === undefined ? {} : { concurrency: options.concurrency }),
  });
  let state: ModelGatewayState = "starting";
  let stopping: Promise<void> | undefined;

  return {
    get state() {
      return state;
    },
    async start() {
      await assignments.start((buckets) => {
        if (state === "draining" || state === "stopped") return;
        void consumers.apply(buckets).catch(() => {});
      });
      state = "running";
      logger.info("model gateway running");
    },
    buckets: () => consumers.status(),
    stop() {
      stopping ??= (async () => {
        state = "draining";
        await assignments.close();
        await consumers.stop();
        await producer.close();
        await routes.close();
        upstream.close();
        await bus.close();
        state = "stopped";
      })();
      return stopping;
    },
  };
}
