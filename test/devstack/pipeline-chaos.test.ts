import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { createControlClient, findFreePort, readLockInfo } from "@tern/devstack";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  groupGone,
  type NpmStartProcess,
  runNpmStart,
  type StackChild,
  stackChild,
  waitWhileRunning,
  withoutDotenv,
} from "../helpers/npm-start-process.js";
import { repoRoot } from "../helpers/platform-process.js";
import { dynamodbEndpoint, kafkaBrokers } from "../helpers/services.js";

/**
 * Chaos under `npm start`'s own entry (issue 11): the sample pipeline `add-then-mul` (y = (x + 10) × 10) answered
 * through the gateway's REST at a steady 200 requests/s for 20 s while one part of the data plane is SIGKILLed and the
 * stack's supervisor restarts it: (a) a dataflow worker, (b) the model gateway, (c) the gateway itself.
 *
 * Every request ends as the right value computed from its input, as an explicit failure (an error status with an OIP
 * error body, or a connection error), or hung: still open at the client's deadline (the gateway's pipeline deadline +
 * a margin). Counts per status are printed for each case. (a) and (b) must cost no request at all (the issue's
 * target): the other worker replays the dead one's partitions, and the restarted model gateway re-reads what the dead
 * one did not commit. (c): the dying gateway's open requests end as connection errors, and the restarted gateway
 * answers right. Times are printed, never asserted.
 *
 * The path must carry 200 req/s for this to hold: before the gateway coalesced its produces it did not on this shared
 * 2-core machine (load 19-38 on 2026-12-01: only a few requests answered before the first kill, and a backlog no
 * failover could clear); with it, at load 9-13, (a) and (b) answered 4 000 of 4 000 each (docs/pipelines.md).
 *
 * The stack: the integration Kafka and DynamoDB Local (no JVM of its own), its own folder, ports, table and topic
 * namespace; TERN_SAMPLES=false (which iris the samples serve is another issue's business), then one tern-onnx Server
 * with one replica, the sample models add10 and mul10 and the sample pipeline add-then-mul, taken from
 * samples/manifests. Two dataflow workers (TERN_DATAFLOW_REPLICATION 2: both own the pipeline), one model gateway.
 */

const PIPELINE = "add-then-mul";
const RATE = 200;
const SECONDS = 20;
/** When, into the 20 s of traffic, the component is killed. */
const KILL_AT_MS = 4_000;
/** The gateway's pipeline deadline (TERN_GATEWAY_PIPELINE_TIMEOUT_MS). */
const GATEWAY_DEADLINE_MS = 30_000;
/** The client's: a request still open past it hung. */
const CLIENT_DEADLINE_MS = GATEWAY_DEADLINE_MS + 5_000;
/** Bound on the stack serving again between cases (see waitServing). */
const RECOVERY_TIMEOUT_MS = 150_000;
/** The failover bound of (a): the workers' Kafka session timeout (TERN_DATAFLOW_SESSION_TIMEOUT_MS, its default). */
const SESSION_TIMEOUT_MS = 10_000;

const DATAFLOW_ENTRY = "packages/dataflow/src/main.ts";
const MODEL_GATEWAY_ENTRY = "packages/model-gateway/src/main.ts";
const GATEWAY_ENTRY = "packages/gateway/src/server.ts";

const suffix = `${Date.now().toString(36)}-${process.pid}`;
const f32 = Math.fround;

/** x of request i of a scenario: 1 × 2 FP32 integers, distinct per request within 1000, exact after (x + 10) × 10. */
const xOf = (i: number): [number, number] => [i % 1000, -(i % 613)];
const expected = (i: number): number[] => xOf(i).map((v) => f32(f32(v + 10) * 10));

