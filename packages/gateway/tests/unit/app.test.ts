import { type ExperimentRoute, experimentCandidates, type ModelRoute, type RouteTable } from "@tern/core";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { createApiKeyCheck, hashApiKey } from "../../src/api-keys.js";
import { type AppConfig, createApp } from "../../src/app.js";
import { type GatewayMetrics, noopMetrics } from "../../src/metrics.js";
import { createSchedulerWaker, type ModelWaker } from "../../src/model-waker.js";
import { createMemoryRouteSource, type RouteSource } from "../../src/route-source.js";
import { createHttpUpstream, type Upstream } from "../../src/upstream.js";
import { type FakeAgent, type FakeAgentOptions, refusedPort, startFakeAgent, waitFor } from "./fake-agent.js";

const logger = pino({ level: "silent" });
const opened: Array<{ close(): Promise<void> }> = [];

afterEach(async () => {
  await Promise.all(opened.splice(0).map((o) => o.close()));
});

async function agent(id: string, options: Omit<FakeAgentOptions, "id"> = {}): Promise<FakeAgent> {
  const a = await startFakeAgent({ id, ...options });
  opened.push(a);
  return a;
}

function model(name: string, agents: FakeAgent[], version = 1): ModelRoute {
  return { name, version, state: "ModelAvailable", endpoints: agents.map((a) => a.endpoint(version)) };
}

function table(models: ModelRoute[], experiments: ExperimentRoute[] = [], revision = 1): RouteTable {
  return {
    revision,
    models: Object.fromEntries(models.map((m) => [m.name, m])),
    pipelines: { chain: { name: "chain", state: "PipelineReady" } },
    experiments: Object.fromEntries(experiments.map((e) => [e.name, e])),
  };
}

interface MakeOptions {
  config?: AppConfig;
  random?: () => number;
  keys?: string[];
  upstream?: Upstream;
  metrics?: GatewayMetrics;
  /** Replaces the in-memory source holding `routes`. */
  routes?: RouteSource;
  waker?: ModelWaker;
}

function makeApp(routes: RouteTable | undefined, options: MakeOptions = {}) {
  const upstream = options.upstream ?? createHttpUpstream();
  opened.push(upstream);
  const source = createMemoryRouteSource(routes);
  const app = createApp({
    routes: options.routes ?? source,
    upstream,
    logger,
    ...(options.config ? { config: options.config } : {}),
    ...(options.random ? { random: options.random } : {}),
    ...(options.metrics ? { metrics: options.metrics } : {}),
    ...(options.keys ? { apiKeys: createApiKeyCheck(options.keys.map(hashApiKey)) } : {}),
    ...(options.waker ? { waker: options.waker } : {}),
  });
  return { app, source };
}

const inferBody = JSON.stringify({
  id: "r1",
  inputs: [{ name: "x", datatype: "FP32", shape: [1, 4], data: [1, 2, 3, 4] }],
});

function infer(
  app: ReturnType<typeof createApp>,
  path: string,
  headers: Record<string, string> = {},
  body = inferBody,
) {
  return app.request(path, { method: "POST", headers: { "content-type": "application/json", ...headers }, body });
}

describe("health and metadata", () => {
  it("is live always and ready only once it has a route table", async () => {
    const { app, source } = makeApp(undefined);
    expect((await app.request("/v2/health/live")).status).toBe(200);
    const notReady = await app.request("/v2/health/ready");
    expect(notReady.status).toBe(503);
    expect(await notReady.json()).toHaveProperty("error");
    source.set(table([]));
    expect((await app.request("/v2/health/ready")).status).toBe(200);
  });

  it("answers 503 for inference before it has a route table", async () => {
    const { app } = makeApp(undefined);
    const res = await infer(app, "/v2/models/iris/infer");
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: string }).error).toMatch(/route table/);
  });

  it("serves server metadata at /v2", async () => {
    const { app } = makeApp(table([]));
    const res = await app.request("/v2");
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ name: "tern-gateway" });
  });

  it("passes model metadata and model readiness through from an agent", async () => {
    const a = await agent("a1");
    const { app } = makeApp(table([model("iris", [a])]));
    const meta = await app.request("/v2/models/iris");
    expect(meta.status).toBe(200);
    expect(await meta.json()).toMatchObject({ name: "iris", agent: "a1" });
    const ready = await app.request("/v2/models/iris/ready");
    expect(await ready.json()).toEqual({ name: "iris", ready: true });
    expect(a.seen.map((s) => `${s.method} ${s.path}`)).toEqual(["GET /v2/models/iris", "GET /v2/models/iris/ready"]);
  });
});

