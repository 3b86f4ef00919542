/**
 * MLServer benchmark (not a test): the specification's sklearn iris, batch 1, one JSON OIP request, served by a real
 * MLServer 1.7.1 (the venv of `scripts/python-env.sh mlserver`), measured in the same run
 *   (m) MLServer called directly (its REST port, the model under the name the agent gave it),
 *   (a) the agent (server type mlserver, standalone) in front of that same MLServer,
 *   (t) the Tern path: the gateway → the agent → MLServer,
 * and, with BENCH_BASELINE_AGENT, (a0)/(t0): an older agent (with its own MLServer) and a gateway in front of it, for
 * a before/after comparison of an agent change in one run.
 *
 *   npm run bench:inference:mlserver     (node --import tsx bench/inference/mlserver.ts)
 *
 * Each round runs every target at BENCH_CONNECTIONS (32) and at 1 connection, in an order that rotates from round to
 * round; every figure is the median over the rounds. No CPU pinning: the kernel spreads MLServer, the agent, the
 * gateway and the load generator over the machine's cores. The load average is written before and after.
 *
 * Environment (all optional):
 *   BENCH_DURATION_S (8)      seconds per target per round at BENCH_CONNECTIONS
 *   BENCH_IDLE_S (4)          seconds per target per round at 1 connection
 *   BENCH_ROUNDS (5)          rounds
 *   BENCH_WARMUP_S (5)        warm-up seconds per target (once)
 *   BENCH_CONNECTIONS (32)
 *   BENCH_BASELINE_AGENT=<dir> an older agent's src/ copied to packages/<name>/src (that depth: its gRPC server reads
 *                             ../../../core/proto/oip.proto; inside the repo: @tern/* resolve), e.g.
 *                               mkdir -p /tmp/b packages/agent-baseline && git archive <commit> packages/agent/src |
 *                               tar -x -C /tmp/b && mv /tmp/b/packages/agent/src packages/agent-baseline/src
 *                             (delete packages/agent-baseline afterwards: tsc and biome would check it)
 *   BENCH_OUT (inference-mlserver)  basename of the result files in bench/results/
 *   BENCH_RENDER_ONLY=1       only rewrite the .md from the recorded .json
 *   BENCH_PROFILE_DIR=<dir>   the agents and gateways write V8 CPU profiles there (--cpu-prof) when they exit
 *
 * Writes bench/results/<BENCH_OUT>.json and .md (the .md ends with bench/inference/mlserver-notes.md).
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import { join, resolve } from "node:path";
import { commandLine, envNumber } from "../lib/config.js";
import { type LoadRun, post, runLoad } from "../lib/load.js";
import { createServerGroup, REPO_ROOT as ROOT, runMain, type Server } from "../lib/processes.js";
import { type MachineInfo, machineLines, notesLines, rerenderIfAsked, startRun, writeResults } from "../lib/report.js";
import { median, round3 } from "../lib/stats.js";

/** The agent names the model `<name>-v<version>` inside its MLServer (mlserver-runtime.ts). */
const MLSERVER_MODEL = "iris-v1";
const BODY = JSON.stringify({
  inputs: [{ name: "predict", shape: [1, 4], datatype: "FP64", data: [5.1, 3.5, 1.4, 0.2] }],
});
const TARGETS = { throughputRatio: 0.9, addedIdleP50Ms: 1 };
/** MLServer starts in ~10–40 s on this machine (Python imports); the agent serves only after it. */
const START_DEADLINE_MS = 240_000;

const CONFIG = {
  durationS: envNumber("BENCH_DURATION_S", 8, 1),
  idleS: envNumber("BENCH_IDLE_S", 4, 1),
  rounds: envNumber("BENCH_ROUNDS", 5, 1),
  warmupS: envNumber("BENCH_WARMUP_S", 5, 0),
  connections: envNumber("BENCH_CONNECTIONS", 32, 1),
  baseline: process.env.BENCH_BASELINE_AGENT ? resolve(process.env.BENCH_BASELINE_AGENT) : undefined,
  profileDir: process.env.BENCH_PROFILE_DIR ? resolve(process.env.BENCH_PROFILE_DIR) : undefined,
  out: process.env.BENCH_OUT ?? "inference-mlserver",
};

const servers = createServerGroup({ startDeadlineMs: START_DEADLINE_MS });
let scratch: string | undefined;

/** A target: where its requests go, and which processes serve them (their CPU time is measured). */
interface Target {
  key: string;
  label: string;
  url: string;
  serving: Server[];
}

type Figures = Pick<LoadRun, "rps" | "p50" | "p99" | "errors"> & { cpuUsPerRequest: Record<string, number> };