/** The documents of a sample manifest file whose `metadata.name` is one of `names`. */
function sampleDocuments(file: string, names: string[]): string[] {
  const text = readFileSync(join(repoRoot, "samples/manifests", file), "utf8");
  const docs = text
    .split(/^---\s*$/m)
    .filter((doc) => names.some((n) => new RegExp(`^\\s+name: ${n}\\s*$`, "m").test(doc)));
  if (docs.length !== names.length) throw new Error(`samples/manifests/${file}: expected ${names.join(", ")}`);
  return docs;
}

type Kind = "ok" | "wrong" | "status" | "connection" | "deadline";

/** How one request ended. */
interface Outcome {
  i: number;
  sentAt: number;
  endedAt: number;
  kind: Kind;
  /** What the counts are keyed by: `200 ok`, `503`, `connection ECONNRESET`, `client deadline`, … */
  label: string;
  detail?: string;
}

/** A request's failure text without the part that differs per request (ids), for the printed samples. */
const scrub = (s: string) => s.replace(/[0-9a-f]{8}-[0-9a-f-]{27}/g, "<id>").slice(0, 200);

/**
 * The client's connections to the gateway: keep-alive and as many as there are requests open, so every request reaches
 * the gateway when it is sent and the gateway's own deadline is what bounds it (a pool would queue requests in the
 * client, where no deadline of the gateway's applies).
 */
const agent = new http.Agent({ keepAlive: true });

/**
 * One POST of request i's body; resolves with the status and body, rejects with the socket error. `fresh`: on a new
 * connection of its own (closed after the answer) instead of one from the keep-alive pool.
 */
function post(
  url: URL,
  i: number,
  signal: AbortSignal,
  fresh = false,
): Promise<{ status: number; text: string; reused: boolean }> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify({ inputs: [{ name: "x", datatype: "FP32", shape: [1, 2], data: xOf(i) }] });
    const req = http.request(
      url,
      {
        agent: fresh ? false : agent,
        method: "POST",
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(payload) },
        signal,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            text: Buffer.concat(chunks).toString("utf8"),
            reused: req.reusedSocket,
          }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", (err: NodeJS.ErrnoException & { reused?: boolean }) => {
      err.reused = req.reusedSocket;
      reject(err);
    });
    req.end(payload);
  });
}

/** Requests retried once after a reset of a reused keep-alive socket (see `one`), per scenario. */
let keepAliveRetries = 0;

async function one(url: string, i: number): Promise<Outcome> {
  const sentAt = performance.now();
  const done = (kind: Kind, label: string, detail?: string): Outcome => ({
    i,
    sentAt,
    endedAt: performance.now(),
    kind,
    label,
    ...(detail === undefined ? {} : { detail }),
  });
  const signal = AbortSignal.timeout(CLIENT_DEADLINE_MS);
  try {
    let res: { status: number; text: string };
    try {
      res = await post(new URL(url), i, signal);
    } catch (err) {
      // A server may close an idle keep-alive socket just as the client reuses it; the request then never reached the
      // gateway, and HTTP clients send it again on a new connection (Node's docs on `request.reusedSocket`) — a new one,
      // not the pool's next idle socket, which the server may be closing too (CI on 2026-12-01: 4 requests of (b) met
      // a closing socket twice). Any other error, or a reset on a fresh connection, is the request's outcome.
      const e = err as NodeJS.ErrnoException & { reused?: boolean };
      if (e.code !== "ECONNRESET" || !e.reused) throw err;
      keepAliveRetries++;
      res = await post(new URL(url), i, signal, true);
    }
    if (res.status !== 200) return done("status", String(res.status), scrub(res.text));
    const y = (JSON.parse(res.text) as { outputs?: Array<{ name: string; data: number[] }> }).outputs?.find(
      (o) => o.name === "y",
    )?.data;
    if (JSON.stringify(y) === JSON.stringify(expected(i))) return done("ok", "200 ok");
    return done("wrong", "200 wrong", `x ${JSON.stringify(xOf(i))}: ${res.text.slice(0, 200)}`);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (signal.aborted) return done("deadline", "client deadline");
    return done("connection", `connection ${e.code ?? e.message}`, scrub(String(e)));
  }
}

