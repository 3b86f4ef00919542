import { formatProblem, parseManifests } from "@tern/core";
import { afterEach, describe, expect, it } from "vitest";
import { createControlApp } from "../../src/app.js";
import type { Scheduler } from "../../src/scheduler.js";
import { createHarness, type Harness, model, server, silentLogger } from "./helpers.js";

/** The content types the control API requires for bodies. */
const YAML = { "content-type": "application/yaml" };
const JSON_TYPE = { "content-type": "application/json" };

let h: Harness;
afterEach(async () => {
  await h?.close();
});

interface SseEvent {
  event?: string;
  id?: string;
  data?: string;
}

/** Reads server-sent events from a response until `count` arrived (or the deadline passes), then cancels it. */
async function readEvents(
  res: Response,
  count: number,
  deadlineMs = 3000,
): Promise<{ events: SseEvent[]; comments: number }> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  const events: SseEvent[] = [];
  let comments = 0;
  let buffer = "";
  const deadline = Date.now() + deadlineMs;
  try {
    while (events.length < count && Date.now() < deadline) {
      const timeout = new Promise<{ done: true; value: undefined }>((r) =>
        setTimeout(() => r({ done: true, value: undefined }), Math.max(1, deadline - Date.now())),
      );
      const { done, value } = await Promise.race([reader.read(), timeout]);
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let sep = buffer.indexOf("\n\n");
      while (sep >= 0) {
        const block = buffer.slice(0, sep);
        buffer = buffer.slice(sep + 2);
        const e: SseEvent = {};
        let isComment = true;
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) continue;
          isComment = false;
          const i = line.indexOf(":");
          const field = line.slice(0, i);
          const v = line.slice(i + 1).trimStart();
          if (field === "data") e.data = e.data === undefined ? v : `${e.data}\n${v}`;
          else if (field === "event" || field === "id") e[field] = v;
        }
        if (isComment) comments++;
        else events.push(e);
        sep = buffer.indexOf("\n\n");
      }
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
  return { events, comments };
}

async function setup(options: { token?: string; standby?: boolean; heartbeatMs?: number; historyLimit?: number } = {}) {
  h = await createHarness(options.historyLimit === undefined ? {} : { historyLimit: options.historyLimit });
  const active: Scheduler | undefined = options.standby ? undefined : h.scheduler;
  const app = createControlApp({
    active: () => active,
    store: h.store,
    leaseName: "scheduler",
    logger: silentLogger,
    ...(options.token === undefined ? {} : { token: options.token }),
    streamHeartbeatMs: options.heartbeatMs ?? 15_000,
  });
  return app;
}

