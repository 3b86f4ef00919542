/**
 * The local controller's decision: which agent processes to start and which to stop so that every Server runs exactly
 * `replicas` agents, replica indexes 0..n-1. A pure function of what the scheduler wants and what runs, so every case
 * (scale up, scale down, delete, a crashed agent) is a unit test.
 */

import { type AgentRuntime, agentRuntime, type DesiredServer } from "@tern/control";

// The Server view and the runtime rule are shared with the ECS controller (@tern/control).
export { type AgentRuntime, agentRuntime, type DesiredServer };

/**
 * What the controller knows of one agent slot:
 * - `running`: the process is up (or starting);
 * - `stopping`: it was sent SIGTERM and is draining; its index is taken until it exits;
 * - `backoff`: it died unexpectedly and waits for its restart delay;
 * - `failed`: it died too often; not restarted while its Server still wants it;
 * - `exited`: it died and its restart delay is over (or it never got one).
 */
export type AgentSlotState = "running" | "stopping" | "backoff" | "failed" | "exited";

export interface RunningAgent {
  server: string;
  replica: number;
  state: AgentSlotState;
}

/** An agent to start: its slot, the runtime it runs and what it must offer. */
export interface AgentLaunch {
  server: string;
  replica: number;
  serverConfig: string;
  runtime: AgentRuntime;
  capabilities: string[];
}

export interface AgentPlan {
  /** Ascending by server, then replica index. */
  start: AgentLaunch[];
  /**
   * Slots to end, per server highest replica index first (scale-down removes the top of the range). A slot in
   * `running` gets SIGTERM; one without a process (`backoff`, `failed`, `exited`) is just forgotten.
   */
  stop: Array<{ server: string; replica: number }>;
  /**
   * Agents that would be started but whose runtime is not ready yet (MLServer still installing, or unavailable): they
   * start on a later plan, once `runtimeReady` says yes. Same order as `start`.
   */
  waiting: AgentLaunch[];
}

/**
 * Plans the agent processes: for every desired Server, indexes 0..replicas-1 must each have a live process; anything
 * else must go.
 *
 * - A wanted index with no slot, or an `exited` one, is started (a restart, when it had died).
 * - A wanted index that is `running`, `stopping` (its old process still drains: it is started again once it exited),
 *   `backoff` or `failed` is left alone.
 * - An index at or above `replicas`, or any slot of a Server no longer listed (deleted), is stopped unless it already is.
 * - A Server with no capabilities (an unknown `serverConfig` the scheduler reports as failed) gets no agents: nothing
 *   could be placed on them.
 * - An agent whose runtime is not ready (`runtimeReady` false: MLServer not installed yet) goes to `waiting`, not
 *   `start`; stopping is never held back.
 */
export function planAgents(
  desired: readonly DesiredServer[],
  running: readonly RunningAgent[],
  runtimeReady: (runtime: AgentRuntime) => boolean = () => true,
): AgentPlan {
  const wanted = new Map<string, DesiredServer>();
  for (const server of desired) {
    if (server.capabilities.length === 0) continue;
    wanted.set(server.server, server);
  }
  const slots = new Map<string, RunningAgent>();
  for (const agent of running) slots.set(slotKey(agent.server, agent.replica), agent);

  const start: AgentLaunch[] = [];
  const waiting: AgentLaunch[] = [];
  for (const server of [...wanted.values()].sort((a, b) => compare(a.server, b.server))) {
    for (let replica = 0; replica < server.replicas; replica++) {
      const slot = slots.get(slotKey(server.server, replica));
      if (slot !== undefined && slot.state !== "exited") continue;
      const runtime = agentRuntime(server.serverConfig);
      (runtimeReady(runtime) ? start : waiting).push({
        server: server.server,
        replica,
        serverConfig: server.serverConfig,
        runtime,
        capabilities: [...server.capabilities],
      });
    }
  }

  const stop = running
    .filter((agent) => {
      if (agent.state === "stopping") return false;
      const server = wanted.get(agent.server);
      return server === undefined || agent.replica >= server.replicas;
    })
    .sort((a, b) => compare(a.server, b.server) || b.replica - a.replica)
    .map(({ server, replica }) => ({ server, replica }));

  return { start, stop, waiting };
}

export function slotKey(server: string, replica: number): string {
  return `${server}/${replica}`;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
