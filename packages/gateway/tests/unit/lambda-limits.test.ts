import http from "node:http";
import type { AddressInfo } from "node:net";
import type { ReplicaEndpoint, RouteTable } from "@tern/core";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { createLambdaApp } from "../../src/lambda-app.js";
import { createLambdaHandler, type LambdaResult } from "../../src/lambda-handler.js";
import { createMemoryRouteSource } from "../../src/route-source.js";
import { type FakeAgent, startFakeAgent } from "./fake-agent.js";

// AWS's limits on the Lambda entry (docs/lambda.md): API Gateway's HTTP API gives up after 30 s, and a synchronous
// invocation carries at most 6 MB each way. The handler under test is the one lambda.ts exports, built the same way.

const logger = pino({ level: "silent" });
const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((close) => close()));
});

function table(endpoint: ReplicaEndpoint): RouteTable {
  return {
    revision: 1,
    models: { iris: { name: "iris", version: 1, state: "ModelAvailable", endpoints: [endpoint] } },
    pipelines: {},
    experiments: {},
  };
}

async function agent(options: Parameters<typeof startFakeAgent>[0]): Promise<FakeAgent> {
  const a = await startFakeAgent(options);
  closers.push(() => a.close());
  return a;
}

function handlerFor(routes: RouteTable, env: Record<string, string> = {}) {
  return createLambdaHandler(createLambdaApp(env, logger, createMemoryRouteSource(routes)));
}

/** An API Gateway HTTP API (payload 2.0) event; a binary body arrives base64-encoded, as API Gateway sends it. */
function event(path: string, body: Buffer, contentType: string) {
  const binary = contentType === "application/octet-stream";
  return {
    version: "2.0",
    routeKey: "$default",
    rawPath: path,
    rawQueryString: "",
    headers: { "content-type": contentType, "content-length": String(body.byteLength) },
    requestContext: {
      accountId: "123456789012",
      apiId: "api",
      domainName: "example.execute-api.us-east-1.amazonaws.com",
      domainPrefix: "example",
      http: { method: "POST", path, protocol: "HTTP/1.1", sourceIp: "127.0.0.1", userAgent: "test" },
      requestId: "req-1",
      routeKey: "$default",
      stage: "$default",
      time: "01/Jan/2026:00:00:00 +0000",
      timeEpoch: 1767225600000,
    },
    body: binary ? body.toString("base64") : body.toString("utf8"),
    isBase64Encoded: binary,
  };
}

/** A JSON infer body of exactly `bytes` bytes (padded inside the id). */
function jsonBody(bytes: number): Buffer {
  const shell = JSON.stringify({ id: "", inputs: [{ name: "in", datatype: "FP32", shape: [1], data: [1] }] });
  const body = JSON.stringify({
    id: "x".repeat(bytes - shell.length),
    inputs: [{ name: "in", datatype: "FP32", shape: [1], data: [1] }],
  });
  expect(body.length).toBe(bytes);
  return Buffer.from(body);
}

const error = (res: LambdaResult) => (JSON.parse(res.body) as { error: string }).error;

describe("the Lambda handler within AWS's limits", () => {
  it("answers 413 above 4 MiB by default (a JSON body), and passes a body at the limit", async () => {
    const a = await agent({ id: "a1" });
    const handler = handlerFor(table(a.endpoint()));
    const limit = 4 * 1024 * 1024;
    const over = await handler(event("/v2/models/iris/infer", jsonBody(limit + 1), "application/json"), {});
    expect(over.statusCode).toBe(413);
    expect(error(over)).toBe(`request body is larger than the limit of ${limit} bytes`);
    const at = await handler(event("/v2/models/iris/infer", jsonBody(limit), "application/json"), {});
    expect(at.statusCode).toBe(200);
    expect(a.seen.map((s) => s.body.byteLength)).toEqual([limit]);
  });

  it("counts a base64-encoded binary body by its decoded size", async () => {
    const a = await agent({ id: "a1" });
    const handler = handlerFor(table(a.endpoint()));
    const limit = 4 * 1024 * 1024;
    // 4 MiB + 1 decoded is 5.33 MiB in the event: it still fits in the 6 MB an invocation carries, so it reaches us.
    const over = await handler(
      event("/v2/models/iris/infer", Buffer.alloc(limit + 1, 7), "application/octet-stream"),
      {},
    );
    expect(over.statusCode).toBe(413);
    expect(error(over)).toBe(`request body is larger than the limit of ${limit} bytes`);
  });

  it("answers 504 naming the deadline when the model does not answer in time", async () => {
    const a = await agent({ id: "a1", hold: true });
    const handler = handlerFor(table(a.endpoint()), { TERN_GATEWAY_DEADLINE_MS: "300" });
    const res = await handler(event("/v2/models/iris/infer", jsonBody(100), "application/json"), {});
    a.release();
    expect(res.statusCode).toBe(504);
    expect(error(res)).toBe("model iris did not answer within 300 ms");
  });

  it("answers 502 naming the size and the limit when the response is larger than an invocation may return", async () => {
    // An agent whose answer is 6.5 MB of JSON: the infer works, but Lambda could not return it.
    const big = Buffer.from(
      JSON.stringify({ outputs: [{ name: "out", datatype: "BYTES", shape: [1], data: ["y".repeat(6_500_000)] }] }),
    );
    const server = http.createServer((req, res) => {
      req.resume();
      req.on("end", () => res.writeHead(200, { "content-type": "application/json" }).end(big));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    closers.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const app = createLambdaApp(
      {},
      logger,
      createMemoryRouteSource(table({ server: "big", replica: 0, version: 1, http: url })),
    );

    const direct = await app.request("/v2/models/iris/infer", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: jsonBody(100),
    });
    expect(direct.status).toBe(200);
    const res = await createLambdaHandler(app)(event("/v2/models/iris/infer", jsonBody(100), "application/json"), {});
    expect(res.statusCode).toBe(502);
    expect(error(res)).toMatch(
      /^the response is \d+ bytes, above the 6291456 bytes a Lambda invocation may return \(6 MB\): ask for fewer or smaller outputs, or call the Node gateway/,
    );
    expect(Buffer.byteLength(JSON.stringify(res))).toBeLessThan(1024);
  });
});