describe("control API", () => {
  it("applies YAML with several documents and lists and shows what it stored", async () => {
    const app = await setup();
    const res = await app.request("/v1/apply", {
      method: "POST",
      headers: YAML,
      body: `${server("onnx", 1)}---\n${model("iris")}`,
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { results: unknown[]; revision: number };
    expect(body.results).toEqual([
      { kind: "Server", name: "onnx", action: "created" },
      { kind: "Model", name: "iris", action: "created", version: 1 },
    ]);
    expect(body.revision).toBeGreaterThan(0);
    const list = (await (await app.request("/v1/models")).json()) as { items: { name: string; state: string }[] };
    expect(list.items.map((m) => [m.name, m.state])).toEqual([["iris", "ScheduleFailed"]]);
    const one = (await (await app.request("/v1/Model/iris")).json()) as { state: string; replicas: number };
    expect(one).toMatchObject({ name: "iris", replicas: 1, availableReplicas: 0, placement: [] });
    const srv = await app.request("/v1/servers/onnx");
    expect(await srv.json()).toMatchObject({ name: "onnx", capabilities: ["onnx"], replicas: 1 });
    expect((await app.request("/v1/models/nope")).status).toBe(404);
    expect(await (await app.request("/v1/widgets")).json()).toEqual({
      error: 'unknown kind "widgets": expected model, server, pipeline or experiment',
    });
  });

  it("serves a pipeline's spec at its version, with its owners, for the dataflow workers to fetch (also when standing by)", async () => {
    const pipeline = (step: string) =>
      `apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata: {name: chain}\nspec:\n  steps: [{name: ${step}}]\n`;
    for (const standby of [false, true]) {
      const app = await setup({ standby });
      await h.apply(pipeline("a"));
      await h.apply(pipeline("b"));
      await h.scheduler.workers.register({ kind: "dataflow", id: "dataflow-0" });
      const res = await app.request("/v1/pipelines/chain/spec");
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({
        name: "chain",
        version: 2,
        owners: ["dataflow-0"],
        resource: {
          apiVersion: "mlops.seldon.io/v1alpha1",
          kind: "Pipeline",
          metadata: { name: "chain" },
          spec: { steps: [{ name: "b" }] },
        },
      });
      expect(await (await app.request("/v1/pipelines/chain")).json()).toMatchObject({
        version: 2,
        owners: ["dataflow-0"],
      });
      const missing = await app.request("/v1/pipelines/ghost/spec");
      expect(missing.status).toBe(404);
      expect(await missing.json()).toEqual({ error: "Pipeline ghost not found" });
      await h.close();
    }
  });

  it("accepts a JSON manifest", async () => {
    const app = await setup();
    const json = JSON.stringify({
      apiVersion: "mlops.seldon.io/v1alpha1",
      kind: "Server",
      metadata: { name: "s" },
      spec: { serverConfig: "mlserver", replicas: 2 },
    });
    const res = await app.request("/v1/apply", {
      method: "POST",
      body: json,
      headers: { "content-type": "application/json" },
    });
    expect(res.status).toBe(200);
    expect(await (await app.request("/v1/servers/s")).json()).toMatchObject({
      replicas: 2,
      state: "ServerProgressing",
    });
  });

  it("rejects an invalid manifest with 400 and the messages tern validate prints", async () => {
    const app = await setup();
    const bad = model("iris").replace("replicas: 1", "replicas: -2");
    const expected = parseManifests(bad).problems.map(formatProblem);
    expect(expected.length).toBeGreaterThan(0);
    const res = await app.request("/v1/apply", { method: "POST", headers: YAML, body: bad });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: string; problems: unknown[] };
    expect(body.error).toBe(expected.join("\n"));
    expect(body.problems).toHaveLength(expected.length);
    expect((await app.request("/v1/models")).status).toBe(200);
    expect(((await (await app.request("/v1/models")).json()) as { items: unknown[] }).items).toEqual([]);
  });

  it("requires the bearer token when one is configured", async () => {
    const app = await setup({ token: "s3cret" });
    expect((await app.request("/v1/models")).status).toBe(401);
    expect((await app.request("/v1/models", { headers: { authorization: "Bearer wrong" } })).status).toBe(401);
    const ok = await app.request("/v1/models", { headers: { authorization: "Bearer s3cret" } });
    expect(ok.status).toBe(200);
    expect((await app.request("/healthz")).status).toBe(200);
  });

  it("answers writes with 503 naming the leader when standing by, and serves reads from the store", async () => {
    const app = await setup({ standby: true });
    await h.apply(server("onnx", 1));
    const res = await app.request("/v1/apply", { method: "POST", headers: YAML, body: model("iris") });
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ error: "not the active scheduler", leader: { holder: "test" } });
    const list = (await (await app.request("/v1/servers")).json()) as { items: { name: string }[] };
    expect(list.items.map((s) => s.name)).toEqual(["onnx"]);
    expect(await (await app.request("/v1/status")).json()).toMatchObject({
      active: false,
      revision: h.scheduler.revision,
    });
  });

  it("streams every change with its revision, resuming from a revision", async () => {
    const app = await setup();
    await app.request("/v1/apply", { method: "POST", headers: YAML, body: server("onnx", 1) });
    const from = h.scheduler.revision;
    await app.request("/v1/apply", { method: "POST", headers: YAML, body: model("a") });
    await app.request("/v1/apply", { method: "POST", headers: YAML, body: model("b") });
    const res = await app.request(`/v1/watch?fromRevision=${from}`);
    expect(res.headers.get("content-type")).toMatch(/text\/event-stream/);
    const { events } = await readEvents(res, 2);
    expect(events.map((e) => e.id)).toEqual([String(from + 1), String(from + 2)]);
    const first = JSON.parse(events[0]!.data!) as { revision: number; changes: { kind: string; name: string }[] };
    expect(first.revision).toBe(from + 1);
    expect(first.changes).toContainEqual(expect.objectContaining({ kind: "model", name: "a", type: "put" }));
  });

  it("delivers live changes to a watcher that started at the current revision", async () => {
    const app = await setup();
    const res = await app.request(`/v1/watch?fromRevision=${h.scheduler.revision}`);
    const reading = readEvents(res, 1);
    await app.request("/v1/apply", { method: "POST", headers: YAML, body: server("onnx", 1) });
    const { events } = await reading;
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ event: "change", id: String(h.scheduler.revision) });
  });

  it("tells a watcher whose revision is outside the kept history to re-list", async () => {
    const app = await setup({ historyLimit: 2 });
    for (let i = 0; i < 4; i++) await app.request("/v1/apply", { method: "POST", headers: YAML, body: model(`m${i}`) });
    const res = await app.request("/v1/watch?fromRevision=0");
    const { events } = await readEvents(res, 1);
    expect(events[0]).toMatchObject({ event: "reset", id: String(h.scheduler.revision) });
    expect(JSON.parse(events[0]!.data!)).toMatchObject({ revision: h.scheduler.revision });
  });

  it("keeps idle streams alive with heartbeat comments", async () => {
    const app = await setup({ heartbeatMs: 20 });
    const res = await app.request("/v1/watch");
    const { comments } = await readEvents(res, 1, 200);
    expect(comments).toBeGreaterThan(0);
  });

  it("runs the agent protocol: register, assignments stream, events, heartbeat, view, drain, leave", async () => {
    const app = await setup();
    await app.request("/v1/apply", {
      method: "POST",
      headers: YAML,
      body: `${server("onnx", 1)}---\n${model("iris")}`,
    });
    const reg = await app.request("/v1/agents", {
      method: "POST",
      headers: JSON_TYPE,
      body: JSON.stringify({
        server: "onnx",
        replica: 0,
        capabilities: ["onnx"],
        memoryBytes: 1 << 30,
        endpoints: { http: "http://127.0.0.1:9500" },
        loaded: [],
      }),
    });
    expect(reg.status).toBe(200);
    expect(await reg.json()).toEqual({ heartbeatIntervalMs: 2000, heartbeatTimeoutMs: 6000 });
    const stream = await app.request("/v1/agents/onnx/0/assignments");
    const { events } = await readEvents(stream, 1);
    const assignments = JSON.parse(events[0]!.data!) as { models: { model: string; version: number }[] };
    expect(assignments.models.map((m) => [m.model, m.version])).toEqual([["iris", 1]]);
    const ev = await app.request("/v1/agents/onnx/0/events", {
      method: "POST",
      headers: JSON_TYPE,
      body: JSON.stringify({ model: "iris", version: 1, state: "Available" }),
    });
    expect(ev.status).toBe(204);
    expect(await (await app.request("/v1/models/iris")).json()).toMatchObject({
      state: "ModelAvailable",
      availableReplicas: 1,
    });
    expect((await (await app.request("/v1/routes")).json()) as object).toMatchObject({
      models: { iris: { endpoints: [{ http: "http://127.0.0.1:9500", replica: 0 }] } },
    });
    expect((await app.request("/v1/agents/onnx/0/heartbeat", { method: "POST" })).status).toBe(204);
    expect((await app.request("/v1/agents/onnx/7/heartbeat", { method: "POST" })).status).toBe(404);
    // A heartbeat may carry what the agent's runtime process holds (MLServer); a bad figure is named.
    const beat = (body: unknown) =>
      app.request("/v1/agents/onnx/0/heartbeat", { method: "POST", headers: JSON_TYPE, body: JSON.stringify(body) });
    expect((await beat({ processBytes: 300 << 20 })).status).toBe(204);
    expect(await (await app.request("/v1/agents/onnx/0")).json()).toMatchObject({ processBytes: 300 << 20 });
    const negative = await beat({ processBytes: -1 });
    expect(negative.status).toBe(400);
    expect(((await negative.json()) as { error: string }).error).toMatch(/processBytes/);
    expect((await beat({ rss: 1 })).status).toBe(400);
    const bad = await app.request("/v1/agents/onnx/0/events", {
      method: "POST",
      headers: JSON_TYPE,
      body: JSON.stringify({ model: "iris", version: 1, state: "Happy" }),
    });
    expect(bad.status).toBe(400);
    // A field the contract does not name is refused, as in a registration or a heartbeat, not silently dropped.
    const typo = await app.request("/v1/agents/onnx/0/events", {
      method: "POST",
      headers: JSON_TYPE,
      body: JSON.stringify({ model: "iris", version: 1, state: "Available", reasn: "typo" }),
    });
    expect(typo.status).toBe(400);
    expect(((await typo.json()) as { error: string }).error).toMatch(/reasn/);
    expect((await app.request("/v1/agents/onnx/0/drain", { method: "POST" })).status).toBe(202);
    expect(await (await app.request("/v1/agents/onnx/0")).json()).toMatchObject({ draining: true, drained: false });
    expect((await app.request("/v1/agents/onnx/0", { method: "DELETE" })).status).toBe(204);
    expect((await app.request("/v1/agents/onnx/0")).status).toBe(404);
  });

  it("takes a heartbeat's traffic body, names a bad field, and wakes a model scaled to zero once", async () => {
    const app = await setup();
    await app.request("/v1/apply", {
      method: "POST",
      headers: YAML,
      body: `${server("onnx", 1)}---\n${model("iris", "  minReplicas: 0\n  maxReplicas: 2\n", 0)}`,
    });
    await h.agent("onnx", 0);
    const beat = (body: unknown) =>
      app.request("/v1/agents/onnx/0/heartbeat", { method: "POST", headers: JSON_TYPE, body: JSON.stringify(body) });
    const traffic = { model: "iris", inFlight: 1, lag: 0.5, requestsPerSecond: 10, idleMs: 0 };
    expect((await beat({ models: [traffic] })).status).toBe(204);
    const bad = await beat({ models: [{ ...traffic, lagg: 1 }] });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toMatch(/invalid heartbeat: models\.0: .*lagg/);

    expect(await (await app.request("/v1/models/iris")).json()).toMatchObject({ state: "ModelScaledDown" });
    const first = await app.request("/v1/models/iris/activate", { method: "POST" });
    expect(first.status).toBe(202);
    expect(await first.json()).toEqual({ model: "iris", desiredReplicas: 1, activated: true });
    const again = await app.request("/v1/models/iris/activate", { method: "POST" });
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual({ model: "iris", desiredReplicas: 1, activated: false });
    expect((await app.request("/v1/models/ghost/activate", { method: "POST" })).status).toBe(404);
  });

  it("deletes resources and answers 404 for unknown ones", async () => {
    const app = await setup();
    await app.request("/v1/apply", { method: "POST", headers: YAML, body: server("onnx", 1) });
    expect((await app.request("/v1/servers/onnx", { method: "DELETE" })).status).toBe(200);
    expect((await app.request("/v1/servers/onnx")).status).toBe(404);
    const res = await app.request("/v1/models/ghost", { method: "DELETE" });
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ error: "Model ghost not found" });
  });
});

