/**
 * Inference benchmark (not a test): iris, batch 1, one JSON OIP request, 50 connections, on this machine:
 *   (a) the agent alone, (b) the same agent through the gateway, (c) onnxruntime-node called in-process (the floor),
 * plus (p) a minimal node:http reverse proxy in front of the same agent: the floor of any Node hop here.
 *
 *   npm run bench:inference            (node --import tsx bench/inference/run.ts)
 *
 * Every server runs in its own process (the agent via packages/agent/src/main.ts in standalone mode, the gateway via
 * bench/inference/gateway-entry.ts with a fixed in-memory route table, the proxy via node-proxy-entry.ts); the load
 * generator (autocannon, programmatic) runs in this process. After a warm-up, rounds alternate the targets
 * (a, b, p, a, b, p, ...) for a fixed duration each, and every figure is the median over the rounds.
 *
 * The machine has 2 cores, so the load generator and the servers compete for them. Two CPU layouts are measured
 * with the same processes (affinity changed with `taskset` between them):
 *   pinned    the load generator on CPU 0, every server process on CPU 1: the servers get exactly one core in every
 *             case, so b/a shows what the extra hop costs in CPU when agent and gateway share a core (a pessimistic
 *             figure: in production the gateway has its own CPUs);
 *   unpinned  the kernel spreads the 2-3 processes over both cores;
 *   cost      a fixed request rate (BENCH_COST_RATE) with the hop alone on CPU 0 and the agent plus the load generator
 *             on CPU 1: each hop's CPU time per request, free of contention (the before/after figure of the gateway).
 * Besides the 50-connection runs, each round also runs every target with 1 connection (no queueing): the latency one
 * hop adds to an unloaded request.
 *
 * Environment (all optional):
 *   BENCH_DURATION_S (8)    seconds per target per round at 50 connections
 *   BENCH_IDLE_S (3)        seconds per target per round at 1 connection
 *   BENCH_ROUNDS (5)        rounds per layout
 *   BENCH_WARMUP_S (5)      warm-up seconds per target (once, before the first layout)
 *   BENCH_CONNECTIONS (50)
 *   BENCH_LAYOUTS (pinned,unpinned,cost)
 *   BENCH_COST_RATE (1000)  requests per second in the cost layout
 *   BENCH_PROXY (1)         0 leaves out the node:http proxy
 *   BENCH_BASELINE=<dir>    also measures an older gateway whose src/ files were copied to <dir> (inside the repo, so
 *                           that @tern/core resolves); see bench/results/inference.md for the recipe
 *   BENCH_OUT (inference)   basename of the result files in bench/results/
 *   BENCH_RENDER_ONLY=1     only rewrite the .md from the recorded .json (e.g. after editing notes.md)
 *
 * Writes bench/results/<BENCH_OUT>.json and .md (the .md ends with bench/inference/notes.md, the written analysis).
 */
import os from "node:os";
import { join, resolve } from "node:path";
import ort from "onnxruntime-node";
import { commandLine, envNumber, type Layout, loadBenchConfig } from "../lib/config.js";
import { type LoadRun, post, runLoad } from "../lib/load.js";
import { createServerGroup, REPO_ROOT as ROOT, runMain, type Server, setAffinity } from "../lib/processes.js";
import { type MachineInfo, machineLines, notesLines, rerenderIfAsked, startRun, writeResults } from "../lib/report.js";
import { median, percentile, round2, round3 } from "../lib/stats.js";

const IRIS_DIR = "samples/models/iris";
const INFER_PATH = "/v2/models/iris/infer";
const BODY = JSON.stringify({
  inputs: [{ name: "predict", shape: [1, 4], datatype: "FP32", data: [5.1, 3.5, 1.4, 0.2] }],
});
const TARGETS = { gatewayAddedP50Ms: 1, throughputRatio: 0.7 };
/** Upper bound on any wait for a child process (start, stop). */
const PROCESS_DEADLINE_MS = 30_000;