async function load(t: Target, connections: number, seconds: number): Promise<Figures> {
  const run = await runLoad({ url: t.url, body: BODY, connections, seconds, watch: t.serving });
  const perRequest = Object.entries(run.cpuUs).map(([k, us]) => [k, Math.round(us / Math.max(1, run.requests))]);
  return {
    rps: run.rps,
    p50: run.p50,
    p99: run.p99,
    errors: run.errors,
    cpuUsPerRequest: Object.fromEntries(perRequest),
  };
}

/** The pid of the agent's MLServer: its python child (the launcher runs MLServer in-process, parallel_workers 0). */
function mlserverPid(agent: number): number {
  const out = execFileSync("pgrep", ["-P", String(agent), "-f", "bin/python"], { encoding: "utf8" }).trim();
  const pids = out.split("\n").filter(Boolean);
  if (pids.length !== 1)
    throw new Error(`expected one python child of the agent ${agent}, found ${JSON.stringify(pids)}`);
  return Number(pids[0]);
}

/** V8's CPU profiler for a server process, when BENCH_PROFILE_DIR asks for it. */
function profileArgs(): string[] {
  return CONFIG.profileDir ? ["--cpu-prof", "--cpu-prof-dir", CONFIG.profileDir] : [];
}

/** An agent of server type mlserver, standalone, with iris preloaded, and its MLServer as a process of its own. */
async function startAgent(key: string, label: string, script: string, cacheDir: string, model: string) {
  const agent = await servers.start({
    key,
    label,
    script,
    nodeArgs: profileArgs(),
    env: {
      LOG_LEVEL: "warn",
      TERN_AGENT_STANDALONE: "true",
      TERN_AGENT_SERVER: key,
      TERN_AGENT_SERVER_TYPE: "mlserver",
      TERN_MLSERVER_PYTHON: join(ROOT, ".tern/python/mlserver/bin/python"),
      TERN_AGENT_PRELOAD: `iris=file://${model}`,
      TERN_AGENT_HTTP_PORT: "0",
      TERN_AGENT_GRPC_PORT: "0",
      TERN_AGENT_CACHE_DIR: cacheDir,
      TERN_ARTIFACT_ROOTS: model,
    },
  });
  const settings = JSON.parse(readFileSync(join(cacheDir, "mlserver", `${key}-0`, "settings.json"), "utf8")) as {
    host: string;
    http_port: number;
  };
  const pid = mlserverPid(agent.child.pid!);
  const mlserver: Server = {
    key: `${key}MLServer`,
    label: `MLServer of ${key}`,
    url: `http://${settings.host}:${settings.http_port}`,
    child: { pid } as Server["child"],
  };
  return { agent, mlserver };
}