describe("request bodies", () => {
  const registration = JSON.stringify({
    server: "onnx",
    replica: 0,
    capabilities: ["onnx"],
    memoryBytes: 1 << 30,
    endpoints: { http: "http://127.0.0.1:9500" },
  });

  // A web page can send these three types cross-origin without a CORS preflight: they must never change state.
  it.each([["text/plain;charset=UTF-8"], ["application/x-www-form-urlencoded"], ["multipart/form-data; boundary=x"]])(
    "refuses a manifest sent as %s with 415 and applies nothing",
    async (type) => {
      const app = await setup();
      const res = await app.request("/v1/apply", {
        method: "POST",
        headers: { "content-type": type },
        body: model("iris"),
      });
      expect(res.status).toBe(415);
      expect(((await res.json()) as { error: string }).error).toMatch(/application\/json or application\/yaml/);
      expect(h.scheduler.list("Model")).toEqual([]);
    },
  );

  it("refuses a body that names no content type", async () => {
    const app = await setup();
    const res = await app.request(
      new Request("http://scheduler/v1/apply", { method: "POST", body: new TextEncoder().encode(model("iris")) }),
    );
    expect(res.status).toBe(415);
    expect(h.scheduler.list("Model")).toEqual([]);
  });

  it.each([["application/yaml"], ["application/x-yaml"], ["text/yaml"], ["application/json; charset=utf-8"]])(
    "applies a manifest sent as %s",
    async (type) => {
      const app = await setup();
      const body = type.startsWith("application/json")
        ? JSON.stringify({
            apiVersion: "mlops.seldon.io/v1alpha1",
            kind: "Model",
            metadata: { name: "iris" },
            spec: {
              storageUri: "file:///m",
              requirements: ["onnx"],
            },
          })
        : model("iris");
      const res = await app.request("/v1/apply", { method: "POST", headers: { "content-type": type }, body });
      expect(res.status).toBe(200);
    },
  );

  it("takes agent bodies as JSON only", async () => {
    const app = await setup();
    await app.request("/v1/apply", { method: "POST", headers: YAML, body: server("onnx", 1) });
    for (const type of ["text/plain", "application/yaml"]) {
      const res = await app.request("/v1/agents", {
        method: "POST",
        headers: { "content-type": type },
        body: registration,
      });
      expect(res.status).toBe(415);
      expect(((await res.json()) as { error: string }).error).toMatch(/takes application\/json/);
    }
    expect(h.scheduler.agentView("onnx", 0)).toBeUndefined();
    expect((await app.request("/v1/agents", { method: "POST", headers: JSON_TYPE, body: registration })).status).toBe(
      200,
    );
    const event = JSON.stringify({ model: "iris", version: 1, state: "Available" });
    const plain = await app.request("/v1/agents/onnx/0/events", {
      method: "POST",
      headers: { "content-type": "text/plain" },
      body: event,
    });
    expect(plain.status).toBe(415);
  });

  it("needs no content type on requests without a body", async () => {
    const app = await setup();
    await app.request("/v1/apply", { method: "POST", headers: YAML, body: server("onnx", 1) });
    await app.request("/v1/agents", { method: "POST", headers: JSON_TYPE, body: registration });
    expect((await app.request("/v1/agents/onnx/0/heartbeat", { method: "POST" })).status).toBe(204);
    expect((await app.request("/v1/agents/onnx/0/drain", { method: "POST" })).status).toBe(202);
    expect((await app.request("/v1/agents/onnx/0", { method: "DELETE" })).status).toBe(204);
    expect((await app.request("/v1/servers/onnx", { method: "DELETE" })).status).toBe(200);
  });

  it("refuses a body on a bodyless route when its type is not JSON", async () => {
    const app = await setup();
    await app.request("/v1/apply", { method: "POST", headers: YAML, body: server("onnx", 1) });
    const res = await app.request("/v1/servers/onnx", {
      method: "DELETE",
      headers: { "content-type": "text/plain" },
      body: "x",
    });
    expect(res.status).toBe(415);
    expect(h.scheduler.get("Server", "onnx")).toBeDefined();
  });
});

