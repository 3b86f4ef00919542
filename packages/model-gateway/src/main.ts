import { createTopicNames, createWorkerClient, exitAfter, hasCode, runEntry, stopSignal } from "@tern/core";
import { createSchedulerWatchSource } from "@tern/gateway";
import { createKafkaBus, kafkaSecurityFromConfig, readConsumerLag } from "@tern/kafka";
import { createReplicaIdProcess } from "@tern/scheduler/replica-id";
import { pino } from "pino";
import { bucketAssignmentSource } from "./assignment-source.js";
import { loadModelGatewayConfig } from "./config.js";
import { createCloudWatchLagSink, createLagPublisher, heldPartitions } from "./lag-metric.js";
import { createModelGateway } from "./model-gateway.js";
import { resolveModelGatewayId } from "./replica-id.js";

/**
 * The model-gateway process: `node --import tsx packages/model-gateway/src/main.ts`. Registers with the scheduler as
 * worker TERN_MODELGATEWAY_ID, runs one consumer per bucket it is given, answers each model request through the
 * model's agents. SIGTERM/SIGINT drain: in-flight records finish and commit, the groups are left, within
 * TERN_MODELGATEWAY_DRAIN_MS.
 */
async function main(): Promise<number> {
  let config: ReturnType<typeof loadModelGatewayConfig>;
  try {
    config = loadModelGatewayConfig();
  } catch (err) {
    process.stderr.write(`tern model-gateway: ${(err as Error).message}\n`);
    return hasCode(err, "config.invalid") ? 2 : 1;
  }
  if (!config.KAFKA_BROKERS || config.KAFKA_BROKERS.length === 0) {
    process.stderr.write("tern model-gateway: invalid configuration:\n  KAFKA_BROKERS: required (host:port,...)\n");
    return 2;
  }
  const baseLogger = pino({ level: config.LOG_LEVEL, base: { component: "model-gateway" } });
  // TERN_MODELGATEWAY_ID=auto (ECS): claim modelgateway-<index> in TERN_TABLE; a lost claim means another replica
  // may have our id, so the process exits at once (EX_TEMPFAIL, 75) and the supervisor starts a fresh one.
  // (Making the store does no I/O: with an explicit id nothing reaches the table.)
  const replicaId = createReplicaIdProcess({
    config,
    logger: baseLogger,
    restarts: "the model gateway with a fresh id",
  });
  let id: string;
  try {
    ({ id } = await replicaId.resolve((deps) => resolveModelGatewayId(config, deps)));
  } catch (err) {
    process.stderr.write(`tern model-gateway: ${(err as Error).message}\n`);
    await replicaId.close();
    return 1;
  }
  const logger = baseLogger.child({ id });
  const token = config.TERN_SCHEDULER_TOKEN ? { token: config.TERN_SCHEDULER_TOKEN } : {};
  const gateway = createModelGateway({
    bus: createKafkaBus({
      brokers: config.KAFKA_BROKERS,
      security: kafkaSecurityFromConfig(config),
      logger: logger.child({ part: "kafka" }),
    }),
    routes: createSchedulerWatchSource({
      url: config.TERN_SCHEDULER_URL,
      logger: logger.child({ part: "routes" }),
      ...token,
    }),
    assignments: bucketAssignmentSource(
      createWorkerClient({
        url: config.TERN_SCHEDULER_URL,
        kind: "modelgateway",
        id,
        logger: logger.child({ part: "scheduler" }),
        ...token,
      }),
    ),
    topics: createTopicNames({ prefix: config.TERN_TOPIC_PREFIX, namespace: config.TERN_NAMESPACE }),
    logger,
    concurrency: config.TERN_MODELGATEWAY_CONCURRENCY,
    deadlineMs: config.TERN_MODELGATEWAY_DEADLINE_MS,
    routeWaitMs: config.TERN_MODELGATEWAY_ROUTE_WAIT_MS,
  });
  await gateway.start();
  const brokers = config.KAFKA_BROKERS;
  const sink =
    config.TERN_MODELGATEWAY_LAG_METRIC === "cloudwatch"
      ? createCloudWatchLagSink({
          stage: config.TERN_STAGE,
          region: config.AWS_REGION,
          ...(config.TERN_CLOUDWATCH_ENDPOINT ? { endpoint: config.TERN_CLOUDWATCH_ENDPOINT } : {}),
        })
      : undefined;
  const lag =
    sink &&
    createLagPublisher({
      readLag: () =>
        readConsumerLag(brokers, heldPartitions(gateway.buckets()), { security: kafkaSecurityFromConfig(config) }),
      sink,
      intervalMs: config.TERN_MODELGATEWAY_LAG_INTERVAL_MS,
      logger: logger.child({ part: "lag-metric" }),
    });
  lag?.start();
  // One line on stdout that process supervisors and tests wait for.
  process.stdout.write(`tern model-gateway ${id} running\n`);

  await stopSignal(logger, "draining");
  const drainMs = config.TERN_MODELGATEWAY_DRAIN_MS;
  exitAfter(drainMs, () => logger.error({ drainMs }, "drain grace period over: exiting anyway"));
  await lag?.stop();
  sink?.close();
  await gateway.stop();
  // Last: the id stays ours until the groups are left, then the next task may take it at once.
  await replicaId.close();
  logger.info("stopped");
  return 0;
}

runEntry("tern model-gateway", main);
