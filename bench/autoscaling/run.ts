/**
 * Autoscaling benchmark (not a test, issue 14): real processes — DynamoDB Local, the scheduler, the local controller
 * starting agents as the Server's desired count moves, the Node gateway — and the ONNX iris (min 0 / max 4) on a Server
 * (min 1 / max 4).
 *
 *   npm run bench:autoscaling          (node --import tsx bench/autoscaling/run.ts)
 *
 * Measures:
 *   warm     one request at a time to a model that serves: the latency to compare a cold start with (median of 20);
 *   cold     the model idled to zero (ModelScaledDown), then one request: the time to its answer (each of
 *            BENCH_COLD_RUNS), against the target of 2 s;
 *   step     1 connection for 5 s, then 32: the time from the step to a second replica serving (the model's
 *            availableReplicas reaching 2), against the target of 5 s, and the p50/p99 of the requests that started in
 *            the 15 s after the step.
 *
 * Environment (all optional): BENCH_COLD_RUNS (3), BENCH_STEP_S (15), BENCH_SCALE_UP_WINDOW_MS (1000),
 * BENCH_IDLE_WINDOW_MS (2000), BENCH_COOLDOWN_MS (1000), BENCH_LAG_THRESHOLD (0.5, the scheduler's default),
 * BENCH_AGENT_START (`bundle`: the local controller starts agents from one esbuild bundle of packages/agent made at the
 * start of the run, as a deployed agent starts from built JavaScript; `tsx`: from the TypeScript sources through tsx,
 * as `npm start` does).
 *
 * Besides the time to the second replica serving, the step records when each link of the chain was first seen (the
 * model's decision, the Server's count, the agent spawned, registered, the replica placed and loaded).
 * Writes bench/results/autoscaling.json and .md (the .md ends with bench/autoscaling/notes.md, the written analysis).
 */
import { mkdtempSync, rmdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import type { ModelStatus } from "@tern/core";
import {
  createControlClient,
  createLocalController,
  findFreePort,
  type LocalController,
  startDynamoDbLocal,
  waitFor,
} from "@tern/devstack";
import { build } from "esbuild";
import { type GatewayProcess, startGatewayProcess } from "../../test/e2e/gateway-process.js";
import { irisRequest, knownIrisRows } from "../../test/e2e/iris-data.js";
import {
  applyManifest,
  getJson,
  type SchedulerProcess,
  startSchedulerProcess,
  waitActive,
} from "../../test/scheduler/scheduler-process.js";
import { envNumber } from "../lib/config.js";
import { REPO_ROOT, runMain } from "../lib/processes.js";
import { machineLines, notesLines, startRun, writeResults } from "../lib/report.js";
import { percentile, round2 } from "../lib/stats.js";

const TARGETS = { addedReplicaServingS: 5, coldStartS: 2 };
const COLD_RUNS = envNumber("BENCH_COLD_RUNS", 3, 1);
const STEP_S = envNumber("BENCH_STEP_S", 15, 1);
const SCALE_UP_WINDOW_MS = envNumber("BENCH_SCALE_UP_WINDOW_MS", 1000, 0);
const IDLE_WINDOW_MS = envNumber("BENCH_IDLE_WINDOW_MS", 2000, 100);
const COOLDOWN_MS = envNumber("BENCH_COOLDOWN_MS", 1000, 0);
/** The scheduler's TERN_AUTOSCALE_LAG_THRESHOLD; its default (0.5) when unset. */
const LAG_THRESHOLD = envNumber("BENCH_LAG_THRESHOLD", 0.5, 0.0001);
const AGENT_START = agentStart(process.env.BENCH_AGENT_START ?? "bundle");

function agentStart(value: string): "bundle" | "tsx" {
  if (value !== "bundle" && value !== "tsx") throw new Error(`BENCH_AGENT_START must be bundle or tsx, not ${value}`);
  return value;
}
const rows = knownIrisRows();

let dynamo: Awaited<ReturnType<typeof startDynamoDbLocal>> | undefined;
let scheduler: SchedulerProcess | undefined;
let controller: LocalController | undefined;
let gateway: GatewayProcess | undefined;
const dir = mkdtempSync(join(tmpdir(), "tern-bench-autoscaling-"));

interface Result {
  warmMs: { p50: number; max: number };
  coldStartMs: number[];
  step: {
    addedReplicaServingMs: number;
    /** The scale-up had started on one connection, before the step: the step's figures do not measure the step. */
    scaledBeforeStep: boolean;
    /** Ms after the step when each link was first seen (absent: not within the step). */
    phases: Partial<Record<Phase, number>>;
    requests: number;
    failed: number;
    p50Ms: number;
    p99Ms: number;
    replicasAtEnd: number;
  };
  policy: {
    lagThreshold: number;
    scaleUpWindowMs: number;
    idleWindowMs: number;
    cooldownMs: number;
    heartbeatMs: number;
    agentStart: "bundle" | "tsx";
  };
}

/**
 * packages/agent/src/main.ts as one ESM file (onnxruntime-node, a native addon, stays a package). The agent finds the
 * OIP .proto and the samples relative to `import.meta.url` two levels under packages/agent/src, so the bundle is given
 * the URL of a file at that depth: both paths resolve as they do from the sources.
 */
async function bundleAgent(): Promise<string> {
  // Inside the repository (dist/ is ignored): the bundle's own import of onnxruntime-node resolves from where it lies.
  const outfile = join(REPO_ROOT, "packages/agent/dist/bench-autoscaling/agent.mjs");
  await build({
    entryPoints: [join(REPO_ROOT, "packages/agent/src/main.ts")],
    outfile,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    external: ["onnxruntime-node"],
    define: {
      "import.meta.url": JSON.stringify(pathToFileURL(join(REPO_ROOT, "packages/agent/src/bundle/agent.mjs")).href),
    },
    banner: {
      js: "import { createRequire as __ternRequire } from 'node:module'; const require = __ternRequire(import.meta.url);",
    },
    logLevel: "warning",
  });
  return outfile;
}

async function infer(rowIndex: number): Promise<{ ms: number; ok: boolean }> {
  const started = performance.now();
  try {
    const res = await fetch(`${gateway!.url}/v2/models/iris/infer`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: irisRequest(rows[rowIndex % rows.length]!),
      signal: AbortSignal.timeout(30_000),
    });
    await res.arrayBuffer();
    return { ms: performance.now() - started, ok: res.status === 200 };
  } catch {
    return { ms: performance.now() - started, ok: false };
  }
}

