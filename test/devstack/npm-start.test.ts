import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { parseEnv } from "node:util";
import * as protoLoader from "@grpc/proto-loader";
import { OIP_LOADER_OPTIONS, OIP_PROTO_PATH } from "@tern/agent";
import { findFreePort, isPortOpen, isProcessAlive, readLockInfo, waitFor } from "@tern/devstack";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { IRIS_CLASSES, irisRequest, knownIrisRows, parseIrisAnswer } from "../e2e/iris-data.js";
import { type NpmStartProcess, runNpmStart } from "../helpers/npm-start-process.js";
import { createOutsideKafka } from "../helpers/outside-kafka.js";
import { dynamodbEndpoint, kafkaBrokers } from "../helpers/services.js";

// The README's promise: "`npm start` runs the platform locally with the samples loaded". This runs the real entry the
// way package.json's "start" script does, against the integration Kafka and DynamoDB Local (so it starts no JVM), with
// its own folder, ports and table, and a light sample set (one agent) so that it fits on two shared cores.

const repoRoot = resolve(fileURLToPath(new URL(".", import.meta.url)), "../..");
const suffix = `${Date.now().toString(36)}-${process.pid}`;

/** main.ts's documented exit codes. */
const EXIT_STOPPED = 0;
const EXIT_ALREADY_RUNNING = 3;
const EXIT_FAILED = 1;

// The entry is started by the shared helper (test/helpers/npm-start-process.ts), as the pipeline chaos test does.
type StartProcess = NpmStartProcess;
const runStart = runNpmStart;

/** Waits for `check` while failing at once, with the output, if the process exits first. */
async function waitWhileRunning<T>(
  proc: StartProcess,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs: number,
  description: string,
): Promise<T> {
  const stop = new AbortController();
  try {
    return await Promise.race([
      waitFor(check, { timeoutMs, intervalMs: 100, description, signal: stop.signal }),
      proc.exited.then((exit) => {
        throw new Error(`npm start exited (${exit.signal ?? exit.code}) before ${description}`);
      }),
    ]);
  } catch (err) {
    throw new Error(`${String(err)}\n--- npm start output ---\n${proc.output()}`);
  } finally {
    stop.abort();
  }
}

/** The curl `npm start` prints, taken apart: URL, headers and body. */
interface PrintedCurl {
  url: string;
  headers: Record<string, string>;
  body: string;
}

function parseCurl(line: string): PrintedCurl {
  const match = /curl -s (\S+)((?: -H '[^']*')*) -d '([^']*)'/.exec(line);
  if (!match) throw new Error(`not the expected curl: ${line}`);
  const headers: Record<string, string> = {};
  for (const [, header] of match[2]!.matchAll(/-H '([^']*)'/g)) {
    const colon = header!.indexOf(":");
    headers[header!.slice(0, colon).trim()] = header!.slice(colon + 1).trim();
  }
  // curl defaults to http:// when the URL has no scheme.
  const url = /^https?:\/\//.test(match[1]!) ? match[1]! : `http://${match[1]}`;
  return { url, headers, body: match[3]! };
}

async function send(curl: PrintedCurl, body = curl.body): Promise<{ status: number; json: unknown }> {
  const res = await fetch(curl.url, {
    method: "POST",
    headers: curl.headers,
    body,
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  let json: unknown = text;
  try {
    json = JSON.parse(text);
  } catch {
    // Left as text, so a failed assertion shows it.
  }
  return { status: res.status, json };
}

/** True when no process of the group led by `pid` is left (signal 0 to the group fails with ESRCH). */
function groupGone(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ESRCH";
  }
}

function pidGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ESRCH";
  }
}

/** The live child of the stack whose command line runs `entry` (e.g. the scheduler's main.ts), from the pid file. */
function childRunning(entry: string): number | undefined {
  for (const pid of readLockInfo(pidFile)?.children ?? []) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(entry)) return pid;
    } catch {
      // Gone since the pid file was written.
    }
  }
  return undefined;
}

