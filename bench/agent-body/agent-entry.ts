/**
 * Bench-only agent process: the agent's REST path (model registry with the ONNX runtime, inference service, metrics,
 * the REST app on @hono/node-server), built as `createAgent` builds it, but with the `createAgentApp` of a chosen
 * module, so that two versions of `packages/agent/src/http/app.ts` can be measured side by side. Started by `run.ts`:
 *
 *   BENCH_APP_MODULE=bench/agent-body/.baseline/app.ts node --import tsx bench/agent-body/agent-entry.ts
 *
 * BENCH_APP_MODULE (default: the agent's own app.ts) is the path of the app module; BENCH_MODEL_URI (default
 * file://samples/models/iris) the model loaded as `iris`, version 1; BENCH_MAX_BODY (default 16 MiB) the body limit.
 * Prints one line, `agent serving <url>`, once iris is Available; exits 0 on SIGTERM/SIGINT after closing.
 */
import type { AddressInfo } from "node:net";
import os from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { type ServerType, serve } from "@hono/node-server";
import {
  createAgentMetrics,
  createArtifactFetcher,
  createInferenceService,
  createModelRegistry,
  createOnnxRuntime,
  createAgentApp as currentApp,
} from "@tern/agent";

type AppFactory = typeof currentApp;
const createApp: AppFactory = process.env.BENCH_APP_MODULE
  ? ((await import(pathToFileURL(resolve(process.env.BENCH_APP_MODULE)).href)) as { createAgentApp: AppFactory })
      .createAgentApp
  : currentApp;

const maxBodyBytes = Number(process.env.BENCH_MAX_BODY ?? 16 * 1024 * 1024);
if (!Number.isInteger(maxBodyBytes) || maxBodyBytes < 1) {
  console.error(`BENCH_MAX_BODY must be a positive byte count, got ${JSON.stringify(process.env.BENCH_MAX_BODY)}`);
  process.exit(2);
}

const models = createModelRegistry({
  runtime: createOnnxRuntime({ intraOpThreads: 1 }),
  fetcher: createArtifactFetcher({ cacheDir: join(os.tmpdir(), "tern-bench-agent-body-cache"), fileBaseDir: "." }),
  capacityBytes: 1 << 30,
  overcommitPercent: 0,
});
const metrics = createAgentMetrics({ models });
const service = createInferenceService({
  models,
  serverName: "mlserver",
  serverVersion: "bench",
  platform: "onnxruntime",
  isReady: () => true,
});
const app = createApp({ service, metrics, maxBodyBytes });

const loaded = await models.load({
  model: "iris",
  version: 1,
  storageUri: process.env.BENCH_MODEL_URI ?? "file://samples/models/iris",
  memoryBytes: 0,
  parameters: [],
});
if (loaded.state !== "Available") {
  console.error(`could not load iris: ${loaded.reason ?? loaded.state}`);
  process.exit(1);
}

let server: ServerType | undefined;
const port = await new Promise<number>((resolvePort, reject) => {
  server = serve({ fetch: app.fetch, hostname: "127.0.0.1", port: 0 }, (info: AddressInfo) => resolvePort(info.port));
  server.once("error", reject);
});
console.log(`agent serving http://127.0.0.1:${port}`);

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.once(signal, () => {
    const force = setTimeout(() => process.exit(1), 5_000);
    force.unref();
    server?.close(() => {
      void models.close().then(() => process.exit(0));
    });
  });
}
