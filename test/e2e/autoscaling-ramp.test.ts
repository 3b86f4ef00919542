import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { ModelStatus } from "@tern/core";
import {
  createControlClient,
  createLocalController,
  isProcessAlive,
  type LocalController,
  waitFor,
} from "@tern/devstack";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dynamodbEndpoint } from "../helpers/services.js";
import {
  applyManifest,
  getJson,
  type SchedulerProcess,
  startSchedulerProcess,
  waitActive,
} from "../scheduler/scheduler-process.js";
import { type GatewayProcess, startGatewayProcess } from "./gateway-process.js";
import { irisRequest, knownIrisRows } from "./iris-data.js";
import { describeOutcome, startTraffic } from "./traffic.js";

// Issue 14's ramp with real processes: a scheduler with short autoscaling windows, the local controller starting and
// stopping agent processes as the Server's desired count moves, and the gateway. iris (min 1 / max 4) on a Server
// (min 1 / max 4) that starts with one replica: 32 connections make both rise; when the traffic stops they fall back
// to 1 — the leaving replicas drained first — and no request fails throughout. Then, on the same processes, a model
// whose max (4) exceeds its Server's (2): under the same load it stops at 2 and both statuses say why.

const repoRoot = resolve(fileURLToPath(new URL(".", import.meta.url)), "../..");
const suffix = `${Date.now().toString(36)}-${process.pid}`;
const rows = knownIrisRows();
const SCALE_UP_WINDOW_MS = 1_500;

let scheduler: SchedulerProcess;
let controller: LocalController;
let gateway: GatewayProcess;
let logDir: string;
const messages: string[] = [];
const pidsSeen = new Set<number>();

interface ServerView {
  replicas: number;
  specReplicas: number;
  autoscaling?: { reason?: string };
  replicaStatus: Array<{ replica: number }>;
}

const modelStatus = (name = "iris") => getJson<ModelStatus>(`${scheduler.url}/v1/models/${name}`);
const serverStatus = (name = "ramp") => getJson<ServerView>(`${scheduler.url}/v1/servers/${name}`);

beforeAll(async () => {
  logDir = mkdtempSync(join(tmpdir(), "tern-autoscaling-"));
  scheduler = await startSchedulerProcess({
    id: `ramp-${suffix}`,
    dynamodbEndpoint: dynamodbEndpoint(),
    table: `tern-ramp-${suffix}`,
    env: {
      TERN_AGENT_HEARTBEAT_INTERVAL_MS: "500",
      TERN_AGENT_HEARTBEAT_TIMEOUT_MS: "3000",
      TERN_SCHEDULER_STREAM_HEARTBEAT_MS: "1000",
      // Any request in flight counts as lag. iris answers in microseconds, so on this machine the gateway, not the
      // agent, is the bottleneck and an agent's lag stays below 1 (0.69 per replica seen with 32 connections on one
      // replica, 0.16 on two): a threshold near zero makes the test depend on the loop, not on the machine's speed.
      TERN_AUTOSCALE_LAG_THRESHOLD: "0.001",
      TERN_AUTOSCALE_SCALE_UP_WINDOW_MS: String(SCALE_UP_WINDOW_MS),
      TERN_AUTOSCALE_IDLE_WINDOW_MS: "2000",
      TERN_AUTOSCALE_SERVER_IDLE_WINDOW_MS: "2000",
      TERN_AUTOSCALE_COOLDOWN_MS: "1000",
      LOG_LEVEL: "info",
    },
  });
  await waitActive(scheduler.url);
  controller = createLocalController({
    client: createControlClient({ url: scheduler.url }),
    schedulerUrl: scheduler.url,
    cwd: repoRoot,
    logDir,
    env: {
      ...process.env,
      TERN_AGENT_MEMORY: "64Mi",
      TERN_AGENT_DRAIN_TIMEOUT_MS: "8000",
      TERN_AGENT_RETRY_MAX_MS: "300",
      TERN_AGENT_STREAM_IDLE_TIMEOUT_MS: "3000",
      LOG_LEVEL: "warn",
    },
    restartDelayMs: 200,
    stopGraceMs: 15_000,
    resyncMs: 1000,
    logger: { info: (m) => messages.push(m), warn: (m) => messages.push(m) },
  });
  controller.start();
  await controller.synced();
  gateway = await startGatewayProcess({ schedulerUrl: scheduler.url });
});

afterAll(async () => {
  gateway?.kill("SIGKILL");
  await gateway?.exited;
  await controller?.stop();
  await scheduler?.kill("SIGTERM");
  for (const pid of pidsSeen) expect(isProcessAlive(pid), `agent pid ${pid} still alive`).toBe(false);
  if (logDir) rmSync(logDir, { recursive: true, force: true });
});

