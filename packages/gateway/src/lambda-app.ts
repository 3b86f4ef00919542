import type { Hono } from "hono";
import type { Logger } from "pino";
import { createApiKeyCheck } from "./api-keys.js";
import { createApp } from "./app.js";
import { loadGatewayConfig } from "./config.js";
import { createDynamoDbRouteReader, createDynamoDbRouteSource } from "./dynamodb-route-source.js";
import type { RouteSource } from "./route-source.js";
import { createHttpUpstream } from "./upstream.js";

/**
 * The app as the Lambda entry builds it: routes from the DynamoDB item with a short cache, no /metrics (CloudWatch
 * sees the function), no gRPC. `routes` is injectable so tests can drive the real entry with synthetic events.
 */
export function createLambdaApp(env: Record<string, string | undefined>, logger: Logger, routes?: RouteSource): Hono {
  const config = loadGatewayConfig(env);
  logger.level = config.LOG_LEVEL;
  const source =
    routes ??
    createDynamoDbRouteSource({
      read: createDynamoDbRouteReader({
        tableName: config.TERN_TABLE,
        region: config.AWS_REGION,
        ...(config.DYNAMODB_ENDPOINT ? { endpoint: config.DYNAMODB_ENDPOINT } : {}),
      }),
      logger,
      cacheMs: config.TERN_GATEWAY_ROUTE_CACHE_MS,
      staleMs: config.TERN_GATEWAY_ROUTE_STALE_MS,
      readTimeoutMs: config.TERN_GATEWAY_ROUTE_READ_TIMEOUT_MS,
    });
  const apiKeys = createApiKeyCheck(config.TERN_GATEWAY_API_KEY_SHA256 ?? []);
  return createApp({
    routes: source,
    upstream: createHttpUpstream(),
    logger,
    config: {
      deadlineMs: config.TERN_GATEWAY_DEADLINE_MS,
      bodyLimitBytes: config.TERN_GATEWAY_BODY_LIMIT_BYTES,
      validateJson: config.TERN_GATEWAY_VALIDATE_JSON,
      maxMirrorsInFlight: config.TERN_GATEWAY_MAX_MIRRORS,
    },
    ...(apiKeys ? { apiKeys } : {}),
  });
}