const SCHEDULER_ENTRY = "packages/scheduler/src/main.ts";
const GATEWAY_ENTRY = "packages/gateway/src/server.ts";

async function getJson(url: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

/** Requests of one phase, counted by the phase in force when each was sent. */
interface PhaseCounts {
  ok: number;
  /** An answer, but not 200 with label 0. */
  wrong: number;
  /** No answer: refused, reset or timed out. */
  error: number;
  /** Milliseconds from the phase's start to its first ok answer. */
  firstOkMs?: number;
  /** The first few failures, for the report. */
  samples: string[];
}

/**
 * Steady iris traffic through the gateway at `perSecond` (timer ticks that run late send what is due), at most
 * `maxInFlight` at once, each request with its own timeout, bounded in time. `phase()` switches the phase new requests
 * are counted under.
 */
function startTraffic(
  target: PrintedCurl,
  perSecond = 200,
  maxInFlight = 64,
  timeoutMs = 5_000,
  maxDurationMs = 90_000,
) {
  const phases = new Map<string, PhaseCounts & { startedAt: number }>();
  let current: PhaseCounts & { startedAt: number };
  const inFlight = new Set<Promise<void>>();
  let skipped = 0;
  let sent = 0;
  const startedAt = performance.now();
  const phase = (name: string): void => {
    current = { ok: 0, wrong: 0, error: 0, samples: [], startedAt: performance.now() };
    phases.set(name, current);
  };
  phase("before");
  const failed = (counts: PhaseCounts, what: string): void => {
    if (counts.samples.length < 5 && !counts.samples.includes(what)) counts.samples.push(what);
  };
  const one = async (counts: PhaseCounts & { startedAt: number }): Promise<void> => {
    try {
      const res = await fetch(target.url, {
        method: "POST",
        headers: target.headers,
        body: target.body,
        signal: AbortSignal.timeout(timeoutMs),
      });
      const text = await res.text();
      let labels: number[] | undefined;
      try {
        labels = parseIrisAnswer(JSON.parse(text)).labels;
      } catch {
        // Not an iris answer: counted as wrong below.
      }
      if (res.status === 200 && labels?.length === 1 && labels[0] === 0) {
        counts.ok++;
        counts.firstOkMs ??= performance.now() - counts.startedAt;
      } else {
        counts.wrong++;
        failed(counts, `${res.status} ${text.slice(0, 200)}`);
      }
    } catch (err) {
      counts.error++;
      failed(counts, String((err as Error).cause ?? err));
    }
  };
  const timer = setInterval(() => {
    const elapsed = performance.now() - startedAt;
    if (elapsed > maxDurationMs) {
      clearInterval(timer);
      return;
    }
    const due = Math.floor((elapsed / 1000) * perSecond) - sent - skipped;
    for (let i = 0; i < due; i++) {
      if (inFlight.size >= maxInFlight) {
        skipped++;
        continue;
      }
      sent++;
      const request = one(current).finally(() => inFlight.delete(request));
      inFlight.add(request);
    }
  }, 5);
  return {
    phase,
    counts: (name: string): PhaseCounts => phases.get(name) ?? { ok: 0, wrong: 0, error: 0, samples: [] },
    /** Stops sending, waits for the requests in flight, and returns a printable summary. */
    async stop(): Promise<string> {
      clearInterval(timer);
      await Promise.all(inFlight);
      const seconds = (performance.now() - startedAt) / 1000;
      const lines = [...phases].map(
        ([name, c]) =>
          `  ${name}: ok ${c.ok}, wrong ${c.wrong}, error ${c.error}${c.firstOkMs === undefined ? "" : `, first ok after ${Math.round(c.firstOkMs)} ms`}${c.samples.length > 0 ? `\n    e.g. ${c.samples.join("\n    e.g. ")}` : ""}`,
      );
      return `${sent} requests in ${seconds.toFixed(1)} s (${(sent / seconds).toFixed(0)}/s; ${skipped} not sent: ${maxInFlight} already in flight)\n${lines.join("\n")}`;
    },
  };
}

/** samples/manifests/servers.yaml with one replica each. */
const SAMPLE_SERVERS = `apiVersion: mlops.seldon.io/v1alpha1
kind: Server
metadata:
  name: mlserver
  namespace: seldon
spec:
  serverConfig: mlserver
  replicas: 1
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Server
metadata:
  name: tern-onnx
spec:
  serverConfig: tern-onnx
  replicas: 1
`;

/** samples/manifests/iris.yaml and iris-onnx.yaml with one replica each. */
const SAMPLE_MODELS = `apiVersion: mlops.seldon.io/v1alpha1
kind: Model
metadata:
  name: iris
spec:
  storageUri: "file://./samples/models/iris-sklearn"
  requirements:
    - sklearn
  memory: 100Ki
  replicas: 1
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Model
metadata:
  name: iris-onnx
spec:
  storageUri: "file://./samples/models/iris"
  requirements:
    - onnx
  memory: 100Ki
  replicas: 1
`;

/** The curl printed after the given line, taken apart. */
function curlAfter(out: string, marker: string): PrintedCurl | undefined {
  const at = out.indexOf(marker);
  if (at < 0) return undefined;
  const line = out
    .slice(at)
    .split("\n")
    .find((l) => l.trim().startsWith("curl "));
  return line === undefined ? undefined : parseCurl(line);
}

let devDir: string;
let samplesDir: string;
let pidFile: string;
let env: NodeJS.ProcessEnv;
let ports: { scheduler: number; gateway: number; grpc: number };
let first: StartProcess | undefined;
let second: StartProcess | undefined;
let curl: PrintedCurl;
/** Every child pid (process-group leader) seen in the pid file, for the checks and for afterAll. */
const recordedChildren = new Set<number>();

function recordFromPidFile(): void {
  for (const pid of readLockInfo(pidFile)?.children ?? []) recordedChildren.add(pid);
}

beforeAll(async () => {
  devDir = mkdtempSync(join(tmpdir(), "tern-npm-start-"));
  samplesDir = mkdtempSync(join(tmpdir(), "tern-npm-start-samples-"));
  pidFile = join(devDir, "devstack.pid");
  // The shape of samples/manifests, lighter: one agent per Server, one replica per iris.
  writeFileSync(join(samplesDir, "servers.yaml"), SAMPLE_SERVERS);
  writeFileSync(join(samplesDir, "iris.yaml"), SAMPLE_MODELS);

  const free = new Set<number>();
  while (free.size < 3) free.add(await findFreePort());
  const [scheduler, gateway, grpc] = [...free];
  ports = { scheduler: scheduler!, gateway: gateway!, grpc: grpc! };

  // main.ts loads the repo root's .env whatever the working directory, but never over a variable already in the
  // environment (even an empty one, which Tern's config reads as unset). Naming every key of a developer's .env here
  // makes that file inert for this test.
  const dotenvFile = join(repoRoot, ".env");
  const dotenvKeys = existsSync(dotenvFile) ? Object.keys(parseEnv(readFileSync(dotenvFile, "utf8"))) : [];
  env = {
    ...process.env,
    ...Object.fromEntries(dotenvKeys.map((key) => [key, ""])),
    KAFKA_BROKERS: kafkaBrokers().join(","),
    DYNAMODB_ENDPOINT: dynamodbEndpoint(),
    KAFKA_PARTITIONS: String(inject("kafkaPartitions")),
    AWS_REGION: inject("awsRegion"),
    TERN_TABLE: `tern-npm-start-${suffix}`,
    TERN_NAMESPACE: `npm-start-${suffix}`,
    TERN_DEV_DIR: devDir,
    TERN_SAMPLES: "true",
    TERN_SAMPLES_DIR: samplesDir,
    TERN_SCHEDULER_PORT: String(ports.scheduler),
    TERN_GATEWAY_PORT: String(ports.gateway),
    TERN_GATEWAY_GRPC_PORT: String(ports.grpc),
    TERN_DEV_READY_TIMEOUT_MS: "60000",
    TERN_DEV_SAMPLES_TIMEOUT_MS: "60000",
  };

  first = runStart(env);
  const start = first;
  const found = await waitWhileRunning(
    start,
    () => {
      const out = start.output();
      // main.ts keeps running when the samples fail; stop waiting at once and show why.
      if (out.includes("the samples are not ready")) return { failed: true as const };
      const ready = out.indexOf("tern: ready in");
      if (ready < 0) return false;
      const curlLine = out
        .slice(ready)
        .split("\n")
        .find((line) => line.trim().startsWith("curl "));
      return curlLine === undefined ? false : { failed: false as const, curlLine };
    },
    90_000,
    'the "ready" line and its curl',
  );
  if (found.failed) throw new Error(`npm start did not get the samples ready:\n${start.output()}`);
  // The figure docs/local-stack.md quotes; the dataflow workers must not lengthen it (they come up in the background).
  console.log(`[npm-start] ${start.output().match(/tern: ready in [\d.]+ s/)?.[0] ?? "no ready line"}`);
  curl = parseCurl(found.curlLine);
  recordFromPidFile();
}, 120_000);

afterAll(async () => {
  if (existsSync(pidFile ?? "")) recordFromPidFile();
  for (const proc of [second, first]) {
    if (proc !== undefined && !proc.hasExited()) {
      proc.child.kill("SIGKILL");
      await Promise.race([proc.exited, new Promise((r) => setTimeout(r, 5_000))]);
    }
  }
  // SIGKILL on main.ts skips its cleanup: kill the groups it recorded (scheduler, gateway, agents) ourselves.
  for (const pid of recordedChildren) {
    try {
      process.kill(-pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
  if (devDir) rmSync(devDir, { recursive: true, force: true });
  if (samplesDir) rmSync(samplesDir, { recursive: true, force: true });
}, 30_000);

describe("npm start (packages/devstack/src/main.ts)", () => {
  it("prints a curl for the ONNX iris that answers label 0 (setosa) through the gateway", async () => {
    expect(curl.url).toBe(`http://localhost:${ports.gateway}/v2/models/iris-onnx/infer`);
    const { status, json } = await send(curl);
    expect(status, JSON.stringify(json)).toBe(200);
    expect(parseIrisAnswer(json).labels).toEqual([0]);
  });

  it("serves the other iris classes too", async () => {
    const rows = knownIrisRows().filter((row) => row.label !== 0);
    for (const label of [1, 2]) {
      const row = rows.find((r) => r.label === label)!;
      const { status, json } = await send(curl, irisRequest(row));
      expect(status, JSON.stringify(json)).toBe(200);
      expect(parseIrisAnswer(json).labels, `row ${row.row} is ${IRIS_CLASSES[label]}`).toEqual([label]);
    }
  });

  it("answers iris-onnx over Kafka too: the model gateway it runs serves seldon.<ns>.model.iris-onnx.inputs", async () => {
    const definition = protoLoader.loadSync(OIP_PROTO_PATH, OIP_LOADER_OPTIONS);
    const infer = (definition["inference.GRPCInferenceService"] as protoLoader.ServiceDefinition).ModelInfer!;
    const row = knownIrisRows().find((r) => r.label === 2)!;
    const topics = `seldon.npm-start-${suffix}.model.iris-onnx`;
    const outside = await createOutsideKafka(kafkaBrokers(), `npm-start-${suffix}`);
    try {
      const seen = await outside.read([`${topics}.outputs`]);
      const key = `1.iris-onnx.npm-start-${suffix}`;
      const request = infer.requestSerialize({
        model_name: "iris-onnx",
        inputs: [{ name: "predict", datatype: "FP32", shape: [1, 4], contents: { fp32_contents: row.features } }],
      });
      await outside.send(`${topics}.inputs`, 1, key, request);
      const answer = await waitFor(() => seen.find((r) => r.key === key), {
        timeoutMs: 30_000,
        intervalMs: 50,
        description: "iris's answer on its outputs topic",
      });
      const response = infer.responseDeserialize(answer.value) as {
        outputs: Array<{ name: string; contents: { int64_contents: string[] } }>;
      };
      expect(answer.partition).toBe(1);
      expect(response.outputs.find((o) => o.name === "label")!.contents.int64_contents.map(Number)).toEqual([2]);
    } finally {
      await outside.close();
    }
  });

  it("runs two dataflow workers: the banner shows them and the scheduler lists both as Ready", async () => {
    const out = first!.output();
    for (const id of ["dataflow-0", "dataflow-1"]) {
      expect(out).toMatch(
        new RegExp(`^\\s+${id}\\s+Kafka: seldon\\.<ns>\\.pipeline\\.<p>\\.inputs → outputs\\s+pid \\d+`, "m"),
      );
    }
    const ready = await waitFor(
      async () => {
        const res = await fetch(`http://127.0.0.1:${ports.scheduler}/v1/workers/dataflow`);
        const status = (await res.json()) as { replicas: Array<{ id: string; state: string }> };
        const ids = status.replicas.filter((r) => r.state === "Ready").map((r) => r.id);
        return ids.length === 2 ? ids.sort() : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 200, description: "two Ready dataflow workers" },
    );
    expect(ready).toEqual(["dataflow-0", "dataflow-1"]);
  });

  it("starts the mlserver Server's agent once MLServer is installed and prints the sklearn iris's curl, which answers label 0 via MLServer", async () => {
    // The ONNX curl above came without waiting for this. A first run installs MLServer here (minutes, in the
    // background of npm start); when the venv is current (another test installed it) the agent starts at once.
    const sklearn = await waitWhileRunning(
      first!,
      () => {
        const out = first!.output();
        if (out.includes("is not ready")) throw new Error("the sklearn iris is not ready");
        return curlAfter(out, "(sklearn on MLServer, Server mlserver) is ready");
      },
      900_000,
      "the sklearn iris's curl",
    );
    expect(sklearn.url).toBe(`http://localhost:${ports.gateway}/v2/models/iris/infer`);
    const { status, json } = await send(sklearn);
    expect(status, JSON.stringify(json)).toBe(200);
    // MLServer's sklearn runtime answers predict() as the output `predict`: not the ONNX graph's `label`.
    const outputs = (json as { outputs: Array<{ name: string; data: number[] }> }).outputs;
    expect(outputs.map((o) => [o.name, o.data])).toEqual([["predict", [0]]]);
    const row = knownIrisRows().find((r) => r.label === 2)!;
    const other = await send(sklearn, irisRequest(row));
    expect((other.json as { outputs: Array<{ data: number[] }> }).outputs[0]!.data).toEqual([2]);
    expect(first!.output()).toMatch(/agent mlserver\/0 started/);
    expect(readFileSync(join(devDir, "logs", "agent-mlserver-0.log"), "utf8")).toContain('"msg":"mlserver running"');
    recordFromPidFile();
  }, 960_000);

  it("records its pid and its children in the pid file", () => {
    const info = readLockInfo(pidFile);
    expect(info?.pid).toBe(first!.pid);
    // The scheduler, the gateway and the agents of the two 1-replica Servers.
    expect(info?.children?.length).toBeGreaterThanOrEqual(3);
    for (const pid of info!.children!) expect(isProcessAlive(pid), `child ${pid}`).toBe(true);
  });

  it("refuses a second start on the same folder, naming the running one, and leaves it serving", async () => {
    second = runStart(env);
    const exit = await Promise.race([
      second.exited,
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error(`the second start did not exit:\n${second!.output()}`)), 20_000),
      ),
    ]);
    expect(exit, second.output()).toEqual({ code: EXIT_ALREADY_RUNNING, signal: null });
    expect(second.output()).toContain(`already running (pid ${first!.pid}`);
    expect(second.output()).toContain(`http://localhost:${ports.gateway}`);

    expect(first!.hasExited()).toBe(false);
    expect(readLockInfo(pidFile)?.pid).toBe(first!.pid);
    const { status, json } = await send(curl);
    expect(status, JSON.stringify(json)).toBe(200);
    expect(parseIrisAnswer(json).labels).toEqual([0]);
  });

  it("keeps answering iris through a SIGKILL of the scheduler, restarts it, and the scheduler resumes with its state", async () => {
    const scheduler = `http://127.0.0.1:${ports.scheduler}`;
    const before = childRunning(SCHEDULER_ENTRY);
    expect(before, "the scheduler's pid in the pid file").toBeDefined();
    const modelBefore = await getJson(`${scheduler}/v1/models/iris-onnx`);
    expect(modelBefore.json.state, JSON.stringify(modelBefore.json)).toBe("ModelAvailable");
    const statusBefore = await getJson(`${scheduler}/v1/status`);

    const traffic = startTraffic(curl);
    let summary: string | undefined;
    try {
      await waitWhileRunning(first!, () => traffic.counts("before").ok >= 100, 30_000, "steady traffic");
      traffic.phase("scheduler down");
      const killedAt = performance.now();
      process.kill(before!, "SIGKILL");
      const after = await waitWhileRunning(
        first!,
        () => {
          const pid = childRunning(SCHEDULER_ENTRY);
          return pid !== undefined && pid !== before ? pid : false;
        },
        30_000,
        "a new scheduler in the pid file",
      );
      // A SIGKILLed leader cannot release its lease: the new one waits it out (≤ ~11 s) before it is active.
      await waitWhileRunning(
        first!,
        async () => (await getJson(`${scheduler}/healthz`)).json.active === true,
        60_000,
        "the restarted scheduler to be active",
      );
      const activeMs = performance.now() - killedAt;
      traffic.phase("scheduler back");
      await waitWhileRunning(first!, () => traffic.counts("scheduler back").ok >= 100, 30_000, "traffic after");
      summary = await traffic.stop();
      console.log(
        `scheduler SIGKILL: restarted as pid ${after}, active again ${(activeMs / 1000).toFixed(1)} s after the kill\n${summary}`,
      );

      for (const phase of ["before", "scheduler down", "scheduler back"]) {
        const counts = traffic.counts(phase);
        expect({ phase, wrong: counts.wrong, error: counts.error }, summary).toEqual({ phase, wrong: 0, error: 0 });
      }
      expect(traffic.counts("scheduler down").ok, summary).toBeGreaterThan(0);
      expect(pidGone(before!), "the killed scheduler").toBe(true);

      // Its state came back from DynamoDB: the same model, placed the same way, at the same or a later revision.
      const modelAfter = await getJson(`${scheduler}/v1/models/iris-onnx`);
      expect(modelAfter.json, JSON.stringify(modelAfter.json)).toMatchObject({
        state: "ModelAvailable",
        version: modelBefore.json.version,
        server: modelBefore.json.server,
      });
      const statusAfter = await getJson(`${scheduler}/v1/status`);
      expect(statusAfter.json.active).toBe(true);
      expect(statusAfter.json.revision as number).toBeGreaterThanOrEqual(statusBefore.json.revision as number);
      expect(first!.hasExited(), first!.output()).toBe(false);
      expect(first!.output()).toMatch(/scheduler stopped unexpectedly \(signal SIGKILL\); restarting it/);
    } finally {
      summary ??= await traffic.stop();
      recordFromPidFile();
    }
  }, 120_000);

  it("restarts a SIGKILLed gateway, which answers again within seconds and then serves every request", async () => {
    const before = childRunning(GATEWAY_ENTRY);
    expect(before, "the gateway's pid in the pid file").toBeDefined();
    const traffic = startTraffic(curl);
    let summary: string | undefined;
    try {
      await waitWhileRunning(first!, () => traffic.counts("before").ok >= 100, 30_000, "steady traffic");
      // Nothing listens until the new gateway is up: those requests are refused. Measured, not asserted.
      traffic.phase("gateway down");
      process.kill(before!, "SIGKILL");
      await waitWhileRunning(
        first!,
        () => traffic.counts("gateway down").firstOkMs !== undefined,
        30_000,
        "the gateway to answer again",
      );
      traffic.phase("gateway back");
      await waitWhileRunning(first!, () => traffic.counts("gateway back").ok >= 100, 30_000, "traffic after");
      summary = await traffic.stop();
      const after = childRunning(GATEWAY_ENTRY);
      console.log(
        `gateway SIGKILL: restarted as pid ${after}, answering again ${((traffic.counts("gateway down").firstOkMs ?? 0) / 1000).toFixed(1)} s after the kill\n${summary}`,
      );
      expect(after).toBeDefined();
      expect(after).not.toBe(before);
      const back = traffic.counts("gateway back");
      expect({ wrong: back.wrong, error: back.error }, summary).toEqual({ wrong: 0, error: 0 });
      expect(first!.hasExited(), first!.output()).toBe(false);
      expect(first!.output()).toMatch(/gateway stopped unexpectedly \(signal SIGKILL\); restarting it/);
    } finally {
      summary ??= await traffic.stop();
      recordFromPidFile();
    }
  }, 120_000);

  it("stops everything it started on Ctrl-C (SIGINT) and exits 0", async () => {
    recordFromPidFile();
    const children = [...recordedChildren];
    expect(children.length).toBeGreaterThanOrEqual(3);

    first!.child.kill("SIGINT");
    const exit = await Promise.race([
      first!.exited,
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error(`npm start did not exit after SIGINT:\n${first!.output()}`)), 20_000),
      ),
    ]);
    expect(exit, first!.output()).toEqual({ code: EXIT_STOPPED, signal: null });
    expect(first!.output()).toMatch(/tern: stopped in [\d.]+ s/);

    // Every child and anything it started in its process group is gone, and the lock is released.
    for (const pid of children) {
      expect(pidGone(pid), `child ${pid} still alive`).toBe(true);
      expect(groupGone(pid), `process group ${pid} still has members`).toBe(true);
    }
    expect(existsSync(pidFile)).toBe(false);
    for (const port of [ports.scheduler, ports.gateway, ports.grpc]) {
      expect(await isPortOpen(port), `port ${port} still open`).toBe(false);
    }
  });
});

