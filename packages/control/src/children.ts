import { createRestartPolicy, type RestartPolicy, type RestartPolicyOptions } from "./restart-policy.js";
import { createSupervisor, type ExitInfo, type ProcessSpec, type SupervisedProcess } from "./supervisor.js";

/**
 * A fixed set of long-running children kept alive: the long-lived container's scheduler and dataflow workers. Built on
 * the supervisor (process groups, bounded stop) and the restart policy (backoff, give-up) the dev stack uses too.
 */

export interface ChildrenLogger {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

export interface ChildrenOptions {
  logger: ChildrenLogger;
  restart?: RestartPolicyOptions;
  /** Called once a child crashed more often than the restart policy allows; it is not restarted. */
  onGiveUp?: (name: string, exit: ExitInfo) => void;
}

/** One child as {@link Children.status} reports it. */
export interface ChildStatus {
  name: string;
  state: "running" | "backoff" | "failed" | "stopped";
  pid?: number;
  /** Unexpected exits so far. */
  crashes: number;
}

export interface Children {
  /** Starts a child and keeps it running (restarted after a crash) until it is stopped. */
  run(spec: ProcessSpec): Promise<void>;
  status(): ChildStatus[];
  /**
   * Stops the named children at once (SIGTERM; SIGKILL after `graceMs`) and resolves when all are gone. A stopped
   * child is not restarted.
   */
  stop(names: readonly string[], graceMs: number): Promise<void>;
  /** Stops every child still alive, newest first; no child is started afterwards. */
  stopAll(graceMs: number): Promise<void>;
}

interface Entry {
  spec: ProcessSpec;
  state: ChildStatus["state"];
  proc?: SupervisedProcess;
  policy: RestartPolicy;
  crashes: number;
  timer?: NodeJS.Timeout;
}

export function createChildren(options: ChildrenOptions): Children {
  const { logger } = options;
  const entries = new Map<string, Entry>();
  const supervisor = createSupervisor({
    onUnexpectedExit(child, exit) {
      for (const [name, entry] of entries) {
        if (entry.proc === child) crashed(name, entry, exit);
      }
    },
  });

  function crashed(name: string, entry: Entry, exit: ExitInfo): void {
    if (entry.state !== "running") return;
    entry.proc = undefined;
    entry.crashes++;
    const decision = entry.policy.crashed(Date.now());
    const how = exit.signal === null ? `exit code ${exit.code}` : `signal ${exit.signal}`;
    if (decision.action === "give-up") {
      entry.state = "failed";
      logger.error(
        { child: name, exit: how, crashes: decision.crashesInWindow },
        `${name} keeps crashing: not restarting it (${entry.policy.rule})`,
      );
      options.onGiveUp?.(name, exit);
      return;
    }
    entry.state = "backoff";
    logger.warn({ child: name, exit: how, delayMs: decision.delayMs }, `${name} stopped unexpectedly; restarting it`);
    entry.timer = setTimeout(() => {
      entry.timer = undefined;
      if (entry.state === "backoff") void start(name, entry);
    }, decision.delayMs);
  }

  async function start(name: string, entry: Entry): Promise<void> {
    entry.state = "running";
    try {
      const proc = await supervisor.spawn(entry.spec);
      entry.proc = proc;
      if ((entry.state as ChildStatus["state"]) === "stopped") {
        // stop() ran while it was being spawned.
        await proc.stop(5_000).catch(() => undefined);
        return;
      }
      logger.info({ child: name, pid: entry.proc.pid, crashes: entry.crashes }, "child started");
    } catch (err) {
      if (entry.state !== "running") return;
      // A spawn that fails (the command is gone) counts as a crash: backoff, bounded restarts.
      logger.warn({ child: name, err }, `${name} could not start`);
      crashed(name, entry, { code: null, signal: null });
    }
  }

  return {
    async run(spec) {
      const entry: Entry = { spec, state: "running", policy: createRestartPolicy(options.restart), crashes: 0 };
      entries.set(spec.name, entry);
      await start(spec.name, entry);
    },
    status() {
      return [...entries].map(([name, e]) => ({
        name,
        state: e.state,
        ...(e.proc !== undefined && !e.proc.hasExited ? { pid: e.proc.pid } : {}),
        crashes: e.crashes,
      }));
    },
    async stop(names, graceMs) {
      await Promise.all(
        names.map(async (name) => {
          const entry = entries.get(name);
          if (entry === undefined) return;
          entry.state = "stopped";
          clearTimeout(entry.timer);
          const proc = entry.proc;
          if (proc === undefined) return;
          await proc.stop(graceMs).catch((err: unknown) => logger.error({ child: name, err }, "stop failed"));
          const exit = await proc.exited;
          logger.info({ child: name, code: exit.code, signal: exit.signal }, "child stopped");
        }),
      );
    },
    async stopAll(graceMs) {
      for (const entry of entries.values()) {
        entry.state = "stopped";
        clearTimeout(entry.timer);
      }
      await supervisor.stopAll(graceMs);
    },
  };
}
