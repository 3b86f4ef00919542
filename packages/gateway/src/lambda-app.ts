import { createTopicNames } from "@tern/core";
import { createKafkaBus, kafkaSecurityFromConfig } from "@tern/kafka";
import type { Hono } from "hono";
import type { Logger } from "pino";
import { createApiKeyCheck } from "./api-keys.js";
import { createApp } from "./app.js";
import { createDynamoDbClient, createDynamoDbReplyReader } from "./dynamodb-replies.js";
import { createDynamoDbRouteReader, createDynamoDbRouteSource } from "./dynamodb-route-source.js";
import { loadLambdaConfig } from "./lambda-config.js";
import { createRefusingWaker, createSchedulerWaker } from "./model-waker.js";
import type { PipelineFront } from "./pipeline-front.js";
import { createRendezvousFront } from "./pipeline-rendezvous.js";
import type { RouteSource } from "./route-source.js";
import { createHttpUpstream } from "./upstream.js";

/**
 * The app as the Lambda entry builds it: routes from the DynamoDB item with a short cache, no /metrics (CloudWatch
 * sees the function), no gRPC. `routes` is injectable so tests can drive the real entry with synthetic events.
 *
 * With KAFKA_BROKERS it answers pipelines through the DynamoDB rendezvous (pipeline-rendezvous.ts): a Kafka producer
 * made on the first pipeline request and kept for the execution environment, no consumer group.
 *
 * With TERN_SCHEDULER_URL (in AWS: the scheduler's address in the VPC) a request for a model scaled to zero wakes it
 * through the scheduler, as the Node entry does, and waits for its route in the DynamoDB item; without it such a request
 * is answered 503 saying the model is scaled to zero and this gateway cannot wake it. The shared config gives the
 * variable a local default, so whether it is set is read from `env` itself.
 */
export function createLambdaApp(env: Record<string, string | undefined>, logger: Logger, routes?: RouteSource): Hono {
  // lambda-config.ts: the same variables as config.ts, parsed without classic zod; limits below API Gateway's.
  const config = loadLambdaConfig(env);
  logger.level = config.LOG_LEVEL;
  const dynamodb = createDynamoDbClient({
    region: config.AWS_REGION,
    ...(config.DYNAMODB_ENDPOINT ? { endpoint: config.DYNAMODB_ENDPOINT } : {}),
  });
  const source =
    routes ??
    createDynamoDbRouteSource({
      read: createDynamoDbRouteReader({
        tableName: config.TERN_TABLE,
        region: config.AWS_REGION,
        client: dynamodb,
      }),
      logger,
      cacheMs: config.TERN_GATEWAY_ROUTE_CACHE_MS,
      staleMs: config.TERN_GATEWAY_ROUTE_STALE_MS,
      readTimeoutMs: config.TERN_GATEWAY_ROUTE_READ_TIMEOUT_MS,
    });
  const waker = env.TERN_SCHEDULER_URL?.trim()
    ? createSchedulerWaker({
        url: config.TERN_SCHEDULER_URL,
        ...(config.TERN_SCHEDULER_TOKEN === undefined ? {} : { token: config.TERN_SCHEDULER_TOKEN }),
        logger: logger.child({ part: "waker" }),
      })
    : createRefusingWaker("TERN_SCHEDULER_URL unset");
  const apiKeys = createApiKeyCheck(config.TERN_GATEWAY_API_KEY_SHA256 ?? []);
  let pipelines: PipelineFront | undefined;
  if (config.KAFKA_BROKERS && config.KAFKA_BROKERS.length > 0) {
    pipelines = createRendezvousFront({
      bus: createKafkaBus({
        brokers: config.KAFKA_BROKERS,
        security: kafkaSecurityFromConfig(config),
        // Two retries (not five): a broker that cannot be reached fails the send in well under a second, and the
        // front's one reconnect follows, all within API Gateway's 30 s.
        settings: { clientId: "tern-gateway-lambda", retries: 2 },
        logger: logger.child({ part: "kafka" }),
      }),
      topics: createTopicNames({ prefix: config.TERN_TOPIC_PREFIX, namespace: config.TERN_NAMESPACE }),
      partitions: config.KAFKA_PARTITIONS,
      readReply: createDynamoDbReplyReader({ client: dynamodb, tableName: config.TERN_TABLE }),
      pollInitialMs: config.TERN_GATEWAY_REPLY_POLL_INITIAL_MS,
      pollMaxMs: config.TERN_GATEWAY_REPLY_POLL_MAX_MS,
      logger: logger.child({ part: "pipelines" }),
    });
  }
  return createApp({
    routes: source,
    upstream: createHttpUpstream(),
    logger,
    config: {
      deadlineMs: config.TERN_GATEWAY_DEADLINE_MS,
      bodyLimitBytes: config.TERN_GATEWAY_BODY_LIMIT_BYTES,
      validateJson: config.TERN_GATEWAY_VALIDATE_JSON,
      maxMirrorsInFlight: config.TERN_GATEWAY_MAX_MIRRORS,
      ...(config.TERN_GATEWAY_PIPELINE_TIMEOUT_MS === undefined
        ? {}
        : { pipelineDeadlineMs: config.TERN_GATEWAY_PIPELINE_TIMEOUT_MS }),
    },
    waker,
    ...(apiKeys ? { apiKeys } : {}),
    ...(pipelines ? { pipelines } : {}),
  });
}