describe("browsers", () => {
  it("refuses any request a browser sends (it carries Origin), even a bodyless drain", async () => {
    const app = await setup();
    await app.request("/v1/apply", { method: "POST", headers: YAML, body: server("onnx", 1) });
    await h.scheduler.registerAgent({
      server: "onnx",
      replica: 0,
      capabilities: ["onnx"],
      memoryBytes: 1 << 30,
      endpoints: { http: "http://127.0.0.1:9500" },
      loaded: [],
    });
    // What fetch(url, { method: "POST", mode: "no-cors" }) from a page sends: no body, no preflight.
    const drain = await app.request("/v1/agents/onnx/0/drain", {
      method: "POST",
      headers: { origin: "https://evil.example" },
    });
    expect(drain.status).toBe(403);
    expect(((await drain.json()) as { error: string }).error).toMatch(/not for browsers/);
    expect(h.scheduler.agentView("onnx", 0)).toMatchObject({ draining: false });
    expect((await app.request("/v1/status", { headers: { origin: "null" } })).status).toBe(403);
    expect((await app.request("/healthz", { headers: { origin: "https://evil.example" } })).status).toBe(200);
  });
});

describe("agent registration", () => {
  const good = {
    server: "onnx",
    replica: 0,
    capabilities: ["onnx"],
    memoryBytes: 1 << 30,
    endpoints: { http: "http://127.0.0.1:9500", grpc: "127.0.0.1:9501" },
    loaded: [],
  };

  async function register(app: Awaited<ReturnType<typeof setup>>, body: unknown) {
    const res = await app.request("/v1/agents", { method: "POST", headers: JSON_TYPE, body: JSON.stringify(body) });
    return { status: res.status, error: ((await res.json()) as { error?: string }).error };
  }

  it.each([
    ["javascript:alert(1)", "endpoints.http"],
    ["ftp://127.0.0.1:9500", "endpoints.http"],
    ["http://127.0.0.1", "endpoints.http"],
    ["http://127.0.0.1:0", "endpoints.http"],
    ["http://127.0.0.1:65536", "endpoints.http"],
    ["http://user:pw@127.0.0.1:9500", "endpoints.http"],
    ["http://127.0.0.1:9500/v2", "endpoints.http"],
    ["http://127.0.0.1:9500/", "endpoints.http"],
    ["http://127.0.0.1:9500?x=1", "endpoints.http"],
    ["http://-agent-:9500", "endpoints.http"],
    ["http://agent_0:9500", "endpoints.http"],
    ["http://300.1.1.1:9500", "endpoints.http"],
    ["http://[zz::1]:9500", "endpoints.http"],
    [" http://127.0.0.1:9500", "endpoints.http"],
  ])("refuses the REST endpoint %j", async (http, field) => {
    const app = await setup();
    const { status, error } = await register(app, { ...good, endpoints: { http } });
    expect(status).toBe(400);
    expect(error).toContain(`${field}: `);
    expect(h.scheduler.agentView("onnx", 0)).toBeUndefined();
  });

  it.each([["127.0.0.1"], ["http://127.0.0.1:9501"], ["127.0.0.1:9501/x"], ["[::1]"], ["host:port"]])(
    "refuses the gRPC endpoint %j",
    async (grpc) => {
      const app = await setup();
      const { status, error } = await register(app, { ...good, endpoints: { http: good.endpoints.http, grpc } });
      expect(status).toBe(400);
      expect(error).toContain("endpoints.grpc: ");
    },
  );

  it.each([["../etc"], ["a.b"], [""], ["a b"], ["x".repeat(254)]])("refuses the server name %j", async (server) => {
    const app = await setup();
    const { status, error } = await register(app, { ...good, server });
    expect(status).toBe(400);
    expect(error).toContain("server: ");
  });

  it.each([
    [{ ...good, admin: true }, "admin"],
    [{ ...good, endpoints: { ...good.endpoints, metrics: "127.0.0.1:9502" } }, "metrics"],
    [{ ...good, loaded: [{ model: "iris", version: 1, path: "/x" }] }, "path"],
  ])("refuses unknown fields (%#)", async (body, field) => {
    const app = await setup();
    const { status, error } = await register(app, body);
    expect(status).toBe(400);
    expect(error).toContain(field);
  });

  it.each([
    [{ http: "https://agent-0.onnx.svc.cluster.local:9500", grpc: "agent-0.onnx.svc.cluster.local:9501" }],
    [{ http: "http://[::1]:9500", grpc: "[::1]:9501" }],
    [{ http: "http://localhost:65535" }],
    [{ http: "http://10.0.3.7:80", grpc: "10.0.3.7:443" }],
  ])("accepts the endpoints %j", async (endpoints) => {
    const app = await setup();
    const { status, error } = await register(app, { ...good, endpoints });
    expect(error).toBeUndefined();
    expect(status).toBe(200);
    expect(h.scheduler.agentView("onnx", 0)?.endpoints).toEqual(endpoints);
  });
});