const CONFIG = {
  ...loadBenchConfig({ durationS: 8, out: "inference" }),
  idleS: envNumber("BENCH_IDLE_S", 3, 0),
  proxy: process.env.BENCH_PROXY !== "0",
  baseline: process.env.BENCH_BASELINE ? resolve(process.env.BENCH_BASELINE) : undefined,
  ortWarmupCalls: 5_000,
  ortCalls: 50_000,
};

// ---------------------------------------------------------------------------------------------------------------
// Child processes

const servers = createServerGroup({ startDeadlineMs: PROCESS_DEADLINE_MS });

/** Starts a server with `LOG_LEVEL=info` (the level at which every entry prints its `serving` line). */
function startServer(key: string, label: string, script: string, env: Record<string, string>): Promise<Server> {
  return servers.start({ key, label, script, env: { LOG_LEVEL: "info", ...env } });
}

// ---------------------------------------------------------------------------------------------------------------
// Load

type LoadResult = Omit<LoadRun, "cpuUs"> & {
  /** CPU µs per request by process key (servers) and `loadgen`. */
  cpuUsPerRequest: Record<string, number>;
};

/** One autocannon run of the infer request; `overallRate` caps the request rate over all connections. */
async function load(
  url: string,
  connections: number,
  seconds: number,
  watch: Server[],
  overallRate?: number,
): Promise<LoadResult> {
  const { cpuUs, ...figures } = await runLoad({
    url: url + INFER_PATH,
    body: BODY,
    connections,
    seconds,
    overallRate,
    watch,
  });
  const perRequest = Object.entries(cpuUs).map(([key, us]) => [key, round2(us / figures.requests)]);
  return { ...figures, cpuUsPerRequest: Object.fromEntries(perRequest) };
}

// ---------------------------------------------------------------------------------------------------------------
// (c) the floor: onnxruntime-node in this process, same session options as the agent's runtime.

async function ortFloor() {
  const session = await ort.InferenceSession.create(join(ROOT, IRIS_DIR, "model.onnx"), {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    executionMode: "sequential",
    graphOptimizationLevel: "all",
  });
  const input = session.inputNames[0]!;
  const feeds = () => ({ [input]: new ort.Tensor("float32", Float32Array.from([5.1, 3.5, 1.4, 0.2]), [1, 4]) });
  for (let i = 0; i < CONFIG.ortWarmupCalls; i++) await session.run(feeds());
  const times = new Float64Array(CONFIG.ortCalls);
  const started = performance.now();
  for (let i = 0; i < CONFIG.ortCalls; i++) {
    const t0 = performance.now();
    await session.run(feeds());
    times[i] = performance.now() - t0;
  }
  const total = performance.now() - started;
  await session.release();
  times.sort();
  return {
    calls: CONFIG.ortCalls,
    p50Us: round2(percentile(times, 50) * 1000),
    p99Us: round2(percentile(times, 99) * 1000),
    callsPerSecond: Math.round(CONFIG.ortCalls / (total / 1000)),
  };
}

// ---------------------------------------------------------------------------------------------------------------

