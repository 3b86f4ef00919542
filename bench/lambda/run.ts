/**
 * Lambda bundle benchmark (not a test, issue 13): the size of the gateway's Lambda bundle and its cold start.
 *
 *   npm run bench:lambda          (node --import tsx bench/lambda/run.ts)
 *
 * 1. Builds packages/gateway/src/lambda.ts with esbuild (bench/lambda/build.ts: ESM, minified, node20 — the local Node;
 *    the stack deploys nodejs22.x) and prints its size by top-level input (esbuild's metafile).
 * 2. Starts a broker and DynamoDB Local (bench/lib/bench-stack.ts), the scheduler and one agent, and applies the ONNX
 *    iris, so the route table in DynamoDB is a real one.
 * 3. In BENCH_LAMBDA_RUNS fresh Node processes each, imports the bundled handler and calls it with API Gateway v2 events:
 *    `GET /v2/health/ready` (the first route-table read from DynamoDB), then `POST /v2/models/iris/infer`. Init =
 *    import + that first read; the median over the processes is compared with the target of 300 ms. The same for the
 *    unbundled source under tsx (which adds TypeScript transpilation: a baseline, not a deployable).
 *
 * Environment (optional): BENCH_LAMBDA_RUNS (10). Writes bench/results/lambda.json and .md (the .md ends with
 * bench/lambda/notes.md).
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ModelStatus } from "@tern/core";
import { waitFor } from "@tern/devstack";
import { startBenchStack, startSchedulerAndAgent } from "../lib/bench-stack.js";
import { envNumber } from "../lib/config.js";
import { createServerGroup, REPO_ROOT, runMain } from "../lib/processes.js";
import { type MachineInfo, machineLines, notesLines, rerenderIfAsked, startRun, writeResults } from "../lib/report.js";
import { median, round2 } from "../lib/stats.js";
import { type BundleInput, buildLambdaBundle, LAMBDA_ENTRY } from "./build.js";

const OUT = "lambda";
const TARGETS = { bundleBytes: 1.5 * 1024 * 1024, initMs: 300 };
const RUNS = envNumber("BENCH_LAMBDA_RUNS", 10, 1);
/** Two: the scheduler's default of two dataflow owners per pipeline needs at least two partitions. */
const PARTITIONS = 2;
const NAMESPACE = `lambdabench${Date.now().toString(36)}`;
const MANIFESTS = `apiVersion: mlops.seldon.io/v1alpha1
kind: Server
metadata: {name: mlserver}
spec: {serverConfig: tern-onnx, replicas: 1}
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Model
metadata: {name: iris}
spec:
  storageUri: "file://./samples/models/iris"
  requirements: [onnx]
  memory: 100Ki
  replicas: 1
`;

/** What one fresh process measured (ms from its own start). */
interface ColdStart {
  /** Node's own start-up, before the script's first line: wall time, and CPU time of the process. */
  bootMs: number;
  bootCpuMs: number;
  importMs: number;
  /** The first request: `GET /v2/health/ready`, which reads the route table from DynamoDB. */
  firstReadMs: number;
  /**
   * CPU time of the process (all its threads) for import + first read: far less sensitive than wall time to the
   * other work on a shared machine.
   */
  initCpuMs: number;
  /** The next: the first model request (route table cached, a connection to the agent). */
  firstInferMs: number;
}

interface Variant {
  name: string;
  runs: ColdStart[];
  median: ColdStart & { initMs: number };
}

interface Result {
  date: string;
  machine: MachineInfo;
  command: string;
  bundle: { bytes: number; target: string; inputs: BundleInput[] };
  targets: typeof TARGETS;
  variants: Variant[];
}

