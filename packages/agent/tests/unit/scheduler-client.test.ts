import type { AddressInfo } from "node:net";
import { type ServerType, serve } from "@hono/node-server";
import { type ModelStatus, parseManifestsOrThrow, type StateStore } from "@tern/core";
import { type Logger, pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { createControlApp } from "../../../scheduler/src/app.js";
import { PROCESS_BYTES_STEP } from "../../../scheduler/src/replica-memory.js";
import { createScheduler, type Scheduler } from "../../../scheduler/src/scheduler.js";
import { createMemoryStore } from "../../../scheduler/src/store/memory-store.js";
import { type Agent, createAgent } from "../../src/agent.js";
import { createArtifactFetcher } from "../../src/artifacts/artifact-fetcher.js";
import { createOnnxRuntime } from "../../src/runtime/onnx-runtime.js";
import {
  createSchedulerClient,
  type SchedulerClient,
  type SchedulerClientOptions,
} from "../../src/scheduler-client.js";
import { countingRuntime, IRIS_ROWS, REPO_ROOT } from "./helpers.js";

const silent = pino({ level: "silent" });
const STREAM_HEARTBEAT_MS = 200;

/**
 * The real scheduler (createScheduler + createControlApp on a memory store) served over HTTP on a port that survives
 * restarts, so the agent's client sees exactly what it would see in production: drops, a standby's 503s, a new leader.
 */
interface ControlPlane {
  url: string;
  store: StateStore;
  scheduler(): Scheduler;
  /** Stops the scheduler and the HTTP server (connections cut), keeping the store. */
  down(): Promise<void>;
  /** Serves the API again on the same port, as a standby (503) until `elect()`. */
  upAsStandby(): Promise<void>;
  /** A new scheduler instance takes the lease (a new fencing token) and loads the state from the store. */
  elect(options?: ElectOptions): Promise<void>;
  close(): Promise<void>;
}

/** Heartbeat timings and logger of the scheduler `elect` starts. */
interface ElectOptions {
  /** @default 100 */
  heartbeatIntervalMs?: number;
  /** @default 3000 */
  heartbeatTimeoutMs?: number;
  logger?: Logger;
}

async function startControlPlane(streamHeartbeatMs = STREAM_HEARTBEAT_MS): Promise<ControlPlane> {
  const store = createMemoryStore();
  let active: Scheduler | undefined;
  let holder = 0;
  let server: ServerType | undefined;
  let port = 0;
  const app = createControlApp({
    active: () => active,
    store,
    leaseName: "scheduler",
    logger: silent,
    streamHeartbeatMs,
  });
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const s = serve({ fetch: app.fetch, hostname: "127.0.0.1", port }, (info: AddressInfo) => {
        port = info.port;
        resolve();
      });
      s.once("error", reject);
      server = s;
    });
  const plane: ControlPlane = {
    get url() {
      return `http://127.0.0.1:${port}`;
    },
    store,
    scheduler: () => {
      if (active === undefined) throw new Error("no active scheduler");
      return active;
    },
    async down() {
      const was = active;
      active = undefined;
      await was?.stop();
      const s = server;
      server = undefined;
      await new Promise<void>((resolve) => {
        if (s === undefined) return resolve();
        s.close(() => resolve());
        (s as unknown as { closeAllConnections(): void }).closeAllConnections();
      });
    },
    upAsStandby: listen,
    async elect(electOptions = {}) {
      const name = `scheduler-${++holder}`;
      // The previous holder is gone: let its lease go (a real standby would wait for it to lapse).
      const lease = await store.readLease("scheduler");
      if (lease !== undefined) await store.releaseLease("scheduler", lease.holder, lease.token);
      const granted = await store.acquireLease("scheduler", name, 60_000);
      if (granted === undefined) throw new Error("lease not granted");
      const scheduler = createScheduler({
        store,
        fence: { lease: "scheduler", token: granted.token },
        logger: electOptions.logger ?? silent,
        heartbeatIntervalMs: electOptions.heartbeatIntervalMs ?? 100,
        heartbeatTimeoutMs: electOptions.heartbeatTimeoutMs ?? 3000,
      });
      await scheduler.start();
      active = scheduler;
    },
    async close() {
      await plane.down();
      await store.close();
    },
  };
  await listen();
  await plane.elect();
  return plane;
}

