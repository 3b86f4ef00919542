import {
  checkModelGatewayReplicas,
  envVar,
  modelGatewayEnvSchema,
  parseEnv,
  sharedEnvSchema,
  TernError,
} from "@tern/core";
import { z } from "zod";

/**
 * The scheduler's environment: the shared variables plus its own. Every variable is listed with its default in
 * `.env.example` and docs/scheduler.md.
 */
export const schedulerEnvSchema = sharedEnvSchema.extend({
  ...modelGatewayEnvSchema.shape,
  /**
   * Delete a model's Kafka topics when the model is deleted (Seldon's `dataflow.cleanTopicsOnDelete`). Off by
   * default: topics, and the records in them, outlive the model.
   */
  TERN_DATAFLOW_CLEAN_TOPICS_ON_DELETE: envVar.bool(false),
  /**
   * How many dataflow workers own each pipeline (fewer while fewer are registered). Each owner runs one consumer in
   * the pipeline's group, so at most KAFKA_PARTITIONS (more would sit idle). 2 by default: when an owner crashes the
   * other already consumes the pipeline and takes its partitions within one group rebalance, and a worker joining
   * moves about 2/(N+1) of the pipelines. See docs/scheduler.md, "Pipelines on dataflow workers".
   */
  TERN_DATAFLOW_REPLICATION: envVar.int(2, 1),
  /**
   * How long a deleted pipeline stays visible as `PipelineTerminated` (then its record goes and it is not found), like
   * Seldon's deleted-resource TTL. 24 h by default; 0 removes it as soon as it is terminated.
   */
  TERN_PIPELINE_TERMINATED_RETENTION_MS: envVar.int(86_400_000, 0),
  /** Interface the control API listens on. Anything but loopback needs TERN_SCHEDULER_TOKEN. */
  TERN_SCHEDULER_HOST: z.string().min(1).default("127.0.0.1"),
  /** Port of the control API; 0 picks a free one (logged as `port` in the "control API listening" line). */
  TERN_SCHEDULER_PORT: envVar.port(9004),
  /** Unique id of this scheduler process in the leader lease. @default `<hostname>-<pid>-<random>` */
  TERN_SCHEDULER_ID: z.string().min(1).optional(),
  /** Name of the lease item (schedulers sharing a table compete for it). */
  TERN_SCHEDULER_LEASE: z.string().min(1).default("scheduler"),
  /** How long a leader's lease lasts; a standby takes over at most about this long (+ one poll) after the leader dies. */
  TERN_SCHEDULER_LEASE_TTL_MS: envVar.int(10_000, 1_000),
  /** How often a standby tries to take the lease. */
  TERN_SCHEDULER_LEASE_POLL_MS: envVar.int(1_000, 50),
  /** How often agents heartbeat (told to them at registration). */
  TERN_AGENT_HEARTBEAT_INTERVAL_MS: envVar.int(2_000, 50),
  /** An agent silent this long is removed and its models rescheduled. @default 3 × the interval */
  TERN_AGENT_HEARTBEAT_TIMEOUT_MS: z.coerce.number().int().min(100).optional(),
  /**
   * Autoscaling (docs/autoscaling.md): mean requests in flight per serving replica above which a model with
   * minReplicas/maxReplicas is lagging.
   */
  TERN_AUTOSCALE_LAG_THRESHOLD: z.coerce.number().positive().default(0.5),
  /** How long the lag must stay above the threshold before the model gets one more replica. */
  TERN_AUTOSCALE_SCALE_UP_WINDOW_MS: envVar.int(5_000, 0),
  /** How long a replica must go without a request before the model loses one replica (down to minReplicas). */
  TERN_AUTOSCALE_IDLE_WINDOW_MS: envVar.int(60_000, 100),
  /** Least time between two changes of one model's (or one Server's) replica count. */
  TERN_AUTOSCALE_COOLDOWN_MS: envVar.int(5_000, 0),
  /** How long a replica of a Server with minReplicas/maxReplicas must hold nothing before the Server loses one replica. */
  TERN_AUTOSCALE_SERVER_IDLE_WINDOW_MS: envVar.int(60_000, 100),
  /** Extra memory over-commit placement allows on every replica (on top of each agent's own), in percent. */
  TERN_SCHEDULER_OVERCOMMIT_PERCENT: envVar.int(0, 0),
  /** Watch events kept in memory for clients resuming from an older revision. */
  TERN_SCHEDULER_WATCH_HISTORY: envVar.int(1_000, 1),
  /** Interval of heartbeat comments on idle event streams. */
  TERN_SCHEDULER_STREAM_HEARTBEAT_MS: envVar.int(15_000, 100),
  /** On SIGTERM: how long to finish (release the lease, close streams) before exiting anyway. */
  TERN_SCHEDULER_SHUTDOWN_GRACE_MS: envVar.int(5_000, 0),
  /** Create the table when missing. @default true when DYNAMODB_ENDPOINT is set (local), false otherwise (AWS: the stack owns it) */
  TERN_SCHEDULER_ENSURE_TABLE: z
    .enum(["true", "false", "1", "0", "yes", "no"])
    .transform((v) => v === "true" || v === "1" || v === "yes")
    .optional(),
});

