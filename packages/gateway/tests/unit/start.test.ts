import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { RouteTable } from "@tern/core";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { createMemoryRouteSource } from "../../src/route-source.js";
import { type RunningGateway, startGateway } from "../../src/start.js";
import { type FakeAgent, startFakeAgent } from "./fake-agent.js";

const logger = pino({ level: "silent" });
let gateway: RunningGateway | undefined;
let agent: FakeAgent | undefined;
afterEach(async () => {
  await gateway?.close();
  await agent?.close();
  gateway = undefined;
  agent = undefined;
});

describe("startGateway", () => {
  it("serves REST over HTTP on a free port, exposes /metrics, and closes", async () => {
    agent = await startFakeAgent({ id: "a1" });
    const table: RouteTable = {
      revision: 1,
      models: { iris: { name: "iris", version: 1, state: "ModelAvailable", endpoints: [agent.endpoint()] } },
      pipelines: {},
      experiments: {},
    };
    gateway = await startGateway({ port: 0, grpcPort: 0, routes: createMemoryRouteSource(table), logger });
    expect(gateway.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(gateway.grpcAddress).toMatch(/^127\.0\.0\.1:\d+$/);
    const res = await fetch(`${gateway.url}/v2/models/iris/infer`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ id: "q", inputs: [] }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ agent: "a1", id: "q" });
    const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
    expect(metrics).toMatch(/tern_gateway_requests_total\{model="iris",op="infer",status="200"\} 1/);
    expect(metrics).toMatch(/tern_gateway_request_duration_seconds_bucket/);
    await gateway.close();
    await expect(fetch(`${gateway.url}/v2/health/live`)).rejects.toThrow();
    gateway = undefined;
  });

  it("follows the scheduler by default and is not ready without it", async () => {
    gateway = await startGateway({
      port: 0,
      grpcPort: false,
      schedulerUrl: "http://127.0.0.1:1",
      logger,
      firstTableWaitMs: 100,
    });
    expect(gateway.grpcAddress).toBeUndefined();
    expect((await fetch(`${gateway.url}/v2/health/ready`)).status).toBe(503);
  });

  it("waits (bounded) for the scheduler's first route table before listening, so its first request is served", async () => {
    // A scheduler that answers the route list only after 300 ms, as one does while it loads its state.
    const table: RouteTable = { revision: 3, models: {}, pipelines: {}, experiments: {} };
    const scheduler = createServer((req, res) => {
      if (req.url === "/v1/routes") {
        setTimeout(() => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(table)), 300);
      } else {
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.write(": open\n\n");
      }
    });
    await new Promise<void>((resolve) => scheduler.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = scheduler.address() as AddressInfo;
      gateway = await startGateway({ port: 0, grpcPort: false, schedulerUrl: `http://127.0.0.1:${port}`, logger });
      expect((await fetch(`${gateway.url}/v2/health/ready`)).status).toBe(200);
      await gateway.close();
      gateway = undefined;
    } finally {
      scheduler.closeAllConnections();
      await new Promise((resolve) => scheduler.close(resolve));
    }
  });
});
