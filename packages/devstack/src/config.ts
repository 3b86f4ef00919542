import { dirname, isAbsolute, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { envVar, parseEnv, sharedEnvSchema } from "@tern/core";
import { z } from "zod";

/** The repository root (this file is `packages/devstack/src/config.ts`). */
export const repoRoot: string = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

/**
 * Environment of `npm start`: the shared variables plus the dev stack's own. Every variable is listed, with its default
 * and meaning, in `.env.example` at the repository root.
 */
export const devStackEnvSchema = sharedEnvSchema
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
  })
  .superRefine((env, ctx) => {
    const ports: Array<[string, number]> = [
      ["KAFKA_PORT", env.KAFKA_PORT],
      ["KAFKA_CONTROLLER_PORT", env.KAFKA_CONTROLLER_PORT],
      ["DYNAMODB_PORT", env.DYNAMODB_PORT],
    ];
    for (let i = 1; i < ports.length; i++) {
      const [name, port] = ports[i]!;
      const clash = ports.slice(0, i).find(([, other]) => other === port);
      if (clash !== undefined && port !== 0) {
        ctx.addIssue({ code: "custom", path: [name], message: `must differ from ${clash[0]} (both are ${port})` });
      }
    }
  });

export type DevStackConfig = z.infer<typeof devStackEnvSchema>;

/** Parses and validates the dev stack's environment; throws a `config.invalid` TernError naming each bad variable. */
export function loadDevStackConfig(env: Record<string, string | undefined> = process.env): DevStackConfig {
  const config = parseEnv(devStackEnvSchema, env);
  return { ...config, TERN_DEV_DIR: resolveDevDir(config.TERN_DEV_DIR) };
}

/** Resolves a dev folder setting against the repository root, so `npm start` from any folder uses the same cache. */
export function resolveDevDir(dir: string): string {
  return isAbsolute(dir) ? dir : resolve(repoRoot, dir);
}
