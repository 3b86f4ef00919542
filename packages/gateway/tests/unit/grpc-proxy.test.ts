import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { type ModelRoute, REPLICA_MISS_HEADER, type RouteTable } from "@tern/core";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { createApiKeyCheck, hashApiKey } from "../../src/api-keys.js";
import { createGrpcProxy } from "../../src/grpc-proxy.js";
import { createSchedulerWaker, type ModelWaker } from "../../src/model-waker.js";
import { createMemoryRouteSource, type MemoryRouteSource } from "../../src/route-source.js";
import { refusedPort } from "./fake-agent.js";

const logger = pino({ level: "silent" });
const PROTO = fileURLToPath(new URL("../../../core/proto/oip.proto", import.meta.url));
const definition = protoLoader.loadSync(PROTO, {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const Service = (
  grpc.loadPackageDefinition(definition) as unknown as {
    inference: { GRPCInferenceService: grpc.ServiceClientConstructor };
  }
).inference.GRPCInferenceService;

interface InferRequest {
  model_name: string;
  model_version?: string;
  id?: string;
  inputs?: unknown[];
}

/** A real gRPC server acting as an agent: ModelInfer echoes the model name and id, and names itself in model_version. */
interface FakeGrpcAgentOptions {
  delayMs?: number;
  holdsNothing?: boolean;
  /** Runs before a replica miss is answered (the scheduler's view changing while the call is on the replica). */
  beforeMiss?: () => void;
}

async function startFakeGrpcAgent(id: string, options: FakeGrpcAgentOptions = {}) {
  const seen: InferRequest[] = [];
  const server = new grpc.Server();
  server.addService(Service.service, {
    ModelInfer: (call: grpc.ServerUnaryCall<InferRequest, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      seen.push(call.request);
      if (options.holdsNothing) {
        options.beforeMiss?.();
        // What an agent answers right after unloading the model: NOT_FOUND with the replica-miss trailer.
        const metadata = new grpc.Metadata();
        metadata.set(REPLICA_MISS_HEADER, "1");
        const message = `model ${call.request.model_name} is not loaded on this server replica`;
        return cb({ code: grpc.status.NOT_FOUND, details: message, metadata });
      }
      const answer = () =>
        cb(null, { model_name: call.request.model_name, model_version: id, id: call.request.id, outputs: [] });
      if (options.delayMs) setTimeout(answer, options.delayMs);
      else answer();
    },
    ModelReady: (call: grpc.ServerUnaryCall<{ name: string }, unknown>, cb: grpc.sendUnaryData<unknown>) =>
      cb(null, { ready: call.request.name === "iris" }),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  return { id, seen, address: `127.0.0.1:${port}`, close: async () => server.forceShutdown() };
}

type FakeGrpcAgent = Awaited<ReturnType<typeof startFakeGrpcAgent>>;
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function route(name: string, grpcAddresses: string[]): ModelRoute {
  return {
    name,
    version: 1,
    state: "ModelAvailable",
    endpoints: grpcAddresses.map((g, i) => ({
      server: "s",
      replica: i,
      version: 1,
      http: `http://unused-${name}-${i}`,
      grpc: g,
    })),
  };
}

async function setup(
  models: ModelRoute[],
  options: {
    deadlineMs?: number;
    keys?: string[];
    experiments?: RouteTable["experiments"];
    routes?: MemoryRouteSource;
    waker?: ModelWaker;
  } = {},
) {
  const table: RouteTable = {
    revision: 1,
    models: Object.fromEntries(models.map((m) => [m.name, m])),
    pipelines: {},
    experiments: options.experiments ?? {},
  };
  const keys = options.keys ? createApiKeyCheck(options.keys.map(hashApiKey)) : undefined;
  const routes = options.routes ?? createMemoryRouteSource(table);
  routes.set(table);
  const proxy = createGrpcProxy({
    routes,
    logger,
    random: () => 0.99,
    ...(options.deadlineMs ? { deadlineMs: options.deadlineMs } : {}),
    ...(keys ? { apiKeys: keys } : {}),
    ...(options.waker ? { waker: options.waker } : {}),
  });
  const port = await proxy.listen("127.0.0.1", 0);
  cleanups.push(() => proxy.close());
  const client = new Service(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  cleanups.push(() => client.close());
  return { client };
}

function call<T>(client: grpc.Client, method: string, request: unknown, metadata = new grpc.Metadata()) {
  return new Promise<{ value?: T; error?: grpc.ServiceError; headers?: grpc.Metadata }>((resolve) => {
    let headers: grpc.Metadata | undefined;
    type Unary = (
      request: unknown,
      metadata: grpc.Metadata,
      options: grpc.CallOptions,
      callback: (error: grpc.ServiceError | null, value: T) => void,
    ) => grpc.ClientUnaryCall;
    const c = (client as unknown as Record<string, Unary>)[method]!.call(
      client,
      request,
      metadata,
      { deadline: Date.now() + 5000 },
      (error: grpc.ServiceError | null, value: T) =>
        resolve({ ...(error ? { error } : { value }), ...(headers ? { headers } : {}) }),
    ) as grpc.ClientUnaryCall;
    c.on("metadata", (md) => {
      headers = md;
    });
  });
}

async function agent(id: string, options: FakeGrpcAgentOptions = {}): Promise<FakeGrpcAgent> {
  const a = await startFakeGrpcAgent(id, options);
  cleanups.push(() => a.close());
  return a;
}

const request = {
  model_name: "iris",
  id: "r1",
  inputs: [{ name: "x", datatype: "FP32", shape: ["1"], contents: { fp32_contents: [1.5] } }],
};

describe("gRPC proxy", () => {
  it("routes ModelInfer by model_name and passes the answer through", async () => {
    const iris = await agent("iris-agent");
    const wine = await agent("wine-agent");
    const { client } = await setup([route("iris", [iris.address]), route("wine", [wine.address])]);
    const res = await call<{ model_name: string; model_version: string; id: string }>(client, "ModelInfer", request);
    expect(res.error).toBeUndefined();
    expect(res.value).toMatchObject({ model_name: "iris", model_version: "iris-agent", id: "r1" });
    expect(res.headers?.get("x-seldon-route")).toEqual([":iris:"]);
    expect(iris.seen[0]!.inputs).toHaveLength(1);
    expect(wine.seen).toHaveLength(0);
  });

  it("routes by the seldon-model metadata key and rewrites the model name", async () => {
    const iris = await agent("iris-agent");
    const wine = await agent("wine-agent");
    const { client } = await setup([route("iris", [iris.address]), route("wine", [wine.address])]);
    const md = new grpc.Metadata();
    md.set("seldon-model", "wine");
    const res = await call<{ model_name: string; model_version: string; id: string }>(
      client,
      "ModelInfer",
      request,
      md,
    );
    expect(res.value).toMatchObject({ model_name: "wine", model_version: "wine-agent", id: "r1" });
    expect(wine.seen[0]).toMatchObject({ model_name: "wine", id: "r1" });
  });

  it("splits experiments and rewrites to the candidate", async () => {
    const v1 = await agent("v1");
    const v2 = await agent("v2");
    const { client } = await setup([route("iris_v1", [v1.address]), route("iris_v2", [v2.address])], {
      experiments: {
        ab: {
          name: "ab",
          resourceType: "model",
          default: "iris",
          active: true,
          candidates: [
            { name: "iris_v1", weight: 50 },
            { name: "iris_v2", weight: 50 },
          ],
        },
      },
    });
    const res = await call<{ model_name: string }>(client, "ModelInfer", request);
    expect(res.value).toMatchObject({ model_name: "iris_v2" });
    expect(res.headers?.get("x-seldon-route")).toEqual([":iris_v2:"]);
  });

  it("maps unknown models to NOT_FOUND and answers server-level calls itself", async () => {
    const { client } = await setup([]);
    const res = await call(client, "ModelInfer", { ...request, model_name: "nope" });
    expect(res.error?.code).toBe(grpc.status.NOT_FOUND);
    expect(res.error?.details).toBe("model nope not found");
    expect((await call<{ live: boolean }>(client, "ServerLive", {})).value).toEqual({ live: true });
    expect((await call<{ ready: boolean }>(client, "ServerReady", {})).value).toEqual({ ready: true });
  });

  it("forwards ModelReady", async () => {
    const iris = await agent("iris-agent");
    const { client } = await setup([route("iris", [iris.address])]);
    expect((await call<{ ready: boolean }>(client, "ModelReady", { name: "iris" })).value).toEqual({ ready: true });
  });

  it("retries another replica when one refuses connections", async () => {
    const alive = await agent("alive");
    const dead = `127.0.0.1:${await refusedPort()}`;
    const { client } = await setup([route("iris", [dead, alive.address])]);
    for (let i = 0; i < 3; i++) {
      const res = await call<{ model_version: string }>(client, "ModelInfer", request);
      expect(res.value).toMatchObject({ model_version: "alive" });
    }
  });

  it("answers UNAVAILABLE without the agents' addresses when none can be reached", async () => {
    const dead = [`127.0.0.1:${await refusedPort()}`, `127.0.0.1:${await refusedPort()}`];
    const { client } = await setup([route("iris", dead)]);
    const res = await call(client, "ModelInfer", request);
    expect(res.error?.code).toBe(grpc.status.UNAVAILABLE);
    expect(res.error?.details).toMatch(/model iris is unavailable/);
    for (const address of dead) {
      expect(res.error?.details).not.toContain(address.split(":")[1]);
    }
    expect(res.error?.details).not.toContain("127.0.0.1");
  });

  it("sends the call to another replica when the first no longer holds the model, else answers NOT_FOUND", async () => {
    const gone = await agent("gone", { holdsNothing: true });
    const kept = await agent("kept");
    const { client } = await setup([route("iris", [gone.address, kept.address])]);
    for (let i = 0; i < 3; i++) {
      const res = await call<{ model_version: string }>(client, "ModelInfer", request);
      expect(res.value).toMatchObject({ model_version: "kept" });
    }
    expect(gone.seen.length).toBeGreaterThan(0);

    const alone = await setup([route("iris", [gone.address])]);
    const res = await call(alone.client, "ModelInfer", request);
    expect(res.error?.code).toBe(grpc.status.NOT_FOUND);
    expect(res.error?.details).toBe("model iris is not loaded on this server replica");
  });

  it("answers DEADLINE_EXCEEDED when the agent is slower than the deadline", async () => {
    const slow = await agent("slow", { delayMs: 1000 });
    const { client } = await setup([route("iris", [slow.address])], { deadlineMs: 50 });
    const res = await call(client, "ModelInfer", request);
    expect(res.error?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
  });

  it("requires an API key in the authorization metadata when keys are configured", async () => {
    const iris = await agent("iris-agent");
    const { client } = await setup([route("iris", [iris.address])], { keys: ["k1"] });
    expect((await call(client, "ModelInfer", request)).error?.code).toBe(grpc.status.UNAUTHENTICATED);
    const md = new grpc.Metadata();
    md.set("authorization", "Bearer k1");
    expect((await call(client, "ModelInfer", request, md)).error).toBeUndefined();
    expect(iris.seen).toHaveLength(1);
  });
});

describe("gRPC proxy, a model scaled to zero", () => {
  function asleep(name: string): ModelRoute {
    return { name, version: 1, state: "ModelScaledDown", endpoints: [] };
  }

  /**
   * The real waker in front of a stand-in for the scheduler's control API: `POST /v1/models/{m}/activate` is counted
   * and, unless `never`, brings the model back through ModelProgressing the way the scheduler's route events do.
   */
  function fakeScheduler(routes: MemoryRouteSource, back: ModelRoute | undefined) {
    const calls: string[] = [];
    const fetch = (async (input: string | URL | Request, init?: RequestInit) => {
      calls.push(`${init?.method} ${String(input)}`);
      const table = routes.table() as RouteTable;
      if (back) {
        routes.set({
          ...table,
          models: { ...table.models, [back.name]: { ...asleep(back.name), state: "ModelProgressing" } },
        });
        setTimeout(() => {
          const now = routes.table() as RouteTable;
          routes.set({ ...now, revision: now.revision + 1, models: { ...now.models, [back.name]: back } });
        }, 30);
      }
      return new Response(JSON.stringify({ model: "iris", desiredReplicas: 1, activated: true }), { status: 202 });
    }) as typeof globalThis.fetch;
    return { calls, waker: createSchedulerWaker({ url: "http://scheduler", logger, fetch, pollMs: 5 }) };
  }

  it("wakes it for ModelInfer and answers concurrent calls once it is back", async () => {
    const iris = await agent("iris-agent");
    const routes = createMemoryRouteSource();
    const { calls, waker } = fakeScheduler(routes, route("iris", [iris.address]));
    const { client } = await setup([asleep("iris")], { routes, waker });
    const answers = await Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        call<{ model_name: string; model_version: string; id: string }>(client, "ModelInfer", {
          ...request,
          id: `r${i}`,
        }),
      ),
    );
    for (const [i, res] of answers.entries()) {
      expect(res.error).toBeUndefined();
      expect(res.value).toMatchObject({ model_name: "iris", model_version: "iris-agent", id: `r${i}` });
    }
    // Calls that overlap one activation share it; a later one may ask again, which the scheduler answers idempotently
    // (one load: model-waker.test.ts, against the real scheduler).
    expect(calls.length).toBeGreaterThanOrEqual(1);
    expect(new Set(calls)).toEqual(new Set(["POST http://scheduler/v1/models/iris/activate"]));
    expect(iris.seen).toHaveLength(5);
  });

  it("wakes it and retries once when the last replica unloads it under a ModelInfer (the scale-down race)", async () => {
    const fresh = await agent("fresh");
    const routes = createMemoryRouteSource();
    const { calls, waker } = fakeScheduler(routes, route("iris", [fresh.address]));
    const gone = await agent("gone", {
      holdsNothing: true,
      beforeMiss: () =>
        routes.set({ ...(routes.table() as RouteTable), revision: 2, models: { iris: asleep("iris") } }),
    });
    const { client } = await setup([route("iris", [gone.address])], { routes, waker });
    const res = await call<{ model_version: string; id: string }>(client, "ModelInfer", request);
    expect(res.error).toBeUndefined();
    expect(res.value).toMatchObject({ model_version: "fresh", id: "r1" });
    expect(gone.seen).toHaveLength(1);
    expect(calls).toEqual(["POST http://scheduler/v1/models/iris/activate"]);
  });

  it("does not wake it for ModelReady: the model is not ready while at zero", async () => {
    const iris = await agent("iris-agent");
    const routes = createMemoryRouteSource();
    const { calls, waker } = fakeScheduler(routes, route("iris", [iris.address]));
    const { client } = await setup([asleep("iris")], { routes, waker });
    const res = await call(client, "ModelReady", { name: "iris" });
    expect(res.error?.code).toBe(grpc.status.UNAVAILABLE);
    expect(res.error?.details).toBe("model iris has no available replica (state ModelScaledDown)");
    expect(calls).toEqual([]);
  });

  it("answers DEADLINE_EXCEEDED naming the model when no replica comes up within the deadline", async () => {
    const routes = createMemoryRouteSource();
    const { calls, waker } = fakeScheduler(routes, undefined);
    const { client } = await setup([asleep("iris")], { routes, waker, deadlineMs: 200 });
    const res = await call(client, "ModelInfer", request);
    expect(res.error?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(res.error?.details).toBe(
      "model iris was scaled to zero and no replica came up within the request's deadline (it is ModelScaledDown)",
    );
    expect(calls).toHaveLength(1);
  });
});
