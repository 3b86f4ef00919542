import { envVar, parseEnv, sharedEnvSchema, TernError } from "@tern/core";
import { z } from "zod";

/**
 * Everything the stacks take from the deploying machine's environment, in one place (docs/deploy.md lists each
 * variable). Parsed once per app at synthesis; a bad value stops `sst deploy` with a message naming the variable.
 */
export const stackEnvSchema = sharedEnvSchema
  .pick({ KAFKA_PARTITIONS: true, KAFKA_BROKERS: true, TERN_TOPIC_PREFIX: true, TERN_NAMESPACE: true, LOG_LEVEL: true })
  .extend({
    /** Kafka's SASL mechanism for external brokers (KAFKA_BROKERS). Unset: no SASL. MSK always uses IAM. */
    KAFKA_SASL_MECHANISM: z.enum(["plain", "scram-sha-256", "scram-sha-512"]).optional(),
    /** SASL user name for external brokers. */
    KAFKA_SASL_USERNAME: z.string().min(1).optional(),
    /** Name or ARN of the Secrets Manager secret holding the SASL password (a plain string). */
    KAFKA_SASL_PASSWORD_SECRET: z.string().min(1).optional(),
    /** TLS to external brokers. @default true when KAFKA_SASL_MECHANISM is set, else false */
    KAFKA_SSL: z
      .enum(["true", "false", "1", "0", "yes", "no"])
      .transform((v) => v === "true" || v === "1" || v === "yes")
      .optional(),
    /** MSK flavour when KAFKA_BROKERS is unset: `provisioned` (brokers you size; cheaper idle) or `serverless`. */
    TERN_MSK_MODE: z.enum(["provisioned", "serverless"]).default("provisioned"),
    /** MSK provisioned: broker instance type. */
    TERN_MSK_INSTANCE_TYPE: z.string().min(1).default("kafka.t3.small"),
    /** MSK provisioned: brokers in each of the VPC's availability zones. */
    TERN_MSK_BROKERS_PER_AZ: envVar.int(1, 1),
    /** MSK provisioned: EBS volume per broker, GiB. */
    TERN_MSK_VOLUME_GB: envVar.int(20, 1),
    /** MSK provisioned: Kafka version. */
    TERN_MSK_KAFKA_VERSION: z.string().min(1).default("3.9.x"),
    /** Availability zones the VPC spans (2 or 3). */
    TERN_AZS: envVar.int(2, 2).pipe(z.number().max(3, "at most 3 availability zones")),
    /** NAT gateways (one per AZ at most): private tasks reach ECR, CloudWatch, ECS and http(s) artifacts through them. */
    TERN_NAT_GATEWAYS: envVar.int(1, 1),
    /** Dataflow workers the control container runs beside the scheduler. */
    TERN_DATAFLOW_WORKERS: envVar.int(2, 0),
    /** Tasks of the optional second service that runs only dataflow workers (TERN_DATAFLOW_WORKERS each). 0: none. */
    TERN_DATAFLOW_EXTRA_TASKS: envVar.int(0, 0),
    /** Model-gateway tasks kept when there is no lag. At most KAFKA_PARTITIONS. */
    TERN_MODELGATEWAY_MIN_TASKS: envVar.int(1, 1),
    /** The lag (records waiting, as the ModelGatewayLag metric reports it) the model gateway's autoscaling holds. */
    TERN_MODELGATEWAY_LAG_TARGET: envVar.int(100, 1),
    /** The gateway Lambda's reserved concurrency: the most instances it runs at once (the cap). */
    TERN_LAMBDA_RESERVED_CONCURRENCY: envVar.int(100, 1),
    /** Provisioned concurrency kept warm at least (0 with a max of 0: none). */
    TERN_LAMBDA_PROVISIONED_MIN: envVar.int(0, 0),
    /** Provisioned concurrency at most; 0 turns provisioned concurrency (and its autoscaling) off. */
    TERN_LAMBDA_PROVISIONED_MAX: envVar.int(0, 0),
    /** Target utilisation of the provisioned concurrency (0–1); above it Application Auto Scaling adds instances. */
    TERN_LAMBDA_PROVISIONED_UTILIZATION: z.coerce.number().gt(0).lt(1).default(0.7),
    /** Memory of the gateway Lambda, MB (CPU grows with it). */
    TERN_LAMBDA_MEMORY_MB: envVar.int(1024, 128).pipe(z.number().max(10_240, "Lambda allows at most 10240 MB")),
    /** The gateway's request deadline on Lambda, ms: below API Gateway's 30 s so our 504 comes first. */
    TERN_GATEWAY_DEADLINE_MS: envVar
      .int(25_000, 1)
      .pipe(z.number().max(28_000, "must stay below API Gateway's 30 s integration timeout (at most 28000)")),
    /** A pipeline request's deadline on Lambda, ms. Unset: TERN_GATEWAY_DEADLINE_MS. */
    TERN_GATEWAY_PIPELINE_TIMEOUT_MS: z.coerce
      .number()
      .int()
      .min(1)
      .max(28_000, "must stay below API Gateway's 30 s integration timeout (at most 28000)")
      .optional(),
    /** Largest request body on Lambda, bytes: a binary body travels base64 (4/3) in the 6 MB invocation payload. */
    TERN_GATEWAY_BODY_LIMIT_BYTES: envVar
      .int(4 * 1024 * 1024, 1)
      .pipe(
        z
          .number()
          .max(
            4_500_000,
            "at most 4500000: Lambda's invocation payload is 6 MB and a binary body is base64-encoded in it (4/3)",
          ),
      ),
    /** Who may call the HTTPS endpoint: `api-key` (the gateway checks TERN_GATEWAY_API_KEY_SHA256), `jwt`, or `none`. */
    TERN_AUTH: z.enum(["api-key", "jwt", "none"]).default("api-key"),
    /** TERN_AUTH=api-key: comma-separated hex SHA-256 digests of the accepted keys. */
    TERN_GATEWAY_API_KEY_SHA256: envVar
      .list()
      .pipe(z.array(z.string().regex(/^[0-9a-fA-F]{64}$/, "each entry must be a hex SHA-256 digest (64 hex digits)")))
      .optional(),
    /** TERN_AUTH=jwt: the issuer URL (its `/.well-known/openid-configuration` is read by API Gateway). */
    TERN_JWT_ISSUER: z.string().url().optional(),
    /** TERN_AUTH=jwt: accepted audiences, comma-separated. */
    TERN_JWT_AUDIENCE: envVar.list().optional(),
    /** S3 buckets agents may read model artifacts (`s3://`) from, comma-separated. Unset: none. */
    TERN_ARTIFACT_BUCKETS: envVar.list().optional(),
    /** Image URIs from a registry instead of building docker/*.Dockerfile at deploy. */
    TERN_IMAGE_CONTROL: z.string().min(1).optional(),
    TERN_IMAGE_MODEL_GATEWAY: z.string().min(1).optional(),
    TERN_IMAGE_AGENT_ONNX: z.string().min(1).optional(),
    TERN_IMAGE_AGENT_MLSERVER: z.string().min(1).optional(),
  });