/**
 * Open-loop traffic: `rate` requests/s for `seconds` (a late tick sends what is due), no cap on requests in flight, so
 * a stall shows as requests waiting rather than as requests not sent. `during(elapsedMs)` runs every tick. Resolves
 * once every request has ended (each is bounded by the client's deadline).
 */
async function traffic(url: string, during: (elapsedMs: number) => void): Promise<Outcome[]> {
  const pending: Array<Promise<Outcome>> = [];
  const t0 = performance.now();
  const total = RATE * SECONDS;
  while (pending.length < total) {
    const elapsed = performance.now() - t0;
    during(elapsed);
    const due = Math.min(total, Math.floor((elapsed * RATE) / 1000));
    while (pending.length < due) pending.push(one(url, pending.length));
    await new Promise((r) => setTimeout(r, 5));
  }
  return Promise.all(pending);
}

const pct = (sorted: number[], p: number) =>
  sorted.length === 0 ? 0 : Math.round(sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!);

/** Counts per label, latencies and the first samples of each failure, as one printable block. */
function summary(name: string, outcomes: Outcome[], killedAt: number, extra: string): string {
  const counts = new Map<string, number>();
  const samples = new Map<string, string>();
  for (const o of outcomes) {
    counts.set(o.label, (counts.get(o.label) ?? 0) + 1);
    if (o.kind !== "ok" && o.detail !== undefined && !samples.has(o.label)) samples.set(o.label, o.detail);
  }
  const okMs = outcomes
    .filter((o) => o.kind === "ok")
    .map((o) => o.endedAt - o.sentAt)
    .sort((a, b) => a - b);
  // Requests sent before the kill, answered before it: whether the machine carried the rate at all.
  const calm = outcomes
    .filter((o) => o.kind === "ok" && o.endedAt < killedAt)
    .map((o) => o.endedAt - o.sentAt)
    .sort((a, b) => a - b);
  const failed = outcomes.filter((o) => o.kind !== "ok");
  const failedEnd =
    failed.length === 0
      ? ""
      : `; failures ended by +${Math.round(Math.max(...failed.map((o) => o.endedAt - killedAt)))} ms after the kill`;
  return [
    `[pipeline-chaos] ${name}: ${outcomes.length} requests (${RATE}/s for ${SECONDS} s, kill at +${KILL_AT_MS / 1000} s): ${[
      ...counts,
    ]
      .map(([label, n]) => `${label} ${n}`)
      .join(", ")}`,
    `  answer latency (ok) p50 ${pct(okMs, 50)} ms, p99 ${pct(okMs, 99)} ms, max ${pct(okMs, 100)} ms${failedEnd}; ` +
      `before the kill (${calm.length} answered) p50 ${pct(calm, 50)} ms, p99 ${pct(calm, 99)} ms`,
    ...[...samples].map(([label, detail]) => `  e.g. ${label}: ${detail}`),
    `  ${extra}`,
  ].join("\n");
}

let devDir: string;
let samplesDir: string;
let pidFile: string;
let stack: NpmStartProcess | undefined;
let ports: { scheduler: number; gateway: number; grpc: number };
let inferUrl: string;
let schedulerUrl: string;
const recordedChildren = new Set<number>();

function recordChildren(): void {
  for (const pid of readLockInfo(pidFile)?.children ?? []) recordedChildren.add(pid);
}

interface PipelineView {
  state: string;
  owners?: string[];
}

/**
 * Until add-then-mul is PipelineReady on both workers and answers one request right through the gateway. After a case
 * that overloaded the stack this waits for the backlog on the topics to drain (nothing drops a request the gateway gave
 * up on: the pipeline still runs it), so the bound is generous; the time it took is printed.
 */
