import { envVar, parseEnv, sharedEnvSchema } from "@tern/core";
import { z } from "zod";

/** The gateway's environment; every variable with its default is listed in docs/gateway.md and .env.example. */
export const gatewayEnvSchema = sharedEnvSchema.extend({
  /** Address the Node entry listens on (REST and gRPC). Loopback by default: expose it on purpose. */
  TERN_GATEWAY_HOST: z.string().min(1).default("127.0.0.1"),
  TERN_GATEWAY_PORT: envVar.port(9000),
  TERN_GATEWAY_GRPC_PORT: envVar.port(9001),
  /** Serve OIP gRPC from the Node entry. */
  TERN_GATEWAY_GRPC: envVar.bool(true),
  /** Every request ends within this many milliseconds (504 / DEADLINE_EXCEEDED). */
  TERN_GATEWAY_DEADLINE_MS: envVar.int(60_000, 1),
  /** Largest request body (and gRPC message) in bytes (413 / RESOURCE_EXHAUSTED). */
  TERN_GATEWAY_BODY_LIMIT_BYTES: envVar.int(10 * 1024 * 1024, 1),
  /** Check JSON bodies at the gateway (400) instead of leaving it to the agent. */
  TERN_GATEWAY_VALIDATE_JSON: envVar.bool(false),
  /** Comma-separated hex SHA-256 digests of accepted API keys; unset: no key needed. */
  TERN_GATEWAY_API_KEY_SHA256: envVar
    .list()
    .pipe(z.array(z.string().regex(/^[0-9a-fA-F]{64}$/, "each entry must be a hex SHA-256 digest (64 hex digits)")))
    .optional(),
  /** A pipeline request (either entry with KAFKA_BROKERS) ends within this many ms (504 naming its request id). Unset: TERN_GATEWAY_DEADLINE_MS. */
  TERN_GATEWAY_PIPELINE_TIMEOUT_MS: z.coerce.number().int().min(1).optional(),
  /** Node entry with KAFKA_BROKERS: pipelines are hashed into this many buckets, one reply reader (consumer) each. */
  TERN_GATEWAY_PIPELINE_READER_BUCKETS: envVar.int(4, 1),
  /** Lambda entry with KAFKA_BROKERS: first wait between two reads of a pipeline's `reply#<id>` item; it doubles. */
  TERN_GATEWAY_REPLY_POLL_INITIAL_MS: envVar.int(5, 1),
  /** Lambda entry with KAFKA_BROKERS: the longest wait between two reads of a pipeline's reply item. */
  TERN_GATEWAY_REPLY_POLL_MAX_MS: envVar.int(50, 1),
  /** Experiment mirror copies in flight at once; beyond it copies are dropped. */
  TERN_GATEWAY_MAX_MIRRORS: envVar.int(64, 0),
  /** Lambda entry: how long the route table read from DynamoDB is reused. */
  TERN_GATEWAY_ROUTE_CACHE_MS: envVar.int(1000, 0),
  /** Lambda entry: how old a cached table may be and still be served when DynamoDB fails. */
  TERN_GATEWAY_ROUTE_STALE_MS: envVar.int(30_000, 0),
  /** Lambda entry: a DynamoDB read of the route table not answered by then fails (stale table, or 503). */
  TERN_GATEWAY_ROUTE_READ_TIMEOUT_MS: envVar.int(2000, 1),
});
export type GatewayConfig = z.infer<typeof gatewayEnvSchema>;

/** Parses the gateway's environment once, at the process edge. @throws TernError `config.invalid` naming the variable. */
export function loadGatewayConfig(env: Record<string, string | undefined> = process.env): GatewayConfig {
  return parseEnv(gatewayEnvSchema, env);
}
