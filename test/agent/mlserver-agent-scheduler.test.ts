/**
 * An agent process of server type mlserver with a scheduler process on DynamoDB Local: the specification's sklearn
 * iris (requirements [sklearn] on a Server with serverConfig mlserver) becomes ModelAvailable and answers; when its
 * MLServer is killed the scheduler sees the replica Loading, then Available again once the agent has reloaded it.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ModelStatus } from "@tern/core";
import { waitFor } from "@tern/devstack";
import { afterAll, describe, expect, it } from "vitest";
import { irisRows } from "../e2e/iris-data.js";
import { jsonLines, repoRoot, startPlatformProcess } from "../helpers/platform-process.js";
import { pythonEnv, runPython } from "../helpers/python.js";
import { dynamodbEndpoint } from "../helpers/services.js";
import {
  applyManifest,
  getJson,
  type SchedulerProcess,
  startSchedulerProcess,
  waitActive,
} from "../scheduler/scheduler-process.js";
import { type AgentProcess, killAll } from "./agent-process.js";

const suffix = `${Date.now().toString(36)}-${process.pid}`;
const schedulers: SchedulerProcess[] = [];
const agents: AgentProcess[] = [];
let dir: string | undefined;
const folders: string[] = [];
const ROWS = [0, 50, 100].map((i) => irisRows()[i]!);

afterAll(async () => {
  await killAll(agents, schedulers);
  if (dir) await rm(dir, { recursive: true, force: true });
  for (const f of folders) await rm(f, { recursive: true, force: true });
});

async function labels(agentHttp: string): Promise<number[]> {
  const res = await fetch(`${agentHttp}/v2/models/iris/infer`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      inputs: [{ name: "predict", datatype: "FP64", shape: [3, 4], data: ROWS.flatMap((r) => r.features) }],
    }),
    signal: AbortSignal.timeout(30_000),
  });
  const body = (await res.json()) as { outputs?: Array<{ data: number[] }>; error?: string };
  if (res.status !== 200) throw new Error(`${res.status}: ${body.error}`);
  return body.outputs![0]!.data.map(Number);
}

/** An agent process of server type mlserver (replica 0 of Server `mlserver`) registered with the scheduler. */
async function startMlserverAgent(
  schedulerUrl: string,
  python: string,
  folder: string,
  env: Record<string, string> = {},
): Promise<AgentProcess> {
  const started = await startPlatformProcess({
    script: "packages/agent/src/main.ts",
    name: "agent mlserver/0",
    env: {
      TERN_SCHEDULER_URL: schedulerUrl,
      TERN_AGENT_SERVER: "mlserver",
      TERN_AGENT_REPLICA: "0",
      TERN_AGENT_SERVER_TYPE: "mlserver",
      TERN_MLSERVER_PYTHON: python,
      TERN_MLSERVER_HEALTH_INTERVAL_MS: "500",
      TERN_AGENT_HTTP_PORT: "0",
      TERN_AGENT_GRPC_PORT: "0",
      TERN_AGENT_CACHE_DIR: join(folder, "cache"),
      TERN_ARTIFACT_ROOTS: join(folder, "models"),
      TERN_AGENT_STREAM_IDLE_TIMEOUT_MS: "3000",
      LOG_LEVEL: "info",
      ...env,
    },
    ready: (stdout) => /^agent mlserver\/0 serving (\S+) grpc/m.exec(stdout)?.[1],
    timeoutMs: 120_000,
  });
  const { ready: http, ...rest } = started;
  const agent: AgentProcess = { name: "mlserver/0", http, ...rest };
  agents.push(agent);
  return agent;
}

