/**
 * Issue 12: the MLServer process of one replica SIGKILLed under traffic. The specification's sklearn iris on 2
 * MLServer-backed agent processes behind the scheduler and the gateway process; a closed loop of REST requests through
 * the gateway keeps running while one agent's MLServer dies, is restarted and has the model loaded again. Every
 * request must be answered with the right label (the gateway retries the dead replica's 503 on the other one).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import type { ModelStatus } from "@tern/core";
import { waitFor } from "@tern/devstack";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AgentProcess } from "../agent/agent-process.js";
import { jsonLines, repoRoot } from "../helpers/platform-process.js";
import { pythonEnv } from "../helpers/python.js";
import { type E2eStack, startE2eStack } from "./harness.js";
import { type IrisRow, irisRows } from "./iris-data.js";

// The three canonical rows: Fisher's first setosa, versicolor and virginica (rows 0, 50 and 100 of the CSV).
const ROWS = [0, 50, 100].map((i) => irisRows()[i]!);
const CONCURRENCY = 4;
const TRAFFIC_MS = 15_000;

let stack: E2eStack;
let dir: string;

const MANIFESTS = `apiVersion: mlops.seldon.io/v1alpha1
kind: Server
metadata: {name: mlserver}
spec: {serverConfig: mlserver, replicas: 2}
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Model
metadata: {name: iris}
spec:
  storageUri: "file://${join(repoRoot, "samples/models/iris-sklearn")}"
  requirements: [sklearn]
  memory: 100Ki
  replicas: 2
`;

const bothAvailable = (s: ModelStatus) =>
  s.state === "ModelAvailable" &&
  s.availableReplicas === 2 &&
  s.placement.length === 2 &&
  s.placement.every((p) => p.state === "Available");

/** The pids of the MLServer processes an agent has started, in order (its `mlserver running` log lines). */
const mlserverPids = (agent: AgentProcess): number[] =>
  jsonLines(agent.output())
    .filter((l) => l.msg === "mlserver running")
    .map((l) => Number(l.pid));

/** One row through `base` (the gateway or an agent): the status and, on 200, MLServer's `predict` label. */
async function infer(base: string, row: IrisRow): Promise<{ status: number; label?: number; text: string }> {
  const res = await fetch(`${base}/v2/models/iris/infer`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ inputs: [{ name: "predict", datatype: "FP32", shape: [1, 4], data: row.features }] }),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  if (res.status !== 200) return { status: res.status, text };
  const body = JSON.parse(text) as { outputs?: Array<{ name: string; data: number[] }> };
  const predict = body.outputs?.find((o) => o.name === "predict");
  return { status: 200, text, ...(predict ? { label: Number(predict.data[0]) } : {}) };
}

beforeAll(async () => {
  const python = await pythonEnv("mlserver");
  dir = await mkdtemp(join(tmpdir(), "tern-e2e-mlserver-kill-"));
  stack = await startE2eStack({
    name: "mlserver-kill",
    agents: 0,
    agentEnv: {
      TERN_AGENT_SERVER_TYPE: "mlserver",
      TERN_MLSERVER_PYTHON: python,
      TERN_MLSERVER_HEALTH_INTERVAL_MS: "500",
      // The harness's 64Mi is less than MLServer itself holds, which placement subtracts (docs/agent.md, "Memory").
      TERN_AGENT_MEMORY: "1Gi",
      TERN_AGENT_CACHE_DIR: join(dir, "cache"),
      TERN_ARTIFACT_ROOTS: resolve(repoRoot, "samples"),
      // Info: the pid of each MLServer the agent starts is in its `mlserver running` line.
      LOG_LEVEL: "info",
    },
    agentStartTimeoutMs: 180_000,
  });
  await Promise.all([0, 1].map((replica) => stack.startAgent(replica)));
}, 900_000);