describe("routing", () => {
  it("routes by path and passes status, body and content type through", async () => {
    const a = await agent("a1");
    const b = await agent("b1");
    const { app } = makeApp(table([model("iris", [a]), model("wine", [b])]));
    const res = await infer(app, "/v2/models/wine/infer");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/application\/json/);
    expect(await res.json()).toMatchObject({ model_name: "wine", agent: "b1", id: "r1" });
    expect(a.seen).toHaveLength(0);
    expect(b.seen[0]!.body.toString()).toBe(inferBody);
  });

  it("routes by the seldon-model header instead of the path", async () => {
    const a = await agent("a1");
    const b = await agent("b1");
    const { app } = makeApp(table([model("iris", [a]), model("wine", [b])]));
    const res = await infer(app, "/v2/models/iris/infer", { "seldon-model": "wine" });
    expect(await res.json()).toMatchObject({ model_name: "wine", agent: "b1" });
    expect(a.seen).toHaveLength(0);
  });

  it("routes a pinned version only to replicas of that version", async () => {
    const v1 = await agent("v1");
    const v2 = await agent("v2");
    const route: ModelRoute = {
      name: "iris",
      version: 2,
      state: "ModelAvailable",
      endpoints: [v1.endpoint(1), v2.endpoint(2)],
    };
    const { app } = makeApp(table([route]));
    const pinned = await infer(app, "/v2/models/iris/versions/1/infer");
    expect(await pinned.json()).toMatchObject({ agent: "v1", model_version: "1" });
    // Unpinned traffic goes to the route's version only.
    for (let i = 0; i < 4; i++)
      expect(await (await infer(app, "/v2/models/iris/infer")).json()).toMatchObject({ agent: "v2" });
    const missing = await infer(app, "/v2/models/iris/versions/7/infer");
    expect(missing.status).toBe(404);
  });

  it("answers 404 for an unknown model and 503 for a model without available replicas", async () => {
    const { app } = makeApp(table([{ name: "iris", version: 1, state: "ModelProgressing", endpoints: [] }]));
    const unknown = await infer(app, "/v2/models/nope/infer");
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { error: string }).error).toBe("model nope not found");
    const none = await infer(app, "/v2/models/iris/infer");
    expect(none.status).toBe(503);
    expect(((await none.json()) as { error: string }).error).toMatch(/no available replica/);
  });

  it("answers pipelines honestly: 404 when unknown, 503 because they are not served yet", async () => {
    const { app } = makeApp(table([]));
    const unknown = await infer(app, "/v2/pipelines/other/infer");
    expect(unknown.status).toBe(404);
    const known = await infer(app, "/v2/pipelines/chain/infer");
    expect(known.status).toBe(503);
    expect(((await known.json()) as { error: string }).error).toMatch(
      /pipeline chain is not available: pipelines are not served yet/,
    );
    const byHeader = await infer(app, "/v2/models/chain/infer", { "seldon-model": "chain.pipeline" });
    expect(byHeader.status).toBe(503);
  });

  it("rejects a seldon-model header with an unknown suffix with 400", async () => {
    const { app } = makeApp(table([]));
    const res = await infer(app, "/v2/models/iris/infer", { "seldon-model": "iris.model" });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toMatch(/seldon-model/);
  });

  it("answers unknown paths with a JSON 404", async () => {
    const { app } = makeApp(table([]));
    const res = await app.request("/v3/nothing");
    expect(res.status).toBe(404);
    expect(await res.json()).toHaveProperty("error");
  });

  it("passes the binary tensor extension through both ways", async () => {
    const a = await agent("a1");
    const { app } = makeApp(table([model("iris", [a])]));
    const header = Buffer.from(
      JSON.stringify({ inputs: [{ name: "x", datatype: "FP32", shape: [1], parameters: { binary_data_size: 4 } }] }),
    );
    const body = Buffer.concat([header, Buffer.from(new Float32Array([1.5]).buffer)]);
    const res = await app.request("/v2/models/iris/infer", {
      method: "POST",
      headers: { "content-type": "application/octet-stream", "inference-header-content-length": String(header.length) },
      body,
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("inference-header-content-length")).toBe(String(header.length));
    expect(Buffer.from(await res.arrayBuffer()).equals(body)).toBe(true);
    expect(a.seen[0]!.headers["inference-header-content-length"]).toBe(String(header.length));
  });

  it("does not forward the caller's Authorization header to agents", async () => {
    const a = await agent("a1");
    const { app } = makeApp(table([model("iris", [a])]), { keys: ["secret"] });
    await infer(app, "/v2/models/iris/infer", { authorization: "Bearer secret", "x-request-id": "abc" });
    expect(a.seen[0]!.headers.authorization).toBeUndefined();
    expect(a.seen[0]!.headers["x-request-id"]).toBe("abc");
  });
});

