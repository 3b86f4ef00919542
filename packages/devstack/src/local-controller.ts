import { isAbsolute, join, relative } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  type AgentRuntime,
  type ControlClient,
  createRestartPolicy,
  createServerFollower,
  createSupervisor,
  type DesiredServer,
  type ExitInfo,
  type RestartPolicy,
  readLogTail,
  type SupervisedProcess,
} from "@tern/control";
import { type AgentLaunch, planAgents, slotKey } from "./agent-plan.js";
import type { DevStackLogger } from "./dev-stack.js";
import { errorText } from "./wait-for.js";

export { type AgentPlan, type DesiredServer, planAgents, type RunningAgent } from "./agent-plan.js";

/**
 * The local controller: the dev stack's stand-in for the AWS controller that maps `Server.spec.replicas` to an ECS
 * desired count. It follows the scheduler's Servers and keeps one agent process per wanted replica index.
 *
 * It follows the Servers as the ECS controller does (`createServerFollower` in @tern/control: list, watch, re-list).
 *
 * Each agent runs the runtime of its Server's `serverConfig` (`agentRuntime`: MLServer for `mlserver`, the built-in
 * ONNX Runtime otherwise) and advertises the Server's effective capabilities, the same list the scheduler places
 * against. A runtime that needs preparing first (MLServer's venv, `prepareRuntime`) is prepared once, when its first
 * agent is wanted; its agents wait meanwhile while the others start, and if it cannot be prepared they are not started,
 * with one log line naming the reason. A Server the scheduler reports without capabilities (an unknown `serverConfig`)
 * gets no agents, with one log line saying why.
 */

export interface LocalControllerOptions {
  client: ControlClient;
  /** Told to every agent (TERN_SCHEDULER_URL). */
  schedulerUrl: string;
  /** Working directory of the agents: the repo root, so `file://./samples/...` resolves. */
  cwd: string;
  /** Agent logs go to `<logDir>/agent-<server>-<replica>.log`. */
  logDir: string;
  /** Base environment of every agent. @default process.env */
  env?: NodeJS.ProcessEnv;
  /** @default process.execPath */
  command?: string;
  /** @default ["--import", "tsx", "packages/agent/src/main.ts"] */
  args?: readonly string[];
  /**
   * Scale-down and delete: how long a SIGTERMed agent may drain before SIGKILL. Keep it above the agent's own bound
   * (TERN_AGENT_DRAIN_TIMEOUT_MS + ~3.5 s).
   * @default 20000
   */
  stopGraceMs?: number;
  /**
   * Whole-stack stop: agents get SIGTERM (deregister; an agent holding nothing exits at once), and those still
   * draining after this long get a second SIGTERM, which makes an agent exit at once: with every replica going there
   * is nowhere to drain to.
   * @default 1500
   */
  shutdownDrainMs?: number;
  /** First restart delay of a crashed agent; doubles per crash within a minute. @default 1000 */
  restartDelayMs?: number;
  /** @default 30000 */
  restartDelayMaxMs?: number;
  /** Crashes per minute after which an agent is no longer restarted (logged). @default 5 */
  maxRestartsPerMinute?: number;
  /** Full re-list interval, besides the watch. @default 10000 */
  resyncMs?: number;
  /** Cap of the reconnect backoff of the watch (and of listing while it is down). @default 2000 */
  retryMaxMs?: number;
  /** A watch stream silent this long is reopened (the scheduler sends a heartbeat every 15 s). @default 45000 */
  watchIdleTimeoutMs?: number;
  logger: DevStackLogger;
  /**
   * Runtimes that must be prepared before their agents start (the dev stack: MLServer's venv). Called at most once per
   * runtime, when its first agent is wanted; resolves with variables its agents need (e.g. `TERN_MLSERVER_PYTHON`), or
   * rejects with a one-line reason: that runtime's agents are then not started. A runtime not listed starts at once.
   */
  prepareRuntime?: Partial<Record<AgentRuntime, () => Promise<Record<string, string>>>>;
  /** Called with the pids of the live agents whenever they change (the dev stack records them in its pid file). */
  onChildrenChanged?: (pids: number[]) => void;
}

