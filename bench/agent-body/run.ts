/**
 * Agent request-body benchmark (not a test): the committed `packages/agent/src/http/app.ts` (before: Hono's bodyLimit
 * on every infer request) against the working-tree one (after: content-length checked up front, body read with
 * `c.req.arrayBuffer()`, bodyLimit only for chunked bodies), side by side in the same run:
 *
 *   node --import tsx bench/agent-body/run.ts
 *
 * Both agents run at once, each in its own process (bench/agent-body/agent-entry.ts, iris loaded), and differ only in
 * the app module. The "before" module is `git show <BENCH_BASELINE_REV>:packages/agent/src/http/app.ts` written to
 * bench/agent-body/.baseline/app.ts with its relative imports pointed at packages/agent/src (deleted at the end).
 * The load generator (autocannon, programmatic) runs in this process: iris, batch 1, one JSON OIP request.
 * After a warm-up, rounds alternate the two agents (the first one rotates), and every figure is the median over the
 * rounds. CPU µs/request is the agent process's user + system time from /proc/<pid>/stat over the requests served.
 *
 * Layouts (CPU affinity set with `taskset -a` between them):
 *   pinned    load generator on CPU 0, the agents on CPU 1: the agent has exactly one core (throughput is CPU-bound);
 *   unpinned  no pinning: the kernel spreads the load generator and the agent over both cores;
 *   cost      as pinned, at a fixed BENCH_COST_RATE req/s below both agents' capacity: CPU per request without
 *             saturation.
 *
 * Environment (all optional):
 *   BENCH_DURATION_S (6)   seconds per agent per round
 *   BENCH_ROUNDS (5)       rounds per layout
 *   BENCH_WARMUP_S (5)     warm-up seconds per agent (once)
 *   BENCH_CONNECTIONS (50)
 *   BENCH_LAYOUTS (pinned,unpinned,cost)
 *   BENCH_COST_RATE (1000) requests per second in the cost layout
 *   BENCH_BASELINE_REV (8deaed2c0aed150b9029fb5427df8df54d2c99c7, the commit before this change)
 *   BENCH_BASELINE_APP     path of an app module to use as "before" instead of the copy from BENCH_BASELINE_REV
 *                          (e.g. packages/agent/src/http/app.ts for an A/A check of the method)
 *   BENCH_OUT (agent-body) basename of the result files in bench/results/
 *   BENCH_RENDER_ONLY=1    only rewrite the .md from the recorded .json (e.g. after editing notes.md)
 *
 * Writes bench/results/<BENCH_OUT>.json and .md (the .md ends with bench/agent-body/notes.md, the written analysis).
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { commandLine, type Layout, loadBenchConfig } from "../lib/config.js";
import { type LoadRun, post, runLoad } from "../lib/load.js";
import { createServerGroup, REPO_ROOT as ROOT, runMain, type Server, setAffinity } from "../lib/processes.js";
import { type MachineInfo, machineLines, notesLines, rerenderIfAsked, startRun, writeResults } from "../lib/report.js";
import { median, round2, round3 } from "../lib/stats.js";

const BASELINE_DIR = join(ROOT, "bench/agent-body/.baseline");
const APP_PATH = "packages/agent/src/http/app.ts";
const INFER_PATH = "/v2/models/iris/infer";
const BODY = JSON.stringify({
  inputs: [{ name: "predict", shape: [1, 4], datatype: "FP32", data: [5.1, 3.5, 1.4, 0.2] }],
});
/** Body limit of both agents: small, so that the 413 checks before timing stay cheap. */
const MAX_BODY = 1024 * 1024;
/** Upper bound on any wait for a child process (start, stop) or a check request. */
const DEADLINE_MS = 30_000;

const CONFIG = {
  ...loadBenchConfig({ durationS: 6, out: "agent-body" }),
  baselineRev: process.env.BENCH_BASELINE_REV ?? "8deaed2c0aed150b9029fb5427df8df54d2c99c7",
  baselineApp: process.env.BENCH_BASELINE_APP ? resolve(process.env.BENCH_BASELINE_APP) : undefined,
};
if (!/^[0-9a-zA-Z._/-]+$/.test(CONFIG.baselineRev))
  throw new Error(`BENCH_BASELINE_REV must be a git revision, got ${JSON.stringify(CONFIG.baselineRev)}`);

