import { findFreePort, isProcessAlive, waitFor } from "@tern/devstack";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDynamoDbStore } from "../../packages/scheduler/src/store/dynamodb-store.js";
import { jsonLines, type PlatformProcess, startPlatformProcess } from "../helpers/platform-process.js";
import { dynamodbEndpoint, kafkaBrokers } from "../helpers/services.js";
import { getJson, waitActive } from "../scheduler/scheduler-process.js";

// The long-lived container's entry, started with the Dockerfile's command (`node --import tsx
// packages/control/src/main.ts`) against the test broker and DynamoDB Local. The ECS controller is off
// (TERN_CONTROLLER=none): test/control/ecs-controller.test.ts covers it against moto.

const suffix = `${Date.now().toString(36)}-${process.pid}`;
const table = `tern-control-${suffix}`;
const schedulerId = `control-${suffix}`;

interface WorkerView {
  state?: string;
}

describe("the control container's entry", () => {
  let entry: PlatformProcess<true> | undefined;
  let schedulerUrl: string;
  const store = createDynamoDbStore({ region: "us-east-1", table, endpoint: dynamodbEndpoint() });

  /** The pids the entry logged for a child, oldest first. */
  const pidsOf = (child: string): number[] =>
    jsonLines(entry?.output() ?? "")
      .filter((l) => l.msg === "child started" && l.child === child && typeof l.pid === "number")
      .map((l) => l.pid as number);
  const workerReady = async (id: string) =>
    (await getJson<WorkerView>(`${schedulerUrl}/v1/workers/dataflow/${id}`))?.state === "Ready";

  beforeAll(async () => {
    const port = await findFreePort();
    schedulerUrl = `http://127.0.0.1:${port}`;
    entry = await startPlatformProcess({
      script: "packages/control/src/main.ts",
      name: "tern control",
      env: {
        TERN_CONTROLLER: "none",
        KAFKA_BROKERS: kafkaBrokers().join(","),
        DYNAMODB_ENDPOINT: dynamodbEndpoint(),
        AWS_REGION: "us-east-1",
        TERN_TABLE: table,
        TERN_SCHEDULER_ENSURE_TABLE: "true",
        TERN_SCHEDULER_HOST: "127.0.0.1",
        TERN_SCHEDULER_PORT: String(port),
        TERN_SCHEDULER_URL: schedulerUrl,
        TERN_SCHEDULER_ID: schedulerId,
        TERN_SCHEDULER_LEASE_TTL_MS: "3000",
        TERN_SCHEDULER_LEASE_POLL_MS: "200",
        TERN_NAMESPACE: `ctl${Date.now().toString(36)}`,
        TERN_CONTROL_RESTART_DELAY_MS: "200",
        TERN_CONTROL_DRAIN_MS: "15000",
        LOG_LEVEL: "info",
        AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
      },
      ready: (out) => (out.includes("tern control running (scheduler, 2 dataflow workers)") ? true : undefined),
      timeoutMs: 60_000,
    });
  });

  afterAll(async () => {
    // Only if the test failed half-way: nothing it started may outlive it.
    if (entry !== undefined && !entry.hasExited()) {
      entry.kill("SIGKILL");
      await entry.exited;
    }
    for (const child of ["scheduler", "dataflow-0", "dataflow-1"]) {
      for (const pid of pidsOf(child)) if (isProcessAlive(pid)) process.kill(-pid, "SIGKILL");
    }
    await store.close();
  });

  it("runs the scheduler and two workers, restarts a killed worker, and on SIGTERM stops all and releases the lease", async () => {
    const output = () => entry?.output().slice(-4000) ?? "";
    await waitActive(schedulerUrl, 60_000);
    for (const id of ["dataflow-0", "dataflow-1"]) {
      await waitFor(() => workerReady(id), {
        timeoutMs: 60_000,
        intervalMs: 200,
        description: `${id} registered`,
      });
    }
    expect((await store.readLease("scheduler"))?.holder).toBe(schedulerId);

    // SIGKILL one worker: the entry restarts it, and it registers again (its "running" line comes a second time).
    const [killed] = pidsOf("dataflow-1");
    expect(killed).toBeGreaterThan(0);
    process.kill(killed!, "SIGKILL");
    const restarted = await waitFor(() => pidsOf("dataflow-1").find((pid) => pid !== killed), {
      timeoutMs: 30_000,
      intervalMs: 100,
      description: `dataflow-1 restarted\n${output()}`,
    });
    expect(isProcessAlive(killed!)).toBe(false);
    await waitFor(() => (entry?.output().split("tern dataflow dataflow-1 running").length ?? 0) - 1 >= 2, {
      timeoutMs: 60_000,
      intervalMs: 200,
      description: `dataflow-1 running again (pid ${restarted})\n${output()}`,
    });
    expect(await workerReady("dataflow-1")).toBe(true);
    // The other worker and the scheduler were left alone.
    expect(pidsOf("dataflow-0")).toHaveLength(1);
    expect(pidsOf("scheduler")).toHaveLength(1);

    // SIGTERM: everything drains and exits, and the scheduler gave its lease back.
    const children = ["scheduler", "dataflow-0", "dataflow-1"].map((c) => pidsOf(c).at(-1)!);
    entry!.kill("SIGTERM");
    const code = await Promise.race([
      entry!.exited,
      new Promise<string>((resolve) => setTimeout(() => resolve("still running"), 60_000).unref()),
    ]);
    expect(code, output()).toBe(0);
    for (const pid of children) expect(isProcessAlive(pid)).toBe(false);
    expect(await store.readLease("scheduler")).toBeUndefined();
    const logged = jsonLines(entry!.output()).filter((l) => l.component === "control" && l.msg === "child stopped");
    expect(logged.map((l) => l.child).sort()).toEqual(["dataflow-0", "dataflow-1", "scheduler"]);
  });
});

