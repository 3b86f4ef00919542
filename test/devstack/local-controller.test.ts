import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  createControlClient,
  createLocalController,
  isProcessAlive,
  type LocalController,
  waitFor,
} from "@tern/devstack";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serverManifest } from "../helpers/manifests.js";
import { dynamodbEndpoint } from "../helpers/services.js";
import {
  applyManifest,
  getJson,
  type SchedulerProcess,
  startSchedulerProcess,
  waitActive,
} from "../scheduler/scheduler-process.js";

const repoRoot = resolve(fileURLToPath(new URL(".", import.meta.url)), "../..");
const suffix = `${Date.now().toString(36)}-${process.pid}`;
const serverName = `lc-${suffix}`;

interface ServerView {
  state: string;
  replicas: number;
  replicaStatus: Array<{ replica: number }>;
}

const serverOf = (replicas: number): string => serverManifest(serverName, replicas);

// Two replicas of a small model, so the scale-down to 1 has something to drain off replica 1.
const modelManifest = `apiVersion: mlops.seldon.io/v1alpha1
kind: Model
metadata: {name: add10-${suffix}}
spec:
  storageUri: "file://./samples/models/add10"
  requirements: [onnx]
  memory: 10Ki
  replicas: 2
  server: ${serverName}
`;

let scheduler: SchedulerProcess;
let controller: LocalController;
/** The MLServer runtime's preparation as the controller sees it: called once, settled by the test. */
let prepareCalls = 0;
let finishPrepare: (env: Record<string, string>) => void = () => undefined;
const prepared = new Promise<Record<string, string>>((resolve) => {
  finishPrepare = resolve;
});
let logDir: string;
const messages: string[] = [];
const pidsSeen = new Set<number>();

async function apply(yaml: string): Promise<void> {
  const res = await applyManifest(scheduler.url, yaml);
  expect(res.status, await res.text()).toBe(200);
}

/** Replica indexes registered with the scheduler for the test Server (undefined once the Server is gone). */
async function registered(): Promise<number[] | undefined> {
  const view = await getJson<ServerView>(`${scheduler.url}/v1/servers/${serverName}`);
  return view?.replicaStatus.map((r) => r.replica).sort((a, b) => a - b);
}

/** Waits until the controller runs exactly `replicas` agents and each is registered with the scheduler. */
async function waitForAgents(replicas: number[], description: string): Promise<Map<number, number>> {
  return waitFor(
    async () => {
      const agents = controller.agents();
      for (const a of agents) if (a.pid !== undefined) pidsSeen.add(a.pid);
      const live = agents.filter((a) => a.state === "running" && a.pid !== undefined && isProcessAlive(a.pid));
      if (JSON.stringify(live.map((a) => a.replica)) !== JSON.stringify(replicas)) return false;
      if (agents.length !== replicas.length) return false;
      if (JSON.stringify(await registered()) !== JSON.stringify(replicas)) return false;
      return new Map(live.map((a) => [a.replica, a.pid!]));
    },
    { timeoutMs: 30_000, intervalMs: 100, description },
  ).catch((err: unknown) => {
    throw new Error(`${String(err)}\ncontroller log:\n${messages.join("\n")}`);
  });
}

beforeAll(async () => {
  logDir = mkdtempSync(join(tmpdir(), "tern-local-controller-"));
  scheduler = await startSchedulerProcess({
    id: `lc-${suffix}`,
    dynamodbEndpoint: dynamodbEndpoint(),
    table: `tern-lc-${suffix}`,
  });
  await waitActive(scheduler.url);
  controller = createLocalController({
    client: createControlClient({ url: scheduler.url }),
    schedulerUrl: scheduler.url,
    cwd: repoRoot,
    logDir,
    env: {
      ...process.env,
      TERN_AGENT_MEMORY: "64Mi",
      TERN_AGENT_DRAIN_TIMEOUT_MS: "8000",
      TERN_AGENT_RETRY_MAX_MS: "300",
      LOG_LEVEL: "info",
    },
    restartDelayMs: 200,
    stopGraceMs: 15_000,
    prepareRuntime: {
      mlserver: () => {
        prepareCalls++;
        return prepared;
      },
    },
    logger: { info: (m) => messages.push(m), warn: (m) => messages.push(m) },
  });
  controller.start();
  await controller.synced();
});

afterAll(async () => {
  await controller?.stop();
  await scheduler?.kill("SIGTERM");
  // No agent outlives the controller.
  for (const pid of pidsSeen) expect(isProcessAlive(pid), `agent pid ${pid} still alive`).toBe(false);
  if (logDir) rmSync(logDir, { recursive: true, force: true });
});

