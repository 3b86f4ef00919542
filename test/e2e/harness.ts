import type { ModelStatus } from "@tern/core";
import { waitFor } from "@tern/devstack";
import { type AgentProcess, startAgentProcess } from "../agent/agent-process.js";
import { dynamodbEndpoint } from "../helpers/services.js";

export { irisManifest, serverManifest } from "../helpers/manifests.js";

import {
  applyManifest,
  getJson,
  type SchedulerProcess,
  startSchedulerProcess,
  waitActive,
} from "../scheduler/scheduler-process.js";
import { type GatewayProcess, startGatewayProcess } from "./gateway-process.js";

/**
 * An end-to-end stack of real processes: one scheduler on a unique table in DynamoDB Local, N agent processes of one
 * Server (started and stopped here: the test plays the local controller) and the Node gateway following the scheduler.
 * Independent of `npm start` (packages/devstack) on purpose.
 */
export interface E2eStack {
  /** Unique per stack; used in the table name and the scheduler id. */
  readonly id: string;
  readonly table: string;
  readonly dynamodbEndpoint: string;
  readonly server: string;
  readonly scheduler: SchedulerProcess;
  readonly gateway: GatewayProcess;
  /** Running agents by replica index. */
  readonly agents: Map<number, AgentProcess>;
  startAgent(replica: number): Promise<AgentProcess>;
  /** Sends the signal and waits (bounded) until the process has exited. */
  stopAgent(replica: number, signal: NodeJS.Signals): Promise<void>;
  /** `POST /v1/apply`; throws with the scheduler's answer unless 200. */
  apply(yaml: string): Promise<void>;
  modelStatus(name: string): Promise<ModelStatus | undefined>;
  /** Polls the model's status until `accept` holds. */
  waitModel(
    name: string,
    accept: (s: ModelStatus) => boolean,
    description: string,
    timeoutMs?: number,
  ): Promise<ModelStatus>;
  /** Everything the processes wrote, for failure messages. */
  logs(): string;
  /** Kills every process (SIGKILL) and checks that none is left running. Idempotent. */
  close(): Promise<void>;
}

export interface E2eStackOptions {
  /** Short label for names, e.g. "scaling". */
  name: string;
  /** @default "mlserver" */
  server?: string;
  /** Agents started at once, replicas 0..agents-1. */
  agents: number;
  gatewayEnv?: Record<string, string>;
  /** Added to every agent's environment (e.g. TERN_AGENT_SERVER_TYPE=mlserver and its python). */
  agentEnv?: Record<string, string>;
  /** Deadline for each agent's ready line (an MLServer-backed agent starts MLServer first). @default 30000 */
  agentStartTimeoutMs?: number;
  /** Added to the scheduler's environment (e.g. KAFKA_BROKERS for the Kafka path). */
  schedulerEnv?: Record<string, string>;
}

/**
 * Timings for tests: agents heartbeat every 500 ms and count as gone after 3 s of silence (long enough that a busy
 * 2-core machine does not drop a live agent); event streams see a keep-alive every second.
 */
const SCHEDULER_ENV = {
  TERN_AGENT_HEARTBEAT_INTERVAL_MS: "500",
  TERN_AGENT_HEARTBEAT_TIMEOUT_MS: "3000",
  TERN_SCHEDULER_STREAM_HEARTBEAT_MS: "1000",
  // Info, not warn: the spawn helper reads the port from the "control API listening" line.
  LOG_LEVEL: "info",
};
const AGENT_ENV = { TERN_AGENT_STREAM_IDLE_TIMEOUT_MS: "3000", TERN_AGENT_DRAIN_TIMEOUT_MS: "5000", LOG_LEVEL: "warn" };

let counter = 0;

