import type { AgentView, ModelStatus } from "@tern/core";
import { findFreePort, waitFor } from "@tern/devstack";
import { afterEach, describe, expect, it } from "vitest";
import { dynamodbEndpoint } from "../helpers/services.js";
import {
  applyManifest,
  getJson,
  type SchedulerProcess,
  startSchedulerProcess,
  TEST_LEASE_TTL_MS,
  waitActive,
} from "../scheduler/scheduler-process.js";
import {
  type AgentProcess,
  inferIris as infer,
  killAll,
  logLines,
  MLSERVER_WITH_IRIS as MANIFESTS,
  IRIS_ROWS as ROWS,
  startAgentProcess,
} from "./agent-process.js";

/**
 * The promise of docs/scheduler.md ("Nothing loaded is reloaded after a restart") with real processes: two agents
 * serve iris, the scheduler is SIGKILLed and a new one starts on the same table and port; the agents keep serving
 * throughout, register again with what they hold, and no model is loaded or unloaded anywhere.
 */

const suffix = `${Date.now().toString(36)}-${process.pid}`;
const schedulers: SchedulerProcess[] = [];
const agents: AgentProcess[] = [];

afterEach(() => killAll(agents, schedulers));

/** What an agent's log says it did to its models: one line per replica state change (`"msg":"model state"`). */
function modelStates(agent: AgentProcess): string[] {
  return logLines(agent.output())
    .filter((l) => l.msg === "model state")
    .map((l) => `${String(l.model)}@${String(l.version)} ${String(l.state)}`);
}

function countMsg(agent: AgentProcess, msg: string): number {
  return logLines(agent.output()).filter((l) => l.msg === msg).length;
}

interface Sample {
  agent: string;
  phase: "serving" | "outage" | "restarted";
  status: number | string;
  ok: boolean;
}

/**
 * Sends requests to every agent in turn until stopped, recording each outcome with the phase it was sent in. Requests
 * go to the agents directly: the data plane must not need the scheduler.
 */
