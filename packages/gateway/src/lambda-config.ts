import { TernError } from "@tern/core";
import { KAFKA_SASL_MECHANISMS } from "@tern/kafka";
import * as z from "zod/mini";
import en from "zod/v4/locales/en.js";

// The Lambda entry parses its environment with zod/mini, not with config.ts's schema: classic zod cannot be
// tree-shaken and was a third of the bundle (455 KB of 1.3 MB), which every cold start loads. The variables are the
// same ones, with the same names, bounds and defaults as config.ts and core's sharedEnvSchema — a unit test
// (lambda-config.test.ts) parses both and fails on any drift — except the limits AWS imposes, below.
z.config(en());

/** API Gateway's HTTP API gives up on a Lambda integration after 30 s (not adjustable) and answers a bare 503. */
export const API_GATEWAY_TIMEOUT_MS = 30_000;
/** A synchronous Lambda invocation carries at most 6 MB of request and 6 MB of response (the event and the result as JSON). */
export const LAMBDA_PAYLOAD_LIMIT_BYTES = 6 * 1024 * 1024;
/**
 * The default request body limit on Lambda: 4 MiB. API Gateway base64-encodes a binary body (OIP's binary tensors,
 * `application/octet-stream`) in the event, so 4 MiB arrive as 5.33 MiB of event body, leaving 0.67 MiB of the 6 MB
 * for headers and request context. A larger body that still fits gets our 413; one beyond 6 MB never reaches us.
 */
export const LAMBDA_DEFAULT_BODY_LIMIT_BYTES = 4 * 1024 * 1024;
/** The default deadline on Lambda: 25 s, so our 504 comes before API Gateway's 503 at 30 s, with room for a cold start. */
export const LAMBDA_DEFAULT_DEADLINE_MS = 25_000;
/** The longest deadline the Lambda entry accepts: one second under API Gateway's 30 s. */
export const LAMBDA_MAX_DEADLINE_MS = API_GATEWAY_TIMEOUT_MS - 1_000;

const int = (fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER) =>
  z._default(z.coerce.number().check(z.int(), z.minimum(min), z.maximum(max)), fallback);
const bool = (fallback: boolean) =>
  z.pipe(
    z._default(z.enum(["true", "false", "1", "0", "yes", "no"]), fallback ? "true" : "false"),
    z.transform((v) => v === "true" || v === "1" || v === "yes"),
  );
const list = () =>
  z.pipe(
    z.string(),
    z.transform((v) =>
      v
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s.length > 0),
    ),
  );
const topicPart = (fallback: string) =>
  z._default(
    z
      .string()
      .check(z.regex(/^[a-zA-Z0-9_-]+$/, "letters, digits, - and _ only (dots would make topic names ambiguous)")),
    fallback,
  );
const deadlineMessage = `at most ${LAMBDA_MAX_DEADLINE_MS} on Lambda (API Gateway's HTTP API gives up after ${API_GATEWAY_TIMEOUT_MS} ms)`;

/** The Lambda entry's environment: the subset of the gateway's variables it reads (docs/gateway.md, docs/lambda.md). */
export const lambdaEnvSchema = z.object({
  KAFKA_BROKERS: z.optional(list()),
  KAFKA_PARTITIONS: int(4, 1),
  KAFKA_SASL_MECHANISM: z.optional(z.enum(KAFKA_SASL_MECHANISMS as ["aws-msk-iam", "plain", "scram-sha-512"])),
  KAFKA_SSL: bool(false),
  KAFKA_SASL_USERNAME: z.optional(z.string()),
  KAFKA_SASL_PASSWORD: z.optional(z.string()),
  DYNAMODB_ENDPOINT: z.optional(z.url()),
  AWS_REGION: z._default(z.string(), "us-east-1"),
  TERN_TABLE: z._default(z.string().check(z.minLength(3)), "tern"),
  TERN_TOPIC_PREFIX: topicPart("seldon"),
  TERN_NAMESPACE: topicPart("default"),
  /** The scheduler a model scaled to zero is woken through; whether it is set is read from the raw env (lambda-app.ts). */
  TERN_SCHEDULER_URL: z._default(z.url(), "http://127.0.0.1:9004"),
  TERN_SCHEDULER_TOKEN: z.optional(z.string()),
  LOG_LEVEL: z._default(z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]), "info"),
  /** Every request ends within this many ms (504). Lambda: 25 s by default, at most 29 s. */
  TERN_GATEWAY_DEADLINE_MS: z._default(
    z.coerce.number().check(z.int(), z.minimum(1), z.maximum(LAMBDA_MAX_DEADLINE_MS, deadlineMessage)),
    LAMBDA_DEFAULT_DEADLINE_MS,
  ),
  /** Largest request body in bytes (413). Lambda: 4 MiB by default, at most the 6 MB an invocation carries. */
  TERN_GATEWAY_BODY_LIMIT_BYTES: z._default(
    z.coerce
      .number()
      .check(
        z.int(),
        z.minimum(1),
        z.maximum(
          LAMBDA_PAYLOAD_LIMIT_BYTES,
          `at most ${LAMBDA_PAYLOAD_LIMIT_BYTES} on Lambda (a synchronous invocation carries at most 6 MB)`,
        ),
      ),
    LAMBDA_DEFAULT_BODY_LIMIT_BYTES,
  ),
  TERN_GATEWAY_VALIDATE_JSON: bool(false),
  TERN_GATEWAY_API_KEY_SHA256: z.optional(
    z.pipe(
      list(),
      z.array(
        z.string().check(z.regex(/^[0-9a-fA-F]{64}$/, "each entry must be a hex SHA-256 digest (64 hex digits)")),
      ),
    ),
  ),
  /** A pipeline request ends within this many ms; unset: TERN_GATEWAY_DEADLINE_MS. At most 29 s on Lambda. */
  TERN_GATEWAY_PIPELINE_TIMEOUT_MS: z.optional(
    z.coerce.number().check(z.int(), z.minimum(1), z.maximum(LAMBDA_MAX_DEADLINE_MS, deadlineMessage)),
  ),
  TERN_GATEWAY_REPLY_POLL_INITIAL_MS: int(5, 1),
  TERN_GATEWAY_REPLY_POLL_MAX_MS: int(50, 1),
  TERN_GATEWAY_MAX_MIRRORS: int(64, 0),
  TERN_GATEWAY_ROUTE_CACHE_MS: int(1000, 0),
  TERN_GATEWAY_ROUTE_STALE_MS: int(30_000, 0),
  TERN_GATEWAY_ROUTE_READ_TIMEOUT_MS: int(2000, 1),
});
export type LambdaConfig = z.infer<typeof lambdaEnvSchema>;

/**
 * Parses the Lambda entry's environment once, at cold start; empty strings count as unset, as in core's parseEnv.
 * @throws TernError `config.invalid` naming each bad variable
 */
export function loadLambdaConfig(env: Record<string, string | undefined>): LambdaConfig {
  const cleaned: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) {
    if (value !== undefined && value !== "") cleaned[key] = value;
  }
  const result = z.safeParse(lambdaEnvSchema, cleaned);
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => {
    const name = issue.path.join(".") || "(environment)";
    const given = cleaned[String(issue.path[0])];
    return `${name}: ${issue.message}${given === undefined ? "" : ` (got ${JSON.stringify(given)})`}`;
  });
  throw new TernError("config.invalid", `invalid configuration:\n  ${lines.join("\n  ")}`);
}