// On AWS two containers run workers side by side (the old and new control task during a deploy, the extra dataflow
// tasks): TERN_CONTROL_WORKER_IDS=auto makes each worker claim its id, and TERN_CONTROL_SCHEDULER=false runs workers only.
describe("two control containers with claimed worker ids, one without a scheduler", () => {
  const entries: PlatformProcess<true>[] = [];
  const table2 = `tern-control2-${suffix}`;
  let url: string;

  const envOf = (port: number, extra: Record<string, string>) => ({
    TERN_CONTROLLER: "none",
    KAFKA_BROKERS: kafkaBrokers().join(","),
    DYNAMODB_ENDPOINT: dynamodbEndpoint(),
    AWS_REGION: "us-east-1",
    TERN_TABLE: table2,
    TERN_SCHEDULER_ENSURE_TABLE: "true",
    TERN_SCHEDULER_HOST: "127.0.0.1",
    TERN_SCHEDULER_PORT: String(port),
    TERN_SCHEDULER_URL: url,
    TERN_NAMESPACE: `ct2${Date.now().toString(36)}`,
    TERN_DATAFLOW_WORKERS: "1",
    TERN_CONTROL_WORKER_IDS: "auto",
    TERN_CONTROL_DRAIN_MS: "15000",
    LOG_LEVEL: "info",
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
    ...extra,
  });

  afterAll(async () => {
    for (const e of entries) {
      if (!e.hasExited()) {
        e.kill("SIGKILL");
        await e.exited;
      }
      for (const l of jsonLines(e.output())) {
        if (l.msg === "child started" && typeof l.pid === "number" && isProcessAlive(l.pid))
          process.kill(-l.pid, "SIGKILL");
      }
    }
  });

  it("gives their workers different ids, and the workers-only one starts no scheduler", async () => {
    const port = await findFreePort();
    url = `http://127.0.0.1:${port}`;
    const start = (name: string, extra: Record<string, string>, ready: string) =>
      startPlatformProcess({
        script: "packages/control/src/main.ts",
        name,
        env: envOf(port, extra),
        ready: (out) => (out.includes(ready) ? true : undefined),
        timeoutMs: 60_000,
      }).then((e) => {
        entries.push(e);
        return e;
      });
    const full = await start("tern control (full)", {}, "tern control running (scheduler, 1 dataflow workers)");
    await waitActive(url, 60_000);
    const workersOnly = await start(
      "tern control (workers only)",
      { TERN_CONTROL_SCHEDULER: "false" },
      "tern control running (1 dataflow workers)",
    );
    const ready = async (id: string) =>
      (await getJson<WorkerView>(`${url}/v1/workers/dataflow/${id}`))?.state === "Ready";
    for (const id of ["dataflow-0", "dataflow-1"]) {
      await waitFor(() => ready(id), { timeoutMs: 60_000, intervalMs: 200, description: `${id} registered` });
    }
    const runningLine = /tern dataflow (dataflow-\d+) running/;
    const idOf = (e: PlatformProcess<true>) => runningLine.exec(e.output())?.[1];
    await waitFor(() => idOf(full) !== undefined && idOf(workersOnly) !== undefined, {
      timeoutMs: 30_000,
      intervalMs: 100,
      description: "both workers' running lines",
    });
    expect([idOf(full), idOf(workersOnly)].sort()).toEqual(["dataflow-0", "dataflow-1"]);
    const started = (e: PlatformProcess<true>) =>
      jsonLines(e.output())
        .filter((l) => l.msg === "child started")
        .map((l) => l.child);
    expect(started(workersOnly)).toEqual(["dataflow-0"]);
    expect(started(full).sort()).toEqual(["dataflow-0", "scheduler"]);

    for (const e of [workersOnly, full]) {
      e.kill("SIGTERM");
      expect(await e.exited, e.output().slice(-2000)).toBe(0);
    }
  });
});