async function waitFor<T>(
  check: () => T | undefined | false | Promise<T | undefined | false>,
  what: string,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ""}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const SERVER = (replicas: number) => `apiVersion: mlops.seldon.io/v1alpha1
kind: Server
metadata: {name: mlserver}
spec: {serverConfig: tern-onnx, replicas: ${replicas}}
`;
const IRIS = (replicas = 1) => `apiVersion: mlops.seldon.io/v1alpha1
kind: Model
metadata: {name: iris}
spec:
  storageUri: "file://./samples/models/iris"
  requirements: [onnx]
  memory: 100Ki
  replicas: ${replicas}
`;

async function apply(plane: ControlPlane, yaml: string): Promise<void> {
  const res = await fetch(`${plane.url}/v1/apply`, {
    method: "POST",
    headers: { "content-type": "application/yaml" },
    body: yaml,
  });
  expect(res.status, await res.clone().text()).toBe(200);
}

async function modelStatus(plane: ControlPlane, name: string): Promise<ModelStatus | undefined> {
  const res = await fetch(`${plane.url}/v1/models/${name}`);
  return res.status === 200 ? ((await res.json()) as ModelStatus) : undefined;
}

interface RunningAgent {
  agent: Agent;
  client: SchedulerClient;
  loads: Map<string, number>;
  unloads: Map<string, number>;
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function startAgent(
  plane: ControlPlane,
  replica: number,
  fetchFn?: typeof fetch,
  clientOptions: Partial<SchedulerClientOptions> = {},
  /** Stands in for a runtime with a process of its own (MLServer): its resident memory, bytes. */
  runtimeProcessBytes?: () => number,
): Promise<RunningAgent> {
  const counting = countingRuntime(createOnnxRuntime());
  const counts = counting.counts;
  const runtime = runtimeProcessBytes ? { ...counting.runtime, processBytes: runtimeProcessBytes } : counting.runtime;
  let client: SchedulerClient | undefined;
  const agent = createAgent({
    server: "mlserver",
    replica,
    runtime,
    fetcher: createArtifactFetcher({ cacheDir: "/tmp/tern-agent-test-cache", fileBaseDir: REPO_ROOT }),
    memoryBytes: 64 * 1024 * 1024,
    httpPort: 0,
    logger: silent,
    onStateChange: (e) => client?.report(e),
  });
  await agent.start();
  client = createSchedulerClient({
    agent,
    schedulerUrl: plane.url,
    logger: silent,
    memoryBytes: 64 * 1024 * 1024,
    retryInitialMs: 20,
    retryMaxMs: 200,
    requestTimeoutMs: 2000,
    streamIdleTimeoutMs: 3 * STREAM_HEARTBEAT_MS,
    drainPollMs: 50,
    ...(fetchFn === undefined ? {} : { fetch: fetchFn }),
    ...clientOptions,
  });
  const c = client;
  cleanups.push(async () => {
    await c.stop();
    await agent.stop(100);
  });
  client.start();
  return { agent, client, loads: counts.loads, unloads: counts.unloads };
}

async function inferIris(agent: Agent, row: number[]): Promise<number> {
  const res = await fetch(`${agent.endpoints().http}/v2/models/iris/infer`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ inputs: [{ name: "predict", shape: [1, 4], datatype: "FP32", data: row }] }),
  });
  const body = (await res.json()) as { outputs?: Array<{ name: string; data: number[] }>; error?: string };
  if (res.status !== 200) throw new Error(`infer answered ${res.status}: ${body.error}`);
  return Number(body.outputs!.find((o) => o.name === "label")!.data[0]);
}

