import { dirname, isAbsolute, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { envVar, modelGatewayEnvSchema, parseEnv, sharedEnvSchema } from "@tern/core";
import { z } from "zod";

/** The repository root (this file is `packages/devstack/src/config.ts`). */
export const repoRoot: string = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

/**
 * Environment of `npm start`: the shared variables plus the dev stack's own. Every variable is listed, with its default
 * and meaning, in `.env.example` at the repository root.
 */
export const devStackEnvSchema = sharedEnvSchema
  .extend(modelGatewayEnvSchema.shape)
  .extend({
    /** Folder for the Kafka jars, broker and DynamoDB data, logs and the pid file. Relative paths start at the repo root. */
    TERN_DEV_DIR: z.string().default(".tern"),
    /** Port of the broker's PLAINTEXT listener (clients connect here). */
    KAFKA_PORT: envVar.port(9092),
    /** Port of the broker's KRaft controller listener. */
    KAFKA_CONTROLLER_PORT: envVar.port(9093),
    /** Maximum heap of the broker JVM, as a `-Xmx` value. */
    KAFKA_HEAP: z
      .string()
      .regex(/^\d+[kKmMgG]?$/, "must be a JVM heap size such as 512m or 1g")
      .default("512m"),
    /** Port of DynamoDB Local. */
    DYNAMODB_PORT: envVar.port(8000),
    /** How long each service may take to answer its readiness probe. */
    TERN_DEV_READY_TIMEOUT_MS: envVar.int(90_000, 1_000),
    /** On stop, how long a child gets after SIGTERM before it is killed. */
    TERN_DEV_STOP_GRACE_MS: envVar.int(10_000, 0),
    /** Port of the scheduler's control API (the scheduler's own variable; the stack probes and prints it). */
    TERN_SCHEDULER_PORT: envVar.port(9004),
    /** REST port of the gateway (the gateway's own variable; the stack probes and prints it). */
    TERN_GATEWAY_PORT: envVar.port(9000),
    /** gRPC port of the gateway (the gateway's own variable). */
    TERN_GATEWAY_GRPC_PORT: envVar.port(9001),
    /**
     * Dataflow workers (`dataflow-0`…) the stack runs after the scheduler; they run the pipelines. 0 runs none. Their
     * readiness is not waited for, so they do not lengthen the start.
     */
    TERN_DATAFLOW_WORKERS: envVar.int(2, 0),
    /** Apply the manifests in TERN_SAMPLES_DIR once the stack is up, and wait for iris. */
    TERN_SAMPLES: envVar.bool(true),
    /** Folder (or file) of manifests applied at start. Relative paths start at the repo root. */
    TERN_SAMPLES_DIR: z.string().min(1).default("samples/manifests"),
    /** How long `npm start` waits for the sample model iris to be ModelAvailable and answer through the gateway. */
    TERN_DEV_SAMPLES_TIMEOUT_MS: envVar.int(90_000, 1_000),
    /**
     * The agents' deadline for their MLServer to answer after a start (the agent's own variable). The stack adds it to
     * TERN_DEV_SAMPLES_TIMEOUT_MS when it waits for the sklearn iris, whose agents start MLServer first.
     */
    TERN_MLSERVER_START_TIMEOUT_MS: envVar.int(120_000, 1000),
    /** Scale-down/delete: how long a SIGTERMed agent may drain before it is killed (above TERN_AGENT_DRAIN_TIMEOUT_MS + 3.5 s). */
    TERN_DEV_AGENT_STOP_GRACE_MS: envVar.int(20_000, 0),
    /**
     * Kafka, DynamoDB Local, the scheduler or the gateway dying is restarted (backoff from 0.5 s); one that crashes
     * more often than this within a minute is not, and the stack stops (exit 1).
     */
    TERN_DEV_MAX_RESTARTS: envVar.int(5, 0),
    /** An agent that dies more often than this within a minute is no longer restarted. */
    TERN_DEV_AGENT_MAX_RESTARTS: envVar.int(5, 0),
  })
  .superRefine((env, ctx) => {
    const ports: Array<[string, number]> = [
      ["KAFKA_PORT", env.KAFKA_PORT],
      ["KAFKA_CONTROLLER_PORT", env.KAFKA_CONTROLLER_PORT],
      ["DYNAMODB_PORT", env.DYNAMODB_PORT],
      ["TERN_SCHEDULER_PORT", env.TERN_SCHEDULER_PORT],
      ["TERN_GATEWAY_PORT", env.TERN_GATEWAY_PORT],
      ["TERN_GATEWAY_GRPC_PORT", env.TERN_GATEWAY_GRPC_PORT],
    ];
    for (let i = 1; i < ports.length; i++) {
      const [name, port] = ports[i]!;
      const clash = ports.slice(0, i).find(([, other]) => other === port);
      if (clash !== undefined && port !== 0) {
        ctx.addIssue({ code: "custom", path: [name], message: `must differ from ${clash[0]} (both are ${port})` });
      }
    }
    // The stack's children are told where the scheduler and the gateway listen, so these cannot be "any free port".
    for (const name of ["TERN_SCHEDULER_PORT", "TERN_GATEWAY_PORT", "TERN_GATEWAY_GRPC_PORT"] as const) {
      if (env[name] === 0)
        ctx.addIssue({ code: "custom", path: [name], message: "must be a fixed port under npm start, not 0" });
    }
  });

export type DevStackConfig = z.infer<typeof devStackEnvSchema>;

/** Parses and validates the dev stack's environment; throws a `config.invalid` TernError naming each bad variable. */
export function loadDevStackConfig(env: Record<string, string | undefined> = process.env): DevStackConfig {
  const config = parseEnv(devStackEnvSchema, env);
  return {
    ...config,
    TERN_DEV_DIR: resolveDevDir(config.TERN_DEV_DIR),
    TERN_SAMPLES_DIR: resolveDevDir(config.TERN_SAMPLES_DIR),
  };
}

/** Resolves a dev folder setting against the repository root, so `npm start` from any folder uses the same cache. */
export function resolveDevDir(dir: string): string {
  return isAbsolute(dir) ? dir : resolve(repoRoot, dir);
}
