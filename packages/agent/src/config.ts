import {
  AUTO_REPLICA_ID,
  envVar,
  parseEnv,
  replicaIdEnvSchema,
  safeParseQuantity,
  sharedEnvSchema,
  TernError,
} from "@tern/core";
import { z } from "zod";

const quantity = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((v, ctx) => {
      const r = safeParseQuantity(v);
      if (!r.ok) {
        ctx.addIssue({ code: "custom", message: r.message });
        return z.NEVER;
      }
      return r.bytes;
    });

/** `name=uri` pairs, comma-separated; a name may carry a version as `name:2=uri`. */
const preloadList = z.string().transform((v, ctx) => {
  const out: Array<{ model: string; version: number; storageUri: string }> = [];
  for (const item of v
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)) {
    const m = /^([A-Za-z0-9_-]+)(?::(\d+))?=(.+)$/.exec(item);
    if (!m) {
      ctx.addIssue({
        code: "custom",
        message: `"${item}" is not name=storageUri (e.g. iris=file://samples/models/iris)`,
      });
      return z.NEVER;
    }
    out.push({ model: m[1]!, version: m[2] === undefined ? 1 : Number(m[2]), storageUri: m[3]! });
  }
  return out;
});

/** Every variable the agent reads, with its default. Keys are the variable names (see `.env.example`). */
export const agentEnvSchema = sharedEnvSchema.extend(replicaIdEnvSchema.shape).extend({
  /** The Server (manifest name) this agent is a replica of. */
  TERN_AGENT_SERVER: z
    .string()
    .regex(/^[A-Za-z0-9_-]+$/, "letters, digits, - and _ only")
    .default("mlserver"),
  /**
   * This replica's index within the server (0-based). `auto` (ECS, where every task has the same environment) claims
   * the lowest free index below TERN_AGENT_REPLICA_MAX for this Server in TERN_TABLE at start (docs/replica-ids.md).
   */
  TERN_AGENT_REPLICA: z.union([z.literal(AUTO_REPLICA_ID), z.coerce.number().int().min(0)]).default(0),
  /** With TERN_AGENT_REPLICA=auto: replica numbers are 0 .. max-1 per Server; at least the Server's maxReplicas. */
  TERN_AGENT_REPLICA_MAX: envVar.int(16, 1),
  /**
   * The server type (`Server.spec.serverConfig`): `tern-onnx` (built-in ONNX Runtime) or `mlserver` (an MLServer
   * process per agent, from the venv of `scripts/python-env.sh mlserver`).
   */
  TERN_AGENT_SERVER_TYPE: z.enum(["tern-onnx", "mlserver"]).default("tern-onnx"),
  /** Interface the REST and gRPC servers bind. */
  TERN_AGENT_HOST: z.string().default("127.0.0.1"),
  /**
   * Host put in the endpoints reported to the scheduler (defaults to TERN_AGENT_HOST). `ecs`: the task's private IPv4
   * address, read at start from the ECS task metadata endpoint v4 (ECS_CONTAINER_METADATA_URI_V4).
   */
  TERN_AGENT_ADVERTISE_HOST: z.string().optional(),
  /** Set by the ECS container agent in every container; read for TERN_AGENT_ADVERTISE_HOST=ecs. */
  ECS_CONTAINER_METADATA_URI_V4: z.string().url().optional(),
  /** Deadline of the read of the ECS task metadata endpoint, ms. */
  TERN_AGENT_ECS_METADATA_TIMEOUT_MS: envVar.int(5_000, 1),
  /** OIP REST port; 0 picks a free port. */
  TERN_AGENT_HTTP_PORT: envVar.port(9500),
  /** OIP gRPC port; 0 picks a free port. */
  TERN_AGENT_GRPC_PORT: envVar.port(9501),
  /** Memory capacity for resident models (Kubernetes quantity). */
  TERN_AGENT_MEMORY: quantity("1Gi"),
  /** How far placed models may exceed TERN_AGENT_MEMORY (percent); the excess is handled by LRU eviction. */
  TERN_AGENT_OVERCOMMIT_PERCENT: envVar.int(10),
  /** Download cache for http(s)://, s3:// and gs:// artifacts. */
  TERN_AGENT_CACHE_DIR: z.string().default(".tern/agent-cache"),
  /** Base folder for relative file:// URIs (file://samples/models/iris). Defaults to the working directory. */
  TERN_AGENT_FILE_BASE_DIR: z.string().optional(),
  /**
   * Folders local artifacts (`file://`, bare paths) may come from, comma-separated; relative ones resolve against the
   * working directory. Unset: the repository's samples folder and `./models`.
   */
  TERN_ARTIFACT_ROOTS: envVar.list().optional(),
  /** Most bytes one http(s)://, s3:// or gs:// artifact may have (quantity; all files of a folder together). */
  TERN_ARTIFACT_MAX_BYTES: quantity("1Gi"),
  /** Capabilities offered (comma-separated); replaces the server type's list (`onnx`). */
  TERN_AGENT_CAPABILITIES: envVar.list().optional(),
  /** Largest request body / gRPC message (quantity). */
  TERN_AGENT_MAX_BODY: quantity("16Mi"),
  /** Deadline for one artifact download (http(s)://, s3://, gs://: the listing and every file), ms. */
  TERN_AGENT_DOWNLOAD_TIMEOUT_MS: envVar.int(30_000, 1),
  /** Endpoint for S3-compatible stores (MinIO, LocalStack); unset = AWS S3. */
  TERN_AGENT_S3_ENDPOINT: z.string().url().optional(),
  /** Base URL of Google Cloud Storage's JSON API for gs:// artifacts (fake-gcs-server in the tests). */
  TERN_GCS_ENDPOINT: z.string().url().default("https://storage.googleapis.com"),
  /**
   * Folder of secrets named by a Model's `secretName`: one file per name holding the rclone-style JSON a Seldon storage
   * secret holds (`{"type": "s3", "parameters": {"access_key_id": ..., "secret_access_key": ...}}`). Unset: a Model
   * with a `secretName` fails to load, saying so.
   */
  TERN_SECRETS_DIR: z.string().optional(),
  /** Models to load at start without a scheduler: `iris=file://samples/models/iris,add10:1=file://...`. */
  TERN_AGENT_PRELOAD: preloadList.optional(),
  /**
   * Bound on the SIGTERM drain, ms: how long the agent waits for the scheduler to move its models elsewhere (it keeps
   * serving meanwhile) before it stops anyway; requests still in flight then get what is left, at least 500 ms.
   */
  TERN_AGENT_DRAIN_TIMEOUT_MS: envVar.int(10_000, 0),
  /** Run without a scheduler (only TERN_AGENT_PRELOAD models are served). */
  TERN_AGENT_STANDALONE: envVar.bool(false),
  /** Deadline of each call to the scheduler (register, heartbeat, event, drain), ms. */
  TERN_AGENT_SCHEDULER_TIMEOUT_MS: envVar.int(5_000, 100),
  /**
   * An assignments stream silent this long (no event, no keep-alive) is reopened, ms. Keep it about
   * 3 × the scheduler's TERN_SCHEDULER_STREAM_HEARTBEAT_MS (15 000).
   */
  TERN_AGENT_STREAM_IDLE_TIMEOUT_MS: envVar.int(45_000, 100),
  /** Cap of the retry delay while the scheduler is unreachable or a standby (exponential backoff with jitter), ms. */
  TERN_AGENT_RETRY_MAX_MS: envVar.int(5_000, 10),
  /** The Python of the MLServer venv (`scripts/python-env.sh mlserver` creates it); server type `mlserver` only. */
  TERN_MLSERVER_PYTHON: z.string().default(".tern/python/mlserver/bin/python"),
  /** Deadline for the agent's MLServer process to answer after a (re)start, ms. */
  TERN_MLSERVER_START_TIMEOUT_MS: envVar.int(120_000, 1000),
  /** Deadline of each call to MLServer (load, unload, inference), ms. */
  TERN_MLSERVER_REQUEST_TIMEOUT_MS: envVar.int(60_000, 100),
  /** How often the agent checks that its MLServer answers (a dead or silent one is restarted), ms. */
  TERN_MLSERVER_HEALTH_INTERVAL_MS: envVar.int(2_000, 100),
  /** ONNX Runtime intra-op threads per model (models may override with the parameter intra_op_threads). */
  TERN_AGENT_ORT_THREADS: envVar.int(1, 0),
});

/** The TERN_AGENT_ADVERTISE_HOST value that asks for the ECS task's private IPv4 address. */
export const ECS_ADVERTISE_HOST = "ecs";

export type AgentConfig = z.infer<typeof agentEnvSchema>;

/** Reads the agent's configuration once at the process edge; a bad variable fails with its name. */
export function loadAgentConfig(env: Record<string, string | undefined> = process.env): AgentConfig {
  const config = parseEnv(agentEnvSchema, env);
  if (config.TERN_AGENT_ADVERTISE_HOST === ECS_ADVERTISE_HOST && !config.ECS_CONTAINER_METADATA_URI_V4) {
    throw new TernError(
      "config.invalid",
      "invalid configuration:\n  TERN_AGENT_ADVERTISE_HOST: ecs reads the task's address from ECS_CONTAINER_METADATA_URI_V4, which is unset (it is set by ECS inside a task)",
    );
  }
  return config;
}
