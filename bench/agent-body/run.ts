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
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { createRequire } from "node:module";
import os from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const RESULTS = join(ROOT, "bench/results");
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

function envNumber(name: string, fallback: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min) throw new Error(`${name} must be a number >= ${min}, got ${JSON.stringify(raw)}`);
  return n;
}

type Layout = "pinned" | "unpinned" | "cost";
const CONFIG = {
  durationS: envNumber("BENCH_DURATION_S", 6, 1),
  rounds: envNumber("BENCH_ROUNDS", 5, 1),
  warmupS: envNumber("BENCH_WARMUP_S", 5, 0),
  connections: envNumber("BENCH_CONNECTIONS", 50, 1),
  layouts: (process.env.BENCH_LAYOUTS ?? "pinned,unpinned,cost").split(",").map((s) => s.trim()) as Layout[],
  costRate: envNumber("BENCH_COST_RATE", 1000, 1),
  baselineRev: process.env.BENCH_BASELINE_REV ?? "8deaed2c0aed150b9029fb5427df8df54d2c99c7",
  baselineApp: process.env.BENCH_BASELINE_APP ? resolve(process.env.BENCH_BASELINE_APP) : undefined,
  out: process.env.BENCH_OUT ?? "agent-body",
};
for (const l of CONFIG.layouts) {
  if (l !== "pinned" && l !== "unpinned" && l !== "cost")
    throw new Error(`BENCH_LAYOUTS: unknown layout ${JSON.stringify(l)}`);
}
if (!/^[0-9a-zA-Z._/-]+$/.test(CONFIG.baselineRev))
  throw new Error(`BENCH_BASELINE_REV must be a git revision, got ${JSON.stringify(CONFIG.baselineRev)}`);

// ---------------------------------------------------------------------------------------------------------------
// autocannon has no type declarations; this is the part of its API the bench uses.
interface AutocannonResult {
  duration: number;
  errors: number;
  timeouts: number;
  non2xx: number;
}
interface AutocannonInstance {
  on(event: "response", listener: (client: unknown, status: number, bytes: number, ms: number) => void): void;
}
type Autocannon = (
  options: Record<string, unknown>,
  done: (err: Error | null, result: AutocannonResult) => void,
) => AutocannonInstance;
const autocannon = createRequire(import.meta.url)("autocannon") as Autocannon;

// ---------------------------------------------------------------------------------------------------------------
// Statistics

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