describe("balancing and failures", () => {
  it("sends a request to the replica with the fewest requests in flight", async () => {
    const busy = await agent("busy", { hold: true });
    const idle = await agent("idle");
    const { app } = makeApp(table([model("iris", [busy, idle])]));
    // Round robin puts the first request on `busy`, where it stays in flight.
    const first = infer(app, "/v2/models/iris/infer");
    await waitFor(() => busy.pending() === 1, 5000, "the held request");
    const answers: string[] = [];
    for (let i = 0; i < 4; i++)
      answers.push(((await (await infer(app, "/v2/models/iris/infer")).json()) as { agent: string }).agent);
    expect(answers).toEqual(["idle", "idle", "idle", "idle"]);
    busy.release();
    expect((await first).status).toBe(200);
  });

  it("spreads sequential requests round robin when replicas are equally idle", async () => {
    const agents = [await agent("a1"), await agent("a2"), await agent("a3")];
    const { app } = makeApp(table([model("iris", agents)]));
    for (let i = 0; i < 6; i++) expect((await infer(app, "/v2/models/iris/infer")).status).toBe(200);
    expect(agents.map((a) => a.seen.length)).toEqual([2, 2, 2]);
  });

  it("retries one other replica when the connection is refused", async () => {
    const port = await refusedPort();
    const alive = await agent("alive");
    const dead = { server: "fake", replica: 9, version: 1, http: `http://127.0.0.1:${port}` };
    const route: ModelRoute = {
      name: "iris",
      version: 1,
      state: "ModelAvailable",
      endpoints: [dead, alive.endpoint()],
    };
    const { app } = makeApp(table([route]));
    for (let i = 0; i < 4; i++) {
      const res = await infer(app, "/v2/models/iris/infer");
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ agent: "alive" });
    }
  });

  it("sends the request to another replica when the first says it no longer holds the model", async () => {
    // The route table still lists a replica that was just scaled down: its agent answers a marked 404.
    const gone = await agent("gone1", { holds: [] });
    const kept = await agent("kept2");
    const { app } = makeApp(table([model("iris", [gone, kept])]));
    for (let i = 0; i < 4; i++) {
      const res = await infer(app, "/v2/models/iris/infer");
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ agent: "kept2" });
    }
    expect(gone.seen.length).toBeGreaterThan(0);
    expect(kept.seen).toHaveLength(4);
  });

  it("passes a replica miss through as 404 when no other replica is listed", async () => {
    const gone = await agent("gone1", { holds: [] });
    const { app } = makeApp(table([model("iris", [gone])]));
    const res = await infer(app, "/v2/models/iris/infer");
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ error: "model iris is not loaded on this server replica" });
    expect(res.headers.get("x-tern-replica-miss")).toBeNull();
  });

  it("wakes the model and retries once when its last replica unloads it under the request (the scale-down race)", async () => {
    // The request reaches the only listed replica just as the autoscaler takes the model to zero.
    const gone = await agent("gone1", { holds: [], hold: true });
    const fresh = await agent("fresh2");
    const source = createMemoryRouteSource(table([model("iris", [gone])]));
    // The real waker, in front of a stand-in for the scheduler's activate endpoint that brings iris back on `fresh`.
    const activations: string[] = [];
    const fetch = (async (input: string | URL | Request) => {
      activations.push(String(input));
      source.set(table([model("iris", [fresh])], [], 3));
      return new Response(JSON.stringify({ model: "iris", desiredReplicas: 1, activated: true }), { status: 202 });
    }) as typeof globalThis.fetch;
    const waker = createSchedulerWaker({ url: "http://scheduler", logger, fetch, pollMs: 5 });
    const { app } = makeApp(undefined, { routes: source, waker });
    const answer = infer(app, "/v2/models/iris/infer");
    await waitFor(() => gone.pending() === 1, 5000, "the request on the last replica");
    source.set(table([{ name: "iris", version: 1, state: "ModelScaledDown", endpoints: [] }], [], 2));
    gone.release();
    const res = await answer;
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ agent: "fresh2" });
    expect(activations).toEqual(["http://scheduler/v1/models/iris/activate"]);
    expect(fresh.seen).toHaveLength(1);
  });

  it("answers ready for a model scaled to zero as it is, without waking it (gRPC ModelReady does the same)", async () => {
    const activations: string[] = [];
    const fetch = (async (input: string | URL | Request) => {
      activations.push(String(input));
      return new Response("{}", { status: 202 });
    }) as typeof globalThis.fetch;
    const waker = createSchedulerWaker({ url: "http://scheduler", logger, fetch, pollMs: 5, settleMs: 50 });
    const asleep = table([{ name: "iris", version: 1, state: "ModelScaledDown", endpoints: [] }]);
    const { app } = makeApp(asleep, { waker });
    const res = await app.request("/v2/models/iris/ready");
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: string }).error).toContain("ModelScaledDown");
    expect(activations).toEqual([]);
  });

  it("passes the last replica's miss through when the route table never moves past it", async () => {
    const gone = await agent("gone1", { holds: [] });
    const activations: string[] = [];
    const fetch = (async (input: string | URL | Request) => {
      activations.push(String(input));
      return new Response("{}", { status: 202 });
    }) as typeof globalThis.fetch;
    const waker = createSchedulerWaker({ url: "http://scheduler", logger, fetch, pollMs: 5, settleMs: 50 });
    const { app } = makeApp(table([model("iris", [gone])]), { waker });
    const res = await infer(app, "/v2/models/iris/infer");
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ error: "model iris is not loaded on this server replica" });
    expect(activations).toEqual([]);
  });

  it("does not retry a 404 the agent did not mark as a replica miss", async () => {
    const first = await agent("a1", { holds: [], unmarkedMiss: true });
    const second = await agent("a2", { holds: [], unmarkedMiss: true });
    const { app } = makeApp(table([model("iris", [first, second])]));
    const res = await infer(app, "/v2/models/iris/infer");
    expect(res.status).toBe(404);
    expect(first.seen.length + second.seen.length).toBe(1);
  });

  it("sends the request to another replica when the first answers 503 (its MLServer restarting)", async () => {
    const restarting = await agent("restarting1", { unavailable: "model iris version 1 is still loading" });
    const up = await agent("up2");
    const { app } = makeApp(table([model("iris", [restarting, up])]));
    for (let i = 0; i < 4; i++) {
      const res = await infer(app, "/v2/models/iris/infer");
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ agent: "up2" });
    }
    expect(restarting.seen.length).toBeGreaterThan(0);
    expect(up.seen).toHaveLength(4);
  });

  it("passes a replica's 503 through when the other one answers 503 too, after trying exactly two", async () => {
    const agents = [1, 2, 3].map((i) => agent(`down${i}`, { unavailable: "MLServer is unreachable" }));
    const down = await Promise.all(agents);
    const { app } = makeApp(table([model("iris", down)]));
    const res = await infer(app, "/v2/models/iris/infer");
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ error: "MLServer is unreachable" });
    expect(down.reduce((n, a) => n + a.seen.length, 0)).toBe(2);
  });

  it("answers 503 when every replica refuses, after trying exactly two", async () => {
    const ports = [await refusedPort(), await refusedPort(), await refusedPort()];
    const endpoints = ports.map((p, i) => ({ server: "fake", replica: i, version: 1, http: `http://127.0.0.1:${p}` }));
    let calls = 0;
    const real = createHttpUpstream();
    const counting: Upstream = {
      call: (r) => {
        calls++;
        return real.call(r);
      },
      close: () => real.close(),
    };
    const { app } = makeApp(table([{ name: "iris", version: 1, state: "ModelAvailable", endpoints }]), {
      upstream: counting,
    });
    const res = await infer(app, "/v2/models/iris/infer");
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: string }).error).toMatch(/model iris is unavailable/);
    expect(calls).toBe(2);
  });

  it("answers 504 when the route table does not come within the request deadline", async () => {
    const never: RouteSource = { table: () => new Promise<never>(() => {}), close: async () => {} };
    const { app } = makeApp(table([]), { config: { deadlineMs: 50 }, routes: never });
    const res = await Promise.race([
      infer(app, "/v2/models/iris/infer"),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error("no answer after 3 s")), 3000)),
    ]);
    expect(res.status).toBe(504);
    expect(((await res.json()) as { error: string }).error).toBe("the route table did not come within 50 ms");
  });

  it("never names an agent's address in the 503 it answers", async () => {
    const bad = [{ server: "fake", replica: 0, version: 1, http: "ftp://10.9.8.7:9500" }];
    const { app } = makeApp(table([{ name: "iris", version: 1, state: "ModelAvailable", endpoints: bad }]));
    const res = await infer(app, "/v2/models/iris/infer");
    expect(res.status).toBe(503);
    const { error } = (await res.json()) as { error: string };
    expect(error).toMatch(/model iris is unavailable/);
    expect(error).not.toContain("10.9.8.7");
    expect(error).not.toContain("9500");
  });

  it("answers 504 when the agent does not answer within the deadline", async () => {
    const slow = await agent("slow", { hold: true });
    const { app } = makeApp(table([model("iris", [slow])]), { config: { deadlineMs: 50 } });
    const res = await infer(app, "/v2/models/iris/infer");
    expect(res.status).toBe(504);
    expect(((await res.json()) as { error: string }).error).toBe("model iris did not answer within 50 ms");
    slow.release();
  });
});