// ---------------------------------------------------------------------------------------------------------------
// Agent processes

type Agent = Server<"before" | "after">;
const servers = createServerGroup({ startDeadlineMs: DEADLINE_MS });

function startAgent(key: Agent["key"], label: string, env: Record<string, string>): Promise<Agent> {
  return servers.start({
    key,
    label,
    script: "bench/agent-body/agent-entry.ts",
    env: { BENCH_MAX_BODY: String(MAX_BODY), ...env },
  });
}

async function cleanUp(): Promise<void> {
  await servers.stopAll();
  rmSync(BASELINE_DIR, { recursive: true, force: true });
}

// ---------------------------------------------------------------------------------------------------------------
// Load

type LoadResult = Pick<LoadRun, "rps" | "p50" | "p90" | "p99" | "requests" | "errors"> & {
  agentCpuUsPerRequest: number;
  loadgenCpuUsPerRequest: number;
};

/** One autocannon run of the infer request against `agent`; `overallRate` caps the rate over all connections. */
async function load(agent: Agent, seconds: number, overallRate?: number): Promise<LoadResult> {
  const { rps, p50, p90, p99, requests, errors, cpuUs } = await runLoad({
    url: agent.url + INFER_PATH,
    body: BODY,
    connections: CONFIG.connections,
    seconds,
    overallRate,
    watch: [agent],
  });
  const perRequest = (us: number) => round2(us / Math.max(1, requests));
  return {
    rps,
    p50,
    p90,
    p99,
    requests,
    errors,
    agentCpuUsPerRequest: perRequest(cpuUs[agent.key]!),
    loadgenCpuUsPerRequest: perRequest(cpuUs.loadgen!),
  };
}

/** One POST to the infer route; `chunked` leaves out content-length. */
function postInfer(url: string, body: string, chunked = false) {
  return post(url + INFER_PATH, body, { chunked, timeoutMs: DEADLINE_MS });
}