describe("scheduler client against the real scheduler", () => {
  it("registers, loads what it is assigned, serves it, unloads it when the model is deleted", async () => {
    const plane = await startControlPlane();
    cleanups.push(() => plane.close());
    await apply(plane, SERVER(1));
    const a = await startAgent(plane, 0);
    await a.client.registered();

    await apply(plane, IRIS());
    const status = await waitFor(async () => {
      const s = await modelStatus(plane, "iris");
      return s?.state === "ModelAvailable" ? s : undefined;
    }, "iris ModelAvailable");
    expect(status.availableReplicas).toBe(1);
    expect(status.placement).toEqual([{ server: "mlserver", replica: 0, state: "Available" }]);
    for (const r of IRIS_ROWS) expect(await inferIris(a.agent, r.features)).toBe(r.label);

    const res = await fetch(`${plane.url}/v1/models/iris`, { method: "DELETE" });
    expect(res.status).toBe(200);
    await waitFor(async () => (await modelStatus(plane, "iris")) === undefined, "iris record gone");
    expect(a.agent.models.list()).toEqual([]);
    expect(a.unloads.get("iris")).toBe(1);
  });

  it("survives a scheduler restart (unreachable, then a standby, then a new leader) without reloading", async () => {
    const plane = await startControlPlane();
    cleanups.push(() => plane.close());
    await apply(plane, `${SERVER(1)}---\n${IRIS()}`);
    const a = await startAgent(plane, 0);
    await waitFor(async () => (await modelStatus(plane, "iris"))?.state === "ModelAvailable", "iris available");
    expect(a.loads.get("iris")).toBe(1);
    expect(a.client.status().registrations).toBe(1);

    await plane.down();
    await waitFor(() => !a.client.status().registered, "the client noticing the scheduler is gone");
    // The data plane keeps serving while the scheduler is away.
    expect(await inferIris(a.agent, IRIS_ROWS[0]!.features)).toBe(IRIS_ROWS[0]!.label);

    await plane.upAsStandby();
    await waitFor(() => a.client.status().lastError?.includes("standby"), "the client seeing the standby's 503");
    expect(a.client.status().registrations).toBe(1);

    await plane.elect();
    await waitFor(() => a.client.status().registrations === 2, "registration with the new leader");
    const status = await waitFor(async () => {
      const s = await modelStatus(plane, "iris");
      return s?.state === "ModelAvailable" ? s : undefined;
    }, "iris available under the new leader");
    expect(status.placement).toEqual([{ server: "mlserver", replica: 0, state: "Available" }]);
    // Nothing was reloaded: the registration's `loaded` list matched the stored state.
    expect(a.loads.get("iris")).toBe(1);
    expect(a.unloads.get("iris") ?? 0).toBe(0);
    expect(await inferIris(a.agent, IRIS_ROWS[4]!.features)).toBe(IRIS_ROWS[4]!.label);
  });

  it("comes back to a new leader within its heartbeat deadline however long the standby refused it", async () => {
    const plane = await startControlPlane();
    cleanups.push(() => plane.close());
    await apply(plane, `${SERVER(1)}---\n${IRIS()}`);
    let refusals = 0;
    const counting: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      if (String(input).endsWith("/v1/agents") && res.status === 503) refusals++;
      return res;
    };
    // A backoff doubling from 100 ms up to 5 s, at its longest jitter: after five refusals in a row the next attempt
    // would be 1.6 s away, far past the new leader's 600 ms heartbeat deadline.
    const a = await startAgent(plane, 0, counting, { retryInitialMs: 100, retryMaxMs: 5000, random: () => 1 });
    await waitFor(async () => (await modelStatus(plane, "iris"))?.state === "ModelAvailable", "iris available");

    await plane.down();
    await plane.upAsStandby();
    await waitFor(() => refusals >= 5, "five registrations refused by the standby");
    const removals: string[] = [];
    const watching = pino(
      { level: "warn" },
      { write: (line: string) => void (line.includes("missed its heartbeat deadline") && removals.push(line)) },
    );
    await plane.elect({ heartbeatIntervalMs: 100, heartbeatTimeoutMs: 600, logger: watching });
    await waitFor(() => a.client.status().registrations === 2, "registration with the new leader");
    const status = await waitFor(async () => {
      const s = await modelStatus(plane, "iris");
      return s?.state === "ModelAvailable" ? s : undefined;
    }, "iris available under the new leader");
    // The stored agent was not given up on (which would have rescheduled iris), and nothing was reloaded.
    expect(removals).toEqual([]);
    expect(status.placement).toEqual([{ server: "mlserver", replica: 0, state: "Available" }]);
    expect(a.loads.get("iris")).toBe(1);
    expect(a.unloads.get("iris") ?? 0).toBe(0);
  });

  it("re-registers with what it holds when a heartbeat gets 404, reloading nothing", async () => {
    const plane = await startControlPlane();
    cleanups.push(() => plane.close());
    await apply(plane, `${SERVER(1)}---\n${IRIS()}`);
    let forget = false;
    // The scheduler answers one heartbeat with its "unknown agent" 404 (what a scheduler that lost the agent says).
    const forgetful: typeof fetch = async (input, init) => {
      if (forget && String(input).endsWith("/heartbeat")) {
        forget = false;
        return new Response(JSON.stringify({ error: "unknown agent mlserver/0: register again" }), { status: 404 });
      }
      return fetch(input, init);
    };
    const a = await startAgent(plane, 0, forgetful);
    await waitFor(async () => (await modelStatus(plane, "iris"))?.state === "ModelAvailable", "iris available");
    forget = true;
    await waitFor(() => a.client.status().registrations === 2, "registering again");
    await waitFor(() => a.client.status().registered, "registered again");
    expect(forget).toBe(false);
    expect((await modelStatus(plane, "iris"))?.state).toBe("ModelAvailable");
    expect(a.loads.get("iris")).toBe(1);
    expect(a.unloads.get("iris") ?? 0).toBe(0);
  });

  it("comes back after the scheduler removed it, and the model is placed on it again", async () => {
    const plane = await startControlPlane();
    cleanups.push(() => plane.close());
    await apply(plane, `${SERVER(1)}---\n${IRIS()}`);
    const a = await startAgent(plane, 0);
    await waitFor(async () => (await modelStatus(plane, "iris"))?.state === "ModelAvailable", "iris available");

    // What a missed heartbeat deadline does: the replica is removed (its last assignment set is empty, so the agent
    // lets iris go), its stream closes and its heartbeats answer 404.
    await plane.scheduler().removeAgent("mlserver", 0);
    await waitFor(() => a.client.status().registrations >= 2, "registering again");
    await waitFor(async () => (await modelStatus(plane, "iris"))?.state === "ModelAvailable", "iris available again");
    expect(await inferIris(a.agent, IRIS_ROWS[3]!.features)).toBe(IRIS_ROWS[3]!.label);
  });

  it("delivers state events in order through a flaky connection", async () => {
    const plane = await startControlPlane();
    cleanups.push(() => plane.close());
    await apply(plane, SERVER(1));
    const { runtime } = countingRuntime(createOnnxRuntime());
    const agent = createAgent({
      server: "mlserver",
      replica: 0,
      runtime,
      fetcher: createArtifactFetcher({ cacheDir: "/tmp/tern-agent-test-cache", fileBaseDir: REPO_ROOT }),
      memoryBytes: 64 * 1024 * 1024,
      httpPort: 0,
      logger: silent,
    });
    await agent.start();
    const delivered: string[] = [];
    let failNext = 0;
    const flakyFetch: typeof fetch = async (input, init) => {
      const url = String(input);
      if (url.endsWith("/events")) {
        if (failNext > 0) {
          failNext--;
          throw new TypeError("fetch failed", { cause: { code: "ECONNRESET" } });
        }
        const res = await fetch(input, init);
        if (res.status === 204) delivered.push(String(JSON.parse(String(init?.body)).state));
        return res;
      }
      return fetch(input, init);
    };
    const client = createSchedulerClient({
      agent,
      schedulerUrl: plane.url,
      logger: silent,
      memoryBytes: 64 * 1024 * 1024,
      fetch: flakyFetch,
      retryInitialMs: 10,
      retryMaxMs: 50,
    });
    cleanups.push(async () => {
      await client.stop();
      await agent.stop(100);
    });
    client.start();
    await client.registered();
    failNext = 3;
    for (const state of ["Loading", "Available", "Unloading", "Unloaded"] as const) {
      client.report({ model: "ghost", version: 1, state });
    }
    await waitFor(() => delivered.length === 4, "four events delivered");
    expect(delivered).toEqual(["Loading", "Available", "Unloading", "Unloaded"]);
    expect(failNext).toBe(0);
    expect(client.status().queuedEvents).toBe(0);
  });

  it("drains: the scheduler moves the model to the other replica, says drained, and the agent deregisters", async () => {
    const plane = await startControlPlane();
    cleanups.push(() => plane.close());
    await apply(plane, `${SERVER(2)}---\n${IRIS(1)}`);
    const agents = [await startAgent(plane, 0), await startAgent(plane, 1)];
    const first = await waitFor(async () => {
      const s = await modelStatus(plane, "iris");
      return s?.state === "ModelAvailable" ? s : undefined;
    }, "iris available");
    const holder = first.placement[0]!.replica;
    const other = 1 - holder;
    const leaving = agents[holder]!;

    const result = await leaving.client.drain(10_000);
    expect(result).toEqual({ drained: true });
    // The model serves on the other replica, and the leaving one let it go.
    const moved = await modelStatus(plane, "iris");
    expect(moved?.state).toBe("ModelAvailable");
    expect(moved?.placement).toEqual([{ server: "mlserver", replica: other, state: "Available" }]);
    expect(await inferIris(agents[other]!.agent, IRIS_ROWS[2]!.features)).toBe(IRIS_ROWS[2]!.label);
    await waitFor(() => leaving.agent.models.list().length === 0, "the leaving replica unloading iris");

    await leaving.client.stop({ deregister: true });
    const gone = await fetch(`${plane.url}/v1/agents/mlserver/${holder}`);
    expect(gone.status).toBe(404);
    expect(plane.scheduler().agentView("mlserver", other)).toBeDefined();
  });

  it("takes a silent assignments stream for dead and opens a new one", async () => {
    // Keep-alive comments every 60 s, while the client gives up after 3 × 200 ms of silence.
    const plane = await startControlPlane(60_000);
    cleanups.push(() => plane.close());
    await apply(plane, SERVER(1));
    const a = await startAgent(plane, 0);
    await waitFor(() => a.client.status().registrations >= 3, "two reconnects after silent streams");
    expect(a.client.status().lastDisconnect).toMatch(/silent for 600 ms/);
  });

  it("falls back to the deadline when the scheduler cannot be reached while draining", async () => {
    const plane = await startControlPlane();
    cleanups.push(() => plane.close());
    await apply(plane, SERVER(1));
    const a = await startAgent(plane, 0);
    await a.client.registered();
    await plane.down();
    const result = await a.client.drain(300);
    expect(result.drained).toBe(false);
    expect(result.reason).toMatch(/within 300 ms/);
  });

  it("reconciles only the latest of the sets that arrived while one reconcile was running", async () => {
    const plane = await startControlPlane();
    cleanups.push(() => plane.close());
    await apply(plane, SERVER(1));
    const seen: string[][] = [];
    let release: (() => void) | undefined;
    const fake = {
      server: "mlserver",
      replica: 0,
      capabilities: () => ["onnx"],
      endpoints: () => ({ http: "http://127.0.0.1:1" }),
      loaded: () => [],
      async reconcile(models: readonly { model: string }[]) {
        seen.push(models.map((m) => m.model).sort());
        // The first reconcile (the empty set) blocks until the test lets it go.
        if (seen.length === 1) await new Promise<void>((r) => (release = r));
      },
    };
    const client = createSchedulerClient({
      agent: fake,
      schedulerUrl: plane.url,
      logger: silent,
      memoryBytes: 1 << 30,
    });
    cleanups.push(() => client.stop());
    client.start();
    await waitFor(() => release !== undefined, "the first reconcile running");
    const model = (name: string) => IRIS().replace("name: iris", `name: ${name}`);
    await plane.scheduler().apply(parseManifestsOrThrow(model("a")));
    await plane.scheduler().apply(parseManifestsOrThrow(model("b")));
    await plane.scheduler().apply(parseManifestsOrThrow(model("c")));
    await waitFor(() => client.status().assignmentsReceived >= 4, "three more sets received");
    release!();
    await waitFor(() => seen.length === 2, "the second reconcile");
    expect(seen).toEqual([[], ["a", "b", "c"]]);
    expect(client.status().reconciles).toBe(2);
  });
  it("reports its runtime process's memory beyond its models, and placement follows it heartbeat by heartbeat", async () => {
    const MiB = 1024 * 1024;
    const plane = await startControlPlane();
    cleanups.push(() => plane.close());
    await apply(plane, `${SERVER(1)}---\n${IRIS()}`);
    let rss = 40 * MiB;
    const a = await startAgent(plane, 0, undefined, {}, () => rss);
    await waitFor(async () => (await modelStatus(plane, "iris"))?.state === "ModelAvailable", "iris available");
    const view = async () =>
      (await (await fetch(`${plane.url}/v1/agents/mlserver/0`)).json()) as {
        memoryBytes: number;
        processBytes?: number;
      };
    // The capacity is 64 MiB; the process holds 40 MiB of which iris declares 100Ki (the scheduler keeps a figure
    // until it moves by PROCESS_BYTES_STEP, so the registration's 40 MiB may stay).
    const reported = (await view()).processBytes ?? 0;
    expect(Math.abs(reported - (40 * MiB - 100 * 1024))).toBeLessThan(PROCESS_BYTES_STEP);
    expect((await view()).memoryBytes).toBe(64 * MiB);

    // 30 MiB fits the 64 MiB capacity but not what the process leaves of it.
    await apply(plane, IRIS().replace("name: iris", "name: wide").replace("memory: 100Ki", "memory: 30Mi"));
    const failed = await waitFor(async () => {
      const s = await modelStatus(plane, "wide");
      return s?.state === "ScheduleFailed" ? s : undefined;
    }, "wide ScheduleFailed");
    expect(failed.reason).toMatch(/30/);

    // MLServer gives memory back: the next heartbeats say so and the model is placed.
    rss = 10 * MiB;
    await waitFor(async () => (await modelStatus(plane, "wide"))?.state === "ModelAvailable", "wide available");
    expect((await view()).processBytes ?? 0).toBeLessThan(PROCESS_BYTES_STEP);
    expect(a.loads.get("wide")).toBe(1);
  });
});