describe("the local controller against a scheduler process", () => {
  it("keeps one agent per Server replica through scale-up, a crash, scale-down and delete", async () => {
    await apply(serverOf(2));
    const two = await waitForAgents([0, 1], "2 agents registered");

    await apply(modelManifest);
    await waitFor(
      async () =>
        (await getJson<{ state: string }>(`${scheduler.url}/v1/models/add10-${suffix}`))?.state === "ModelAvailable",
      { timeoutMs: 20_000, intervalMs: 100, description: "the model available on replicas 0 and 1" },
    );

    // An agent that dies is started again under the same index.
    process.kill(two.get(0)!, "SIGKILL");
    const restarted = await waitFor(
      async () => {
        const agents = await waitForAgents([0, 1], "replica 0 restarted");
        return agents.get(0) !== two.get(0) ? agents : false;
      },
      { timeoutMs: 30_000, intervalMs: 100, description: "a new process for replica 0" },
    );
    expect(messages.join("\n")).toMatch(new RegExp(`agent ${serverName}/0 stopped unexpectedly \\(signal SIGKILL\\)`));

    await apply(serverOf(3));
    const three = await waitForAgents([0, 1, 2], "a third agent registered");
    expect(three.get(0)).toBe(restarted.get(0));
    expect(three.get(1)).toBe(two.get(1));

    // Scale-down: the two highest indexes drain and exit cleanly; replica 0 keeps running.
    await apply(serverOf(1));
    await waitForAgents([0], "replicas 1 and 2 gone");
    for (const replica of [1, 2]) {
      expect(isProcessAlive(three.get(replica)!)).toBe(false);
      expect(messages).toContain(`agent ${serverName}/${replica} stopped (exit code 0)`);
    }
    expect(messages.indexOf(`agent ${serverName}/2: stopping (SIGTERM; it drains its models first)`)).toBeLessThan(
      messages.indexOf(`agent ${serverName}/1: stopping (SIGTERM; it drains its models first)`),
    );
    // Replica 1 held a model replica: its agent waited for the scheduler to say it was drained.
    expect(readFileSync(join(logDir, `agent-${serverName}-1.log`), "utf8")).toContain('"msg":"drained');
    expect(controller.agents().map((a) => a.pid)).toEqual([three.get(0)]);

    // Delete: the model first (a Server goes once nothing is left on it), then the Server; no agent is left.
    await fetch(`${scheduler.url}/v1/models/add10-${suffix}`, { method: "DELETE" });
    await fetch(`${scheduler.url}/v1/servers/${serverName}`, { method: "DELETE" });
    await waitFor(
      async () =>
        controller.agents().length === 0 && (await registered()) === undefined && !isProcessAlive(three.get(0)!),
      { timeoutMs: 30_000, intervalMs: 100, description: "no agents after the delete" },
    );
  });

  it("holds a serverConfig mlserver Server's agents until MLServer is prepared, then starts them with the MLServer runtime", async () => {
    const ml = `lc-ml-${suffix}`;
    await apply(`apiVersion: mlops.seldon.io/v1alpha1
kind: Server
metadata: {name: ${ml}}
spec: {serverConfig: mlserver, replicas: 1}
`);
    await waitFor(() => prepareCalls === 1, {
      timeoutMs: 20_000,
      intervalMs: 50,
      description: "MLServer being prepared",
    });
    // While it is prepared nothing runs for that Server.
    expect(controller.agents().filter((a) => a.server === ml)).toEqual([]);

    // Prepared with a python that does not exist: the agent is started as an MLServer agent, with that python, and
    // fails at once saying so (a tern-onnx agent would register and serve).
    const python = join(logDir, "no-such-venv", "bin", "python");
    finishPrepare({ TERN_MLSERVER_PYTHON: python });
    await waitFor(() => messages.some((m) => m.startsWith(`agent ${ml}/0 stopped unexpectedly`)), {
      timeoutMs: 30_000,
      intervalMs: 100,
      description: `agent ${ml}/0 started and failed`,
    });
    const log = readFileSync(join(logDir, `agent-${ml}-0.log`), "utf8");
    expect(log).toContain(`MLServer is not installed: ${python} does not exist`);
    expect(prepareCalls).toBe(1);
    await fetch(`${scheduler.url}/v1/servers/${ml}`, { method: "DELETE" });
    await waitFor(() => controller.agents().every((a) => a.server !== ml), {
      timeoutMs: 30_000,
      intervalMs: 100,
      description: `no agents of ${ml} after its delete`,
    });
  });
});
