/**
 * Agent process entry: one server replica. Standalone use (no scheduler yet):
 *   TERN_AGENT_PRELOAD=iris=file://samples/models/iris node --import tsx packages/agent/src/main.ts
 */
import { resolve } from "node:path";
import { pino } from "pino";
import { createAgent } from "./agent.js";
import { createArtifactFetcher } from "./artifacts/artifact-fetcher.js";
import { createHttpSource } from "./artifacts/http-source.js";
import { createS3Source } from "./artifacts/s3-source.js";
import { loadAgentConfig } from "./config.js";
import { createOnnxRuntime } from "./runtime/onnx-runtime.js";

async function main(): Promise<void> {
  let config: ReturnType<typeof loadAgentConfig>;
  try {
    config = loadAgentConfig();
  } catch (err) {
    console.error(err instanceof Error ? err.message : err);
    process.exit(2);
  }
  const logger = pino({
    level: config.LOG_LEVEL,
    base: { component: "agent", server: config.TERN_AGENT_SERVER, replica: config.TERN_AGENT_REPLICA },
  });
  const fetcher = createArtifactFetcher({
    cacheDir: resolve(config.TERN_AGENT_CACHE_DIR),
    ...(config.TERN_AGENT_FILE_BASE_DIR ? { fileBaseDir: resolve(config.TERN_AGENT_FILE_BASE_DIR) } : {}),
    sources: [
      createHttpSource({ timeoutMs: config.TERN_AGENT_DOWNLOAD_TIMEOUT_MS }),
      createS3Source({
        region: config.AWS_REGION,
        ...(config.TERN_AGENT_S3_ENDPOINT ? { endpoint: config.TERN_AGENT_S3_ENDPOINT } : {}),
      }),
    ],
  });
  const agent = createAgent({
    server: config.TERN_AGENT_SERVER,
    replica: config.TERN_AGENT_REPLICA,
    runtime: createOnnxRuntime({ intraOpThreads: config.TERN_AGENT_ORT_THREADS }),
    fetcher,
    memoryBytes: config.TERN_AGENT_MEMORY,
    overcommitPercent: config.TERN_AGENT_OVERCOMMIT_PERCENT,
    ...(config.TERN_AGENT_CAPABILITIES ? { capabilities: config.TERN_AGENT_CAPABILITIES } : {}),
    host: config.TERN_AGENT_HOST,
    ...(config.TERN_AGENT_ADVERTISE_HOST ? { advertiseHost: config.TERN_AGENT_ADVERTISE_HOST } : {}),
    httpPort: config.TERN_AGENT_HTTP_PORT,
    grpcPort: config.TERN_AGENT_GRPC_PORT,
    maxBodyBytes: config.TERN_AGENT_MAX_BODY,
    logger,
  });

  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down");
    agent
      .stop(config.TERN_AGENT_DRAIN_TIMEOUT_MS)
      .then(() => process.exit(0))
      .catch((err: unknown) => {
        logger.error({ err }, "shutdown failed");
        process.exit(1);
      });
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));

  const endpoints = await agent.start();
  console.log(
    `agent ${config.TERN_AGENT_SERVER}/${config.TERN_AGENT_REPLICA}: REST ${endpoints.http}, gRPC ${endpoints.grpc ?? "off"}`,
  );
  for (const p of config.TERN_AGENT_PRELOAD ?? []) {
    const r = await agent.loadModel(p);
    if (r.state === "Available") console.log(`loaded ${p.model} (version ${p.version}) from ${p.storageUri}`);
    else console.error(`could not load ${p.model}: ${r.reason ?? r.state}`);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
