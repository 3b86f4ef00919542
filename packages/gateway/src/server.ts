import { kafkaSecurityFromConfig } from "@tern/kafka";
import pino from "pino";
import { loadGatewayConfig } from "./config.js";
import { startGateway } from "./start.js";

// The Node entry: parse the environment once, start, and stop cleanly on SIGTERM/SIGINT.
const config = loadGatewayConfig();
const logger = pino({ name: "gateway", level: config.LOG_LEVEL });
const gateway = await startGateway({
  host: config.TERN_GATEWAY_HOST,
  port: config.TERN_GATEWAY_PORT,
  grpcPort: config.TERN_GATEWAY_GRPC ? config.TERN_GATEWAY_GRPC_PORT : false,
  schedulerUrl: config.TERN_SCHEDULER_URL,
  ...(config.TERN_SCHEDULER_TOKEN ? { schedulerToken: config.TERN_SCHEDULER_TOKEN } : {}),
  apiKeyHashes: config.TERN_GATEWAY_API_KEY_SHA256 ?? [],
  config: {
    deadlineMs: config.TERN_GATEWAY_DEADLINE_MS,
    bodyLimitBytes: config.TERN_GATEWAY_BODY_LIMIT_BYTES,
    validateJson: config.TERN_GATEWAY_VALIDATE_JSON,
    maxMirrorsInFlight: config.TERN_GATEWAY_MAX_MIRRORS,
    ...(config.TERN_GATEWAY_PIPELINE_TIMEOUT_MS === undefined
      ? {}
      : { pipelineDeadlineMs: config.TERN_GATEWAY_PIPELINE_TIMEOUT_MS }),
  },
  // With brokers, pipelines are served over Kafka; without, they answer 503.
  ...(config.KAFKA_BROKERS && config.KAFKA_BROKERS.length > 0
    ? {
        kafka: {
          brokers: config.KAFKA_BROKERS,
          partitions: config.KAFKA_PARTITIONS,
          prefix: config.TERN_TOPIC_PREFIX,
          namespace: config.TERN_NAMESPACE,
          readerBuckets: config.TERN_GATEWAY_PIPELINE_READER_BUCKETS,
          security: kafkaSecurityFromConfig(config),
        },
      }
    : {}),
  logger,
});
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.once(signal, () => {
    logger.info({ signal }, "gateway stopping");
    const force = setTimeout(() => process.exit(1), 10_000);
    force.unref();
    void gateway.close().then(() => process.exit(0));
  });
}