export type SchedulerConfig = Omit<
  z.infer<typeof schedulerEnvSchema>,
  "TERN_AGENT_HEARTBEAT_TIMEOUT_MS" | "TERN_SCHEDULER_ENSURE_TABLE"
> & {
  TERN_AGENT_HEARTBEAT_TIMEOUT_MS: number;
  TERN_SCHEDULER_ENSURE_TABLE: boolean;
};

/** True for addresses only this machine can reach. */
export function isLoopback(host: string): boolean {
  const h = host.trim().toLowerCase();
  return h === "localhost" || h === "::1" || h === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/** Parses the environment; throws a `config.invalid` TernError naming each bad variable. */
export function loadSchedulerConfig(env: Record<string, string | undefined> = process.env): SchedulerConfig {
  const parsed = parseEnv(schedulerEnvSchema, env);
  const config: SchedulerConfig = {
    ...parsed,
    TERN_AGENT_HEARTBEAT_TIMEOUT_MS:
      parsed.TERN_AGENT_HEARTBEAT_TIMEOUT_MS ?? 3 * parsed.TERN_AGENT_HEARTBEAT_INTERVAL_MS,
    TERN_SCHEDULER_ENSURE_TABLE: parsed.TERN_SCHEDULER_ENSURE_TABLE ?? parsed.DYNAMODB_ENDPOINT !== undefined,
  };
  if (!isLoopback(config.TERN_SCHEDULER_HOST) && config.TERN_SCHEDULER_TOKEN === undefined) {
    throw new TernError(
      "config.invalid",
      `invalid configuration:\n  TERN_SCHEDULER_HOST: listening on ${config.TERN_SCHEDULER_HOST} exposes the control API beyond this machine; ` +
        "set TERN_SCHEDULER_TOKEN so that it requires a bearer token (or listen on 127.0.0.1)",
    );
  }
  checkModelGatewayReplicas(config);
  if (config.TERN_DATAFLOW_REPLICATION > config.KAFKA_PARTITIONS) {
    throw new TernError(
      "config.invalid",
      `invalid configuration:\n  TERN_DATAFLOW_REPLICATION: ${config.TERN_DATAFLOW_REPLICATION} owners per pipeline exceed KAFKA_PARTITIONS ${config.KAFKA_PARTITIONS}; ` +
        "each owner is one consumer in the pipeline's group, and one beyond the partition count would sit idle",
    );
  }
  if (config.TERN_AGENT_HEARTBEAT_TIMEOUT_MS <= config.TERN_AGENT_HEARTBEAT_INTERVAL_MS) {
    throw new TernError(
      "config.invalid",
      `invalid configuration:\n  TERN_AGENT_HEARTBEAT_TIMEOUT_MS: must exceed TERN_AGENT_HEARTBEAT_INTERVAL_MS (${config.TERN_AGENT_HEARTBEAT_TIMEOUT_MS} ≤ ${config.TERN_AGENT_HEARTBEAT_INTERVAL_MS})`,
    );
  }
  return config;
}
