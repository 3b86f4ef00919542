import type { ModelStatus } from "@tern/core";
import { waitFor } from "@tern/devstack";
import { afterEach, describe, expect, it } from "vitest";
import { dynamodbEndpoint } from "../helpers/services.js";
import {
  applyManifest,
  getJson,
  type SchedulerProcess,
  startSchedulerProcess,
  waitActive,
} from "../scheduler/scheduler-process.js";
import {
  type AgentProcess,
  inferIris as infer,
  killAll,
  MLSERVER_WITH_IRIS as MANIFESTS,
  IRIS_ROWS as ROWS,
  startAgentProcess,
} from "./agent-process.js";

const suffix = `${Date.now().toString(36)}-${process.pid}`;
const schedulers: SchedulerProcess[] = [];
const agents: AgentProcess[] = [];

afterEach(() => killAll(agents, schedulers));

async function classify(agentHttp: string, features: number[]): Promise<number> {
  const { status, label } = await infer(agentHttp, features);
  if (status !== 200) throw new Error(`agent ${agentHttp} answered ${status}`);
  return label!;
}

describe("agent processes with a scheduler process on DynamoDB Local", () => {
  it("two agents serve iris; SIGTERM drains one, which deregisters and exits 0 while iris keeps serving", async () => {
    const scheduler = await startSchedulerProcess({
      id: "agents-it",
      table: `tern-agent-it-${suffix}`,
      dynamodbEndpoint: dynamodbEndpoint(),
      // The agents' assignments streams see a keep-alive every second (they give up after 3 s of silence).
      env: { TERN_SCHEDULER_STREAM_HEARTBEAT_MS: "1000" },
    });
    schedulers.push(scheduler);
    await waitActive(scheduler.url);
    expect((await applyManifest(scheduler.url, MANIFESTS)).status).toBe(200);

    const agentEnv = { TERN_AGENT_DRAIN_TIMEOUT_MS: "15000", TERN_AGENT_STREAM_IDLE_TIMEOUT_MS: "3000" };
    for (const replica of [0, 1]) {
      agents.push(await startAgentProcess({ schedulerUrl: scheduler.url, server: "mlserver", replica, env: agentEnv }));
    }
    const iris = () => getJson<ModelStatus>(`${scheduler.url}/v1/models/iris`);
    const both = await waitFor(
      async () => {
        const s = await iris();
        return s?.state === "ModelAvailable" && s.availableReplicas === 2 ? s : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 100, description: "iris available on both replicas" },
    );
    expect(both.placement.map((p) => p.replica).sort()).toEqual([0, 1]);
    for (const a of agents) for (const r of ROWS) expect(await classify(a.http, r.features)).toBe(r.label);

    const [stays, leaves] = agents as [AgentProcess, AgentProcess];
    leaves.kill("SIGTERM");
    const code = await waitFor(async () => (leaves.hasExited() ? await leaves.exited : undefined), {
      timeoutMs: 20_000,
      intervalMs: 100,
      description: "the drained agent exiting",
    });
    expect(code, leaves.output()).toBe(0);
    expect(leaves.output()).toMatch(/"msg":"drained"/);
    expect(leaves.output()).toMatch(/deregistered from the scheduler/);

    // DESIGN §2: 2 replicas wanted on a server that now has 1 → ScheduleFailed with a reason, while the replica
    // that holds the model keeps serving.
    const after = await waitFor(
      async () => {
        const s = await iris();
        return s?.state === "ScheduleFailed" && s.availableReplicas === 1 ? s : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 100, description: "iris ScheduleFailed with one available replica" },
    );
    expect(after.reason).toMatch(/2/);
    expect(after.placement).toEqual([{ server: "mlserver", replica: 0, state: "Available" }]);
    const gone = await fetch(`${scheduler.url}/v1/agents/mlserver/1`, { signal: AbortSignal.timeout(5000) });
    expect(gone.status).toBe(404);
    for (const r of ROWS) expect(await classify(stays.http, r.features)).toBe(r.label);
    const routes = await getJson<{ models: Record<string, unknown> }>(`${scheduler.url}/v1/routes`);
    expect(JSON.stringify(routes?.models.iris)).not.toContain(leaves.http);
    expect(JSON.stringify(routes?.models.iris)).toContain(stays.http);
  });
});
