import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import {
  createDevStack,
  type DevStack,
  type DevStackOptions,
  type ExitInfo,
  findFreePort,
  loadDevStackConfig,
  probeDynamoDb,
  readLockInfo,
  waitFor,
} from "@tern/devstack";
import { Kafka, logLevel } from "kafkajs";
import { afterAll, afterEach, describe, expect, inject, it } from "vitest";
import { serverManifest } from "../helpers/manifests.js";
import { repoRoot } from "../helpers/platform-process.js";
import { dynamodbEndpoint, kafkaBrokers } from "../helpers/services.js";

// The dev stack's restart rule (DESIGN §6): a child that dies is restarted with backoff while the rest keeps running,
// repeated crashes within a minute give up with the log tail, and a stop during a backoff leaves nothing behind.

const suffix = `${Date.now().toString(36)}-${process.pid}`;
const dirs: string[] = [];
const stacks: DevStack[] = [];
afterEach(async () => {
  await Promise.all(stacks.splice(0).map((s) => s.stop().catch(() => undefined)));
});
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

interface Logged {
  lines: string[];
  text(): string;
  /** Adds a line of the test's own, timed like the stack's. */
  mark(message: string): void;
}

function newStack(options: Partial<DevStackOptions>): { stack: DevStack; dir: string; log: Logged } {
  const dir = mkdtempSync(join(tmpdir(), "tern-it-restart-"));
  dirs.push(dir);
  const lines: string[] = [];
  const t0 = performance.now();
  const at = (m: string): string => `[${((performance.now() - t0) / 1000).toFixed(1)} s] ${m}`;
  const stack = createDevStack({
    dir,
    kafkaBrokers: kafkaBrokers(),
    dynamodbEndpoint: dynamodbEndpoint(),
    partitions: inject("kafkaPartitions"),
    region: inject("awsRegion"),
    stopGraceMs: 5_000,
    readyTimeoutMs: 60_000,
    logger: { info: (m) => lines.push(at(m)), warn: (m) => lines.push(at(m)) },
    ...options,
  });
  stacks.push(stack);
  return { stack, dir, log: { lines, text: () => lines.join("\n"), mark: (m) => lines.push(at(`test: ${m}`)) } };
}

/** A node child that runs until killed, or, once `crashFile` exists, says so and exits 3 at start. */
function sleeper(name: string, crashFile?: string) {
  const script = crashFile
    ? `if (require("fs").existsSync(${JSON.stringify(crashFile)})) { console.log("${name}: crash file present, exiting"); process.exit(3); } console.log("${name}: up"); setInterval(() => {}, 1000);`
    : `console.log("${name}: up"); setInterval(() => {}, 1000);`;
  return { name, command: process.execPath, args: ["-e", script] };
}

function pidOf(stack: DevStack, name: string): number {
  const pid = stack.services().find((s) => s.name === name)?.pid;
  if (pid === undefined) throw new Error(`${name} has no pid`);
  return pid;
}

