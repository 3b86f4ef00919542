import { envVar, parseEnv, sharedEnvSchema, TernError } from "@tern/core";
import { z } from "zod";

/** Stage names: they become part of ECS service names (`tern-<stage>-<server>`) and the metric dimension `Stage`. */
const stage = z
  .string()
  .regex(/^[a-zA-Z0-9][a-zA-Z0-9-]{0,39}$/, "letters, digits and - only, at most 40 characters")
  .default("dev");

/**
 * The long-lived container's environment (`packages/control/src/main.ts`): the shared variables plus its own. Its
 * children (the scheduler, the dataflow workers) get the whole environment and read their own variables. Every
 * variable is listed with its default in `.env.example` and docs/control.md.
 */
export const controlEnvSchema = sharedEnvSchema.extend({
  /** The installation's stage (`sst deploy --stage`): agent services are named `tern-<stage>-<server>`. */
  TERN_STAGE: stage,
  /** Dataflow worker processes this container runs. 0 runs none. */
  TERN_DATAFLOW_WORKERS: envVar.int(2, 0),
  /**
   * The workers' ids: `fixed`, `dataflow-0` … `dataflow-<n-1>` (one container, as locally); `auto`, each worker claims
   * the lowest free id in the state table (TERN_DATAFLOW_ID=auto, docs/replica-ids.md) — for AWS, where the old and new
   * control task run side by side during a deploy and extra worker tasks run beside them. Every container of one
   * installation must use the same mode: a fixed id is not claimed, so an auto worker could take it too.
   */
  TERN_CONTROL_WORKER_IDS: z.enum(["fixed", "auto"]).default("fixed"),
  /** Run the scheduler in this container; `false`: workers only (the stack's extra dataflow tasks). */
  TERN_CONTROL_SCHEDULER: envVar.bool(true),
  /**
   * Which controller turns Servers into agents: `ecs` (one ECS service per Server, in TERN_ECS_CLUSTER) or `none`
   * (nothing starts agents: locally the dev stack's own controller does).
   */
  TERN_CONTROLLER: z.enum(["ecs", "none"]).default("ecs"),
  /** SIGTERM: how long the children may drain (workers leave their groups, the scheduler releases its lease). */
  TERN_CONTROL_DRAIN_MS: envVar.int(25_000, 1_000),
  /** First restart delay of a crashed child; doubles per crash within a minute, up to 30 s. */
  TERN_CONTROL_RESTART_DELAY_MS: envVar.int(1_000, 0),
  /** Crashes of one child within a minute after which it is no longer restarted and the container exits 1. */
  TERN_CONTROL_MAX_RESTARTS: envVar.int(5, 0),
  /** ECS cluster of the agent services (name or ARN). Required with TERN_CONTROLLER=ecs. */
  TERN_ECS_CLUSTER: z.string().min(1).optional(),
  /** Comma-separated subnet ids the agent tasks run in (awsvpc). Required with TERN_CONTROLLER=ecs. */
  TERN_ECS_SUBNETS: envVar.list().optional(),
  /** Comma-separated security group ids of the agent tasks. Required with TERN_CONTROLLER=ecs. */
  TERN_ECS_SECURITY_GROUPS: envVar.list().optional(),
  /** Task definition (family, family:revision or ARN) of `tern-onnx` agents and of custom server types. */
  TERN_ECS_TASK_DEFINITION_TERN_ONNX: z.string().min(1).optional(),
  /** Task definition of `mlserver` agents; unset: a Server of type mlserver is reported and gets no service. */
  TERN_ECS_TASK_DEFINITION_MLSERVER: z.string().min(1).optional(),
  /** The agent's container in those task definitions (when a definition has only one container, that one). */
  TERN_ECS_AGENT_CONTAINER: z.string().min(1).default("agent"),
  /** The scheduler URL agent tasks are given. @default TERN_SCHEDULER_URL */
  TERN_ECS_AGENT_SCHEDULER_URL: z.string().url().optional(),
  /** Give agent tasks a public IP (only in public subnets without a NAT). */
  TERN_ECS_ASSIGN_PUBLIC_IP: envVar.bool(false),
  /** Another ECS API endpoint (a local emulator such as moto server); unset: AWS's. */
  TERN_ECS_ENDPOINT: z.string().url().optional(),
  /** How often the ECS controller compares every service with the Servers, besides reacting to changes. */
  TERN_ECS_RESYNC_MS: envVar.int(30_000, 100),
});

/** The ECS controller's settings once checked: every required variable present. */
export interface EcsSettings {
  stage: string;
  region: string;
  cluster: string;
  subnets: string[];
  securityGroups: string[];
  taskDefinitions: { "tern-onnx": string; mlserver?: string };
  agentContainer: string;
  schedulerUrl: string;
  assignPublicIp: boolean;
  endpoint?: string;
  resyncMs: number;
}

export type ControlConfig = z.infer<typeof controlEnvSchema> & { ecs?: EcsSettings };

/**
 * Parses the environment once, at the process edge.
 * @throws TernError `config.invalid` naming every variable to fix, including those TERN_CONTROLLER=ecs requires.
 */
export function loadControlConfig(env: Record<string, string | undefined> = process.env): ControlConfig {
  const config = parseEnv(controlEnvSchema, env);
  if (config.TERN_CONTROLLER !== "ecs") return config;
  const missing: string[] = [];
  const need = <T>(name: string, value: T | undefined): T => {
    if (value === undefined || (Array.isArray(value) && value.length === 0)) missing.push(name);
    return value as T;
  };
  const ecs: EcsSettings = {
    stage: config.TERN_STAGE,
    region: config.AWS_REGION,
    cluster: need("TERN_ECS_CLUSTER", config.TERN_ECS_CLUSTER),
    subnets: need("TERN_ECS_SUBNETS", config.TERN_ECS_SUBNETS),
    securityGroups: need("TERN_ECS_SECURITY_GROUPS", config.TERN_ECS_SECURITY_GROUPS),
    taskDefinitions: {
      "tern-onnx": need("TERN_ECS_TASK_DEFINITION_TERN_ONNX", config.TERN_ECS_TASK_DEFINITION_TERN_ONNX),
      ...(config.TERN_ECS_TASK_DEFINITION_MLSERVER ? { mlserver: config.TERN_ECS_TASK_DEFINITION_MLSERVER } : {}),
    },
    agentContainer: config.TERN_ECS_AGENT_CONTAINER,
    schedulerUrl: config.TERN_ECS_AGENT_SCHEDULER_URL ?? config.TERN_SCHEDULER_URL,
    assignPublicIp: config.TERN_ECS_ASSIGN_PUBLIC_IP,
    ...(config.TERN_ECS_ENDPOINT ? { endpoint: config.TERN_ECS_ENDPOINT } : {}),
    resyncMs: config.TERN_ECS_RESYNC_MS,
  };
  if (missing.length > 0) {
    throw new TernError(
      "config.invalid",
      `invalid configuration:\n  ${missing.map((name) => `${name}: required with TERN_CONTROLLER=ecs (set TERN_CONTROLLER=none to run without the ECS controller)`).join("\n  ")}`,
    );
  }
  return { ...config, ecs };
}
