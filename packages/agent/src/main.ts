/**
 * Agent process entry: one server replica.
 *
 * With a scheduler (the default, TERN_SCHEDULER_URL=http://127.0.0.1:9004):
 *   TERN_AGENT_SERVER=mlserver TERN_AGENT_REPLICA=0 node --import tsx packages/agent/src/main.ts
 * Standalone (no scheduler):
 *   TERN_AGENT_STANDALONE=true TERN_AGENT_PRELOAD=iris=file://samples/models/iris node --import tsx packages/agent/src/main.ts
 *
 * Prints one line once it serves (and, with a scheduler, is registered):
 *   agent <server>/<replica> serving http://127.0.0.1:9500 grpc 127.0.0.1:9501 (scheduler http://127.0.0.1:9004)
 * SIGTERM/SIGINT drain (the scheduler moves the models elsewhere while this replica keeps serving, bounded by
 * TERN_AGENT_DRAIN_TIMEOUT_MS), deregister, stop and exit 0. A second signal exits at once.
 */
import { resolve } from "node:path";
import { createReplicaIdProcess } from "@tern/scheduler/replica-id";
import { pino } from "pino";
import { createAgent } from "./agent.js";
import { createArtifactFetcher } from "./artifacts/artifact-fetcher.js";
import { createGcsSource } from "./artifacts/gcs-source.js";
import { createHttpSource } from "./artifacts/http-source.js";
import { createS3Source } from "./artifacts/s3-source.js";
import { createSecretsDir } from "./artifacts/secrets.js";
import { ECS_ADVERTISE_HOST, loadAgentConfig } from "./config.js";
import { readEcsTaskIpv4 } from "./ecs-metadata.js";
import { resolveAgentReplica } from "./replica-id.js";
import { createMlserverRuntime, MODEL_SETTINGS_FILE } from "./runtime/mlserver-runtime.js";
import type { ModelRuntime } from "./runtime/model-runtime.js";
import { createOnnxRuntime } from "./runtime/onnx-runtime.js";
import { createSchedulerClient, type SchedulerClient } from "./scheduler-client.js";

/** Time left to requests in flight after the drain, even when the drain used the whole deadline. */
const MIN_STOP_GRACE_MS = 500;