describe("security and limits", () => {
  it("requires a valid API key when keys are configured, but not for health checks", async () => {
    const a = await agent("a1");
    const { app } = makeApp(table([model("iris", [a])]), { keys: ["k-one", "k-two"] });
    const none = await infer(app, "/v2/models/iris/infer");
    expect(none.status).toBe(401);
    expect(none.headers.get("www-authenticate")).toMatch(/Bearer/);
    expect(((await none.json()) as { error: string }).error).toMatch(/missing API key/);
    const wrong = await infer(app, "/v2/models/iris/infer", { authorization: "Bearer k-three" });
    expect(wrong.status).toBe(401);
    expect((await infer(app, "/v2/models/iris/infer", { authorization: "Bearer k-two" })).status).toBe(200);
    expect((await app.request("/v2/health/ready")).status).toBe(200);
    expect((await app.request("/v2")).status).toBe(401);
    expect(a.seen).toHaveLength(1);
  });

  it("answers 413 for a body over the limit, declared or chunked, without calling the agent", async () => {
    const a = await agent("a1");
    const { app } = makeApp(table([model("iris", [a])]), { config: { bodyLimitBytes: 64 } });
    const big = JSON.stringify({ inputs: [{ name: "x", data: Array.from({ length: 100 }, (_, i) => i) }] });
    const declared = await infer(app, "/v2/models/iris/infer", {}, big);
    expect(declared.status).toBe(413);
    expect(((await declared.json()) as { error: string }).error).toMatch(/limit of 64 bytes/);
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(big.slice(0, 50)));
        controller.enqueue(new TextEncoder().encode(big.slice(50)));
        controller.close();
      },
    });
    const chunked = await app.request("/v2/models/iris/infer", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: stream,
      duplex: "half",
    } as RequestInit);
    expect(chunked.status).toBe(413);
    expect(a.seen).toHaveLength(0);
  });

  it("passes the agent's 400 for malformed JSON through when the gateway does not parse", async () => {
    const a = await agent("a1");
    const { app } = makeApp(table([model("iris", [a])]));
    const res = await infer(app, "/v2/models/iris/infer", {}, "{not json");
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toMatch(/agent a1: request body is not valid JSON/);
  });

  it("answers 400 itself for malformed JSON when validation is on, without calling the agent", async () => {
    const a = await agent("a1");
    const { app } = makeApp(table([model("iris", [a])]), { config: { validateJson: true } });
    const res = await infer(app, "/v2/models/iris/infer", {}, "{not json");
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: string };
    expect(body.error).toMatch(/^request body is not valid JSON/);
    expect(JSON.stringify(body)).not.toMatch(/at .*\.ts/);
    expect(a.seen).toHaveLength(0);
  });

  it("answers 500 without internals when something unexpected breaks", async () => {
    const { app } = makeApp(table([]));
    const broken = createApp({
      routes: {
        table: () => {
          throw new Error("secret detail at /srv/x.ts:1");
        },
        close: async () => {},
      },
      upstream: createHttpUpstream(),
      logger,
    });
    const res = await infer(broken, "/v2/models/iris/infer");
    expect(res.status).toBe(500);
    expect(await res.json()).toEqual({ error: "internal error" });
    expect((await app.request("/v2/health/live")).status).toBe(200);
  });
});