describe("an mlserver agent process with the scheduler", () => {
  it("serves the specification's sklearn iris and reports its MLServer's restart as Loading then Available", async () => {
    const python = await pythonEnv("mlserver");
    dir = await mkdtemp(join(tmpdir(), "tern-mlserver-agent-"));
    const model = join(dir, "models/iris");
    await runPython(
      python,
      [join(repoRoot, "samples/scripts/train_iris_sklearn.py"), join(repoRoot, "samples/iris/iris.csv"), model],
      "",
      120_000,
    );
    const scheduler = await startSchedulerProcess({
      id: "mlserver-it",
      table: `tern-mlserver-it-${suffix}`,
      dynamodbEndpoint: dynamodbEndpoint(),
      env: { TERN_SCHEDULER_STREAM_HEARTBEAT_MS: "1000" },
    });
    schedulers.push(scheduler);
    await waitActive(scheduler.url);
    const manifests = `apiVersion: mlops.seldon.io/v1alpha1
kind: Server
metadata: {name: mlserver}
spec: {serverConfig: mlserver, replicas: 1}
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Model
metadata: {name: iris}
spec:
  storageUri: "file://${model}"
  requirements: [sklearn]
  memory: 100Ki
  replicas: 1
`;
    expect((await applyManifest(scheduler.url, manifests)).status).toBe(200);

    const agent = await startMlserverAgent(scheduler.url, python, dir);
    const http = agent.http;

    const iris = () => getJson<ModelStatus>(`${scheduler.url}/v1/models/iris`);
    await waitFor(async () => ((await iris())?.state === "ModelAvailable" ? true : undefined), {
      timeoutMs: 60_000,
      intervalMs: 200,
      description: "iris available",
    });
    expect(await labels(http)).toEqual(ROWS.map((r) => r.label));

    const running = jsonLines(agent.output()).find((l) => l.msg === "mlserver running");
    const pid = Number(running?.pid);
    expect(pid, agent.output()).toBeGreaterThan(0);
    process.kill(pid, "SIGKILL");
    const placementState = async () => (await iris())?.placement[0]?.state;
    await waitFor(async () => ((await placementState()) === "Loading" ? true : undefined), {
      timeoutMs: 30_000,
      intervalMs: 50,
      description: "the scheduler seeing iris Loading on the replica whose MLServer died",
    });
    await waitFor(async () => ((await iris())?.state === "ModelAvailable" ? true : undefined), {
      timeoutMs: 60_000,
      intervalMs: 200,
      description: "iris available again",
    });
    expect(await labels(http)).toEqual(ROWS.map((r) => r.label));
    expect(agent.output()).toMatch(/reloaded into the restarted MLServer/);
    // A first run installs the venv (minutes); afterwards about 40 s on a loaded 2-core machine.
  }, 900_000);

  it("reports less memory for placement than its capacity, by about what its MLServer holds", async () => {
    const python = await pythonEnv("mlserver");
    const folder = await mkdtemp(join(tmpdir(), "tern-mlserver-memory-"));
    folders.push(folder);
    const scheduler = await startSchedulerProcess({
      id: "mlserver-memory-it",
      table: `tern-mlserver-memory-it-${suffix}`,
      dynamodbEndpoint: dynamodbEndpoint(),
    });
    schedulers.push(scheduler);
    await waitActive(scheduler.url);
    const server = `apiVersion: mlops.seldon.io/v1alpha1
kind: Server
metadata: {name: mlserver}
spec: {serverConfig: mlserver, replicas: 1}
`;
    expect((await applyManifest(scheduler.url, server)).status).toBe(200);
    const agent = await startMlserverAgent(scheduler.url, python, folder, {
      TERN_AGENT_MEMORY: "1Gi",
      TERN_AGENT_OVERCOMMIT_PERCENT: "0",
    });
    const pid = Number(jsonLines(agent.output()).find((l) => l.msg === "mlserver running")?.pid);
    expect(pid, agent.output()).toBeGreaterThan(0);

    const view = await getJson<{ memoryBytes: number; processBytes?: number }>(`${scheduler.url}/v1/agents/mlserver/0`);
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    const rss = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)![1]) * 1024;
    expect(view?.memoryBytes).toBe(1024 ** 3);
    // A Python process with MLServer imported: well over 50 MB. The agent's figure is from its last health check and
    // the scheduler keeps one until it moves by PROCESS_BYTES_STEP (16 MiB), so "about" is one step or 10 %.
    expect(rss).toBeGreaterThan(50 * 1024 * 1024);
    expect(Math.abs((view?.processBytes ?? 0) - rss)).toBeLessThan(Math.max(16 * 1024 * 1024, rss * 0.1));

    // A model that fits the configured 1 GiB but not what MLServer leaves of it is not placed there.
    const tooBig = Math.floor((1024 ** 3 - (view?.processBytes ?? 0) / 2) / 1024);
    const model = `apiVersion: mlops.seldon.io/v1alpha1
kind: Model
metadata: {name: wide}
spec:
  storageUri: "file://${join(folder, "models/wide")}"
  requirements: [sklearn]
  memory: ${tooBig}Ki
`;
    expect((await applyManifest(scheduler.url, model)).status).toBe(200);
    const failed = await waitFor(
      async () => {
        const s = await getJson<ModelStatus>(`${scheduler.url}/v1/models/wide`);
        return s?.state === "ScheduleFailed" ? s : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 200, description: "wide ScheduleFailed" },
    );
    expect(failed.reason).toMatch(/per replica/);
  }, 900_000);
});