async function main() {
  if (rerenderIfAsked(CONFIG.out, renderMarkdown)) return;
  const run = startRun("inference-mlserver");
  scratch = mkdtempSync(join(os.tmpdir(), "tern-bench-mlserver-"));

  // The python of the venv, installed on first use (minutes) and reused afterwards.
  const python = execFileSync("bash", [join(ROOT, "scripts/python-env.sh"), "mlserver"], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  })
    .trim()
    .split("\n")
    .at(-1)!;
  const model = join(scratch, "models/iris");
  execFileSync(
    python,
    [join(ROOT, "samples/scripts/train_iris_sklearn.py"), join(ROOT, "samples/iris/iris.csv"), model],
    {
      stdio: ["ignore", "inherit", "inherit"],
    },
  );

  console.log("starting the agent and its MLServer ...");
  const now = await startAgent(
    "agent",
    "(a) agent → MLServer",
    "packages/agent/src/main.ts",
    join(scratch, "cache"),
    model,
  );
  const gateway = await servers.start({
    key: "gateway",
    label: "gateway",
    script: "bench/inference/gateway-entry.ts",
    nodeArgs: profileArgs(),
    env: { LOG_LEVEL: "warn", BENCH_AGENT_URL: now.agent.url, BENCH_GATEWAY_PORT: "0" },
  });
  const infer = (base: string, name = "iris") => `${base}/v2/models/${name}/infer`;
  const targets: Target[] = [
    {
      key: "mlserver",
      label: "(m) MLServer directly",
      url: infer(now.mlserver.url, MLSERVER_MODEL),
      serving: [now.mlserver],
    },
    { key: "agent", label: "(a) agent → MLServer", url: infer(now.agent.url), serving: [now.agent, now.mlserver] },
    {
      key: "tern",
      label: "(t) gateway → agent → MLServer",
      url: infer(gateway.url),
      serving: [gateway, now.agent, now.mlserver],
    },
  ];
  if (CONFIG.baseline) {
    console.log("starting the baseline agent and its MLServer ...");
    const before = await startAgent(
      "agentBefore",
      "(a0) agent before → MLServer",
      join(CONFIG.baseline, "main.ts"),
      join(scratch, "cache-before"),
      model,
    );
    const gatewayBefore = await servers.start({
      key: "gatewayBefore",
      label: "gateway before",
      script: "bench/inference/gateway-entry.ts",
      env: { LOG_LEVEL: "warn", BENCH_AGENT_URL: before.agent.url, BENCH_GATEWAY_PORT: "0" },
    });
    targets.push(
      {
        key: "agentBefore",
        label: "(a0) agent before this change → MLServer",
        url: infer(before.agent.url),
        serving: [before.agent, before.mlserver],
      },
      {
        key: "ternBefore",
        label: "(t0) gateway → agent before this change → MLServer",
        url: infer(gatewayBefore.url),
        serving: [gatewayBefore, before.agent, before.mlserver],
      },
    );
  }

  // Every target answers the same class before anything is timed (MLServer's own body names the model iris-v1).
  const labelOf = (body: string) => (JSON.parse(body) as { outputs: Array<{ data: number[] }> }).outputs[0]!.data;
  const answers: Record<string, string> = {};
  for (const t of targets) {
    const got = await post(t.url, BODY, { timeoutMs: 10_000 });
    if (got.status !== 200) throw new Error(`${t.label} answered ${got.status}: ${got.body}`);
    answers[t.key] = got.body;
    if (JSON.stringify(labelOf(got.body)) !== JSON.stringify([0]))
      throw new Error(`${t.label} answered ${got.body}, expected class 0 (setosa)`);
  }

  if (CONFIG.warmupS > 0) {
    console.log(`warm-up: ${CONFIG.warmupS} s per target`);
    for (const t of targets) await load(t, CONFIG.connections, CONFIG.warmupS);
  }
  const rounds: Record<string, { loaded: Figures; idle: Figures; loadavg: number[] }[]> = {};
  for (let r = 0; r < CONFIG.rounds; r++) {
    const order = targets.map((_, i) => targets[(i + r) % targets.length]!);
    for (const t of order) {
      const loaded = await load(t, CONFIG.connections, CONFIG.durationS);
      const idle = await load(t, 1, CONFIG.idleS);
      const loadavg = os.loadavg().map((n) => Math.round(n * 100) / 100);
      rounds[t.key] = [...(rounds[t.key] ?? []), { loaded, idle, loadavg }];
      console.log(
        `[${r + 1}/${CONFIG.rounds}] ${t.key.padEnd(12)} ${CONFIG.connections} conn: ${String(loaded.rps).padStart(7)} req/s ` +
          `p50 ${loaded.p50} p99 ${loaded.p99} ms errors ${loaded.errors} cpu µs/req ${JSON.stringify(loaded.cpuUsPerRequest)} ` +
          `| 1 conn: ${idle.rps} req/s p50 ${idle.p50} p99 ${idle.p99} ms | load ${loadavg.join(" ")}`,
      );
    }
  }
  await servers.stopAll();

  const med = (key: string, pick: (x: { loaded: Figures; idle: Figures }) => number) =>
    round3(median(rounds[key]!.map(pick)));
  const perTarget = Object.fromEntries(
    targets.map((t) => [
      t.key,
      {
        rps: med(t.key, (x) => x.loaded.rps),
        p50Ms: med(t.key, (x) => x.loaded.p50),
        p99Ms: med(t.key, (x) => x.loaded.p99),
        idleRps: med(t.key, (x) => x.idle.rps),
        idleP50Ms: med(t.key, (x) => x.idle.p50),
        idleP99Ms: med(t.key, (x) => x.idle.p99),
        cpuUsPerRequest: Object.fromEntries(
          Object.keys(rounds[t.key]![0]!.loaded.cpuUsPerRequest).map((k) => [
            k,
            med(t.key, (x) => x.loaded.cpuUsPerRequest[k]!),
          ]),
        ),
        errors: rounds[t.key]!.reduce((n, x) => n + x.loaded.errors + x.idle.errors, 0),
      },
    ]),
  );
  const m = perTarget.mlserver!;
  const versusMlserver = Object.fromEntries(
    targets.slice(1).map((t) => {
      const x = perTarget[t.key]!;
      return [
        t.key,
        {
          throughputRatio: round3(x.rps / m.rps),
          idleThroughputRatio: round3(x.idleRps / m.idleRps),
          addedP50Ms: round3(x.p50Ms - m.p50Ms),
          addedP99Ms: round3(x.p99Ms - m.p99Ms),
          addedIdleP50Ms: round3(x.idleP50Ms - m.idleP50Ms),
          addedIdleP99Ms: round3(x.idleP99Ms - m.idleP99Ms),
        },
      ];
    }),
  );
  writeResults<Recorded & Record<string, unknown>>(
    CONFIG.out,
    {
      benchmark: "inference-mlserver",
      command: commandLine("npm run bench:inference:mlserver"),
      date: run.startedAt.toISOString(),
      machine: run.machine(),
      config: { body: BODY, ...CONFIG, baseline: CONFIG.baseline ? "yes" : "no" },
      targets: Object.fromEntries(targets.map((t) => [t.key, t.label])),
      goals: TARGETS,
      answers,
      perTarget,
      versusMlserver,
      rounds,
    },
    renderMarkdown,
  );
  cleanScratch();
}