/** One agent slot as `agents()` reports it. */
export interface LocalAgentInfo {
  server: string;
  replica: number;
  state: "running" | "stopping" | "backoff" | "failed";
  pid?: number;
  logFile: string;
  /** Unexpected exits so far. */
  crashes: number;
}

export interface LocalController {
  /** Starts following the scheduler. */
  start(): void;
  /** Resolves after the first successful list of the Servers has been acted on. */
  synced(): Promise<void>;
  agents(): LocalAgentInfo[];
  /** Stops following and stops every agent (bounded); safe to call more than once. */
  stop(): Promise<void>;
}

interface Slot {
  server: string;
  replica: number;
  state: "running" | "stopping" | "backoff" | "failed" | "exited";
  launch: AgentLaunch;
  proc?: SupervisedProcess;
  /** Unexpected exits and the backoff/give-up rule; kept when the slot's index is started again. */
  restarts: RestartPolicy;
  crashes: number;
  timer?: NodeJS.Timeout;
  logFile: string;
}

export function createLocalController(options: LocalControllerOptions): LocalController {
  const { client, logger } = options;
  const stopGraceMs = options.stopGraceMs ?? 20_000;
  const shutdownDrainMs = options.shutdownDrainMs ?? 1500;
  const restartDelayMs = options.restartDelayMs ?? 1000;
  const restartDelayMaxMs = options.restartDelayMaxMs ?? 30_000;
  const maxRestartsPerMinute = options.maxRestartsPerMinute ?? 5;
  const command = options.command ?? process.execPath;
  const args = options.args ?? ["--import", "tsx", "packages/agent/src/main.ts"];

  const slots = new Map<string, Slot>();
  /** Runtimes being prepared, prepared (with their agents' variables) or failed (with the reason). */
  const runtimes = new Map<
    AgentRuntime,
    { state: "preparing" } | { state: "ready"; env: Record<string, string> } | { state: "failed"; reason: string }
  >();
  let desired: DesiredServer[] | undefined;
  let stopped = false;
  let stopping: Promise<void> | undefined;
  // Said once per distinct situation, so a scheduler restart or an odd Server does not flood the console.
  const said = new Set<string>();
  const sayOnce = (key: string, message: string): void => {
    if (said.has(key)) return;
    said.add(key);
    logger.warn(message);
  };

  const supervisor = createSupervisor({
    onUnexpectedExit(child, exit) {
      for (const slot of slots.values()) {
        if (slot.proc === child) onCrash(slot, exit);
      }
      childrenChanged();
    },
  });

  function childrenChanged(): void {
    options.onChildrenChanged?.(
      [...slots.values()].flatMap((s) => (s.proc !== undefined && !s.proc.hasExited ? [s.proc.pid] : [])),
    );
  }

  function onCrash(slot: Slot, exit: ExitInfo): void {
    if (stopped || slot.state !== "running") return;
    const now = Date.now();
    slot.crashes++;
    const decision = slot.restarts.crashed(now);
    const how = exit.signal === null ? `exit code ${exit.code}` : `signal ${exit.signal}`;
    const tail = readLogTail(slot.logFile, 8);
    const name = slotKey(slot.server, slot.replica);
    slot.proc = undefined;
    if (decision.action === "give-up") {
      slot.state = "failed";
      logger.warn(
        `agent ${name} stopped unexpectedly (${how}) ${decision.crashesInWindow} times within a minute: not restarting it (log ${shortPath(slot.logFile, options.cwd)})${tail ? `\n${tail}` : ""}`,
      );
      return;
    }
    const delay = decision.delayMs;
    slot.state = "backoff";
    logger.warn(
      `agent ${name} stopped unexpectedly (${how}); restarting in ${delay} ms (log ${shortPath(slot.logFile, options.cwd)})${tail ? `\n${tail}` : ""}`,
    );
    slot.timer = setTimeout(() => {
      slot.timer = undefined;
      if (slot.state === "backoff") slot.state = "exited";
      reconcile();
    }, delay);
  }

  async function startAgent(launch: AgentLaunch): Promise<void> {
    const key = slotKey(launch.server, launch.replica);
    const previous = slots.get(key);
    const slot: Slot = {
      server: launch.server,
      replica: launch.replica,
      state: "running",
      launch,
      restarts:
        previous?.restarts ??
        createRestartPolicy({
          initialDelayMs: restartDelayMs,
          maxDelayMs: restartDelayMaxMs,
          maxRestarts: maxRestartsPerMinute,
        }),
      crashes: previous?.crashes ?? 0,
      logFile: join(options.logDir, `agent-${launch.server}-${launch.replica}.log`),
    };
    const shownLog = shortPath(slot.logFile, options.cwd);
    slots.set(key, slot);
    if (launch.serverConfig !== launch.runtime) {
      sayOnce(
        `type:${launch.server}:${launch.serverConfig}`,
        `server ${launch.server} has serverConfig ${launch.serverConfig}: its agents run the ${launch.runtime} runtime and offer the Server's capabilities (${launch.capabilities.join(", ")}); models needing another runtime will fail to load`,
      );
    }
    const prepared = runtimes.get(launch.runtime);
    try {
      slot.proc = await supervisor.spawn({
        name: `agent ${key}`,
        command,
        args,
        cwd: options.cwd,
        env: {
          ...(options.env ?? process.env),
          TERN_SCHEDULER_URL: options.schedulerUrl,
          TERN_AGENT_SERVER: launch.server,
          TERN_AGENT_REPLICA: String(launch.replica),
          ...(prepared?.state === "ready" ? prepared.env : {}),
          TERN_AGENT_SERVER_TYPE: launch.runtime,
          TERN_AGENT_CAPABILITIES: launch.capabilities.join(","),
          TERN_AGENT_HTTP_PORT: "0",
          TERN_AGENT_GRPC_PORT: "0",
        },
        logFile: slot.logFile,
      });
      logger.info(
        `agent ${key} started (pid ${slot.proc.pid}${slot.crashes > 0 ? `, restart ${slot.crashes}` : ""}, log ${shownLog})`,
      );
      childrenChanged();
    } catch (err) {
      if (stopped) return;
      // A spawn failure (node missing?) is treated like a crash: backoff, bounded restarts.
      logger.warn(`agent ${key} could not start: ${errorText(err)}`);
      onCrash(slot, { code: null, signal: null });
    }
  }

  async function stopAgent(slot: Slot): Promise<void> {
    const key = slotKey(slot.server, slot.replica);
    clearTimeout(slot.timer);
    const proc = slot.proc;
    if (proc === undefined || proc.hasExited) {
      if (slots.get(key) === slot) slots.delete(key);
      return;
    }
    slot.state = "stopping";
    logger.info(`agent ${key}: stopping (SIGTERM; it drains its models first)`);
    try {
      await proc.stop(stopGraceMs);
      const exit = await proc.exited;
      const how = exit.signal === null ? `exit code ${exit.code}` : `signal ${exit.signal}`;
      logger.info(`agent ${key} stopped (${how})`);
    } catch (err) {
      logger.warn(`agent ${key}: ${errorText(err)}`);
    } finally {
      if (slots.get(key) === slot) slots.delete(key);
      childrenChanged();
      reconcile();
    }
  }

  /** Acts on the last known Servers; synchronous decision, the process work runs in the background. */
  function reconcile(): void {
    if (stopped || desired === undefined) return;
    for (const server of desired) {
      if (server.capabilities.length === 0 && server.replicas > 0) {
        sayOnce(
          `refused:${server.server}:${server.serverConfig}`,
          `server ${server.server}: not starting agents, it offers no capabilities (serverConfig ${server.serverConfig} is unknown; set spec.capabilities or use tern-onnx)`,
        );
      }
    }
    const running = [...slots.values()].map(({ server, replica, state }) => ({ server, replica, state }));
    const plan = planAgents(desired, running, (runtime) => {
      return options.prepareRuntime?.[runtime] === undefined || runtimes.get(runtime)?.state === "ready";
    });
    for (const { server, replica } of plan.stop) {
      const slot = slots.get(slotKey(server, replica));
      if (slot !== undefined) void stopAgent(slot);
    }
    for (const launch of plan.start) void startAgent(launch);
    for (const launch of plan.waiting) {
      const prepared = runtimes.get(launch.runtime);
      if (prepared === undefined) prepare(launch.runtime);
      else if (prepared.state === "failed") {
        const count = plan.waiting.filter((w) => w.server === launch.server).length;
        sayOnce(
          `unprepared:${launch.server}:${launch.runtime}`,
          `server ${launch.server}: not starting its ${count} agent(s): ${prepared.reason}`,
        );
      }
    }
  }

  /** Prepares a runtime once; its waiting agents start on the reconcile that follows. */
  function prepare(runtime: AgentRuntime): void {
    const preparer = options.prepareRuntime?.[runtime];
    if (preparer === undefined) return;
    runtimes.set(runtime, { state: "preparing" });
    preparer().then(
      (env) => {
        runtimes.set(runtime, { state: "ready", env });
        reconcile();
      },
      (err: unknown) => {
        runtimes.set(runtime, { state: "failed", reason: errorText(err) });
        reconcile();
      },
    );
  }

  const follower = createServerFollower({
    client,
    name: "local controller",
    warn: (message) => logger.warn(message),
    onServers(servers) {
      if (stopped) return;
      desired = servers;
      reconcile();
    },
    ...(options.resyncMs === undefined ? {} : { resyncMs: options.resyncMs }),
    ...(options.retryMaxMs === undefined ? {} : { retryMaxMs: options.retryMaxMs }),
    ...(options.watchIdleTimeoutMs === undefined ? {} : { watchIdleTimeoutMs: options.watchIdleTimeoutMs }),
  });

  return {
    start() {
      if (stopped) return;
      follower.start();
    },
    synced: () => follower.synced(),
    agents() {
      return [...slots.values()]
        .filter((s): s is Slot & { state: LocalAgentInfo["state"] } => s.state !== "exited")
        .sort((a, b) => (a.server === b.server ? a.replica - b.replica : a.server < b.server ? -1 : 1))
        .map((s) => ({
          server: s.server,
          replica: s.replica,
          state: s.state,
          ...(s.proc !== undefined && !s.proc.hasExited ? { pid: s.proc.pid } : {}),
          logFile: s.logFile,
          crashes: s.crashes,
        }));
    },
    stop() {
      stopping ??= (async () => {
        stopped = true;
        follower.stop();
        const live: SupervisedProcess[] = [];
        for (const slot of slots.values()) {
          clearTimeout(slot.timer);
          if (slot.proc !== undefined && !slot.proc.hasExited) live.push(slot.proc);
        }
        if (live.length > 0) logger.info(`stopping ${live.length} agent(s)`);
        for (const proc of live) signalGroup(proc.pid, "SIGTERM");
        // Idle agents deregister and exit at once; the others get a second SIGTERM from `stopAll` (exit now),
        // then SIGKILL after the grace period.
        await Promise.race([Promise.all(live.map((p) => p.exited)), sleep(shutdownDrainMs)]);
        await supervisor.stopAll(stopGraceMs);
        slots.clear();
        childrenChanged();
      })();
      return stopping;
    },
  };
}

/** Relative to `cwd` when inside it: `.tern/logs/agent-mlserver-0.log` reads better than an absolute path. */
function shortPath(file: string, cwd: string): string {
  const rel = relative(cwd, file);
  return rel === "" || rel.startsWith("..") || isAbsolute(rel) ? file : rel;
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}
