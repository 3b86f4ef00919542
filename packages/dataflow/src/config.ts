import { envVar, parseEnv, replicaIdEnvSchema, sharedEnvSchema } from "@tern/core";
import { BROKER_MIN_SESSION_TIMEOUT_MS } from "@tern/kafka";
import { z } from "zod";

/** The dataflow worker's environment; each variable is listed with its default in docs/dataflow.md and .env.example. */
export const dataflowEnvSchema = sharedEnvSchema.extend(replicaIdEnvSchema.shape).extend({
  /**
   * Stable id `dataflow-<index>`: the scheduler places pipelines on ids with the hash ring, so a restarted worker with
   * the same id owns the same pipelines again. `auto` (ECS, where every task has the same environment) claims the
   * lowest free index below TERN_DATAFLOW_ID_MAX in TERN_TABLE at start (docs/replica-ids.md).
   */
  TERN_DATAFLOW_ID: z
    .string()
    .regex(/^(dataflow-(0|[1-9][0-9]{0,3})|auto)$/, "must be dataflow-<index>, e.g. dataflow-0, or auto")
    .default("dataflow-0"),
  /** With TERN_DATAFLOW_ID=auto: ids are dataflow-0 .. dataflow-<max-1>; at least the service's most tasks. */
  TERN_DATAFLOW_ID_MAX: envVar.int(16, 1),
  /**
   * Bound on draining: an old pipeline version or a removed pipeline finishes its open requests within it, and SIGTERM
   * drains every pipeline, leaves and exits within it.
   */
  TERN_DATAFLOW_DRAIN_MS: envVar.int(15_000, 1_000),
  /** How long a pipeline's consumer may take to join its group and hold its assignment before it is reported Failed. */
  TERN_DATAFLOW_START_TIMEOUT_MS: envVar.int(30_000, 1_000),
  /** How long fetching a pipeline's spec from the scheduler is retried (each call has a 5 s deadline). */
  TERN_DATAFLOW_SPEC_TIMEOUT_MS: envVar.int(30_000, 1_000),
  /**
   * Deadline of one pipeline request, from when the worker takes it off the pipeline's inputs topic. Unset: the
   * pipeline's longest join or batch window + 60 s, so a stage's own, more precise error comes first.
   */
  TERN_DATAFLOW_REQUEST_TIMEOUT_MS: z.coerce.number().int().min(1).optional(),
  /** Requests one pipeline keeps open at once on this worker; one more is failed at once (RESOURCE_EXHAUSTED). */
  TERN_DATAFLOW_MAX_OPEN: envVar.int(10_000, 1),
  /**
   * Kafka consumer session timeout: a crashed worker's partitions move to the pipeline's other owners this long after
   * its last heartbeat (plus one rebalance). At least the broker's floor, 6000.
   */
  TERN_DATAFLOW_SESSION_TIMEOUT_MS: envVar.int(10_000, BROKER_MIN_SESSION_TIMEOUT_MS),
  /**
   * Lambda reply channel: how long a `reply#<requestId>` item stays in TERN_TABLE (its `expiresAt`, epoch seconds);
   * DynamoDB's TTL deletes it some time after. Longer than any gateway deadline.
   */
  TERN_DATAFLOW_REPLY_TTL_S: envVar.int(600, 1),
  /** Lambda reply channel: one PutItem of a reply not answered by then is given up (and logged). */
  TERN_DATAFLOW_REPLY_PUT_TIMEOUT_MS: envVar.int(2000, 1),
});
export type DataflowConfig = z.infer<typeof dataflowEnvSchema>;

/** Consumer heartbeat interval for a session timeout: a third of it (kafkajs's rule), at most 3 s. */
export function heartbeatIntervalFor(sessionTimeoutMs: number): number {
  return Math.min(3000, Math.floor(sessionTimeoutMs / 3));
}

/**
 * Parses the environment once, at the process edge.
 * @throws TernError `config.invalid` naming the variable.
 */
export function loadDataflowConfig(env: Record<string, string | undefined> = process.env): DataflowConfig {
  return parseEnv(dataflowEnvSchema, env);
}
