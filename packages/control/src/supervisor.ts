import { spawn } from "node:child_process";
import { closeSync, mkdirSync, openSync, readSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { TernError } from "@tern/core";

/** How a child ended. */
export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** What to run under the supervisor. */
export interface ProcessSpec {
  /** Short name used in messages, e.g. "kafka". */
  name: string;
  command: string;
  args: readonly string[];
  cwd?: string;
  /** Full environment of the child. @default process.env */
  env?: NodeJS.ProcessEnv;
  /**
   * stdout and stderr go to this file, truncated at start (a pipe would stall the child once the parent stops reading).
   * Unset: the child writes to this process's own stdout and stderr (a container's log stream).
   */
  logFile?: string;
  /** Append to `logFile` instead of truncating it: a restart keeps the log of the run that crashed. @default false */
  appendLog?: boolean;
}

/** A running child process. */
export interface SupervisedProcess {
  readonly name: string;
  readonly pid: number;
  /** Undefined when the child shares this process's stdout and stderr. */
  readonly logFile: string | undefined;
  /** Resolves when the child has exited, for whatever reason. */
  readonly exited: Promise<ExitInfo>;
  /** True once the child has exited. */
  readonly hasExited: boolean;
  /** SIGTERM to the child's process group, then SIGKILL after `graceMs`. Resolves once it is gone. */
  stop(graceMs: number): Promise<void>;
}

/** Options of {@link createSupervisor}. */
export interface SupervisorOptions {
  /** Called when a child exits without being asked to (a crash, an OOM kill). */
  onUnexpectedExit?: (child: SupervisedProcess, exit: ExitInfo) => void;
}

/** Starts children in their own process groups and stops all of them, including their own children, on request. */
export interface Supervisor {
  spawn(spec: ProcessSpec): Promise<SupervisedProcess>;
  /** Stops every live child, newest first, each with the given grace period. */
  stopAll(graceMs: number): Promise<void>;
  readonly children: readonly SupervisedProcess[];
}

/**
 * Each child is the leader of its own process group (`detached`), so that a terminal's Ctrl-C reaches only this
 * process, which then stops the children in order, and so that a signal to the group also reaches anything the child
 * started itself. If this process exits without stopping them (an uncaught error), an `exit` hook kills every group
 * that is still alive, so no JVM outlives the stack.
 */
export function createSupervisor(options: SupervisorOptions = {}): Supervisor {
  const children: SupervisedProcess[] = [];
  const live = new Set<number>();
  const killAllOnExit = (): void => {
    for (const pid of live) killGroup(pid, "SIGKILL");
  };
  process.on("exit", killAllOnExit);

  let closed = false;

  async function spawnChild(spec: ProcessSpec): Promise<SupervisedProcess> {
    if (closed) throw new TernError("unavailable", `not starting ${spec.name}: the supervisor is stopping`);
    let fd: number | undefined;
    if (spec.logFile !== undefined) {
      mkdirSync(dirname(spec.logFile), { recursive: true });
      // One log per run, so the tail quoted in an error belongs to this run; a restart appends after the crash.
      fd = openSync(spec.logFile, spec.appendLog === true ? "a" : "w");
    }
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(spec.command, [...spec.args], {
        cwd: spec.cwd,
        env: spec.env ?? process.env,
        detached: true,
        stdio: ["ignore", fd ?? "inherit", fd ?? "inherit"],
      });
      await new Promise<void>((resolve, reject) => {
        child.once("spawn", resolve);
        child.once("error", reject);
      });
    } catch (err) {
      const reason = (err as NodeJS.ErrnoException).code === "ENOENT" ? "command not found" : String(err);
      throw new TernError("unavailable", `could not start ${spec.name} (\`${spec.command}\`): ${reason}`, {
        cause: err,
      });
    } finally {
      // The child holds its own copy of the descriptor.
      if (fd !== undefined) closeSync(fd);
    }
    const pid = child.pid!;
    if (closed) {
      // stopAll ran while this child was being spawned and could not see it.
      killGroup(pid, "SIGKILL");
      throw new TernError("unavailable", `not starting ${spec.name}: the supervisor is stopping`);
    }
    live.add(pid);
    let exitedFlag = false;
    let stopping = false;
    const exited = new Promise<ExitInfo>((resolve) => {
      child.once("exit", (code, signal) => {
        exitedFlag = true;
        live.delete(pid);
        // The leader is gone; anything it left in its group goes too.
        killGroup(pid, "SIGKILL");
        resolve({ code, signal });
      });
    });
    const handle: SupervisedProcess = {
      name: spec.name,
      pid,
      logFile: spec.logFile,
      exited,
      get hasExited() {
        return exitedFlag;
      },
      async stop(graceMs: number): Promise<void> {
        stopping = true;
        if (exitedFlag) return;
        killGroup(pid, "SIGTERM");
        const ended = await Promise.race([exited.then(() => true), sleep(graceMs).then(() => false)]);
        if (!ended) {
          killGroup(pid, "SIGKILL");
          await Promise.race([exited, sleep(5_000)]);
        }
        if (!exitedFlag) {
          throw new TernError("internal", `${spec.name} (pid ${pid}) did not exit after SIGKILL`);
        }
      },
    };
    void exited.then((exit) => {
      if (!stopping) options.onUnexpectedExit?.(handle, exit);
    });
    children.push(handle);
    return handle;
  }

  return {
    spawn: spawnChild,
    get children() {
      return children;
    },
    async stopAll(graceMs: number): Promise<void> {
      closed = true;
      const errors: unknown[] = [];
      for (const child of [...children].reverse()) {
        await child.stop(graceMs).catch((err: unknown) => errors.push(err));
      }
      if (live.size === 0) process.off("exit", killAllOnExit);
      if (errors.length > 0) throw errors[0];
    },
  };
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: the group is already gone.
  }
}

/** The last `maxLines` lines of a log file (reads at most its last 64 KiB), for error messages. */
export function readLogTail(file: string | undefined, maxLines = 15): string {
  if (file === undefined) return "";
  try {
    const size = statSync(file).size;
    const length = Math.min(size, 65_536);
    const buffer = Buffer.alloc(length);
    const fd = openSync(file, "r");
    try {
      readSync(fd, buffer, 0, length, size - length);
    } finally {
      closeSync(fd);
    }
    return buffer.toString("utf8").trimEnd().split("\n").slice(-maxLines).join("\n");
  } catch {
    return "";
  }
}