// Runs in the fresh process: imports the handler (a file URL or path in BENCH_HANDLER) and times the first calls.
const CHILD = `
const boot = performance.now();
const bootCpu = process.cpuUsage();
const event = (method, path, body) => ({
  version: "2.0", routeKey: "$default", rawPath: path, rawQueryString: "",
  headers: { host: "bench.execute-api.us-east-1.amazonaws.com", "content-type": "application/json" },
  requestContext: { accountId: "123456789012", apiId: "bench", domainName: "bench.execute-api.us-east-1.amazonaws.com",
    domainPrefix: "bench", http: { method, path, protocol: "HTTP/1.1", sourceIp: "127.0.0.1", userAgent: "bench" },
    requestId: "r" + Math.random(), routeKey: "$default", stage: "$default", time: new Date().toISOString(), timeEpoch: Date.now() },
  ...(body === undefined ? {} : { body, isBase64Encoded: false }),
});
const { handler } = await import(process.env.BENCH_HANDLER);
const imported = performance.now();
const ready = await handler(event("GET", "/v2/health/ready"), {});
const read = performance.now();
const initCpu = process.cpuUsage(bootCpu);
const infer = await handler(event("POST", "/v2/models/iris/infer",
  JSON.stringify({ inputs: [{ name: "predict", shape: [1, 4], datatype: "FP32", data: [5.1, 3.5, 1.4, 0.2] }] })), {});
const inferred = performance.now();
if (ready.statusCode !== 200 || infer.statusCode !== 200) {
  console.error("unexpected answers", ready.statusCode, ready.body, infer.statusCode, infer.body);
  process.exit(1);
}
const cpuMs = (u) => (u.user + u.system) / 1000;
process.stdout.write(JSON.stringify({ bootMs: boot, bootCpuMs: cpuMs(bootCpu), importMs: imported - boot,
  firstReadMs: read - imported, initCpuMs: cpuMs(initCpu), firstInferMs: inferred - read }));
// The DynamoDB client keeps its connections: a Lambda environment is frozen, not ended; this process just exits.
process.exit(0);
`;

function coldStart(
  childFile: string,
  handler: string,
  env: Record<string, string>,
  viaTsx: boolean,
): Promise<ColdStart> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...(viaTsx ? ["--import", "tsx"] : []), childFile], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? "", ...env, BENCH_HANDLER: handler },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (c: Buffer) => {
      out += c.toString();
    });
    child.stderr.on("data", (c: Buffer) => {
      err += c.toString();
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.on("exit", (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(JSON.parse(out) as ColdStart);
      else reject(new Error(`cold start exited ${code}: ${err.slice(-2000)}`));
    });
  });
}

function medianOf(runs: ColdStart[]): Variant["median"] {
  const pick = (f: (r: ColdStart) => number) => round2(median(runs.map(f)));
  return {
    bootMs: pick((r) => r.bootMs),
    bootCpuMs: pick((r) => r.bootCpuMs),
    initCpuMs: pick((r) => r.initCpuMs),
    importMs: pick((r) => r.importMs),
    firstReadMs: pick((r) => r.firstReadMs),
    firstInferMs: pick((r) => r.firstInferMs),
    initMs: pick((r) => r.importMs + r.firstReadMs),
  };
}

const kb = (bytes: number) => `${(bytes / 1024).toFixed(1)} KB`;

function render(r: Result): string {
  const bundled = r.variants[0]!;
  return [
    "# Lambda bundle: size and cold start",
    "",
    `Run ${r.date} with \`${r.command}\`. ${machineLines(r.machine).join(" ")}`,
    "",
    `Bundle: \`${LAMBDA_ENTRY}\` by esbuild (ESM, minified, target ${r.bundle.target}; the stack deploys nodejs22.x):`,
    `**${r.bundle.bytes} bytes (${(r.bundle.bytes / 1024 / 1024).toFixed(2)} MiB)**, target ≤ 1.5 MiB: ` +
      `${r.bundle.bytes <= r.targets.bundleBytes ? "met" : "missed"}.`,
    "",
    `Init (import + the first route-table read from DynamoDB Local), median of ${bundled.runs.length} fresh Node processes: ` +
      `**${bundled.median.initMs} ms** wall, target ≤ ${r.targets.initMs} ms: ${bundled.median.initMs <= r.targets.initMs ? "met" : "missed"}; ` +
      `its CPU time **${bundled.median.initCpuMs} ms** (${bundled.median.initCpuMs <= r.targets.initMs ? "under" : "over"} the target; see the notes on load).`,
    "",
    "## Size by top-level input",
    "",
    "| input | size |",
    "|---|---:|",
    ...r.bundle.inputs.filter((i) => i.bytes >= 2048).map((i) => `| ${i.name} | ${kb(i.bytes)} |`),
    `| (${r.bundle.inputs.filter((i) => i.bytes < 2048).length} smaller inputs) | ${kb(
      r.bundle.inputs.filter((i) => i.bytes < 2048).reduce((s, i) => s + i.bytes, 0),
    )} |`,
    "",
    "## Cold start, median of fresh processes (ms)",
    "",
    "| handler | Node boot (wall / CPU) | import | first route-table read | init (import + read) | init CPU time | first model infer |",
    "|---|---:|---:|---:|---:|---:|---:|",
    ...r.variants.map(
      (v) =>
        `| ${v.name} | ${v.median.bootMs} / ${v.median.bootCpuMs} | ${v.median.importMs} | ${v.median.firstReadMs} | **${v.median.initMs}** | ${v.median.initCpuMs} | ${v.median.firstInferMs} |`,
    ),
    "",
    ...notesLines(join(REPO_ROOT, "bench/lambda/notes.md")),
  ].join("\n");
}

