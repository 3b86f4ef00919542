import { createTopicNames, createWorkerClient, exitAfter, hasCode, runEntry, stopSignal } from "@tern/core";
import { createKafkaBus, kafkaSecurityFromConfig } from "@tern/kafka";
import { createReplicaIdProcess } from "@tern/scheduler/replica-id";
import { pino } from "pino";
import { heartbeatIntervalFor, loadDataflowConfig } from "./config.js";
import { createDynamoDbReplyWriter } from "./dynamodb-replies.js";
import { resolveDataflowId } from "./replica-id.js";
import { createSchedulerSpecs } from "./scheduler-specs.js";
import { createDataflowWorker } from "./worker.js";

/**
 * The dataflow worker process: `node --import tsx packages/dataflow/src/main.ts`. Registers with the scheduler as
 * worker TERN_DATAFLOW_ID (kind `dataflow`), runs the pipelines it is assigned, reports what it runs with every
 * heartbeat. SIGTERM/SIGINT: every pipeline drains, stops and leaves its group, the worker leaves the scheduler, and
 * the process exits 0 — all within TERN_DATAFLOW_DRAIN_MS.
 */
async function main(): Promise<number> {
  let config: ReturnType<typeof loadDataflowConfig>;
  try {
    config = loadDataflowConfig();
  } catch (err) {
    process.stderr.write(`tern dataflow: ${(err as Error).message}\n`);
    return hasCode(err, "config.invalid") ? 2 : 1;
  }
  if (!config.KAFKA_BROKERS || config.KAFKA_BROKERS.length === 0) {
    process.stderr.write("tern dataflow: invalid configuration:\n  KAFKA_BROKERS: required (host:port,...)\n");
    return 2;
  }
  const baseLogger = pino({ level: config.LOG_LEVEL, base: { component: "dataflow" } });
  // TERN_DATAFLOW_ID=auto (ECS): claim dataflow-<index> in TERN_TABLE; a lost claim means another worker may have our
  // id, so the process exits at once (75) and the supervisor starts a fresh one. (Making the store does no I/O.)
  const replicaId = createReplicaIdProcess({
    config,
    logger: baseLogger,
    restarts: "the dataflow worker with a fresh id",
  });
  let id: string;
  try {
    ({ id } = await replicaId.resolve((deps) => resolveDataflowId(config, deps)));
  } catch (err) {
    process.stderr.write(`tern dataflow: ${(err as Error).message}\n`);
    await replicaId.close();
    return 1;
  }
  const logger = baseLogger.child({ id });
  const token = config.TERN_SCHEDULER_TOKEN ? { token: config.TERN_SCHEDULER_TOKEN } : {};
  const session = config.TERN_DATAFLOW_SESSION_TIMEOUT_MS;
  // The Lambda gateway's rendezvous: answers of requests with `tern-reply-to: dynamodb` also go to the state table.
  const replies = createDynamoDbReplyWriter({
    tableName: config.TERN_TABLE,
    region: config.AWS_REGION,
    ...(config.DYNAMODB_ENDPOINT ? { endpoint: config.DYNAMODB_ENDPOINT } : {}),
    ttlSeconds: config.TERN_DATAFLOW_REPLY_TTL_S,
    putTimeoutMs: config.TERN_DATAFLOW_REPLY_PUT_TIMEOUT_MS,
    logger: logger.child({ part: "replies" }),
  });
  const worker = createDataflowWorker({
    id,
    // The session timeout bounds failover: a crashed worker's partitions go to the pipeline's other owners this long
    // after its last heartbeat, plus one rebalance (docs/dataflow.md, "Failure bounds").
    bus: createKafkaBus({
      brokers: config.KAFKA_BROKERS,
      security: kafkaSecurityFromConfig(config),
      settings: {
        clientId: id,
        consumer: { sessionTimeoutMs: session, heartbeatIntervalMs: heartbeatIntervalFor(session) },
      },
      logger: logger.child({ part: "kafka" }),
    }),
    client: createWorkerClient({
      url: config.TERN_SCHEDULER_URL,
      kind: "dataflow",
      id,
      logger: logger.child({ part: "scheduler" }),
      ...token,
    }),
    specs: createSchedulerSpecs({ url: config.TERN_SCHEDULER_URL, ...token }),
    topics: createTopicNames({ prefix: config.TERN_TOPIC_PREFIX, namespace: config.TERN_NAMESPACE }),
    logger,
    drainMs: config.TERN_DATAFLOW_DRAIN_MS,
    startTimeoutMs: config.TERN_DATAFLOW_START_TIMEOUT_MS,
    specTimeoutMs: config.TERN_DATAFLOW_SPEC_TIMEOUT_MS,
    maxOpen: config.TERN_DATAFLOW_MAX_OPEN,
    replies,
    ...(config.TERN_DATAFLOW_REQUEST_TIMEOUT_MS === undefined
      ? {}
      : { requestTimeoutMs: config.TERN_DATAFLOW_REQUEST_TIMEOUT_MS }),
  });
  await worker.start();
  // One line on stdout that process supervisors and tests wait for.
  process.stdout.write(`tern dataflow ${id} running\n`);

  await stopSignal(logger, "draining");
  const drainMs = config.TERN_DATAFLOW_DRAIN_MS;
  exitAfter(drainMs, () => logger.error({ drainMs }, "drain grace period over: exiting anyway"));
  // Two thirds of the grace for the requests in flight; the rest to stop the consumers, leave the groups and the
  // scheduler.
  await worker.stop(Math.floor((drainMs * 2) / 3));
  // The answers of the drained requests may still be on their way to DynamoDB.
  await replies.close(Math.floor(drainMs / 6));
  // Last: the id stays ours until the groups and the scheduler are left, then the next task may take it at once.
  await replicaId.close();
  logger.info("stopped");
  return 0;
}

runEntry("tern dataflow", main);