/** Processes still running with the stack's marker in their environment (what a leaked child would carry). */
function processesMarkedWith(dir: string): number[] {
  const marker = `TERN_DEVSTACK_OWNER=${dir}\0`;
  return readdirSync("/proc")
    .filter((entry) => /^\d+$/.test(entry))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/environ`, "utf8").includes(marker);
      } catch {
        return false;
      }
    })
    .map(Number);
}

describe("dev stack: a child that dies is restarted", () => {
  it("restarts Kafka and DynamoDB Local on the same ports and data; the scheduler and a producer reconnect by themselves", async () => {
    const [kafkaPort, controllerPort, dynamodbPort, schedulerPort] = await distinctFreePorts(4);
    const config = loadDevStackConfig();
    const { stack, log } = newStack({
      kafkaBrokers: undefined,
      dynamodbEndpoint: undefined,
      kafkaPort,
      kafkaControllerPort: controllerPort,
      dynamodbPort,
      kafkaLibsDir: join(config.TERN_DEV_DIR, "kafka", "libs"),
      kafkaHeap: "256m",
      restartDelayMs: 200,
    });
    const scheduler = `http://127.0.0.1:${schedulerPort}`;
    stack.addProcess({
      name: "scheduler",
      command: process.execPath,
      args: ["--import", "tsx", "packages/scheduler/src/main.ts"],
      cwd: repoRoot,
      env: {
        TERN_SCHEDULER_PORT: String(schedulerPort),
        TERN_TABLE: `tern-it-restart-${suffix}`,
        TERN_NAMESPACE: `it-restart-${suffix}`,
      },
      ready: async () => {
        const res = await fetch(`${scheduler}/healthz`, { signal: AbortSignal.timeout(2_000) });
        return ((await res.json()) as { active?: boolean }).active === true;
      },
    });
    const endpoints = await stack.start();
    const schedulerPid = pidOf(stack, "scheduler");
    const apply = async (yaml: string): Promise<number> => {
      const res = await fetch(`${scheduler}/v1/apply`, {
        method: "POST",
        headers: { "content-type": "application/yaml" },
        body: yaml,
        signal: AbortSignal.timeout(5_000),
      });
      await res.body?.cancel();
      return res.status;
    };

    // DynamoDB Local: SIGKILL, restarted on the same port with the same database file.
    const dynamoPid = pidOf(stack, "dynamodb");
    log.mark("SIGKILL dynamodb");
    process.kill(dynamoPid, "SIGKILL");
    await waitFor(() => pidOf(stack, "dynamodb") !== dynamoPid && log.text().includes("dynamodb is ready again"), {
      timeoutMs: 60_000,
      intervalMs: 100,
      description: `DynamoDB Local restarted:\n${log.text()}`,
    });
    await probeDynamoDb(endpoints.dynamodbEndpoint, endpoints.region);
    // The scheduler (same process) writes again once its client reaches the new DynamoDB Local; it may have lost
    // its lease meanwhile and be elected again. Its table, created when it started, is still there: an empty
    // database would answer ResourceNotFound. (Not asserted: the item written just before the SIGKILL. DynamoDB Local
    // can lose its last acknowledged writes when killed, see docs/local-stack.md.)
    await waitFor(async () => (await apply(serverManifest("after-crash", 0))) === 200, {
      timeoutMs: 60_000,
      intervalMs: 250,
      description: "the scheduler writing to the restarted DynamoDB Local",
    });
    log.mark("the scheduler wrote again");
    const res = await fetch(`${scheduler}/v1/servers/after-crash`, { signal: AbortSignal.timeout(5_000) });
    expect(res.status).toBe(200);
    await res.body?.cancel();
    expect(pidOf(stack, "scheduler"), "the scheduler was not restarted").toBe(schedulerPid);

    // Kafka: a producer connected before the SIGKILL sends again after the restart, to the same topic, whose
    // messages from before are still there (same data folder).
    const kafka = new Kafka({
      clientId: "tern-it-restart",
      brokers: endpoints.kafkaBrokers,
      logLevel: logLevel.NOTHING,
    });
    const topic = `tern-it.restart.${suffix}`;
    const admin = kafka.admin();
    const producer = kafka.producer({ allowAutoTopicCreation: false });
    try {
      await admin.connect();
      await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
      await producer.connect();
      await producer.send({ topic, acks: -1, messages: [{ value: "1" }, { value: "2" }, { value: "3" }] });
      const kafkaPid = pidOf(stack, "kafka");
      log.mark("SIGKILL kafka");
      process.kill(kafkaPid, "SIGKILL");
      await waitFor(() => pidOf(stack, "kafka") !== kafkaPid && log.text().includes("kafka is ready again"), {
        timeoutMs: 90_000,
        intervalMs: 100,
        description: `Kafka restarted:\n${log.text()}`,
      });
      await waitFor(
        async () => {
          await producer.send({ topic, acks: -1, messages: [{ value: "4" }] });
          return true;
        },
        { timeoutMs: 30_000, intervalMs: 250, description: "the producer sending to the restarted broker" },
      );
      log.mark("the producer sent again");
      const offsets = await waitFor(async () => admin.fetchTopicOffsets(topic), {
        timeoutMs: 30_000,
        description: "the topic's offsets",
      });
      expect(offsets.map((o) => o.high)).toEqual(["4"]);
    } finally {
      await producer.disconnect().catch(() => undefined);
      await admin.disconnect().catch(() => undefined);
    }
    expect(pidOf(stack, "scheduler"), "the scheduler was not restarted").toBe(schedulerPid);
    expect(log.text()).toMatch(/dynamodb stopped unexpectedly \(signal SIGKILL\); restarting it in 200 ms/);
    expect(log.text()).toMatch(/kafka stopped unexpectedly \(signal SIGKILL\); restarting it in 200 ms/);
    expect(stack.state).toBe("running");
    console.log(`Kafka and DynamoDB Local restarts (stack log):\n${log.text()}`);
  }, 180_000);

  it("gives up on a child that keeps crashing, with its log tail, and leaves the others running", async () => {
    const gaveUp: Array<{ name: string; exit: ExitInfo; tail: string }> = [];
    const { stack, dir, log } = newStack({
      restartDelayMs: 20,
      maxRestartsPerMinute: 3,
      onGiveUp: (name, exit, tail) => gaveUp.push({ name, exit, tail }),
    });
    const crashFile = join(dir, "crash-now");
    stack.addProcess(sleeper("steady"));
    stack.addProcess(sleeper("flaky", crashFile));
    await stack.start();
    const steady = pidOf(stack, "steady");
    await waitFor(() => readFileSync(join(dir, "logs", "flaky.log"), "utf8").includes("flaky: up"), {
      timeoutMs: 10_000,
      intervalMs: 20,
      description: "flaky's first run",
    });

    // From now on every run of flaky exits at once: the SIGKILL and 3 restarts are 4 crashes within the minute.
    writeFileSync(crashFile, "");
    process.kill(pidOf(stack, "flaky"), "SIGKILL");
    await waitFor(() => gaveUp.length > 0, { timeoutMs: 30_000, intervalMs: 20, description: "the give-up" });

    expect(gaveUp).toHaveLength(1);
    expect(gaveUp[0]!.name).toBe("flaky");
    expect(gaveUp[0]!.exit).toEqual({ code: 3, signal: null });
    expect(gaveUp[0]!.tail).toContain("flaky: crash file present, exiting");
    expect(log.text()).toMatch(
      /flaky stopped unexpectedly \(exit code 3\), the 4th time within a minute: not restarting/,
    );
    expect(log.text()).toContain("gives up after 4 crashes within 60 s");
    // The log keeps every run: the first one and each restart's.
    const flakyLog = readFileSync(join(dir, "logs", "flaky.log"), "utf8");
    expect(flakyLog).toContain("flaky: up");
    expect(flakyLog.match(/restarting flaky/g)).toHaveLength(3);
    expect(pidOf(stack, "steady")).toBe(steady);
    expect(processesMarkedWith(dir)).toEqual([steady]);
  }, 60_000);

  it("a stop during a restart's backoff starts nothing and leaves no process behind", async () => {
    const { stack, dir, log } = newStack({ restartDelayMs: 1_500 });
    stack.addProcess(sleeper("victim"));
    await stack.start();
    process.kill(pidOf(stack, "victim"), "SIGKILL");
    await waitFor(() => log.text().includes("victim stopped unexpectedly (signal SIGKILL); restarting it in 1500 ms"), {
      timeoutMs: 10_000,
      intervalMs: 10,
      description: "the crash report",
    });
    await stack.stop();
    expect(stack.state).toBe("stopped");
    expect(existsSync(join(dir, "devstack.pid"))).toBe(false);
    // Something that does not happen needs a window: past the backoff, no restart ran and nothing carries the marker.
    await sleep(2_500);
    expect(log.text()).not.toContain("victim restarted");
    expect(readFileSync(join(dir, "logs", "victim.log"), "utf8")).not.toContain("restarting victim");
    expect(processesMarkedWith(dir)).toEqual([]);
    expect(readLockInfo(join(dir, "devstack.pid"))).toBeUndefined();
  }, 30_000);
});

async function distinctFreePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await findFreePort());
  return [...ports];
}