const group = createServerGroup({ startDeadlineMs: 90_000 });
/** The bundle and the cold-start script; made by `main` (a render-only run makes none). */
let dir: string | undefined;
let stopStack = async (): Promise<void> => undefined;
const cleanUp = async (): Promise<void> => {
  await group.stopAll();
  await stopStack();
  stopStack = async () => undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
};

async function main(): Promise<void> {
  if (rerenderIfAsked<Result>(OUT, render)) return;
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
  const run = startRun("lambda");

  const target = "node20";
  dir = mkdtempSync(join(tmpdir(), "tern-bench-lambda-"));
  const bundle = await buildLambdaBundle({ outdir: dir, target });
  console.log(`bundle ${bundle.bytes} bytes (${kb(bundle.bytes)})`);
  for (const input of bundle.inputs.slice(0, 15)) console.log(`  ${input.name.padEnd(48)} ${kb(input.bytes)}`);

  const bench = await startBenchStack({ dirPrefix: "tern-lambdabench-", partitions: PARTITIONS, extraPorts: 1 });
  stopStack = bench.stop;
  const [schedulerPort] = bench.ports as [number];
  const { schedulerUrl } = await startSchedulerAndAgent(group, bench, {
    name: "lambdabench",
    namespace: NAMESPACE,
    partitions: PARTITIONS,
    schedulerPort,
  });
  const applied = await fetch(`${schedulerUrl}/v1/apply`, {
    method: "POST",
    headers: { "content-type": "application/yaml" },
    body: MANIFESTS,
    signal: AbortSignal.timeout(10_000),
  });
  if (applied.status !== 200) throw new Error(`apply: ${applied.status} ${await applied.text()}`);
  await waitFor(
    async () => {
      const res = await fetch(`${schedulerUrl}/v1/models/iris`).catch(() => undefined);
      const s = res?.ok ? ((await res.json()) as ModelStatus) : undefined;
      return s?.state === "ModelAvailable";
    },
    { timeoutMs: 60_000, intervalMs: 200, description: "iris available on the agent" },
  );

  const env = {
    TERN_TABLE: `tern-lambdabench-${NAMESPACE}`,
    DYNAMODB_ENDPOINT: bench.dynamodbEndpoint,
    AWS_REGION: bench.region,
    KAFKA_BROKERS: bench.brokers.join(","),
    KAFKA_PARTITIONS: String(PARTITIONS),
    TERN_NAMESPACE: NAMESPACE,
    LOG_LEVEL: "warn",
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
  };
  const childFile = join(dir, "cold-start.mjs");
  writeFileSync(childFile, CHILD);
  const variants: Array<{ name: string; handler: string; viaTsx: boolean }> = [
    { name: "bundled (lambda.mjs)", handler: bundle.file, viaTsx: false },
    { name: "unbundled source under tsx (baseline)", handler: join(REPO_ROOT, LAMBDA_ENTRY), viaTsx: true },
  ];
  const measured: Variant[] = [];
  for (const v of variants) {
    const runs: ColdStart[] = [];
    for (let i = 0; i < RUNS; i++) runs.push(await coldStart(childFile, v.handler, env, v.viaTsx));
    const m = medianOf(runs);
    console.log(
      `${v.name}: init ${m.initMs} ms (import ${m.importMs}, first read ${m.firstReadMs}), first infer ${m.firstInferMs} ms`,
    );
    measured.push({ name: v.name, runs, median: m });
  }

  await cleanUp();
  writeResults<Result>(
    OUT,
    {
      date: run.startedAt.toISOString(),
      machine: run.machine(),
      command: `BENCH_LAMBDA_RUNS=${RUNS} npm run bench:lambda`,
      bundle: { bytes: bundle.bytes, target, inputs: bundle.inputs },
      targets: TARGETS,
      variants: measured,
    },
    render,
  );
}

runMain(main, cleanUp);