export async function startE2eStack(options: E2eStackOptions): Promise<E2eStack> {
  const id = `${options.name}-${Date.now().toString(36)}-${process.pid}-${counter++}`;
  const table = `tern-e2e-${id}`;
  const endpoint = dynamodbEndpoint();
  const server = options.server ?? "mlserver";
  const agents = new Map<number, AgentProcess>();
  const retired: AgentProcess[] = [];
  let scheduler: SchedulerProcess | undefined;
  let gateway: GatewayProcess | undefined;
  let closed: Promise<void> | undefined;

  const close = () => {
    closed ??= (async () => {
      const all = [...agents.values(), ...retired];
      for (const a of all) a.kill("SIGKILL");
      gateway?.kill("SIGKILL");
      await Promise.all([...all.map((a) => a.exited), gateway?.exited, scheduler?.kill("SIGKILL")]);
      const pids = [...all.map((a) => a.child.pid), gateway?.child.pid, scheduler?.child.pid];
      const alive = pids.filter((pid): pid is number => pid !== undefined && isAlive(pid));
      if (alive.length > 0) throw new Error(`processes still running after teardown: ${alive.join(", ")}`);
    })();
    return closed;
  };

  const startAgent = async (replica: number) => {
    if (!scheduler) throw new Error("no scheduler");
    if (agents.has(replica)) throw new Error(`agent ${server}/${replica} is already running`);
    const agent = await startAgentProcess({
      schedulerUrl: scheduler.url,
      server,
      replica,
      env: { ...AGENT_ENV, ...options.agentEnv },
      ...(options.agentStartTimeoutMs === undefined ? {} : { timeoutMs: options.agentStartTimeoutMs }),
    });
    agents.set(replica, agent);
    return agent;
  };

  try {
    scheduler = await startSchedulerProcess({
      id,
      table,
      dynamodbEndpoint: endpoint,
      env: { ...SCHEDULER_ENV, ...options.schedulerEnv },
    });
    await waitActive(scheduler.url);
    const schedulerUrl = scheduler.url;
    // Agents and the gateway start side by side: each waits for its own ready line. allSettled, not all: on a
    // failure every start must have finished (and registered its process) before close() kills them.
    const started = await Promise.allSettled([
      startGatewayProcess({ schedulerUrl, env: { ...options.gatewayEnv } }).then((g) => {
        gateway = g;
      }),
      ...Array.from({ length: options.agents }, (_, replica) => startAgent(replica)),
    ]);
    const failed = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
    const running = gateway!;
    // The gateway answers ready once it holds a route table from the scheduler.
    await waitFor(
      async () => (await fetch(`${running.url}/v2/health/ready`, { signal: AbortSignal.timeout(2000) })).status === 200,
      { timeoutMs: 15_000, intervalMs: 100, description: "gateway ready (route table received)" },
    );
  } catch (err) {
    await close().catch(() => {});
    throw err;
  }
  const sched = scheduler;
  const gw = gateway!;

  const modelStatus = (name: string) => getJson<ModelStatus>(`${sched.url}/v1/models/${name}`);

  return {
    id,
    table,
    dynamodbEndpoint: endpoint,
    server,
    scheduler: sched,
    gateway: gw,
    agents,
    startAgent,
    async stopAgent(replica, signal) {
      const agent = agents.get(replica);
      if (!agent) throw new Error(`no agent ${server}/${replica}`);
      agents.delete(replica);
      retired.push(agent);
      agent.kill(signal);
      await waitFor(() => agent.hasExited(), {
        timeoutMs: 15_000,
        intervalMs: 50,
        description: `agent ${agent.name} exiting on ${signal}`,
      });
    },
    async apply(yaml) {
      const res = await applyManifest(sched.url, yaml);
      if (res.status !== 200) throw new Error(`apply failed: ${res.status} ${await res.text()}`);
    },
    modelStatus,
    waitModel(name, accept, description, timeoutMs = 30_000) {
      return waitFor(
        async () => {
          const s = await modelStatus(name);
          return s && accept(s) ? s : undefined;
        },
        { timeoutMs, intervalMs: 100, description },
      );
    },
    logs() {
      const parts = [`--- scheduler\n${sched.output()}`, `--- gateway\n${gw.output()}`];
      for (const a of [...agents.values(), ...retired]) parts.push(`--- agent ${a.name}\n${a.output()}`);
      return parts.join("\n");
    },
    close,
  };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