describe("npm start without a usable python3", () => {
  it("says in one line why the mlserver Server gets no agents, and the ONNX samples serve as usual", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tern-npm-start-nopython-"));
    const free = new Set<number>();
    while (free.size < 3) free.add(await findFreePort());
    const [scheduler, gateway, grpc] = [...free];
    const proc = runStart({
      ...env,
      TERN_DEV_DIR: dir,
      TERN_TABLE: `tern-npm-start-nopython-${suffix}`,
      TERN_NAMESPACE: `npm-start-nopython-${suffix}`,
      TERN_SCHEDULER_PORT: String(scheduler),
      TERN_GATEWAY_PORT: String(gateway),
      TERN_GATEWAY_GRPC_PORT: String(grpc),
      TERN_DATAFLOW_WORKERS: "0",
      // What scripts/python-env.sh runs; a missing interpreter fails even when the venv exists.
      TERN_PYTHON: join(dir, "no-such-python3"),
    });
    const children: number[] = [];
    try {
      const onnx = await waitWhileRunning(
        proc,
        () => curlAfter(proc.output(), "tern: ready in"),
        90_000,
        "the ONNX curl",
      );
      const { status, json } = await send(onnx);
      expect(status, JSON.stringify(json)).toBe(200);
      expect(parseIrisAnswer(json).labels).toEqual([0]);
      const line = await waitWhileRunning(
        proc,
        () =>
          proc
            .output()
            .split("\n")
            .find((l) => l.includes("server mlserver: not starting")),
        30_000,
        "the line about MLServer",
      );
      expect(line).toBe(
        `tern: server mlserver: not starting its 1 agent(s): MLServer is not available: ${join(dir, "no-such-python3")} not found: the mlserver environment needs Python 3.10+ (install python3, or set TERN_PYTHON) (log ${join(dir, "logs", "mlserver-install.log")}); the other Servers keep serving`,
      );
      expect(proc.output().match(/MLServer is not available/g)).toHaveLength(1);
      expect(proc.output()).not.toMatch(/agent mlserver\/0 started/);
      children.push(...(readLockInfo(join(dir, "devstack.pid"))?.children ?? []));
      proc.child.kill("SIGINT");
      const exit = await Promise.race([
        proc.exited,
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no exit:\n${proc.output()}`)), 30_000)),
      ]);
      expect(exit, proc.output()).toEqual({ code: EXIT_STOPPED, signal: null });
    } finally {
      if (!proc.hasExited()) proc.child.kill("SIGKILL");
      for (const pid of children) {
        try {
          process.kill(-pid, "SIGKILL");
        } catch {
          // Already gone.
        }
      }
      rmSync(dir, { recursive: true, force: true });
    }
  }, 150_000);
});

describe("npm start when a component keeps crashing", () => {
  it("gives up past TERN_DEV_MAX_RESTARTS, prints the component's log tail, stops everything and exits 1", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tern-npm-start-giveup-"));
    const free = new Set<number>();
    while (free.size < 3) free.add(await findFreePort());
    const [scheduler, gateway, grpc] = [...free];
    // 0 restarts allowed: the first crash is already one too many, so one SIGKILL shows the whole give-up path.
    const proc = runStart({
      ...env,
      TERN_DEV_DIR: dir,
      TERN_SAMPLES: "false",
      TERN_TABLE: `tern-npm-start-giveup-${suffix}`,
      TERN_NAMESPACE: `npm-start-giveup-${suffix}`,
      TERN_SCHEDULER_PORT: String(scheduler),
      TERN_GATEWAY_PORT: String(gateway),
      TERN_GATEWAY_GRPC_PORT: String(grpc),
      TERN_DEV_MAX_RESTARTS: "0",
    });
    const children: number[] = [];
    try {
      await waitWhileRunning(proc, () => proc.output().includes("Press Ctrl-C to stop."), 90_000, "the stack up");
      children.push(...(readLockInfo(join(dir, "devstack.pid"))?.children ?? []));
      const gatewayPid = children.find((pid) => {
        try {
          return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(GATEWAY_ENTRY);
        } catch {
          return false;
        }
      });
      expect(gatewayPid, "the gateway's pid in the pid file").toBeDefined();
      process.kill(gatewayPid!, "SIGKILL");
      const exit = await Promise.race([
        proc.exited,
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error(`npm start did not give up:\n${proc.output()}`)), 30_000),
        ),
      ]);
      const out = proc.output();
      expect(exit, out).toEqual({ code: EXIT_FAILED, signal: null });
      expect(out).toMatch(
        /gateway stopped unexpectedly \(signal SIGKILL\), the 1st time within a minute: not restarting it/,
      );
      // The tail of the gateway's own log, which only the gateway writes.
      expect(out).toContain('"msg":"gateway listening"');
      expect(out).toContain("tern: gateway keeps crashing; stopping the stack");
      expect(out).toContain("tern: stopped (gave up on gateway");
      for (const pid of children) expect(groupGone(pid), `process group ${pid} still has members`).toBe(true);
      expect(existsSync(join(dir, "devstack.pid"))).toBe(false);
    } finally {
      if (!proc.hasExited()) proc.child.kill("SIGKILL");
      for (const pid of children) {
        try {
          process.kill(-pid, "SIGKILL");
        } catch {
          // Already gone.
        }
      }
      rmSync(dir, { recursive: true, force: true });
    }
  }, 150_000);
});