async function waitServing(description: string): Promise<void> {
  const started = performance.now();
  await waitWhileRunning(
    stack!,
    async () => {
      const res = await fetch(`${schedulerUrl}/v1/pipelines/${PIPELINE}`, { signal: AbortSignal.timeout(2_000) });
      const view = (await res.json()) as PipelineView;
      if (view.state !== "PipelineReady" || view.owners?.length !== 2) return false;
      const probe = await one(inferUrl, 7);
      return probe.kind === "ok";
    },
    RECOVERY_TIMEOUT_MS,
    description,
  );
  console.log(`[pipeline-chaos] ${description}: after ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

/**
 * Runs one scenario: traffic, `victim` SIGKILLed at KILL_AT_MS, then waits (bounded) for the supervisor to report the
 * component ready again. Returns the outcomes, when the kill happened, and what to print about the restart.
 */
async function scenario(
  component: string,
  entry: string,
  victim: StackChild,
): Promise<{ outcomes: Outcome[]; killedAt: number; restart: string; after: StackChild | undefined }> {
  const loadBefore = loadavg()[0]!.toFixed(1);
  keepAliveRetries = 0;
  const readyLinesBefore = stack!.output().split(`${component} is ready again`).length;
  let killedAt = 0;
  const outcomes = await traffic(inferUrl, (elapsed) => {
    if (killedAt === 0 && elapsed >= KILL_AT_MS) {
      process.kill(victim.pid, "SIGKILL");
      killedAt = performance.now();
    }
  });
  // The supervisor logs "<name> is ready again, N s after it stopped" once its readiness probe passes.
  const line = await waitWhileRunning(
    stack!,
    () => {
      const out = stack!.output();
      if (out.split(`${component} is ready again`).length <= readyLinesBefore) return false;
      return new RegExp(`${component} is ready again, [\\d.]+ s after it stopped`).exec(out.slice(-20_000))?.[0];
    },
    60_000,
    `${component} ready again after the SIGKILL`,
  );
  recordChildren();
  const after = stackChild(pidFile, entry, victim.workerId);
  return {
    outcomes,
    killedAt,
    after,
    restart: `supervisor: "${line}" (pid ${victim.pid} → ${after?.pid ?? "?"}); machine load (1 min) ${loadBefore} → ${loadavg()[0]!.toFixed(1)} on 2 shared cores; ${keepAliveRetries} sent again after a reset of a reused keep-alive socket`,
  };
}

/**
 * What must hold whatever the machine's load: no answer carries a wrong value, and every failure says so explicitly:
 * an error status with an OIP `{"error": ...}` body, a connection error, or (counted as hung) the client's deadline.
 */
function expectNoWrongAndExplicit(outcomes: Outcome[]): void {
  expect(outcomes.filter((o) => o.kind === "wrong").map((o) => o.detail)).toEqual([]);
  const unexplained = outcomes.filter((o) => o.kind === "status" && !o.detail?.startsWith('{"error":'));
  expect(unexplained.map((o) => `${o.label} ${o.detail}`)).toEqual([]);
}

/** The issue's target for (a) and (b) as a line of the report: met, or missed with the counts. */
function targetLine(outcomes: Outcome[]): string {
  const c = byKind(outcomes);
  return c.ok === outcomes.length
    ? `target (zero failures, none hung): MET, ${c.ok} of ${outcomes.length} right`
    : `target (zero failures, none hung): MISSED, ${c.ok} of ${outcomes.length} right, ${c.status} error statuses, ` +
        `${c.connection} connection errors, ${c.deadline} hung past the client's deadline`;
}

const byKind = (outcomes: Outcome[]) => {
  const counts: Record<Kind, number> = { ok: 0, wrong: 0, status: 0, connection: 0, deadline: 0 };
  for (const o of outcomes) counts[o.kind]++;
  return counts;
};

beforeAll(async () => {
  devDir = mkdtempSync(join(tmpdir(), "tern-pipeline-chaos-"));
  samplesDir = mkdtempSync(join(tmpdir(), "tern-pipeline-chaos-manifests-"));
  pidFile = join(devDir, "devstack.pid");
  const free = new Set<number>();
  while (free.size < 3) free.add(await findFreePort());
  const [scheduler, gateway, grpc] = [...free];
  ports = { scheduler: scheduler!, gateway: gateway!, grpc: grpc! };
  schedulerUrl = `http://127.0.0.1:${ports.scheduler}`;
  inferUrl = `http://127.0.0.1:${ports.gateway}/v2/pipelines/${PIPELINE}/infer`;

  stack = runNpmStart(
    withoutDotenv({
      ...process.env,
      KAFKA_BROKERS: kafkaBrokers().join(","),
      DYNAMODB_ENDPOINT: dynamodbEndpoint(),
      KAFKA_PARTITIONS: String(inject("kafkaPartitions")),
      AWS_REGION: inject("awsRegion"),
      TERN_TABLE: `tern-pipeline-chaos-${suffix}`,
      TERN_NAMESPACE: `pipeline-chaos-${suffix}`,
      TERN_DEV_DIR: devDir,
      TERN_SAMPLES: "false",
      TERN_SCHEDULER_PORT: String(ports.scheduler),
      TERN_GATEWAY_PORT: String(ports.gateway),
      TERN_GATEWAY_GRPC_PORT: String(ports.grpc),
      TERN_GATEWAY_PIPELINE_TIMEOUT_MS: String(GATEWAY_DEADLINE_MS),
      TERN_DATAFLOW_WORKERS: "2",
      TERN_DATAFLOW_REPLICATION: "2",
      TERN_DATAFLOW_SESSION_TIMEOUT_MS: String(SESSION_TIMEOUT_MS),
      TERN_MODELGATEWAY_REPLICAS: "1",
      TERN_DEV_READY_TIMEOUT_MS: "60000",
      LOG_LEVEL: "warn",
    }),
  );
  await waitWhileRunning(stack, () => stack!.output().includes("Press Ctrl-C to stop."), 90_000, "the stack up");
  recordChildren();

  const server = `apiVersion: mlops.seldon.io/v1alpha1
kind: Server
metadata:
  name: chaos
spec:
  serverConfig: tern-onnx
  replicas: 1
`;
  const manifests = [
    server,
    ...sampleDocuments("pipeline-models.yaml", ["add10", "mul10"]),
    ...sampleDocuments("pipelines.yaml", [PIPELINE]),
  ].join("\n---\n");
  writeFileSync(join(samplesDir, "chaos.yaml"), manifests);
  await createControlClient({ url: schedulerUrl, timeoutMs: 15_000 }).apply(manifests);
  await waitServing(`${PIPELINE} ready on two workers and answering through the gateway`);
  recordChildren();
}, 300_000);

afterAll(async () => {
  agent.destroy();
  if (pidFile) recordChildren();
  if (stack !== undefined && !stack.hasExited()) {
    stack.child.kill("SIGINT");
    await Promise.race([stack.exited, new Promise((r) => setTimeout(r, 20_000))]);
    if (!stack.hasExited()) stack.child.kill("SIGKILL");
  }
  // A SIGKILLed main.ts skips its cleanup: stop what it recorded ourselves (nothing is left after a clean stop).
  for (const pid of recordedChildren) {
    if (groupGone(pid)) continue;
    try {
      process.kill(-pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
  if (devDir) rmSync(devDir, { recursive: true, force: true });
  if (samplesDir) rmSync(samplesDir, { recursive: true, force: true });
}, 40_000);

describe(`npm start under 200 req/s to ${PIPELINE} through the gateway's REST`, () => {
  it("(a) SIGKILL of a dataflow worker: the supervisor restarts it and every request is answered with the right value", async () => {
    const victim = stackChild(pidFile, DATAFLOW_ENTRY, "dataflow-0");
    expect(victim, "dataflow-0's pid from the pid file").toBeDefined();
    const { outcomes, killedAt, restart, after } = await scenario("dataflow-0", DATAFLOW_ENTRY, victim!);
    const extra = `${restart}; worker session timeout ${SESSION_TIMEOUT_MS} ms\n  ${targetLine(outcomes)}`;
    console.log(summary("(a) dataflow-0 SIGKILLed", outcomes, killedAt, extra));
    expect(after?.pid).not.toBe(victim!.pid);
    expect(outcomes.length).toBe(RATE * SECONDS);
    expectNoWrongAndExplicit(outcomes);
    expect(byKind(outcomes)).toEqual({ ok: RATE * SECONDS, wrong: 0, status: 0, connection: 0, deadline: 0 });
  }, 240_000);

  it("(b) SIGKILL of the model gateway: the supervisor restarts it and every request is answered with the right value", async () => {
    await waitServing(`${PIPELINE} on two workers again before (b)`);
    const victim = stackChild(pidFile, MODEL_GATEWAY_ENTRY, "modelgateway-0");
    expect(victim, "modelgateway-0's pid from the pid file").toBeDefined();
    const { outcomes, killedAt, restart, after } = await scenario("modelgateway-0", MODEL_GATEWAY_ENTRY, victim!);
    console.log(summary("(b) modelgateway-0 SIGKILLed", outcomes, killedAt, `${restart}\n  ${targetLine(outcomes)}`));
    expect(after?.pid).not.toBe(victim!.pid);
    expect(outcomes.length).toBe(RATE * SECONDS);
    expectNoWrongAndExplicit(outcomes);
    expect(byKind(outcomes)).toEqual({ ok: RATE * SECONDS, wrong: 0, status: 0, connection: 0, deadline: 0 });
  }, 240_000);

  it("(c) SIGKILL of the gateway: its requests in flight fail at once with a connection error, nothing is wrong, and the restarted gateway serves", async () => {
    await waitServing(`${PIPELINE} serving before (c)`);
    const victim = stackChild(pidFile, GATEWAY_ENTRY);
    expect(victim, "the gateway's pid from the pid file").toBeDefined();
    const { outcomes, killedAt, restart, after } = await scenario("gateway", GATEWAY_ENTRY, victim!);
    const inFlightAtKill = outcomes.filter((o) => o.sentAt < killedAt && o.endedAt >= killedAt);
    const firstOkAfter = Math.min(
      ...outcomes.filter((o) => o.kind === "ok" && o.sentAt > killedAt).map((o) => o.sentAt),
    );
    const afterRestart = outcomes.filter((o) => o.sentAt > firstOkAfter);
    const inFlightEnd = inFlightAtKill.length === 0 ? 0 : Math.max(...inFlightAtKill.map((o) => o.endedAt - killedAt));
    console.log(
      summary(
        "(c) gateway SIGKILLed",
        outcomes,
        killedAt,
        `${restart}; ${inFlightAtKill.length} in flight at the kill, all ended by +${Math.round(inFlightEnd)} ms; ` +
          `first right answer to a request sent after the kill ${Number.isFinite(firstOkAfter) ? `+${Math.round(firstOkAfter - killedAt)} ms` : "never"}; ` +
          `${afterRestart.length} sent after it: ${JSON.stringify(byKind(afterRestart))}`,
      ),
    );
    expect(after?.pid).not.toBe(victim!.pid);
    expectNoWrongAndExplicit(outcomes);
    // The dying gateway's requests that were not answered before it died end as connection errors (reset), not as
    // error statuses or hangs.
    expect(inFlightAtKill.filter((o) => o.kind !== "connection" && o.kind !== "ok").map((o) => o.label)).toEqual([]);
    // The restarted gateway serves: a request sent after the kill got the right answer (how the rest fared is printed).
    expect(Number.isFinite(firstOkAfter)).toBe(true);
  }, 240_000);
});