function median(values: number[]): number {
  const s = [...values].sort((x, y) => x - y);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

const round2 = (n: number) => Math.round(n * 100) / 100;
const round3 = (n: number) => Math.round(n * 1000) / 1000;

// ---------------------------------------------------------------------------------------------------------------
// Agent processes

interface Agent {
  key: "before" | "after";
  label: string;
  url: string;
  child: ChildProcess;
}
const children: ChildProcess[] = [];

function startAgent(key: Agent["key"], label: string, env: Record<string, string>): Promise<Agent> {
  const child = spawn(process.execPath, ["--import", "tsx", "bench/agent-body/agent-entry.ts"], {
    cwd: ROOT,
    env: { ...process.env, BENCH_MAX_BODY: String(MAX_BODY), ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  return new Promise<Agent>((resolveStart, reject) => {
    let out = "";
    const timer = setTimeout(() => {
      reject(new Error(`${label} did not start within ${DEADLINE_MS} ms; stderr: ${stderr}`));
    }, DEADLINE_MS);
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /serving (http:\/\/[^\s]+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolveStart({ key, label, url: m[1]!, child });
      }
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${label} exited (${code ?? signal}) before serving; stderr: ${stderr}`));
    });
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

async function cleanUp(): Promise<void> {
  await Promise.all(children.map(stopChild));
  rmSync(BASELINE_DIR, { recursive: true, force: true });
}

/** Sets the CPU affinity of every thread of `pid` (taskset -a). */
function setAffinity(pid: number, cpus: string): void {
  const r = spawnSync("taskset", ["-a", "-p", "-c", cpus, String(pid)], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`taskset -a -p -c ${cpus} ${pid} failed: ${r.stderr || r.error?.message}`);
}

const CLK_TCK = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;

/** CPU time (user + system) used so far by process `pid`, in µs, from /proc/<pid>/stat. */
function cpuUs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may hold spaces) start after the last ')'; utime and stime are 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / CLK_TCK;
}

// ---------------------------------------------------------------------------------------------------------------
// Load

interface LoadResult {
  rps: number;
  p50: number;
  p90: number;
  p99: number;
  requests: number;
  errors: number;
  agentCpuUsPerRequest: number;
  loadgenCpuUsPerRequest: number;
}

/** One autocannon run; latencies are the exact per-response times (autocannon's histogram rounds to whole ms). */
function load(agent: Agent, seconds: number, overallRate?: number): Promise<LoadResult> {
  const latencies: number[] = [];
  const pid = agent.child.pid!;
  const cpuBefore = cpuUs(pid);
  const loadgenBefore = process.cpuUsage();
  return new Promise((resolveLoad, reject) => {
    const instance = autocannon(
      {
        url: agent.url + INFER_PATH,
        method: "POST",
        headers: { "content-type": "application/json" },
        body: BODY,
        connections: CONFIG.connections,
        duration: seconds,
        ...(overallRate ? { overallRate } : {}),
      },
      (err, result) => {
        if (err) {
          reject(err);
          return;
        }
        const requests = latencies.length;
        const sorted = Float64Array.from(latencies).sort();
        const lg = process.cpuUsage(loadgenBefore);
        resolveLoad({
          rps: round2(requests / result.duration),
          p50: round3(percentile(sorted, 50)),
          p90: round3(percentile(sorted, 90)),
          p99: round3(percentile(sorted, 99)),
          requests,
          errors: result.errors + result.timeouts + result.non2xx,
          agentCpuUsPerRequest: round2((cpuUs(pid) - cpuBefore) / Math.max(1, requests)),
          loadgenCpuUsPerRequest: round2((lg.user + lg.system) / Math.max(1, requests)),
        });
      },
    );
    instance.on("response", (_client, status, _bytes, ms) => {
      if (status >= 200 && status < 300) latencies.push(ms);
    });
  });
}

/** One POST to the infer route; `chunked` leaves out content-length (the body goes in 4 KiB chunks). */
function post(url: string, body: string, chunked = false): Promise<{ status: number; body: string }> {
  return new Promise((resolvePost, reject) => {
    const bytes = Buffer.from(body);
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (!chunked) headers["content-length"] = String(bytes.length);
    const req = http.request(url + INFER_PATH, { method: "POST", headers, agent: false }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => {
        text += d;
      });
      res.on("end", () => resolvePost({ status: res.statusCode ?? 0, body: text }));
    });
    req.setTimeout(DEADLINE_MS, () => req.destroy(new Error(`no answer within ${DEADLINE_MS} ms`)));
    req.on("error", (err: NodeJS.ErrnoException) => {
      // An agent may answer 413 and close before the whole body is written.
      if (err.code !== "EPIPE" && err.code !== "ECONNRESET") reject(err);
    });
    for (let o = 0; o < bytes.length; o += 4096) req.write(bytes.subarray(o, o + 4096));
    req.end();
  });
}

/** Both agents must answer the same, for the timed request and for oversize bodies, before anything is timed. */
async function checkAgents(agents: Agent[]): Promise<void> {
  const big = JSON.stringify({ inputs: [], parameters: { padding: "x".repeat(MAX_BODY) } });
  const tooLarge = JSON.stringify({ error: `request body is larger than the limit of ${MAX_BODY} bytes` });
  const expected = await post(agents[0]!.url, BODY);
  if (expected.status !== 200) throw new Error(`${agents[0]!.label} answered ${expected.status}: ${expected.body}`);
  for (const a of agents) {
    const checks = [
      { what: "the timed request", got: await post(a.url, BODY), status: 200, body: expected.body },
      { what: "the timed request, chunked", got: await post(a.url, BODY, true), status: 200, body: expected.body },
      { what: "an oversize body", got: await post(a.url, big), status: 413, body: tooLarge },
      { what: "an oversize chunked body", got: await post(a.url, big, true), status: 413, body: tooLarge },
    ];
    for (const c of checks) {
      if (c.got.status !== c.status || c.got.body !== c.body)
        throw new Error(`${a.label}: ${c.what} got ${c.got.status} ${c.got.body}, expected ${c.status} ${c.body}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------

function loadAverage(): number[] {
  return os.loadavg().map((n) => round2(n));
}

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
  if (process.env.BENCH_RENDER_ONLY === "1") {
    const recorded = JSON.parse(readFileSync(join(RESULTS, `${CONFIG.out}.json`), "utf8"));
    writeFileSync(join(RESULTS, `${CONFIG.out}.md`), renderMarkdown(recorded));
    console.log(`rewrote ${join(RESULTS, CONFIG.out)}.md from the recorded .json`);
    return;
  }
  const startedAt = new Date();
  const loadBefore = loadAverage();
  const cpus = os.cpus();
  console.log(`agent-body bench: ${cpus.length} CPUs, node ${process.version}, load ${loadBefore.join(" ")}`);
  if (cpus.length < 2 && CONFIG.layouts.some((l) => l !== "unpinned"))
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
  setAffinity(process.pid, `0-${cpus.length - 1}`);

  await cleanUp();
  const result = {
    benchmark: "agent-body",
    command: commandLine(),
    date: startedAt.toISOString(),
    durationSeconds: Math.round((Date.now() - startedAt.getTime()) / 1000),
    machine: {
      nproc: cpus.length,
      cpu: cpus[0]?.model ?? "unknown",
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      node: process.version,
      platform: `${os.platform()} ${os.release()}`,
      loadAverageBefore: loadBefore,
      loadAverageAfter: loadAverage(),
    },
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
  writeFileSync(join(RESULTS, `${CONFIG.out}.json`), `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(join(RESULTS, `${CONFIG.out}.md`), renderMarkdown(result));
  console.log(renderTable(layouts));
  console.log(`wrote ${join(RESULTS, CONFIG.out)}.json and .md`);
}

function commandLine(): string {
  const env = Object.entries(process.env)
    .filter(([k]) => k.startsWith("BENCH_"))
    .map(([k, v]) => `${k}=${v}`);
  return [...env, "node --import tsx bench/agent-body/run.ts"].join(" ");
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
  machine: { nproc: number; cpu: string; memoryGiB: number; node: string; platform: string } & Record<string, unknown>;
  config: { connections: number; durationSeconds: number; rounds: number; warmupSeconds: number; costRate: number };
  targets: Record<string, string>;
  layouts: Record<string, ReturnType<typeof summarize>>;
}): string {
  const m = r.machine;
  const lines = [
    "# Agent request-body benchmark",
    "",
    `Produced by \`${r.command}\` on ${r.date} (${r.durationSeconds} s).`,
    `Machine: ${m.nproc} CPUs (\`nproc\`), ${m.cpu}, ${m.memoryGiB} GiB, Node ${m.node}, ${m.platform}.`,
    `Load average (1, 5, 15 min): ${(m.loadAverageBefore as number[]).join(", ")} before, ` +
      `${(m.loadAverageAfter as number[]).join(", ")} after. The machine is shared with other work.`,
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
  const notes = join(ROOT, "bench/agent-body/notes.md");
  if (existsSync(notes)) lines.push(readFileSync(notes, "utf8").trimEnd(), "");
  return `${lines.join("\n")}\n`;
}

process.once("SIGINT", () => {
  void cleanUp().then(() => process.exit(130));
});
main().catch(async (err: unknown) => {
  console.error(err);
  await cleanUp();
  process.exit(1);
});