/** Both agents must answer the same, for the timed request and for oversize bodies, before anything is timed. */
async function checkAgents(agents: Agent[]): Promise<void> {
  const big = JSON.stringify({ inputs: [], parameters: { padding: "x".repeat(MAX_BODY) } });
  const tooLarge = JSON.stringify({ error: `request body is larger than the limit of ${MAX_BODY} bytes` });
  const expected = await postInfer(agents[0]!.url, BODY);
  if (expected.status !== 200) throw new Error(`${agents[0]!.label} answered ${expected.status}: ${expected.body}`);
  for (const a of agents) {
    const checks = [
      { what: "the timed request", got: await postInfer(a.url, BODY), status: 200, body: expected.body },
      { what: "the timed request, chunked", got: await postInfer(a.url, BODY, true), status: 200, body: expected.body },
      { what: "an oversize body", got: await postInfer(a.url, big), status: 413, body: tooLarge },
      { what: "an oversize chunked body", got: await postInfer(a.url, big, true), status: 413, body: tooLarge },
    ];
    for (const c of checks) {
      if (c.got.status !== c.status || c.got.body !== c.body)
        throw new Error(`${a.label}: ${c.what} got ${c.got.status} ${c.got.body}, expected ${c.status} ${c.body}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------

/** Writes the committed app.ts to .baseline/, its `../x.js` imports pointed at packages/agent/src/x.js. */
function writeBaseline(): string {
  const r = spawnSync("git", ["show", `${CONFIG.baselineRev}:${APP_PATH}`], { cwd: ROOT, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`git show ${CONFIG.baselineRev}:${APP_PATH} failed: ${r.stderr}`);
  const current = readFileSync(join(ROOT, APP_PATH), "utf8");
  if (current === r.stdout) console.warn(`warning: ${APP_PATH} is the same as at ${CONFIG.baselineRev}`);
  const source = r.stdout.replaceAll(/from "\.\.\//g, 'from "../../../packages/agent/src/');
  mkdirSync(BASELINE_DIR, { recursive: true });
  const file = join(BASELINE_DIR, "app.ts");
  writeFileSync(file, source);
  return file;
}

async function main() {
  if (rerenderIfAsked(CONFIG.out, renderMarkdown)) return;
  const run = startRun("agent-body");
  if (run.nproc < 2 && CONFIG.layouts.some((l) => l !== "unpinned"))
    throw new Error("the pinned and cost layouts need 2 CPUs");

  const baselineFile = CONFIG.baselineApp ?? writeBaseline();
  const beforeLabel = CONFIG.baselineApp
    ? `before (${CONFIG.baselineApp.slice(ROOT.length + 1)})`
    : `before (${APP_PATH} at ${CONFIG.baselineRev.slice(0, 7)})`;
  const agents = [
    await startAgent("before", beforeLabel, {
      BENCH_APP_MODULE: baselineFile,
    }),
    await startAgent("after", `after (${APP_PATH} in the working tree)`, {}),
  ];
  await checkAgents(agents);

  if (CONFIG.warmupS > 0) {
    console.log(`warm-up: ${CONFIG.warmupS} s per agent`);
    for (const a of agents) await load(a, CONFIG.warmupS);
  }

  const layouts: Record<string, ReturnType<typeof summarize>> = {};
  for (const layout of CONFIG.layouts) {
    const [loadgenCpus, agentCpus] = layout === "unpinned" ? ["0,1", "0,1"] : ["0", "1"];
    setAffinity(process.pid, loadgenCpus);
    for (const a of agents) setAffinity(a.child.pid!, agentCpus);
    const rounds: Record<string, LoadResult[]> = { before: [], after: [] };
    for (let r = 0; r < CONFIG.rounds; r++) {
      const order = r % 2 === 0 ? agents : [...agents].reverse();
      for (const a of order) {
        const result = await load(a, CONFIG.durationS, layout === "cost" ? CONFIG.costRate : undefined);
        rounds[a.key]!.push(result);
        console.log(
          `[${layout} ${r + 1}/${CONFIG.rounds}] ${a.key.padEnd(6)} ${String(result.rps).padStart(8)} req/s ` +
            `p50 ${result.p50} ms p99 ${result.p99} ms errors ${result.errors} ` +
            `agent cpu ${result.agentCpuUsPerRequest} µs/req, load gen ${result.loadgenCpuUsPerRequest} µs/req`,
        );
      }
    }
    layouts[layout] = summarize(rounds);
  }
  setAffinity(process.pid, `0-${run.nproc - 1}`);

  await cleanUp();
  const result = {
    benchmark: "agent-body",
    command: commandLine("node --import tsx bench/agent-body/run.ts"),
    date: run.startedAt.toISOString(),
    durationSeconds: Math.round((Date.now() - run.startedAt.getTime()) / 1000),
    machine: run.machine(),
    config: {
      model: "iris (batch 1, JSON OIP request with content-length, as autocannon sends it)",
      body: BODY,
      connections: CONFIG.connections,
      durationSeconds: CONFIG.durationS,
      rounds: CONFIG.rounds,
      warmupSeconds: CONFIG.warmupS,
      layouts: CONFIG.layouts,
      costRate: CONFIG.costRate,
      baselineRev: CONFIG.baselineApp ? null : CONFIG.baselineRev,
      baselineApp: CONFIG.baselineApp ?? null,
    },
    targets: Object.fromEntries(agents.map((a) => [a.key, a.label])),
    layouts,
  };
  console.log(renderTable(layouts));
  writeResults(CONFIG.out, result, renderMarkdown);
}

const FIGURES = ["rps", "p50", "p99", "agentCpuUsPerRequest", "loadgenCpuUsPerRequest"] as const;
type Figure = (typeof FIGURES)[number];

function summarize(rounds: Record<string, LoadResult[]>) {
  const medians: Record<string, Record<Figure, number> & { errors: number }> = {};
  for (const [key, list] of Object.entries(rounds)) {
    const m = Object.fromEntries(FIGURES.map((f) => [f, round3(median(list.map((x) => x[f])))])) as Record<
      Figure,
      number
    >;
    medians[key] = { ...m, errors: list.reduce((n, x) => n + x.errors, 0) };
  }
  const ratio = Object.fromEntries(FIGURES.map((f) => [f, round3(medians.after![f] / medians.before![f])])) as Record<
    Figure,
    number
  >;
  return { medians, afterOverBefore: ratio, rounds };
}

const LAYOUT_TEXT: Record<Layout, string> = {
  pinned: "load generator on CPU 0, the agent on CPU 1 (one core: throughput is bound by the agent's CPU)",
  unpinned: "no pinning (the kernel spreads the load generator and the agent over both cores)",
  cost: "as pinned, at a fixed request rate below both agents' capacity (CPU per request without saturation)",
};

function renderTable(layouts: Record<string, ReturnType<typeof summarize>>): string {
  const lines = [
    "| Layout | app.ts | req/s | p50 ms | p99 ms | agent CPU µs/req | load gen CPU µs/req | errors |",
    "|---|---|---|---|---|---|---|---|",
  ];
  for (const [layout, s] of Object.entries(layouts)) {
    for (const key of ["before", "after"]) {
      const m = s.medians[key]!;
      lines.push(
        `| ${layout} | ${key} | ${m.rps} | ${m.p50} | ${m.p99} | ${m.agentCpuUsPerRequest} | ` +
          `${m.loadgenCpuUsPerRequest} | ${m.errors} |`,
      );
    }
    const r = s.afterOverBefore;
    lines.push(
      `| ${layout} | **after ÷ before** | **${r.rps}** | **${r.p50}** | **${r.p99}** | ` +
        `**${r.agentCpuUsPerRequest}** | ${r.loadgenCpuUsPerRequest} | |`,
    );
  }
  return lines.join("\n");
}

function renderMarkdown(r: {
  command: string;
  date: string;
  durationSeconds: number;
  machine: MachineInfo;
  config: { connections: number; durationSeconds: number; rounds: number; warmupSeconds: number; costRate: number };
  targets: Record<string, string>;
  layouts: Record<string, ReturnType<typeof summarize>>;
}): string {
  const lines = [
    "# Agent request-body benchmark",
    "",
    `Produced by \`${r.command}\` on ${r.date} (${r.durationSeconds} s).`,
    ...machineLines(r.machine),
    "",
    "What is compared: the agent's REST infer path with",
    `- **before**: ${r.targets.before}: Hono's \`bodyLimit\` on every infer request (it reads \`c.req.raw.body\`, ` +
      "which makes @hono/node-server build a full web Request);",
    `- **after**: ${r.targets.after}: a declared content-length is checked up front (413 at once), the body is ` +
      "read with `c.req.arrayBuffer()` (node-server's direct read) and its byte count checked; `bodyLimit` only " +
      "for bodies without content-length.",
    "",
    "Both agents run at the same time, each in its own process (`bench/agent-body/agent-entry.ts`: registry with the " +
      "ONNX runtime, inference service, metrics and the app on @hono/node-server, iris loaded), and differ only in " +
      "the app module. Before timing, both must give the same answer to the timed request (with content-length and " +
      "chunked) and the same 413 to oversize bodies (with content-length and chunked).",
    "",
    `iris, batch 1, one JSON OIP request, ${r.config.connections} connections (autocannon in the bench process; it ` +
      `sends content-length). ${r.config.rounds} alternating rounds of ${r.config.durationSeconds} s per agent per ` +
      `layout (the first agent alternates) after a ${r.config.warmupSeconds} s warm-up per agent; every figure is the ` +
      "median over the rounds. Latencies are exact per-response times in ms. Agent CPU µs/req is the agent process's " +
      "user + system time from /proc/<pid>/stat over the requests served.",
    "",
    "Layouts:",
    ...Object.keys(r.layouts).map(
      (l) =>
        `- **${l}**: ${LAYOUT_TEXT[l as Layout]}${l === "cost" ? ` (${r.config.costRate} req/s over the same connections)` : ""}.`,
    ),
    "",
    renderTable(r.layouts),
    "",
    "Per-round figures are in the .json next to this file.",
    "",
  ];
  lines.push(...notesLines(join(ROOT, "bench/agent-body/notes.md")));
  return `${lines.join("\n")}\n`;
}

runMain(main, cleanUp);
