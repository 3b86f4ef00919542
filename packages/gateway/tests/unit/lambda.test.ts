import net from "node:net";
import type { RouteTable } from "@tern/core";
import type { Hono } from "hono";
import { handle } from "hono/aws-lambda";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { hashApiKey } from "../../src/api-keys.js";
import { createLambdaApp } from "../../src/lambda-app.js";
import { createMemoryRouteSource } from "../../src/route-source.js";
import { type FakeAgent, startFakeAgent } from "./fake-agent.js";

const logger = pino({ level: "silent" });
const agents: FakeAgent[] = [];
afterEach(async () => {
  await Promise.all(agents.splice(0).map((a) => a.close()));
});

/** An API Gateway HTTP API (payload 2.0) event, as Lambda receives it. */
function apiGatewayEvent(method: string, path: string, headers: Record<string, string>, body?: string) {
  return {
    version: "2.0",
    routeKey: "$default",
    rawPath: path,
    rawQueryString: "",
    headers,
    requestContext: {
      accountId: "123456789012",
      apiId: "api",
      domainName: "example.execute-api.us-east-1.amazonaws.com",
      domainPrefix: "example",
      http: { method, path, protocol: "HTTP/1.1", sourceIp: "127.0.0.1", userAgent: "test" },
      requestId: "req-1",
      routeKey: "$default",
      stage: "$default",
      time: "01/Jan/2026:00:00:00 +0000",
      timeEpoch: 1767225600000,
    },
    ...(body === undefined ? {} : { body, isBase64Encoded: false }),
  };
}

interface LambdaResult {
  statusCode: number;
  headers: Record<string, string>;
  body: string;
  isBase64Encoded: boolean;
}

async function viaLambda(app: Hono, method: string, path: string, headers: Record<string, string>, body?: string) {
  const handler = handle(app) as unknown as (event: unknown, context: unknown) => Promise<LambdaResult>;
  return handler(apiGatewayEvent(method, path, headers, body), {});
}

describe("Lambda entry", () => {
  it("answers an API Gateway v2 event like app.request does", async () => {
    const agent = await startFakeAgent({ id: "a1" });
    agents.push(agent);
    const table: RouteTable = {
      revision: 1,
      models: { iris: { name: "iris", version: 1, state: "ModelAvailable", endpoints: [agent.endpoint()] } },
      pipelines: {},
      experiments: {},
    };
    const app = createLambdaApp({ TERN_GATEWAY_DEADLINE_MS: "5000" }, logger, createMemoryRouteSource(table));
    const body = JSON.stringify({ id: "x", inputs: [{ name: "in", datatype: "FP32", shape: [1], data: [1] }] });
    const headers = { "content-type": "application/json" };

    const direct = await app.request("/v2/models/iris/infer", { method: "POST", headers, body });
    const lambda = await viaLambda(app, "POST", "/v2/models/iris/infer", headers, body);
    expect(lambda.statusCode).toBe(direct.status);
    expect(JSON.parse(lambda.body)).toEqual(await direct.json());
    expect(lambda.headers["x-seldon-route"]).toBe(":iris:");

    const missing = await viaLambda(app, "POST", "/v2/models/nope/infer", headers, body);
    expect(missing.statusCode).toBe(404);
    expect(JSON.parse(missing.body)).toEqual({ error: "model nope not found" });
  });

  it("applies API keys and the body limit from the environment", async () => {
    const app = createLambdaApp(
      {
        TERN_GATEWAY_API_KEY_SHA256: `${hashApiKey("other")},${hashApiKey("key-1")}`,
        TERN_GATEWAY_BODY_LIMIT_BYTES: "10",
      },
      logger,
      createMemoryRouteSource({ revision: 1, models: {}, pipelines: {}, experiments: {} }),
    );
    const res = await viaLambda(app, "POST", "/v2/models/iris/infer", { "content-type": "application/json" }, "{}");
    expect(res.statusCode).toBe(401);
    const auth = { "content-type": "application/json", authorization: "Bearer key-1" };
    expect((await viaLambda(app, "POST", "/v2/models/iris/infer", auth, "{}")).statusCode).toBe(404);
    const big = await viaLambda(app, "POST", "/v2/models/iris/infer", auth, JSON.stringify({ inputs: [1, 2, 3, 4] }));
    expect(big.statusCode).toBe(413);
    expect((await viaLambda(app, "GET", "/v2/health/ready", {})).statusCode).toBe(200);
  });

  it("answers 503 within the read timeout when DynamoDB accepts the connection but never answers", async () => {
    const silent = net.createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    try {
      const port = (silent.address() as net.AddressInfo).port;
      const app = createLambdaApp(
        {
          DYNAMODB_ENDPOINT: `http://127.0.0.1:${port}`,
          TERN_GATEWAY_ROUTE_READ_TIMEOUT_MS: "100",
          TERN_GATEWAY_DEADLINE_MS: "5000",
        },
        logger,
      );
      const answer = viaLambda(app, "POST", "/v2/models/iris/infer", { "content-type": "application/json" }, "{}");
      const res = await Promise.race([
        answer,
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error("no answer after 3 s")), 3000)),
      ]);
      expect(res.statusCode).toBe(503);
      expect(JSON.parse(res.body)).toEqual({
        error: "route table is unavailable: reading it took longer than 100 ms",
      });
    } finally {
      silent.close();
      silent.unref();
    }
  });

  it("refuses bad configuration naming the variable", () => {
    expect(() => createLambdaApp({ TERN_GATEWAY_API_KEY_SHA256: "abc" }, logger)).toThrow(
      /TERN_GATEWAY_API_KEY_SHA256/,
    );
    expect(() => createLambdaApp({ TERN_GATEWAY_DEADLINE_MS: "soon" }, logger)).toThrow(/TERN_GATEWAY_DEADLINE_MS/);
  });
});