afterAll(async () => {
  await stack?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("one replica's MLServer SIGKILLed under traffic through the gateway process", () => {
  it("every request is answered right, and the agent restarts MLServer and reloads the model", async () => {
    await stack.apply(MANIFESTS);
    await stack.waitModel("iris", bothAvailable, "iris available on both replicas", 180_000).catch(async (err) => {
      throw new Error(`${err}: ${JSON.stringify(await stack.modelStatus("iris"))}\n${stack.logs().slice(-4000)}`);
    });
    await waitFor(
      async () => {
        const answer = await infer(stack.gateway.url, ROWS[0]!);
        return answer.status === 200 ? true : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 200, description: "iris served through the gateway" },
    );

    const victim = stack.agents.get(0)!;
    const [killedPid] = mlserverPids(victim);
    expect(killedPid, victim.output()).toBeGreaterThan(0);

    // A closed loop of CONCURRENCY workers, each sending one canonical row at a time, until told to stop.
    let ok = 0;
    let afterKill = 0;
    let killed = false;
    const failures = new Map<string, number>();
    let stopped = false;
    const began = performance.now();
    const hardEnd = Date.now() + 120_000;
    const worker = async (w: number) => {
      for (let i = w; !stopped && Date.now() < hardEnd; i += CONCURRENCY) {
        const row = ROWS[i % ROWS.length]!;
        let outcome: string;
        try {
          const answer = await infer(stack.gateway.url, row);
          outcome =
            answer.status === 200 && answer.label === row.label
              ? "ok"
              : `${answer.status} (row ${row.row}): ${answer.text.slice(0, 200)}`;
        } catch (err) {
          outcome = `no answer (row ${row.row}): ${(err as Error).name}: ${String((err as Error).cause ?? (err as Error).message)}`;
        }
        if (killed) afterKill++;
        if (outcome === "ok") ok++;
        else failures.set(outcome, (failures.get(outcome) ?? 0) + 1);
      }
    };
    const traffic = Promise.all(Array.from({ length: CONCURRENCY }, (_, w) => worker(w)));
    const total = () => ok + [...failures.values()].reduce((a, b) => a + b, 0);

    // A few seconds of steady traffic first (its pace on this machine decides how long "a few" is).
    await waitFor(() => (total() >= 200 ? true : undefined), {
      timeoutMs: 30_000,
      intervalMs: 50,
      description: "200 requests answered before the kill",
    });
    const beforeKill = total();
    process.kill(killedPid!, "SIGKILL");
    killed = true;
    const killedAt = performance.now();

    const restartedPid = await waitFor(() => mlserverPids(victim).find((pid) => pid !== killedPid), {
      timeoutMs: 90_000,
      intervalMs: 100,
      description: "the agent starting a new MLServer",
    });
    const restartedAfter = performance.now() - killedAt;
    await waitFor(() => (/reloaded into the restarted MLServer/.test(victim.output()) ? true : undefined), {
      timeoutMs: 90_000,
      intervalMs: 100,
      description: "the agent reloading iris into the new MLServer",
    });
    const status = await stack.waitModel(
      "iris",
      bothAvailable,
      "iris Available again on both replicas (scheduler status)",
      90_000,
    );
    const recoveredAfter = performance.now() - killedAt;
    // Traffic runs for TRAFFIC_MS in all, and through the recovery whatever it took.
    await waitFor(() => (performance.now() - began >= TRAFFIC_MS ? true : undefined), {
      timeoutMs: TRAFFIC_MS,
      intervalMs: 100,
      description: "the traffic window",
    });
    stopped = true;
    await traffic;
    const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
    const list = [...failures].map(([k, n]) => `${n}× ${k}`).join("; ") || "none";
    console.log(
      `[e2e mlserver-kill] ${total()} requests in ${seconds(performance.now() - began)} (${beforeKill} before the kill, ` +
        `${afterKill} after): ${ok} answered right; failures: ${list}. MLServer pid ${killedPid} killed, pid ${restartedPid} ` +
        `up ${seconds(restartedAfter)} later, iris Available on both replicas ${seconds(recoveredAfter)} after the kill`,
    );

    expect(ok, `failures: ${list}`).toBe(total());
    expect(afterKill).toBeGreaterThan(0);
    expect(restartedPid).not.toBe(killedPid);
    expect(new Set(status.placement.map((p) => p.replica))).toEqual(new Set([0, 1]));
    // The restarted replica itself answers again, not only the gateway through the other one.
    for (const row of ROWS) expect((await infer(victim.http, row)).label).toBe(row.label);
  }, 400_000);
});