export type StackConfig = z.infer<typeof stackEnvSchema>;

/**
 * Parses and cross-checks the stacks' environment.
 * @throws TernError `config.invalid` naming the variable(s).
 */
export function loadStackConfig(env: Record<string, string | undefined> = process.env): StackConfig {
  const config = parseEnv(stackEnvSchema, env);
  const problems: string[] = [];
  if (config.TERN_MODELGATEWAY_MIN_TASKS > config.KAFKA_PARTITIONS) {
    problems.push(
      `TERN_MODELGATEWAY_MIN_TASKS: ${config.TERN_MODELGATEWAY_MIN_TASKS} model-gateway tasks exceed KAFKA_PARTITIONS ${config.KAFKA_PARTITIONS}; a task beyond the partition count would sit idle`,
    );
  }
  if (config.TERN_NAT_GATEWAYS > config.TERN_AZS) {
    problems.push(
      `TERN_NAT_GATEWAYS: ${config.TERN_NAT_GATEWAYS} is more than one per availability zone (TERN_AZS ${config.TERN_AZS})`,
    );
  }
  if (config.TERN_LAMBDA_PROVISIONED_MIN > config.TERN_LAMBDA_PROVISIONED_MAX) {
    problems.push(
      `TERN_LAMBDA_PROVISIONED_MIN: ${config.TERN_LAMBDA_PROVISIONED_MIN} is above TERN_LAMBDA_PROVISIONED_MAX ${config.TERN_LAMBDA_PROVISIONED_MAX} (0 turns provisioned concurrency off)`,
    );
  }
  if (config.TERN_LAMBDA_PROVISIONED_MAX > 0 && config.TERN_LAMBDA_PROVISIONED_MIN < 1) {
    problems.push(
      "TERN_LAMBDA_PROVISIONED_MIN: must be at least 1 when TERN_LAMBDA_PROVISIONED_MAX is set: scaling follows the utilisation of what is provisioned, and nothing provisioned never scales out",
    );
  }
  if (config.TERN_LAMBDA_PROVISIONED_MAX > config.TERN_LAMBDA_RESERVED_CONCURRENCY) {
    problems.push(
      `TERN_LAMBDA_PROVISIONED_MAX: ${config.TERN_LAMBDA_PROVISIONED_MAX} is above the cap TERN_LAMBDA_RESERVED_CONCURRENCY ${config.TERN_LAMBDA_RESERVED_CONCURRENCY}`,
    );
  }
  if (config.TERN_AUTH === "api-key" && !config.TERN_GATEWAY_API_KEY_SHA256?.length) {
    problems.push(
      "TERN_GATEWAY_API_KEY_SHA256: TERN_AUTH=api-key (the default) needs at least one key digest (or choose TERN_AUTH=jwt or none)",
    );
  }
  if (config.TERN_AUTH === "jwt" && (!config.TERN_JWT_ISSUER || !config.TERN_JWT_AUDIENCE?.length)) {
    problems.push("TERN_JWT_ISSUER: TERN_AUTH=jwt needs TERN_JWT_ISSUER and TERN_JWT_AUDIENCE");
  }
  const sasl = [config.KAFKA_SASL_MECHANISM, config.KAFKA_SASL_USERNAME, config.KAFKA_SASL_PASSWORD_SECRET];
  if (sasl.some((v) => v !== undefined) && sasl.some((v) => v === undefined)) {
    problems.push(
      "KAFKA_SASL_MECHANISM: SASL needs KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD_SECRET together",
    );
  }
  if (config.KAFKA_SASL_MECHANISM && !config.KAFKA_BROKERS?.length) {
    problems.push(
      "KAFKA_SASL_MECHANISM: SASL settings apply to external brokers only: set KAFKA_BROKERS (MSK uses IAM)",
    );
  }
  for (const broker of config.KAFKA_BROKERS ?? []) {
    if (!/^[^:\s]+:\d{1,5}$/.test(broker)) problems.push(`KAFKA_BROKERS: ${JSON.stringify(broker)} is not host:port`);
    // `sst deploy` loads .env, where a local broker is usual: refuse what AWS could never reach.
    else if (/^(localhost|127\.|0\.0\.0\.0|\[?::1\]?:)/.test(broker)) {
      problems.push(
        `KAFKA_BROKERS: ${JSON.stringify(broker)} is a loopback address, unreachable from AWS (a local .env? unset it for the deploy, or use .env.<stage>)`,
      );
    }
  }
  if (problems.length > 0) {
    throw new TernError("config.invalid", `invalid configuration:\n  ${problems.join("\n  ")}`);
  }
  return config;
}

/** The ports of the external brokers (security groups open egress to exactly these). */
export function brokerPorts(brokers: readonly string[]): number[] {
  return [...new Set(brokers.map((b) => Number(b.slice(b.lastIndexOf(":") + 1))))].sort((a, b) => a - b);
}

/** Fixed ports of the components inside the VPC (their packages' defaults). */
export const PORTS = {
  scheduler: 9004,
  agentHttp: 9500,
  agentGrpc: 9501,
  /** MSK's SASL/IAM listener (provisioned and serverless). */
  mskIam: 9098,
} as const;

const parsed = new WeakMap<object, StackConfig>();

/** The config of one SST app, parsed on first use (tests synthesise several apps with different environments). */
export function configOf(app: object): StackConfig {
  let config = parsed.get(app);
  if (!config) {
    config = loadStackConfig(process.env);
    parsed.set(app, config);
  }
  return config;
}