async function main() {
  if (rerenderIfAsked(CONFIG.out, renderMarkdown)) return;
  const run = startRun("inference");
  if (CONFIG.layouts.includes("pinned") && run.nproc < 2) throw new Error("the pinned layout needs 2 CPUs");

  console.log("(c) onnxruntime-node in-process loop ...");
  const floor = await ortFloor();
  console.log(`    p50 ${floor.p50Us} µs, p99 ${floor.p99Us} µs, ${floor.callsPerSecond} calls/s`);

  const agent = await startServer("agent", "(a) agent alone", "packages/agent/src/main.ts", {
    TERN_AGENT_STANDALONE: "true",
    TERN_AGENT_PRELOAD: `iris=file://${IRIS_DIR}`,
    TERN_AGENT_HTTP_PORT: "0",
    TERN_AGENT_GRPC_PORT: "0",
    TERN_AGENT_CACHE_DIR: join(os.tmpdir(), "tern-bench-agent-cache"),
  });
  const agentEnv = { BENCH_AGENT_URL: agent.url, BENCH_GATEWAY_PORT: "0" };
  const hops: Server[] = [
    await startServer("gateway", "(b) through the gateway", "bench/inference/gateway-entry.ts", agentEnv),
  ];
  if (CONFIG.baseline) {
    hops.push(
      await startServer(
        "gatewayBefore",
        "(b0) through the gateway before this change",
        "bench/inference/gateway-entry.ts",
        {
          ...agentEnv,
          BENCH_GATEWAY_MODULE: join(CONFIG.baseline, "index.ts"),
        },
      ),
    );
  }
  if (CONFIG.proxy) {
    hops.push(
      await startServer("proxy", "(p) minimal node:http proxy", "bench/inference/node-proxy-entry.ts", agentEnv),
    );
  }
  const targets: Server[] = [agent, ...hops];

  // Every target must give the agent's exact answer before anything is timed.
  const expected = await post(agent.url + INFER_PATH, BODY, { timeoutMs: 5_000 });
  if (expected.status !== 200) throw new Error(`agent answered ${expected.status}: ${expected.body}`);
  for (const t of hops) {
    const got = await post(t.url + INFER_PATH, BODY, { timeoutMs: 5_000 });
    if (got.status !== 200 || got.body !== expected.body) {
      throw new Error(`${t.label} answered ${got.status} ${got.body}, expected the agent's ${expected.body}`);
    }
  }

  const watchOf = (t: Server) => (t.key === "agent" ? [agent] : [agent, t]);
  if (CONFIG.warmupS > 0) {
    console.log(`warm-up: ${CONFIG.warmupS} s per target`);
    for (const t of targets) await load(t.url, CONFIG.connections, CONFIG.warmupS, watchOf(t));
  }

  const layouts: Record<string, unknown> = {};
  for (const layout of CONFIG.layouts) {
    if (layout === "pinned") {
      setAffinity(process.pid, "0");
      for (const t of targets) setAffinity(t.child.pid!, "1");
    } else if (layout === "cost") {
      // The hop alone on CPU 0; the agent and the load generator share CPU 1. At a fixed rate below every target's
      // capacity, the CPU time per request is comparable between hops whatever their throughput would be.
      setAffinity(process.pid, "1");
      for (const t of targets) setAffinity(t.child.pid!, t === agent ? "1" : "0");
    } else {
      setAffinity(process.pid, "0,1");
      for (const t of targets) setAffinity(t.child.pid!, "0,1");
    }
    const rounds: Record<string, { loaded: LoadResult; idle?: LoadResult }[]> = {};
    for (let r = 0; r < CONFIG.rounds; r++) {
      // Rotate the starting target so that no target always runs first (or right after the same one).
      const order = targets.map((_, i) => targets[(i + r) % targets.length]!);
      for (const t of order) {
        const rate = layout === "cost" ? CONFIG.costRate : undefined;
        const loaded = await load(t.url, CONFIG.connections, CONFIG.durationS, watchOf(t), rate);
        const idle = CONFIG.idleS > 0 && layout !== "cost" ? await load(t.url, 1, CONFIG.idleS, watchOf(t)) : undefined;
        const list = rounds[t.key] ?? [];
        rounds[t.key] = list;
        list.push(idle ? { loaded, idle } : { loaded });
        console.log(
          `[${layout} ${r + 1}/${CONFIG.rounds}] ${t.key.padEnd(13)} ${String(loaded.rps).padStart(8)} req/s ` +
            `p50 ${loaded.p50} ms p99 ${loaded.p99} ms errors ${loaded.errors} ` +
            `cpu µs/req ${JSON.stringify(loaded.cpuUsPerRequest)}` +
            (idle ? ` | 1 conn: p50 ${idle.p50} ms p99 ${idle.p99} ms` : ""),
        );
      }
    }
    layouts[layout] = summarize(targets, rounds);
  }

  await servers.stopAll();
  const result = {
    benchmark: "inference",
    command: commandLine("npm run bench:inference"),
    date: run.startedAt.toISOString(),
    machine: run.machine(),
    config: {
      model: "iris (batch 1, JSON OIP request)",
      body: BODY,
      connections: CONFIG.connections,
      durationSeconds: CONFIG.durationS,
      idleSeconds: CONFIG.idleS,
      rounds: CONFIG.rounds,
      warmupSeconds: CONFIG.warmupS,
      layouts: CONFIG.layouts,
    },
    targets: Object.fromEntries(targets.map((t) => [t.key, t.label])),
    goals: TARGETS,
    ortFloor: floor,
    layouts,
  };
  writeResults(CONFIG.out, result, renderMarkdown);
}