const model = () => getJson<ModelStatus>(`${scheduler!.url}/v1/models/iris`);
const serverView = () => getJson<{ replicas: number; replicaStatus: unknown[] }>(`${scheduler!.url}/v1/servers/bench`);

/** The links from the load step to the second replica serving, in the order they happen. */
const PHASES = [
  "modelWantsMore",
  "serverDesired2",
  "agentSpawned",
  "agentRegistered",
  "modelDesired2",
  "replicaPlaced",
  "replicaLoaded",
] as const;
type Phase = (typeof PHASES)[number];
const PHASE_TEXT: Record<Phase, string> = {
  modelWantsMore: "the model's decision: lagging for the window, wants 2 (asks the Server)",
  serverDesired2: "the Server's desired count 2",
  agentSpawned: "the local controller spawned agent bench/1",
  agentRegistered: "agent bench/1 registered with the scheduler",
  modelDesired2: "the model's desired count 2",
  replicaPlaced: "replica placed on bench/1",
  replicaLoaded: "replica on bench/1 Available (loaded)",
};

async function waitModel(accept: (s: ModelStatus) => boolean, description: string): Promise<void> {
  await waitFor(
    async () => {
      const s = await model();
      return s !== undefined && accept(s);
    },
    { timeoutMs: 60_000, intervalMs: 50, description },
  );
}

