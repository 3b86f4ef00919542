import { z } from "zod";
import { TernError } from "./errors.js";

/**
 * Parses environment variables with a zod object schema whose keys ARE the variable names, so that every problem
 * names the variable to fix. Each component defines its schema in its own `config.ts` and calls this once at the
 * process edge; nothing else reads `process.env`.
 */
export function parseEnv<S extends z.ZodObject>(
  schema: S,
  env: Record<string, string | undefined> = process.env,
): z.infer<S> {
  // Empty strings mean "unset": `FOO= npm start` should fall back to the default, not fail validation.
  const cleaned: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) {
    if (value !== undefined && value !== "") cleaned[key] = value;
  }
  const result = schema.safeParse(cleaned);
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => {
    const name = issue.path.join(".") || "(environment)";
    const given = cleaned[String(issue.path[0])];
    return `${name}: ${issue.message}${given === undefined ? "" : ` (got ${JSON.stringify(given)})`}`;
  });
  throw new TernError("config.invalid", `invalid configuration:\n  ${lines.join("\n  ")}`);
}

/** Helpers for the common shapes of environment variables. */
export const envVar = {
  port: (fallback: number) => z.coerce.number().int().min(0).max(65535).default(fallback),
  int: (fallback: number, min = 0) => z.coerce.number().int().min(min).default(fallback),
  bool: (fallback: boolean) =>
    z
      .enum(["true", "false", "1", "0", "yes", "no"])
      .default(fallback ? "true" : "false")
      .transform((v) => v === "true" || v === "1" || v === "yes"),
  list: () =>
    z.string().transform((v) =>
      v
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s.length > 0),
    ),
};

/** Variables shared by every component. */
export const sharedEnvSchema = z.object({
  /** Comma-separated `host:port` list. Unset locally: the dev stack starts a broker on localhost:9092. */
  KAFKA_BROKERS: envVar.list().optional(),
  /** The one partition count every Tern topic has (joins need co-partitioning). */
  KAFKA_PARTITIONS: envVar.int(4, 1),
  /**
   * How clients authenticate to the brokers: `aws-msk-iam` (MSK with IAM: SASL/OAUTHBEARER signed with the process's
   * AWS role, TLS on), `plain` or `scram-sha-512` (with KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD). Unset: none.
   */
  KAFKA_SASL_MECHANISM: z.enum(["aws-msk-iam", "plain", "scram-sha-512"]).optional(),
  /** TLS to the brokers (always on with aws-msk-iam). */
  KAFKA_SSL: envVar.bool(false),
  KAFKA_SASL_USERNAME: z.string().optional(),
  KAFKA_SASL_PASSWORD: z.string().optional(),
  /** Unset locally: the dev stack starts DynamoDB Local on http://localhost:8000. */
  DYNAMODB_ENDPOINT: z.string().url().optional(),
  AWS_REGION: z.string().default("us-east-1"),
  /** The DynamoDB table holding all Tern state. */
  TERN_TABLE: z.string().min(3).default("tern"),
  /** Kafka topic prefix and namespace: topics are `<prefix>.<namespace>.model.<m>.inputs` etc. */
  TERN_TOPIC_PREFIX: z
    .string()
    .regex(/^[a-zA-Z0-9_-]+$/, "letters, digits, - and _ only (dots would make topic names ambiguous)")
    .default("seldon"),
  TERN_NAMESPACE: z
    .string()
    .regex(/^[a-zA-Z0-9_-]+$/, "letters, digits, - and _ only (dots would make topic names ambiguous)")
    .default("default"),
  TERN_SCHEDULER_URL: z.string().url().default("http://127.0.0.1:9004"),
  /** When set, the control API requires `Authorization: Bearer <token>`. */
  TERN_SCHEDULER_TOKEN: z.string().optional(),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
});
export type SharedConfig = z.infer<typeof sharedEnvSchema>;

/** Variables of the model gateway's scale, shared by the scheduler (which enforces the cap) and the local stack. */
export const modelGatewayEnvSchema = z.object({
  /**
   * How many model-gateway replicas the local stack (`npm start`) runs. At most `KAFKA_PARTITIONS`: the consumers of
   * one group never exceed the partition count, so more would sit idle.
   */
  TERN_MODELGATEWAY_REPLICAS: envVar.int(1, 1),
  /**
   * Buckets the models are hashed into; each bucket is one consumer group, owned by one model-gateway replica. A new
   * or removed model pauses (rebalances) only its own bucket's group, so more buckets mean smaller pauses, and at
   * least as many buckets as replicas keep every replica busy. 16 covers the default partition count (4) several
   * times over while a replica runs at most 16 consumers.
   */
  TERN_MODELGATEWAY_BUCKETS: envVar.int(16, 1),
});

/**
 * Refuses more model-gateway replicas than partitions, naming both numbers (DESIGN §3: the consumers of one group
 * never exceed the partition count).
 * @throws TernError `config.invalid`
 */
export function checkModelGatewayReplicas(config: {
  KAFKA_PARTITIONS: number;
  TERN_MODELGATEWAY_REPLICAS: number;
}): void {
  const { KAFKA_PARTITIONS: partitions, TERN_MODELGATEWAY_REPLICAS: replicas } = config;
  if (replicas > partitions) {
    throw new TernError(
      "config.invalid",
      `invalid configuration:\n  TERN_MODELGATEWAY_REPLICAS: ${replicas} model-gateway replicas exceed KAFKA_PARTITIONS ${partitions}; ` +
        `a replica beyond the partition count would sit idle: use at most ${partitions} replicas or raise KAFKA_PARTITIONS`,
    );
  }
}