function cleanScratch(): void {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
  scratch = undefined;
}

type TargetFigures = Record<"rps" | "p50Ms" | "p99Ms" | "idleRps" | "idleP50Ms" | "idleP99Ms" | "errors", number> & {
  cpuUsPerRequest: Record<string, number>;
};
type Recorded = {
  command: string;
  date: string;
  machine: MachineInfo;
  config: Record<string, unknown> & {
    connections: number;
    durationS: number;
    idleS: number;
    rounds: number;
    warmupS: number;
  };
  targets: Record<string, string>;
  perTarget: Record<string, TargetFigures>;
  versusMlserver: Record<string, Record<string, number>>;
  rounds: Record<string, { loadavg: number[] }[]>;
};

function renderMarkdown(r: Recorded): string {
  const c = r.config;
  const lines = [
    "# Inference benchmark: MLServer",
    "",
    `Produced by \`${r.command}\` (\`node --import tsx bench/inference/mlserver.ts\`) on ${r.date}.`,
    ...machineLines(r.machine),
    "",
    "The specification's sklearn iris (a LogisticRegression trained by samples/scripts/train_iris_sklearn.py), batch 1,",
    "one JSON OIP request, on MLServer 1.7.1 (`parallel_workers` 0, as the agent runs it). Every server is its own",
    "process, no CPU pinning; autocannon runs in the bench process. " +
      `${c.rounds} rounds; in each, every target runs ${c.durationS} s at ${c.connections} connections and then ` +
      `${c.idleS} s at 1 connection, the order rotating between rounds, after a ${c.warmupS} s warm-up per target. ` +
      "Every figure is the median over the rounds; latencies in ms. CPU µs/req is each process's user + system time " +
      "(from /proc) over the requests served.",
    "",
    `| Target | req/s, ${c.connections} conn | p50 | p99 | req/s, 1 conn | p50, 1 conn | p99, 1 conn | CPU µs/req | errors |`,
    "|---|---|---|---|---|---|---|---|---|",
  ];
  for (const [key, label] of Object.entries(r.targets)) {
    const t = r.perTarget[key]!;
    const cpu = Object.entries(t.cpuUsPerRequest)
      .map(([k, v]) => `${k} ${v}`)
      .join(", ");
    lines.push(
      `| ${[label, t.rps, t.p50Ms, t.p99Ms, t.idleRps, t.idleP50Ms, t.idleP99Ms, cpu, t.errors].join(" | ")} |`,
    );
  }
  lines.push(
    "",
    `| Versus (m) MLServer directly | throughput ratio, ${c.connections} conn | added p50 | added p99 | ` +
      "throughput ratio, 1 conn | added p50, 1 conn | added p99, 1 conn |",
    "|---|---|---|---|---|---|---|",
  );
  for (const [key, v] of Object.entries(r.versusMlserver)) {
    const cells = [
      r.targets[key],
      v.throughputRatio,
      v.addedP50Ms,
      v.addedP99Ms,
      v.idleThroughputRatio,
      v.addedIdleP50Ms,
      v.addedIdleP99Ms,
    ];
    lines.push(`| ${cells.join(" | ")} |`);
  }
  const loads = Object.values(r.rounds).flatMap((rs) => rs.map((x) => x.loadavg[0]!));
  lines.push(
    "",
    `1-minute load average after each target's runs: min ${Math.min(...loads)}, median ${round3(median(loads))}, ` +
      `max ${Math.max(...loads)} (on ${r.machine.nproc} CPUs).`,
    "",
    ...notesLines(join(ROOT, "bench/inference/mlserver-notes.md")),
  );
  return `${lines.join("\n")}\n`;
}

runMain(main, async () => {
  await servers.stopAll();
  cleanScratch();
});