async function main(): Promise<void> {
  const run = startRun("autoscaling");
  const port = await findFreePort();
  dynamo = await startDynamoDbLocal({ port, dbPath: join(dir, "db") });
  scheduler = await startSchedulerProcess({
    id: "bench-autoscaling",
    dynamodbEndpoint: dynamo.endpoint,
    table: `tern-bench-autoscaling-${Date.now().toString(36)}`,
    env: {
      TERN_AGENT_HEARTBEAT_INTERVAL_MS: "500",
      TERN_AGENT_HEARTBEAT_TIMEOUT_MS: "3000",
      TERN_SCHEDULER_STREAM_HEARTBEAT_MS: "1000",
      TERN_AUTOSCALE_SCALE_UP_WINDOW_MS: String(SCALE_UP_WINDOW_MS),
      TERN_AUTOSCALE_IDLE_WINDOW_MS: String(IDLE_WINDOW_MS),
      TERN_AUTOSCALE_SERVER_IDLE_WINDOW_MS: String(IDLE_WINDOW_MS),
      TERN_AUTOSCALE_COOLDOWN_MS: String(COOLDOWN_MS),
      TERN_AUTOSCALE_LAG_THRESHOLD: String(LAG_THRESHOLD),
      LOG_LEVEL: "info",
    },
  });
  await waitActive(scheduler.url);
  const agentArgs = AGENT_START === "bundle" ? [await bundleAgent()] : undefined;
  controller = createLocalController({
    ...(agentArgs === undefined ? {} : { args: agentArgs }),
    client: createControlClient({ url: scheduler.url }),
    schedulerUrl: scheduler.url,
    cwd: REPO_ROOT,
    logDir: dir,
    env: { ...process.env, TERN_AGENT_MEMORY: "64Mi", TERN_AGENT_DRAIN_TIMEOUT_MS: "8000", LOG_LEVEL: "warn" },
    resyncMs: 1000,
    logger: { info: () => undefined, warn: (m) => console.warn(m) },
  });
  controller.start();
  await controller.synced();
  gateway = await startGatewayProcess({ schedulerUrl: scheduler.url });

  const res = await applyManifest(
    scheduler.url,
    `apiVersion: mlops.seldon.io/v1alpha1
kind: Server
metadata: {name: bench}
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
  minReplicas: 0
  maxReplicas: 4
`,
  );
  if (res.status !== 200) throw new Error(`apply failed: ${res.status} ${await res.text()}`);
  await waitModel((s) => s.state === "ModelAvailable", "iris available");

  // warm
  const warm: number[] = [];
  for (let i = 0; i < 20; i++) {
    const r = await infer(i);
    if (!r.ok) throw new Error("a warm request failed");
    warm.push(r.ms);
  }
  warm.sort((a, b) => a - b);
  console.log(`warm: p50 ${round2(warm[10]!)} ms`);

  // cold
  const cold: number[] = [];
  for (let i = 0; i < COLD_RUNS; i++) {
    await waitModel((s) => s.state === "ModelScaledDown", "iris scaled to zero");
    const r = await infer(i);
    if (!r.ok) throw new Error("a cold request failed");
    cold.push(round2(r.ms));
    console.log(`cold start ${i + 1}: ${round2(r.ms)} ms`);
  }

  // step 1 → 32 connections (the model is warm at 1 replica after the last cold start)
  // Set once the step's end is known: until then every worker keeps going (idle ones wait their turn).
  let stopAt = Number.POSITIVE_INFINITY;
  let connections = 1;
  const latencies: Array<{ at: number; ms: number; ok: boolean }> = [];
  let stepAt = Number.POSITIVE_INFINITY;
  const worker = async (w: number) => {
    for (let i = w; Date.now() < stopAt; i += 32) {
      if (w >= connections) {
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      const at = Date.now();
      const r = await infer(i);
      latencies.push({ at, ...r });
    }
  };
  const workers = Array.from({ length: 32 }, (_, w) => worker(w));
  await new Promise((r) => setTimeout(r, 5_000));
  // With a low lag threshold one connection can be enough to start a scale-up: then the step is not what caused it
  // and its figure says nothing about the step.
  const [atStep, serverAtStep] = await Promise.all([model(), serverView()]);
  const scaledBeforeStep =
    (atStep?.desiredReplicas ?? 0) >= 2 ||
    (atStep?.autoscaling?.wantsServerReplicas ?? 0) >= 2 ||
    (serverAtStep?.replicas ?? 0) >= 2;
  stepAt = Date.now();
  stopAt = stepAt + STEP_S * 1000;
  connections = 32;
  let addedAt: number | undefined;
  // Where the time to the second replica goes: the first moment (ms after the step, polled every 50 ms) each link of
  // the chain was seen.
  const phases: Partial<Record<Phase, number>> = {};
  const seen = (phase: Phase, yes: boolean) => {
    if (yes && phases[phase] === undefined) phases[phase] = Date.now() - stepAt;
  };
  while (Date.now() < stopAt) {
    const [s, server] = await Promise.all([model(), serverView()]);
    seen("modelWantsMore", (s?.autoscaling?.wantsServerReplicas ?? 0) >= 2 || (s?.desiredReplicas ?? 0) >= 2);
    seen("serverDesired2", (server?.replicas ?? 0) >= 2);
    seen(
      "agentSpawned",
      controller.agents().some((a) => a.replica === 1 && a.pid !== undefined),
    );
    seen("agentRegistered", (server?.replicaStatus.length ?? 0) >= 2);
    seen("modelDesired2", (s?.desiredReplicas ?? 0) >= 2);
    seen(
      "replicaPlaced",
      (s?.placement ?? []).some((p) => p.replica === 1),
    );
    seen(
      "replicaLoaded",
      (s?.placement ?? []).some((p) => p.replica === 1 && p.state === "Available"),
    );
    if (addedAt === undefined && (s?.availableReplicas ?? 0) >= 2) addedAt = Date.now();
    await new Promise((r) => setTimeout(r, 50));
  }
  await Promise.all(workers);
  const during = latencies.filter((l) => l.at >= stepAt);
  const sorted = Float64Array.from(during.map((l) => l.ms)).sort();
  const end = await model();
  const result: Result = {
    warmMs: { p50: round2(warm[10]!), max: round2(warm[warm.length - 1]!) },
    coldStartMs: cold,
    step: {
      addedReplicaServingMs: addedAt === undefined ? -1 : addedAt - stepAt,
      scaledBeforeStep,
      phases,
      requests: during.length,
      failed: during.filter((l) => !l.ok).length,
      p50Ms: round2(percentile(sorted, 50)),
      p99Ms: round2(percentile(sorted, 99)),
      replicasAtEnd: end?.availableReplicas ?? 0,
    },
    policy: {
      lagThreshold: LAG_THRESHOLD,
      scaleUpWindowMs: SCALE_UP_WINDOW_MS,
      idleWindowMs: IDLE_WINDOW_MS,
      cooldownMs: COOLDOWN_MS,
      heartbeatMs: 500,
      agentStart: AGENT_START,
    },
  };
  console.log(JSON.stringify(result, null, 2));
  const machine = run.machine();
  writeResults("autoscaling", { ...result, machine, startedAt: run.startedAt.toISOString() }, (r) =>
    [
      "# Autoscaling (bench/autoscaling)",
      "",
      ...machineLines(r.machine),
      "",
      `Policy: lag threshold ${r.policy.lagThreshold}, scale-up window ${r.policy.scaleUpWindowMs} ms, idle window ${r.policy.idleWindowMs} ms, cool-down ${r.policy.cooldownMs} ms, agent heartbeats every ${r.policy.heartbeatMs} ms. Agents started from ${r.policy.agentStart === "bundle" ? "one esbuild bundle (built JavaScript)" : "the TypeScript sources through tsx (as npm start does)"}.`,
      "",
      "| figure | measured | target |",
      "|---|---|---|",
      `| warm request (1 at a time, p50 of 20) | ${r.warmMs.p50} ms | — |`,
      `| cold start: request to a model scaled to zero → answer | ${r.coldStartMs.join(" ms, ")} ms | ≤ ${TARGETS.coldStartS * 1000} ms |`,
      `| load step 1 → 32 connections → second replica serving | ${r.step.addedReplicaServingMs < 0 ? "not within the step" : `${r.step.addedReplicaServingMs} ms`}${r.step.scaledBeforeStep ? " (NOT the step's: the scale-up had started on 1 connection)" : ""} | ≤ ${TARGETS.addedReplicaServingS * 1000} ms |`,
      `| requests in the ${STEP_S} s after the step | ${r.step.requests} (${r.step.failed} failed), p50 ${r.step.p50Ms} ms, p99 ${r.step.p99Ms} ms | — |`,
      `| replicas serving at the end of the step | ${r.step.replicasAtEnd} | — |`,
      "",
      "Where the time to the second replica went (first seen, ms after the step; polled every 50 ms):",
      "",
      "| link | at | since the previous |",
      "|---|---|---|",
      ...phaseRows(r.step.phases, r.step.addedReplicaServingMs),
      "",
      ...notesLines(join(REPO_ROOT, "bench/autoscaling/notes.md")),
    ].join("\n"),
  );
}

function phaseRows(phases: Partial<Record<Phase, number>>, servingMs: number): string[] {
  const rows: string[] = [];
  let previous = 0;
  for (const phase of PHASES) {
    const at = phases[phase];
    if (at === undefined) {
      rows.push(`| ${PHASE_TEXT[phase]} | not seen | — |`);
      continue;
    }
    rows.push(`| ${PHASE_TEXT[phase]} | ${at} ms | ${at - previous} ms |`);
    previous = at;
  }
  if (servingMs >= 0)
    rows.push(`| the model's availableReplicas 2 (serving) | ${servingMs} ms | ${servingMs - previous} ms |`);
  return rows;
}

let cleaning: Promise<void> | undefined;
/** Stops everything this run started (once, whether it succeeded or not). */
function cleanUp(): Promise<void> {
  cleaning ??= (async () => {
    await controller?.stop();
    gateway?.kill("SIGKILL");
    await gateway?.exited;
    await scheduler?.kill("SIGTERM");
    await dynamo?.stop();
    rmSync(dir, { recursive: true, force: true });
    rmSync(join(REPO_ROOT, "packages/agent/dist/bench-autoscaling"), { recursive: true, force: true });
    try {
      rmdirSync(join(REPO_ROOT, "packages/agent/dist")); // only when nothing else lives there
    } catch {}
  })();
  return cleaning;
}

runMain(async () => {
  await main();
  await cleanUp();
}, cleanUp);