async function main(): Promise<void> {
  let config: ReturnType<typeof loadAgentConfig>;
  try {
    config = loadAgentConfig();
  } catch (err) {
    console.error(err instanceof Error ? err.message : err);
    process.exit(2);
  }
  const baseLogger = pino({ level: config.LOG_LEVEL, base: { component: "agent", server: config.TERN_AGENT_SERVER } });
  // TERN_AGENT_REPLICA=auto (ECS): claim a replica number of this Server in TERN_TABLE; a lost claim means another
  // agent may have our number, so the process exits at once (75) and the supervisor starts a fresh one. (Making the
  // store does no I/O: with an explicit number nothing reaches the table.)
  const replicaId = createReplicaIdProcess({
    config,
    logger: baseLogger,
    restarts: "the agent with a fresh replica number",
  });
  let replica: number;
  let advertiseHost = config.TERN_AGENT_ADVERTISE_HOST;
  try {
    if (advertiseHost === ECS_ADVERTISE_HOST) {
      advertiseHost = await readEcsTaskIpv4({
        metadataUri: config.ECS_CONTAINER_METADATA_URI_V4 ?? "",
        timeoutMs: config.TERN_AGENT_ECS_METADATA_TIMEOUT_MS,
      });
      baseLogger.info({ advertiseHost }, "advertising the ECS task's private address");
    }
    ({ replica } = await replicaId.resolve((deps) => resolveAgentReplica(config, deps)));
  } catch (err) {
    console.error(`tern agent: ${err instanceof Error ? err.message : String(err)}`);
    await replicaId.close();
    process.exit(1);
  }
  const logger = baseLogger.child({ replica });
  const mlserver = config.TERN_AGENT_SERVER_TYPE === "mlserver";
  const runtime: ModelRuntime = mlserver
    ? createMlserverRuntime({
        python: resolve(config.TERN_MLSERVER_PYTHON),
        // One folder per replica: two agents on one machine never share a model repository.
        workDir: resolve(config.TERN_AGENT_CACHE_DIR, "mlserver", `${config.TERN_AGENT_SERVER}-${replica}`),
        host: config.TERN_AGENT_HOST === "0.0.0.0" ? "127.0.0.1" : config.TERN_AGENT_HOST,
        startTimeoutMs: config.TERN_MLSERVER_START_TIMEOUT_MS,
        requestTimeoutMs: config.TERN_MLSERVER_REQUEST_TIMEOUT_MS,
        healthIntervalMs: config.TERN_MLSERVER_HEALTH_INTERVAL_MS,
        logger,
      })
    : createOnnxRuntime({ intraOpThreads: config.TERN_AGENT_ORT_THREADS });
  const fetcher = createArtifactFetcher({
    // A Seldon MLServer artifact is a folder with its model-settings.json, or a folder with one model file.
    ...(mlserver ? { modelFileName: MODEL_SETTINGS_FILE, modelExtension: "" } : {}),
    cacheDir: resolve(config.TERN_AGENT_CACHE_DIR),
    ...(config.TERN_AGENT_FILE_BASE_DIR ? { fileBaseDir: resolve(config.TERN_AGENT_FILE_BASE_DIR) } : {}),
    ...(config.TERN_ARTIFACT_ROOTS ? { localRoots: config.TERN_ARTIFACT_ROOTS.map((r) => resolve(r)) } : {}),
    maxBytes: config.TERN_ARTIFACT_MAX_BYTES,
    sources: [
      createHttpSource({ timeoutMs: config.TERN_AGENT_DOWNLOAD_TIMEOUT_MS }),
      createS3Source({
        region: config.AWS_REGION,
        ...(config.TERN_AGENT_S3_ENDPOINT ? { endpoint: config.TERN_AGENT_S3_ENDPOINT } : {}),
        timeoutMs: config.TERN_AGENT_DOWNLOAD_TIMEOUT_MS,
      }),
      createGcsSource({ endpoint: config.TERN_GCS_ENDPOINT, timeoutMs: config.TERN_AGENT_DOWNLOAD_TIMEOUT_MS }),
    ],
    secrets: createSecretsDir(config.TERN_SECRETS_DIR ? resolve(config.TERN_SECRETS_DIR) : undefined),
  });
  // The client is created once the agent listens (it registers the endpoints); state changes before that are
  // covered by the `loaded` list of the registration.
  let client: SchedulerClient | undefined;
  const agent = createAgent({
    server: config.TERN_AGENT_SERVER,
    replica,
    runtime,
    fetcher,
    memoryBytes: config.TERN_AGENT_MEMORY,
    overcommitPercent: config.TERN_AGENT_OVERCOMMIT_PERCENT,
    ...(config.TERN_AGENT_CAPABILITIES ? { capabilities: config.TERN_AGENT_CAPABILITIES } : {}),
    host: config.TERN_AGENT_HOST,
    ...(advertiseHost ? { advertiseHost } : {}),
    httpPort: config.TERN_AGENT_HTTP_PORT,
    grpcPort: config.TERN_AGENT_GRPC_PORT,
    maxBodyBytes: config.TERN_AGENT_MAX_BODY,
    logger,
    onStateChange: (event) => client?.report(event),
  });

  let stopping = false;
  const abortStartup = new AbortController();
  const shutdown = async (signal: NodeJS.Signals): Promise<void> => {
    if (stopping) {
      logger.warn({ signal }, "second signal: exiting now");
      process.exit(signal === "SIGINT" ? 130 : 143);
    }
    stopping = true;
    abortStartup.abort(new Error(`stopped by ${signal}`));
    const drainMs = config.TERN_AGENT_DRAIN_TIMEOUT_MS;
    const deadline = Date.now() + drainMs;
    logger.info({ signal, drainTimeoutMs: drainMs }, "shutting down");
    // Whatever hangs, the process ends: the drain deadline plus the stop grace plus a little for unloading.
    setTimeout(
      () => {
        logger.error("shutdown took too long: exiting anyway");
        process.exit(1);
      },
      drainMs + MIN_STOP_GRACE_MS + 3000,
    ).unref();
    if (client !== undefined) {
      // Keep serving while the scheduler places the models elsewhere: gateways move to the new replicas once they
      // are Available. `agent.drain()` makes this replica refuse inference, so it comes only after this wait.
      const result = await client.drain(drainMs);
      if (result.drained) logger.info({ reason: result.reason }, "drained");
      else logger.warn({ reason: result.reason }, "drain deadline reached: stopping anyway");
    }
    agent.drain();
    await client?.stop({ deregister: true });
    await agent.stop(Math.max(MIN_STOP_GRACE_MS, deadline - Date.now()));
    // Last: the number stays ours until the scheduler has forgotten this replica, then the next task may take it.
    await replicaId.close();
  };
  const onSignal = (signal: NodeJS.Signals) => {
    shutdown(signal).then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);

  const endpoints = await agent.start();
  // Preloaded models are reported in the registration's `loaded`: the scheduler adopts them when they match the
  // latest version of an applied Model, and otherwise its assignments unload them.
  for (const p of config.TERN_AGENT_PRELOAD ?? []) {
    const r = await agent.loadModel(p);
    if (r.state === "Available")
      logger.info({ model: p.model, version: p.version, storageUri: p.storageUri }, "preloaded");
    else logger.error({ model: p.model, reason: r.reason ?? r.state }, "could not preload");
  }
  if (stopping) return;

  const where = `${endpoints.http} grpc ${endpoints.grpc ?? "off"}`;
  const name = `${config.TERN_AGENT_SERVER}/${replica}`;
  if (config.TERN_AGENT_STANDALONE) {
    console.log(`agent ${name} serving ${where} (standalone)`);
    return;
  }
  client = createSchedulerClient({
    agent,
    schedulerUrl: config.TERN_SCHEDULER_URL,
    ...(config.TERN_SCHEDULER_TOKEN === undefined ? {} : { token: config.TERN_SCHEDULER_TOKEN }),
    logger: logger.child({ scope: "scheduler-client" }),
    memoryBytes: config.TERN_AGENT_MEMORY,
    overcommitPercent: config.TERN_AGENT_OVERCOMMIT_PERCENT,
    requestTimeoutMs: config.TERN_AGENT_SCHEDULER_TIMEOUT_MS,
    streamIdleTimeoutMs: config.TERN_AGENT_STREAM_IDLE_TIMEOUT_MS,
    retryMaxMs: config.TERN_AGENT_RETRY_MAX_MS,
  });
  client.start();
  logger.info({ scheduler: config.TERN_SCHEDULER_URL }, "registering with the scheduler");
  try {
    await client.registered(abortStartup.signal);
  } catch {
    return; // a signal came first; shutdown handles the rest
  }
  console.log(`agent ${name} serving ${where} (scheduler ${config.TERN_SCHEDULER_URL})`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