describe("experiments", () => {
  function experiment(overrides: Partial<ExperimentRoute>): ExperimentRoute {
    return {
      name: "ab",
      resourceType: "model",
      candidates: [
        { name: "iris_v1", weight: 75 },
        { name: "iris_v2", weight: 25 },
      ],
      active: true,
      ...overrides,
    };
  }

  async function setup(exp: ExperimentRoute, random: () => number) {
    const v1 = await agent("v1");
    const v2 = await agent("v2");
    const base = await agent("base");
    const { app } = makeApp(table([model("iris_v1", [v1]), model("iris_v2", [v2]), model("iris", [base])], [exp]), {
      random,
    });
    return { app, v1, v2, base };
  }

  it("splits requests over candidates by weight and names the route in x-seldon-route", async () => {
    // 0.74*100 < 75 → iris_v1; 0.76*100 ≥ 75 → iris_v2.
    const draws = [0.1, 0.74, 0.76, 0.99];
    const { app } = await setup(experiment({}), () => draws.shift()!);
    const routes: string[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await infer(app, "/v2/models/iris/infer", { "seldon-model": "ab.experiment" });
      expect(res.status).toBe(200);
      routes.push(res.headers.get("x-seldon-route")!);
    }
    expect(routes).toEqual([":iris_v1:", ":iris_v1:", ":iris_v2:", ":iris_v2:"]);
  });

  it("takes over the default model's endpoint", async () => {
    const { app, v2, base } = await setup(experiment({ default: "iris" }), () => 0.9);
    const res = await infer(app, "/v2/models/iris/infer");
    expect(await res.json()).toMatchObject({ agent: "v2", model_name: "iris_v2" });
    expect(v2.seen[0]!.path).toBe("/v2/models/iris_v2/infer");
    expect(base.seen).toHaveLength(0);
  });

  it("serves the default model as usual while the experiment is not active", async () => {
    const { app, base } = await setup(experiment({ default: "iris", active: false }), () => 0.9);
    const res = await infer(app, "/v2/models/iris/infer");
    expect(await res.json()).toMatchObject({ agent: "base" });
    expect(res.headers.get("x-seldon-route")).toBe(":iris:");
    expect(base.seen).toHaveLength(1);
    const inactive = await setup(experiment({ name: "ab", active: false }), () => 0.9);
    expect((await infer(inactive.app, "/v2/models/x/infer", { "seldon-model": "ab.experiment" })).status).toBe(503);
  });

  it("answers 404 for an unknown experiment", async () => {
    const { app } = await setup(experiment({}), () => 0.5);
    const res = await infer(app, "/v2/models/x/infer", { "seldon-model": "nope.experiment" });
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: string }).error).toBe("experiment nope not found");
  });

  it("pins the route when x-seldon-route is sent back", async () => {
    const { app, v1, v2 } = await setup(experiment({ default: "iris" }), () => 0.99);
    for (let i = 0; i < 3; i++) {
      const res = await infer(app, "/v2/models/iris/infer", { "x-seldon-route": ":iris_v1:" });
      expect(res.headers.get("x-seldon-route")).toBe(":iris_v1:");
    }
    expect(v1.seen).toHaveLength(3);
    expect(v2.seen).toHaveLength(0);
  });

  it("mirrors a copy to the mirror model without waiting for it", async () => {
    const v1 = await agent("v1");
    const shadow = await agent("shadow", { hold: true });
    const exp = experiment({
      default: "iris",
      candidates: [{ name: "iris_v1", weight: 1 }],
      mirror: { name: "shadow", percent: 100 },
    });
    const { app } = makeApp(table([model("iris_v1", [v1]), model("shadow", [shadow])], [exp]), { random: () => 0.5 });
    // The mirror never answers while held; the caller is answered regardless.
    const res = await infer(app, "/v2/models/iris/infer");
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ agent: "v1" });
    await waitFor(() => shadow.pending() === 1, 5000, "the mirror copy");
    expect(shadow.seen[0]!.path).toBe("/v2/models/shadow/infer");
    expect(shadow.seen[0]!.body.toString()).toBe(inferBody);
    shadow.release();
  });

  it("serves a mirror-only experiment's default and copies each request to the mirror", async () => {
    const base = await agent("base");
    const shadow = await agent("shadow");
    // The route exactly as the scheduler publishes a Seldon mirror-only experiment (default + mirror, no candidates).
    const spec = { default: "iris", mirror: { name: "shadow", percent: 100 } };
    const exp = experiment({
      name: "shadowed",
      default: spec.default,
      candidates: experimentCandidates(spec),
      mirror: { name: "shadow", percent: 100 },
    });
    const { app } = makeApp(table([model("iris", [base]), model("shadow", [shadow])], [exp]), { random: () => 0.5 });
    const byHeader: Record<string, string>[] = [{}, { "seldon-model": "shadowed.experiment" }];
    for (const headers of byHeader) {
      const res = await infer(app, "/v2/models/iris/infer", headers);
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ agent: "base" });
      expect(res.headers.get("x-seldon-route")).toBe(":iris:");
    }
    await waitFor(() => shadow.seen.length === 2, 5000, "two mirror copies");
    expect(shadow.seen.map((r) => r.path)).toEqual(["/v2/models/shadow/infer", "/v2/models/shadow/infer"]);
    expect(base.seen).toHaveLength(2);
  });

  it("drops mirror copies beyond the in-flight bound instead of queueing them", async () => {
    const v1 = await agent("v1");
    const shadow = await agent("shadow", { hold: true });
    const exp = experiment({
      default: "iris",
      candidates: [{ name: "iris_v1", weight: 1 }],
      mirror: { name: "shadow", percent: 100 },
    });
    const outcomes: string[] = [];
    const metrics: GatewayMetrics = { ...noopMetrics, mirror: (outcome) => outcomes.push(outcome) };
    const { app } = makeApp(table([model("iris_v1", [v1]), model("shadow", [shadow])], [exp]), {
      random: () => 0.5,
      config: { maxMirrorsInFlight: 2 },
      metrics,
    });
    for (let i = 0; i < 5; i++) expect((await infer(app, "/v2/models/iris/infer")).status).toBe(200);
    await waitFor(() => shadow.pending() === 2, 5000, "two mirror copies");
    expect(v1.seen).toHaveLength(5);
    // Three copies were dropped on the spot, not parked behind the two in flight.
    expect(outcomes).toEqual(["sent", "sent", "dropped", "dropped", "dropped"]);
    shadow.release();
    // Once the held copies finish, the bound frees up and the next copy goes out; it reaches the shadow as the third
    // copy (a queue would have delivered the three dropped ones first).
    const deadline = Date.now() + 5000;
    while (outcomes.at(-1) !== "sent") {
      if (Date.now() > deadline) throw new Error("no mirror copy sent after the held ones finished");
      await new Promise((r) => setTimeout(r, 5));
      expect((await infer(app, "/v2/models/iris/infer")).status).toBe(200);
    }
    await waitFor(() => shadow.seen.length >= 3, 5000, "the copy sent after release");
    expect(shadow.seen).toHaveLength(3);
  });

  it("mirrors only the configured share of requests", async () => {
    const v1 = await agent("v1");
    const shadow = await agent("shadow");
    const exp = experiment({
      default: "iris",
      candidates: [{ name: "iris_v1", weight: 1 }],
      mirror: { name: "shadow", percent: 30 },
    });
    // Draws alternate: candidate pick, then the mirror draw (0.2 → mirrored, 0.4 → not).
    const draws = [0.5, 0.2, 0.5, 0.4, 0.5, 0.29];
    const sent: string[] = [];
    const metrics: GatewayMetrics = { ...noopMetrics, mirror: (outcome) => sent.push(outcome) };
    const { app } = makeApp(table([model("iris_v1", [v1]), model("shadow", [shadow])], [exp]), {
      random: () => draws.shift()!,
      metrics,
    });
    for (let i = 0; i < 3; i++) expect((await infer(app, "/v2/models/iris/infer")).status).toBe(200);
    expect(sent).toEqual(["sent", "sent"]);
    await waitFor(() => shadow.seen.length === 2, 5000, "two mirror copies");
    expect(v1.seen).toHaveLength(3);
  });
});
