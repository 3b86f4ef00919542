/**
 * Bench-only gateway process: `startGateway` with a fixed, in-memory route table that sends model `iris` to one
 * agent, so that the benchmark measures the gateway's hop and nothing of the scheduler. Started by `run.ts`:
 *
 *   BENCH_AGENT_URL=http://127.0.0.1:9500 BENCH_GATEWAY_PORT=0 node --import tsx bench/inference/gateway-entry.ts
 *
 * Prints one line, `gateway serving <url>`, once it listens; exits 0 on SIGTERM/SIGINT after closing.
 * BENCH_MODEL (default iris) names the routed model; LOG_LEVEL (default info, as in server.ts) the pino level.
 * BENCH_GATEWAY_MODULE, when set, is the path of another gateway `index.ts` to start instead of `@tern/gateway`
 * (the benchmark's before/after comparison).
 */
import { pathToFileURL } from "node:url";
import pino from "pino";

type GatewayModule = typeof import("@tern/gateway");
const { createMemoryRouteSource, startGateway }: GatewayModule = process.env.BENCH_GATEWAY_MODULE
  ? await import(pathToFileURL(process.env.BENCH_GATEWAY_MODULE).href)
  : await import("@tern/gateway");

const agentUrl = process.env.BENCH_AGENT_URL;
if (!agentUrl || !/^http:\/\/[^/]+$/.test(agentUrl)) {
  console.error(`BENCH_AGENT_URL must be an http:// base URL without a path, got ${JSON.stringify(agentUrl)}`);
  process.exit(2);
}
const port = Number(process.env.BENCH_GATEWAY_PORT ?? "0");
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`BENCH_GATEWAY_PORT must be a port number, got ${JSON.stringify(process.env.BENCH_GATEWAY_PORT)}`);
  process.exit(2);
}
const model = process.env.BENCH_MODEL ?? "iris";

const routes = createMemoryRouteSource({
  revision: 1,
  models: {
    [model]: {
      name: model,
      version: 1,
      state: "ModelAvailable",
      endpoints: [{ server: "bench", replica: 0, version: 1, http: agentUrl }],
    },
  },
  pipelines: {},
  experiments: {},
});
const logger = pino({ name: "gateway", level: process.env.LOG_LEVEL ?? "info" });
const gateway = await startGateway({ host: "127.0.0.1", port, grpcPort: false, routes, logger });
console.log(`gateway serving ${gateway.url}`);

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.once(signal, () => {
    const force = setTimeout(() => process.exit(1), 5_000);
    force.unref();
    void gateway.close().then(() => process.exit(0));
  });
}