/** Replica indexes of the server's running agents (every agent's pid is kept for the check in afterAll). */
function notePids(server = "ramp"): number[] {
  const live = controller.agents().filter((a) => a.state === "running" && a.pid !== undefined);
  for (const a of live) pidsSeen.add(a.pid!);
  return live.filter((a) => a.server === server).map((a) => a.replica);
}

let lastProgress = 0;
/** A line every 3 s while waiting, so a slow run shows where it is. */
function progress(line: string): void {
  if (Date.now() - lastProgress < 3_000) return;
  lastProgress = Date.now();
  console.log(`[e2e autoscaling] ${line}`);
}

function context(): string {
  return `controller:\n${messages.slice(-40).join("\n")}\nscheduler:\n${scheduler.output().split("\n").slice(-40).join("\n")}`;
}

describe("autoscaling a model and its server with traffic", () => {
  it("rises under 32 connections and falls back to 1 when the traffic stops, with no failed request", async () => {
    const res = await applyManifest(
      scheduler.url,
      `apiVersion: mlops.seldon.io/v1alpha1
kind: Server
metadata: {name: ramp}
spec: {serverConfig: tern-onnx, replicas: 1, minReplicas: 1, maxReplicas: 4}
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Model
metadata: {name: iris}
spec:
  storageUri: "file://./samples/models/iris"
  requirements: [onnx]
  memory: 100Ki
  replicas: 1
  minReplicas: 1
  maxReplicas: 4
`,
    );
    expect(res.status, await res.text()).toBe(200);
    await waitFor(async () => (await modelStatus())?.state === "ModelAvailable", {
      timeoutMs: 30_000,
      intervalMs: 100,
      description: "iris available on one replica",
    });

    const traffic = startTraffic({
      url: gateway.url,
      rows,
      concurrency: 32,
      timeoutMs: 15_000,
      maxDurationMs: 120_000,
      maxRequests: 2_000_000,
    });
    let peak = 1;
    try {
      await waitFor(
        async () => {
          notePids();
          const s = await modelStatus();
          peak = Math.max(peak, s?.availableReplicas ?? 0);
          progress(
            `up: model ${s?.desiredReplicas}/${s?.availableReplicas} ${s?.autoscaling?.lastDecision?.reason ?? ""}; ${traffic.completed()} requests`,
          );
          return s !== undefined && s.availableReplicas >= 3 && s.state === "ModelAvailable";
        },
        { timeoutMs: 60_000, intervalMs: 200, description: "iris serving on at least 3 replicas under load" },
      ).catch((err: unknown) => {
        throw new Error(`${String(err)}\n${context()}`);
      });
      const server = await serverStatus();
      expect(server?.replicas).toBeGreaterThanOrEqual(3);
      expect(server?.specReplicas).toBe(1);
      expect(server?.autoscaling?.reason).toMatch(/model iris wants \d replicas/);
    } finally {
      traffic.stop();
    }
    const outcome = await traffic.done;
    console.log(`[e2e autoscaling] ramp: ${describeOutcome(outcome)}; peak ${peak} replicas serving`);
    expect(outcome.total, describeOutcome(outcome)).toBeGreaterThan(0);
    expect(outcome.ok, describeOutcome(outcome)).toBe(outcome.total);

    // A slow probe while they fall back: every request still answered while replicas drain and stop (one every
    // 2.5 s leaves each replica idle for the 2 s window between requests, so the scale-down proceeds).
    let probing = true;
    const probe = { total: 0, ok: 0, failures: [] as string[] };
    const probeLoop = (async () => {
      while (probing) {
        const row = rows[probe.total % rows.length]!;
        probe.total++;
        try {
          const r = await fetch(`${gateway.url}/v2/models/iris/infer`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: irisRequest(row),
            signal: AbortSignal.timeout(10_000),
          });
          const text = await r.text();
          if (r.status === 200) probe.ok++;
          else probe.failures.push(`${r.status} ${text.slice(0, 200)}`);
        } catch (err) {
          probe.failures.push(String(err));
        }
        await new Promise((r) => setTimeout(r, 2_500));
      }
    })();
    try {
      await waitFor(
        async () => {
          const live = notePids();
          const s = await modelStatus();
          const server = await serverStatus();
          progress(
            `down: model ${s?.desiredReplicas}/${s?.availableReplicas}, server ${server?.replicas} (${server?.replicaStatus.length} registered), ${live.length} agents`,
          );
          return (
            s?.desiredReplicas === 1 &&
            s.availableReplicas === 1 &&
            server?.replicas === 1 &&
            server.replicaStatus.length === 1 &&
            live.length === 1
          );
        },
        { timeoutMs: 90_000, intervalMs: 250, description: "iris and its server back at 1 replica" },
      ).catch((err: unknown) => {
        throw new Error(`${String(err)}\n${context()}`);
      });
    } finally {
      probing = false;
      await probeLoop;
    }
    console.log(`[e2e autoscaling] fall-back probe: ${probe.ok}/${probe.total} ok`);
    expect(probe.failures).toEqual([]);
    expect((await modelStatus())?.autoscaling?.lastDecision?.reason).toMatch(/served no request/);
  }, 240_000);
  it("stops a model whose maxReplicas exceeds its server's at the server's maxReplicas, the status naming both", async () => {
    const res = await applyManifest(
      scheduler.url,
      `apiVersion: mlops.seldon.io/v1alpha1
kind: Server
metadata: {name: capped}
spec: {serverConfig: tern-onnx, replicas: 1, minReplicas: 1, maxReplicas: 2}
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Model
metadata: {name: capped-iris}
spec:
  storageUri: "file://./samples/models/iris"
  requirements: [onnx]
  server: capped
  memory: 100Ki
  replicas: 1
  minReplicas: 1
  maxReplicas: 4
`,
    );
    expect(res.status, await res.text()).toBe(200);
    await waitFor(async () => (await modelStatus("capped-iris"))?.state === "ModelAvailable", {
      timeoutMs: 30_000,
      intervalMs: 100,
      description: "capped-iris available on one replica",
    });

    const traffic = startTraffic({
      url: gateway.url,
      model: "capped-iris",
      rows,
      concurrency: 32,
      timeoutMs: 15_000,
      maxDurationMs: 120_000,
      maxRequests: 2_000_000,
    });
    // Everything seen while the load runs: the model must never want, hold or be given a third replica.
    const peak = { desired: 0, available: 0, placed: 0, server: 0, agents: 0 };
    const observe = async () => {
      const agents = notePids("capped").length;
      const s = await modelStatus("capped-iris");
      const server = await serverStatus("capped");
      peak.desired = Math.max(peak.desired, s?.desiredReplicas ?? 0);
      peak.available = Math.max(peak.available, s?.availableReplicas ?? 0);
      peak.placed = Math.max(peak.placed, s?.placement.length ?? 0);
      peak.server = Math.max(peak.server, server?.replicas ?? 0);
      peak.agents = Math.max(peak.agents, agents);
      progress(
        `capped: model ${s?.desiredReplicas}/${s?.availableReplicas} (${s?.autoscaling?.lastDecision?.reason ?? ""}), server ${server?.replicas} (${server?.autoscaling?.reason ?? ""}), ${agents} agents; ${traffic.completed()} requests`,
      );
      return { s, server };
    };
    let model: ModelStatus | undefined;
    let server: ServerView | undefined;
    try {
      await waitFor(
        async () => {
          ({ s: model, server } = await observe());
          return (
            model?.availableReplicas === 2 &&
            model.autoscaling?.wantsServerReplicas === 3 &&
            /maxReplicas/.test(model.autoscaling.lastDecision?.reason ?? "")
          );
        },
        {
          timeoutMs: 60_000,
          intervalMs: 200,
          description: "capped-iris serving on 2 replicas and blocked at the server's max",
        },
      ).catch((err: unknown) => {
        throw new Error(`${String(err)}\n${context()}`);
      });
      // Two more scale-up windows under the same load: the blocked decision is re-made on every pass and still gives 2.
      const until = Date.now() + 2 * SCALE_UP_WINDOW_MS;
      await waitFor(
        async () => {
          ({ s: model, server } = await observe());
          return Date.now() >= until;
        },
        { timeoutMs: 4 * SCALE_UP_WINDOW_MS + 10_000, intervalMs: 200, description: "watching capped-iris stay at 2" },
      );
    } finally {
      traffic.stop();
    }
    const outcome = await traffic.done;
    console.log(`[e2e autoscaling] capped: ${describeOutcome(outcome)}; peaks ${JSON.stringify(peak)}`);
    expect(outcome.ok, describeOutcome(outcome)).toBe(outcome.total);
    expect(peak).toEqual({ desired: 2, available: 2, placed: 2, server: 2, agents: 2 });
    expect(model?.desiredReplicas).toBe(2);
    expect(model?.autoscaling?.lastDecision?.reason).toBe(
      "wants 3 replicas but server capped is at its maxReplicas 2: stays at 2",
    );
    expect(server?.replicas).toBe(2);
    expect(server?.autoscaling?.reason).toBe("model capped-iris wants 3 replicas but maxReplicas is 2");
  }, 180_000);
});