type Summary = ReturnType<typeof summarize>;

function summarize(targets: Server[], rounds: Record<string, { loaded: LoadResult; idle?: LoadResult }[]>) {
  const perTarget: Record<string, Record<string, unknown>> = {};
  const med = (key: string, pick: (x: { loaded: LoadResult; idle?: LoadResult }) => number | undefined) => {
    const values = rounds[key]!.map(pick).filter((v): v is number => v !== undefined);
    return values.length === 0 ? null : round3(median(values));
  };
  for (const t of targets) {
    const cpuKeys = Object.keys(rounds[t.key]![0]!.loaded.cpuUsPerRequest);
    perTarget[t.key] = {
      rps: med(t.key, (x) => x.loaded.rps),
      p50Ms: med(t.key, (x) => x.loaded.p50),
      p99Ms: med(t.key, (x) => x.loaded.p99),
      idleP50Ms: med(t.key, (x) => x.idle?.p50),
      idleP99Ms: med(t.key, (x) => x.idle?.p99),
      cpuUsPerRequest: Object.fromEntries(cpuKeys.map((k) => [k, med(t.key, (x) => x.loaded.cpuUsPerRequest[k])])),
      errors: rounds[t.key]!.reduce((n, x) => n + x.loaded.errors + (x.idle?.errors ?? 0), 0),
      rounds: rounds[t.key],
    };
  }
  type Figures = Record<"rps" | "p50Ms" | "p99Ms" | "idleP50Ms" | "idleP99Ms", number | null>;
  const a = perTarget.agent as Figures;
  const minus = (x: number | null, y: number | null) => (x === null || y === null ? null : round3(x - y));
  const versus: Record<string, unknown> = {};
  for (const t of targets.slice(1)) {
    const b = perTarget[t.key] as Figures;
    versus[t.key] = {
      addedP50Ms: minus(b.p50Ms, a.p50Ms),
      addedP99Ms: minus(b.p99Ms, a.p99Ms),
      addedIdleP50Ms: minus(b.idleP50Ms, a.idleP50Ms),
      addedIdleP99Ms: minus(b.idleP99Ms, a.idleP99Ms),
      throughputRatio: round3(b.rps! / a.rps!),
    };
  }
  return { perTarget, versusAgent: versus };
}

const LAYOUT_TEXT: Record<Layout, string> = {
  pinned:
    "Load generator on CPU 0; every server process on CPU 1 (`taskset`). The servers get exactly one core in every " +
    "case, so in (b) the agent and the gateway share it: the throughput ratio shows what the extra hop costs in CPU " +
    "next to the agent. Pessimistic for the gateway (deployed, it has CPUs of its own).",
  unpinned:
    "No pinning: the kernel spreads the load generator and the 1–2 server processes over both cores. Closest to " +
    "one machine running the whole stack.",
  cost:
    "CPU cost per request at a fixed rate (`BENCH_COST_RATE` req/s over the same connections): the hop alone on " +
    "CPU 0, the agent and the load generator on CPU 1. The rate is below every target's capacity, so CPU µs per " +
    "request compare hops without contention; latencies here are not comparable with the other layouts.",
};

