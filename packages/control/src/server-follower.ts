import { setTimeout as sleep } from "node:timers/promises";
import type { DeploymentStrategy } from "@tern/core";
import type { ControlClient, ServerSummary } from "./control-client.js";
import { errorText } from "./errors.js";

/**
 * What both controllers (the local process launcher in @tern/devstack and the ECS controller here) act on: the
 * scheduler's Servers, each with the replicas it wants now. They follow the scheduler the same way, through
 * {@link createServerFollower}, and differ only in what "run n replicas of this Server" means.
 */

/** A Server as the controllers see it. */
export interface DesiredServer {
  server: string;
  /**
   * Replicas wanted now: the status's `replicas` (the spec's, or what server autoscaling decided); 0 for a Server being
   * deleted, whose agents go at once (they drain).
   */
  replicas: number;
  serverConfig: string;
  /** The Server's effective capabilities (type list, `capabilities` replacing it, `extraCapabilities` added). */
  capabilities: readonly string[];
  /**
   * The manifest's `deploymentStrategy`: how the ECS controller lets ECS replace the Server's agent tasks
   * (deployment-strategy.ts). The local controller never replaces a running agent, so it has no use for it.
   */
  deploymentStrategy?: DeploymentStrategy;
}

/** The agent runtimes Tern has (the agent's `TERN_AGENT_SERVER_TYPE`). */
export type AgentRuntime = "tern-onnx" | "mlserver";

/**
 * The runtime a Server's agents run: `mlserver` for `serverConfig: mlserver` (an MLServer process per agent), the
 * built-in ONNX Runtime for everything else — `tern-onnx`, and a custom `serverConfig` whose `spec.capabilities` the
 * scheduler accepted (Tern has no other runtime to give it). The ECS controller picks the task definition by it.
 */
export function agentRuntime(serverConfig: string): AgentRuntime {
  return serverConfig === "mlserver" ? "mlserver" : "tern-onnx";
}

/** The scheduler's `GET /v1/servers` items as desired Servers. */
export function desiredServers(items: readonly ServerSummary[]): DesiredServer[] {
  return items.map((s) => ({
    server: s.name,
    // A Server being deleted keeps its record until its models are gone; its agents go now (they drain).
    replicas: s.state === "ServerTerminating" ? 0 : s.replicas,
    serverConfig: s.serverConfig,
    capabilities: s.capabilities,
    ...(s.deploymentStrategy === undefined ? {} : { deploymentStrategy: s.deploymentStrategy }),
  }));
}

/** Options of {@link createServerFollower}. */
export interface ServerFollowerOptions {
  client: ControlClient;
  /** Called with every successful list of the Servers (the whole list, each time). */
  onServers(servers: DesiredServer[]): void;
  /** One-line warnings; each situation (list failing, watch down) is said once until it clears. */
  warn(message: string): void;
  /** Names the follower in its warnings, e.g. "local controller". */
  name: string;
  /** Full re-list interval, besides the watch. @default 10000 */
  resyncMs?: number;
  /** Cap of the reconnect backoff of the watch (and of listing while it is down). @default 2000 */
  retryMaxMs?: number;
  /** A watch stream silent this long is reopened (the scheduler sends a heartbeat every 15 s). @default 45000 */
  watchIdleTimeoutMs?: number;
}

export interface ServerFollower {
  /** Starts following the scheduler. */
  start(): void;
  /** Resolves after the first successful list has been handed to `onServers`. */
  synced(): Promise<void>;
  /** Stops following; `onServers` is not called afterwards. Idempotent. */
  stop(): void;
}

/**
 * Source of truth: `GET /v1/servers`, listed again whenever the watch stream (`GET /v1/watch`, live changes) reports a
 * server change or a reset, whenever the stream (re)opens, and every `resyncMs` as a safety net. When the stream
 * cannot be opened (scheduler down, or a standby answering 503) the follower keeps listing on its reconnect backoff,
 * so it degrades to polling rather than going blind. Lists never overlap: a change during a list lists once more.
 */
export function createServerFollower(options: ServerFollowerOptions): ServerFollower {
  const { client, name } = options;
  const resyncMs = options.resyncMs ?? 10_000;
  const retryMaxMs = options.retryMaxMs ?? 2000;
  const watchIdleTimeoutMs = options.watchIdleTimeoutMs ?? 45_000;
  const lifetime = new AbortController();
  let stopped = false;
  let resync: NodeJS.Timeout | undefined;
  let markSynced: () => void = () => undefined;
  const syncedOnce = new Promise<void>((resolve) => {
    markSynced = resolve;
  });
  const said = new Set<string>();
  const sayOnce = (key: string, message: string): void => {
    if (said.has(key)) return;
    said.add(key);
    options.warn(message);
  };

  let syncing = false;
  let syncAgain = false;
  async function sync(): Promise<void> {
    if (syncing) {
      syncAgain = true;
      return;
    }
    syncing = true;
    try {
      do {
        syncAgain = false;
        try {
          const servers = await client.listServers();
          if (stopped) return;
          said.delete("list");
          options.onServers(desiredServers(servers));
          markSynced();
        } catch (err) {
          sayOnce("list", `${name}: cannot list servers yet (${errorText(err)}); retrying`);
        }
      } while (syncAgain && !stopped);
    } finally {
      syncing = false;
    }
  }

  async function follow(): Promise<void> {
    let delay = 250;
    while (!stopped) {
      try {
        await client.watch({
          signal: lifetime.signal,
          idleTimeoutMs: watchIdleTimeoutMs,
          onOpen: () => {
            delay = 250;
            said.delete("watch");
            void sync();
          },
          onEvent: (event) => {
            if (event.event === "reset" || event.kinds.includes("server")) void sync();
          },
        });
      } catch (err) {
        sayOnce("watch", `${name}: watch stream unavailable (${errorText(err)}); listing instead`);
      }
      if (stopped) return;
      void sync();
      await sleep(delay, undefined, { signal: lifetime.signal }).catch(() => undefined);
      delay = Math.min(retryMaxMs, delay * 2);
    }
  }

  return {
    start() {
      if (stopped || resync !== undefined) return;
      void follow();
      resync = setInterval(() => void sync(), resyncMs);
      resync.unref();
    },
    synced: () => syncedOnce,
    stop() {
      stopped = true;
      lifetime.abort();
      clearInterval(resync);
    },
  };
}
