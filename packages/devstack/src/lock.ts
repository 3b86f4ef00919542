import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { TernError } from "@tern/core";

/** What the pid file of a running dev stack records. */
export interface DevStackLockInfo {
  pid: number;
  startedAt: string;
  /** "what runs where", for the message a second start prints. */
  services: Record<string, string>;
  /** Pids of the stack's children (process-group leaders), so a later start can clean up after a killed stack. */
  children?: number[];
}

/** A held lock; `release` removes the pid file if it is still ours. */
export interface DevStackLock {
  readonly file: string;
  /** Children recorded by a previous stack whose pid file was stale (it was killed before it could stop them). */
  readonly staleChildren: readonly number[];
  /** Records the pids of the children this stack started. */
  recordChildren(pids: readonly number[]): void;
  release(): void;
}

/**
 * Takes the dev stack's pid file, created atomically (`wx`), so two `npm start` in one checkout cannot both start
 * brokers on the same data. A pid file whose process is gone (a killed stack) is stale and replaced.
 * Throws a `conflict` TernError that names the running stack's pid and services.
 */
export function acquireDevStackLock(file: string, services: Record<string, string>): DevStackLock {
  mkdirSync(dirname(file), { recursive: true });
  const staleChildren: number[] = [];
  for (let attempt = 0; attempt < 3; attempt++) {
    let fd: number;
    try {
      fd = openSync(file, "wx");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const holder = readLockInfo(file);
      if (holder !== undefined && holder.pid !== process.pid && isProcessAlive(holder.pid)) {
        const where = Object.entries(holder.services)
          .map(([name, address]) => `${name} ${address}`)
          .join(", ");
        throw new TernError(
          "conflict",
          `the Tern dev stack is already running (pid ${holder.pid}, started ${holder.startedAt}${where ? `: ${where}` : ""}); use it, or stop it with Ctrl-C in its terminal or \`kill ${holder.pid}\``,
        );
      }
      // Stale (the holder died without cleaning up) or unreadable: replace it.
      staleChildren.push(...(holder?.children ?? []));
      rmSync(file, { force: true });
      continue;
    }
    const info: DevStackLockInfo = { pid: process.pid, startedAt: new Date().toISOString(), services, children: [] };
    writeSync(fd, `${JSON.stringify(info, null, 2)}\n`);
    closeSync(fd);
    return {
      file,
      staleChildren,
      recordChildren(pids: readonly number[]): void {
        if (readLockInfo(file)?.pid !== process.pid) return;
        writeFileSync(file, `${JSON.stringify({ ...info, children: [...pids] }, null, 2)}\n`);
      },
      release(): void {
        if (readLockInfo(file)?.pid === process.pid) rmSync(file, { force: true });
      },
    };
  }
  throw new TernError("conflict", `could not take the dev stack lock ${file}: another start is racing for it`);
}

/** The pid file's content, or undefined when it is missing or not ours to read. */
export function readLockInfo(file: string): DevStackLockInfo | undefined {
  try {
    const parsed = JSON.parse(readFileSync(file, "utf8")) as Partial<DevStackLockInfo>;
    if (typeof parsed.pid !== "number") return undefined;
    const children = Array.isArray(parsed.children) ? parsed.children.filter((p) => Number.isInteger(p) && p > 1) : [];
    return { pid: parsed.pid, startedAt: String(parsed.startedAt ?? "?"), services: parsed.services ?? {}, children };
  } catch {
    return undefined;
  }
}

/** True when a process with this pid exists (signal 0 checks without sending anything). */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Kills the process groups of children a killed stack left running, but only those whose environment holds `marker`
 * (`NAME=value`, set by the stack on every child): a pid since reused by an unrelated process is left alone.
 * Returns the pids killed. Needs /proc (Linux); elsewhere nothing is killed and the port check reports the clash.
 */
export function killStaleChildren(pids: readonly number[], marker: string): number[] {
  const killed: number[] = [];
  for (const pid of pids) {
    let environment: string[];
    try {
      environment = readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
    } catch {
      continue;
    }
    if (!environment.includes(marker)) continue;
    try {
      process.kill(-pid, "SIGKILL");
      killed.push(pid);
    } catch {
      // Already gone.
    }
  }
  return killed;
}
