import { AUTO_REPLICA_ID, envVar, parseEnv, replicaIdEnvSchema, sharedEnvSchema, TernError } from "@tern/core";
import { z } from "zod";

/** The model gateway's environment; each variable is listed with its default in docs/model-gateway.md and .env.example. */
export const modelGatewayEnvSchema = sharedEnvSchema.extend(replicaIdEnvSchema.shape).extend({
  /**
   * Stable id `modelgateway-<index>`: the scheduler spreads buckets over ids with the hash ring, so a restarted replica
   * with the same id gets the same buckets back. `auto` (ECS, where every task has the same environment) claims the
   * lowest free index below KAFKA_PARTITIONS in TERN_TABLE at start (docs/replica-ids.md).
   */
  TERN_MODELGATEWAY_ID: z
    .string()
    .regex(/^(modelgateway-(0|[1-9][0-9]{0,3})|auto)$/, "must be modelgateway-<index>, e.g. modelgateway-0, or auto")
    .default("modelgateway-0"),
  /** Records of one fetched batch handled at once (per topic-partition). */
  TERN_MODELGATEWAY_CONCURRENCY: envVar.int(64, 1),
  /** Deadline of one request, from when the model gateway takes its record. */
  TERN_MODELGATEWAY_DEADLINE_MS: envVar.int(60_000, 1),
  /** How long a record waits for its model to have a replica before it is answered with an error record. */
  TERN_MODELGATEWAY_ROUTE_WAIT_MS: envVar.int(5000, 0),
  /** Grace for in-flight records on SIGTERM before the process exits anyway. */
  TERN_MODELGATEWAY_DRAIN_MS: envVar.int(15_000, 0),
  /**
   * Publish this replica's consumer lag (records waiting on the partitions it holds) as the CloudWatch metric
   * `Tern/ModelGatewayLag` with dimension `Stage` (the AWS stack autoscales the model gateway on it): `cloudwatch`, or
   * `off`.
   */
  TERN_MODELGATEWAY_LAG_METRIC: z.enum(["off", "cloudwatch"]).default("off"),
  /** How often the lag is published. */
  TERN_MODELGATEWAY_LAG_INTERVAL_MS: envVar.int(60_000, 1_000),
  /** The installation's stage: the metric's `Stage` dimension. */
  TERN_STAGE: z
    .string()
    .regex(/^[a-zA-Z0-9][a-zA-Z0-9-]{0,39}$/, "letters, digits and - only, at most 40 characters")
    .default("dev"),
  /** Another CloudWatch endpoint (a local emulator such as moto server); unset: AWS's. */
  TERN_CLOUDWATCH_ENDPOINT: z.string().url().optional(),
});
export type ModelGatewayConfig = z.infer<typeof modelGatewayEnvSchema>;

/** The replica index in a `modelgateway-<index>` id. */
export function replicaIndexOf(id: string): number {
  return Number(id.slice(id.lastIndexOf("-") + 1));
}

/**
 * Parses the environment once, at the process edge.
 * @throws TernError `config.invalid` naming the variable; also when this replica's index is not below
 * KAFKA_PARTITIONS: a group's consumers beyond the partition count would sit idle.
 */
export function loadModelGatewayConfig(env: Record<string, string | undefined> = process.env): ModelGatewayConfig {
  const config = parseEnv(modelGatewayEnvSchema, env);
  if (config.TERN_MODELGATEWAY_ID === AUTO_REPLICA_ID) return config; // the claim keeps the index below KAFKA_PARTITIONS
  const index = replicaIndexOf(config.TERN_MODELGATEWAY_ID);
  if (index >= config.KAFKA_PARTITIONS) {
    throw new TernError(
      "config.invalid",
      `invalid configuration:\n  TERN_MODELGATEWAY_ID: ${config.TERN_MODELGATEWAY_ID} would be model-gateway replica ${index + 1}, ` +
        `but KAFKA_PARTITIONS is ${config.KAFKA_PARTITIONS}: a topic's consumers never exceed its partitions`,
    );
  }
  return config;
}
