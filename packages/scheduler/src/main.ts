import { exitAfter, hasCode, type MessageBus, runEntry, stopSignal } from "@tern/core";
import { createKafkaBus, kafkaSecurityFromConfig } from "@tern/kafka";
import { pino } from "pino";
import { loadSchedulerConfig } from "./config.js";
import { startSchedulerService } from "./service.js";
import { createDynamoDbStore, ensureTable } from "./store/dynamodb-store.js";

/**
 * The scheduler process: `node --import tsx packages/scheduler/src/main.ts`. Reads its configuration from the
 * environment (see config.ts), connects to DynamoDB, serves the control API and competes for the leader lease.
 * SIGTERM/SIGINT release the lease (a standby takes over at once) and exit within TERN_SCHEDULER_SHUTDOWN_GRACE_MS.
 */
async function main(): Promise<number> {
  let config: ReturnType<typeof loadSchedulerConfig>;
  try {
    config = loadSchedulerConfig();
  } catch (err) {
    process.stderr.write(`tern scheduler: ${(err as Error).message}\n`);
    return hasCode(err, "config.invalid") ? 2 : 1;
  }
  const logger = pino({ level: config.LOG_LEVEL, base: { component: "scheduler" } });
  const table = {
    region: config.AWS_REGION,
    table: config.TERN_TABLE,
    ...(config.DYNAMODB_ENDPOINT ? { endpoint: config.DYNAMODB_ENDPOINT } : {}),
  };
  if (config.TERN_SCHEDULER_ENSURE_TABLE) {
    const { created } = await ensureTable(table);
    logger.info({ table: config.TERN_TABLE, created }, "state table ready");
  }
  const store = createDynamoDbStore(table);
  // The scheduler owns the Kafka topics (DESIGN §3). Without brokers the Kafka path is reported as not configured and
  // models still serve over HTTP.
  const bus: MessageBus | undefined =
    config.KAFKA_BROKERS && config.KAFKA_BROKERS.length > 0
      ? createKafkaBus({
          brokers: config.KAFKA_BROKERS,
          security: kafkaSecurityFromConfig(config),
          logger: logger.child({ part: "kafka" }),
        })
      : undefined;
  const service = await startSchedulerService({
    config,
    store,
    logger,
    ...(bus === undefined ? {} : { topicAdmin: bus.admin() }),
  });

  await stopSignal(logger, "shutting down");
  const graceMs = config.TERN_SCHEDULER_SHUTDOWN_GRACE_MS;
  exitAfter(graceMs, () => logger.error({ graceMs }, "shutdown grace period over: exiting anyway"));
  await service.close();
  await bus?.close();
  await store.close();
  logger.info("stopped");
  return 0;
}

runEntry("tern scheduler", main);