function renderMarkdown(r: {
  command: string;
  date: string;
  machine: MachineInfo;
  targets: Record<string, string>;
  ortFloor: Awaited<ReturnType<typeof ortFloor>>;
  layouts: Record<string, unknown>;
  config: Record<string, unknown>;
}): string {
  const show = (v: unknown) => (v === null || v === undefined ? "—" : String(v));
  const lines = [
    "# Inference benchmark",
    "",
    `Produced by \`${r.command}\` (\`node --import tsx bench/inference/run.ts\`) on ${r.date}.`,
    ...machineLines(r.machine),
    "",
    `iris, batch 1, one JSON OIP request, ${r.config.connections} connections (autocannon, run in the bench process).`,
    "Every server is its own process: the agent (`packages/agent/src/main.ts`, standalone), the gateway",
    "(`bench/inference/gateway-entry.ts`: `startGateway` with a fixed in-memory route table), the minimal proxy",
    "(`bench/inference/node-proxy-entry.ts`). " +
      `${r.config.rounds} alternating rounds of ${r.config.durationSeconds} s per target after a ${r.config.warmupSeconds} s ` +
      'warm-up per target; every figure is the median over the rounds. "1 conn" is a ' +
      `${r.config.idleSeconds} s run with one connection in the same round (no queueing). Latencies are exact ` +
      "per-response times in ms. CPU µs/req is each process's user + system CPU time (from /proc) over the requests " +
      "served.",
    "",
    `(c) onnxruntime-node in-process loop (the floor): p50 ${r.ortFloor.p50Us} µs, p99 ${r.ortFloor.p99Us} µs per ` +
      `call, ${r.ortFloor.callsPerSecond} calls/s sequential (${r.ortFloor.calls} calls, same session options as ` +
      "the agent).",
    "",
  ];
  for (const [layout, raw] of Object.entries(r.layouts)) {
    const s = raw as Summary;
    lines.push(`## Layout: ${layout}`, "", LAYOUT_TEXT[layout as Layout], "");
    lines.push(
      "| Target | req/s | p50 ms | p99 ms | 1 conn p50 ms | 1 conn p99 ms | CPU µs/req: agent | hop | load gen | errors |",
      "|---|---|---|---|---|---|---|---|---|---|",
    );
    for (const [key, label] of Object.entries(r.targets)) {
      const t = s.perTarget[key] as Record<string, unknown> & { cpuUsPerRequest: Record<string, number> };
      const cells = [
        label,
        t.rps,
        t.p50Ms,
        t.p99Ms,
        t.idleP50Ms,
        t.idleP99Ms,
        t.cpuUsPerRequest.agent,
        key === "agent" ? null : t.cpuUsPerRequest[key],
        t.cpuUsPerRequest.loadgen,
        t.errors,
      ];
      lines.push(`| ${cells.map(show).join(" | ")} |`);
    }
    if (layout === "cost") {
      lines.push("");
      continue;
    }
    lines.push(
      "",
      "| Versus (a) the agent alone | added p50 ms | added p99 ms | added p50 ms, 1 conn | added p99 ms, 1 conn | " +
        "throughput ratio |",
      "|---|---|---|---|---|---|",
    );
    for (const [key, raw2] of Object.entries(s.versusAgent)) {
      const v = raw2 as Record<string, number | null>;
      const cells = [r.targets[key], v.addedP50Ms, v.addedP99Ms, v.addedIdleP50Ms, v.addedIdleP99Ms, v.throughputRatio];
      lines.push(`| ${cells.map(show).join(" | ")} |`);
    }
    lines.push("");
  }
  lines.push(...notesLines(join(ROOT, "bench/inference/notes.md")));
  return `${lines.join("\n")}\n`;
}

runMain(main, () => servers.stopAll());