function startTraffic(targets: readonly AgentProcess[], phase: () => Sample["phase"]) {
  const samples: Sample[] = [];
  let stopped = false;
  const loop = (async () => {
    for (let i = 0; !stopped; i++) {
      const agent = targets[i % targets.length]!;
      const row = ROWS[i % ROWS.length]!;
      const sentIn = phase();
      try {
        const r = await infer(agent.http, row.features);
        samples.push({
          agent: agent.name,
          phase: sentIn,
          status: r.status,
          ok: r.status === 200 && r.label === row.label,
        });
      } catch (err) {
        samples.push({ agent: agent.name, phase: sentIn, status: String(err), ok: false });
      }
      // Pacing, not a wait for a condition: keeps the two shared cores for the processes under test.
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return {
    samples,
    count: (p: Sample["phase"], agent: string) =>
      samples.filter((s) => s.phase === p && s.agent === agent && s.ok).length,
    async stop() {
      stopped = true;
      await loop;
    },
  };
}

/** Polls a model status until stopped and returns every answer, summarised (failed polls are skipped). */
function watchStatuses(get: () => Promise<ModelStatus | undefined>) {
  const seen: string[] = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const s = await get().catch(() => undefined);
      if (s !== undefined) {
        const where = s.placement.map((p) => `${p.server}/${p.replica} ${p.state}`).sort();
        seen.push(`${s.state} ${s.availableReplicas}/${s.replicas} ${where.join(", ")}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      return seen;
    },
  };
}

describe("agents across a scheduler restart (real processes, DynamoDB Local)", () => {
  it("keep serving while the scheduler is down, register again with what they hold, and nothing is reloaded", async () => {
    const table = `tern-agent-restart-it-${suffix}`;
    // Agents know one scheduler URL, so the replacement must come back on the same port.
    const port = await findFreePort();
    const schedulerEnv = { TERN_SCHEDULER_STREAM_HEARTBEAT_MS: "1000" };
    const first = await startSchedulerProcess({
      id: "first",
      table,
      port,
      dynamodbEndpoint: dynamodbEndpoint(),
      env: schedulerEnv,
    });
    schedulers.push(first);
    await waitActive(first.url);
    expect((await applyManifest(first.url, MANIFESTS)).status).toBe(200);

    // LOG_LEVEL debug: the client logs every assignments set it receives, which tells when the new scheduler's
    // first set has reached the agent (the moment a wrong reload would start).
    const agentEnv = { TERN_AGENT_STREAM_IDLE_TIMEOUT_MS: "3000", LOG_LEVEL: "debug" };
    for (const replica of [0, 1]) {
      agents.push(await startAgentProcess({ schedulerUrl: first.url, server: "mlserver", replica, env: agentEnv }));
    }
    const [a0, a1] = agents as [AgentProcess, AgentProcess];
    const iris = (url: string) => getJson<ModelStatus>(`${url}/v1/models/iris`);
    const before = await waitFor(
      async () => {
        const s = await iris(first.url);
        return s?.state === "ModelAvailable" && s.availableReplicas === 2 ? s : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 100, description: "iris available on both replicas" },
    );
    for (const a of agents)
      for (const r of ROWS) expect(await infer(a.http, r.features)).toEqual({ status: 200, label: r.label });
    // Each agent loaded iris exactly once and unloaded nothing; this is the baseline the restart must not change.
    for (const a of agents) expect(modelStates(a), a.output()).toEqual(["iris@1 Loading", "iris@1 Available"]);
    const registeredBefore = agents.map((a) => countMsg(a, "registered with the scheduler"));
    expect(registeredBefore).toEqual([1, 1]);

    let phase: Sample["phase"] = "serving";
    const traffic = startTraffic(agents, () => phase);
    let seen: ReturnType<typeof watchStatuses> | undefined;
    try {
      await waitFor(() => traffic.count("serving", a0.name) > 0 && traffic.count("serving", a1.name) > 0, {
        timeoutMs: 5_000,
        intervalMs: 20,
        description: "traffic flowing to both agents",
      });

      await first.kill("SIGKILL");
      phase = "outage";
      // Both agents have noticed the scheduler is gone (their assignments stream broke) …
      await waitFor(() => agents.every((a) => countMsg(a, "assignments stream closed: registering again") > 0), {
        timeoutMs: 10_000,
        intervalMs: 50,
        description: "both agents noticing the outage",
      });
      // … and still answer, with the right classes, while nothing listens on the scheduler's port.
      await waitFor(() => traffic.count("outage", a0.name) >= 5 && traffic.count("outage", a1.name) >= 5, {
        timeoutMs: 10_000,
        intervalMs: 20,
        description: "answers from both agents during the outage",
      });

      const second = await startSchedulerProcess({
        id: "second",
        table,
        port,
        dynamodbEndpoint: dynamodbEndpoint(),
        env: schedulerEnv,
      });
      schedulers.push(second);
      // What the new scheduler says about iris from the moment it listens (a standby reads the store): it must never
      // show anything but the model available on both replicas.
      seen = watchStatuses(() => iris(second.url));
      // The dead scheduler's lease must lapse before the new one may act.
      await waitActive(second.url, TEST_LEASE_TTL_MS + 10_000);
      const activeAt = Date.now();
      await waitFor(
        () => agents.every((a) => countMsg(a, "registered again with the scheduler (nothing reloaded)") > 0),
        {
          timeoutMs: 15_000,
          intervalMs: 50,
          description: "both agents registered again",
        },
      );
      phase = "restarted";
      // The new scheduler's first assignments set reached each agent (logged after the re-registration line).
      await waitFor(
        () =>
          agents.every((a) => {
            const lines = logLines(a.output());
            const again = lines.findIndex((l) => l.msg === "registered again with the scheduler (nothing reloaded)");
            return lines.slice(again + 1).some((l) => l.msg === "assignments" && String(l.models) === "iris:1");
          }),
        { timeoutMs: 10_000, intervalMs: 50, description: "the new scheduler's assignments at both agents" },
      );
      const after = await waitFor(
        async () => {
          const s = await iris(second.url);
          return s?.state === "ModelAvailable" && s.availableReplicas === 2 ? s : undefined;
        },
        { timeoutMs: 10_000, intervalMs: 100, description: "iris available on both replicas after the restart" },
      );
      await waitFor(() => traffic.count("restarted", a0.name) >= 3 && traffic.count("restarted", a1.name) >= 3, {
        timeoutMs: 5_000,
        intervalMs: 20,
        description: "answers from both agents after the restart",
      });
      await traffic.stop();

      // The same model, on the same two replicas, all Available.
      expect(after.placement).toEqual(before.placement);
      expect(after.placement.map((p) => `${p.server}/${p.replica} ${p.state}`).sort()).toEqual([
        "mlserver/0 Available",
        "mlserver/1 Available",
      ]);
      // Nothing was reloaded or unloaded: each agent's model history is still the single first load.
      for (const a of agents) expect(modelStates(a), a.output()).toEqual(["iris@1 Loading", "iris@1 Available"]);
      for (const a of agents) {
        const metrics = await (await fetch(`${a.http}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
        const changes = metrics.split("\n").filter((l) => l.startsWith("tern_agent_model_state_changes_total{"));
        expect(changes.sort()).toEqual([
          'tern_agent_model_state_changes_total{model="iris",state="Available"} 1',
          'tern_agent_model_state_changes_total{model="iris",state="Loading"} 1',
        ]);
      }
      // The agents are registered with the new scheduler: it knows their endpoints and gets their heartbeats.
      expect(agents.map((a) => countMsg(a, "registered with the scheduler"))).toEqual(registeredBefore);
      for (const [i, a] of agents.entries()) {
        const view = await waitFor(
          async () => {
            const v = await getJson<AgentView>(`${second.url}/v1/agents/mlserver/${i}`);
            return v !== undefined && v.lastHeartbeatAt > activeAt ? v : undefined;
          },
          { timeoutMs: 5_000, intervalMs: 100, description: `a heartbeat from ${a.name} at the new scheduler` },
        );
        expect(view.endpoints.http).toBe(a.http);
        expect(view.draining).toBe(false);
      }
      expect(second.output()).not.toMatch(/missed its heartbeat deadline/);
      const routes = await getJson<{ models: Record<string, unknown> }>(`${second.url}/v1/routes`);
      for (const a of agents) expect(JSON.stringify(routes?.models.iris)).toContain(a.http);
      const statuses = await seen.stop();
      expect(statuses.length).toBeGreaterThan(0);
      expect([...new Set(statuses)]).toEqual(["ModelAvailable 2/2 mlserver/0 Available, mlserver/1 Available"]);
      // Every request, before, during and after the outage, was answered 200 with the right class.
      const failed = traffic.samples.filter((s) => !s.ok);
      expect(failed).toEqual([]);
    } finally {
      await traffic.stop();
      await seen?.stop();
    }
  });
});
