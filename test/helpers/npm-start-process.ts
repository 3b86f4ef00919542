import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseEnv } from "node:util";
import { readLockInfo, waitFor } from "@tern/devstack";
import { repoRoot } from "./platform-process.js";

/** `npm start`'s own entry, run the way package.json's "start" script runs it. */
const START_ARGS = ["--import", "tsx", "packages/devstack/src/main.ts"];

/** A running `npm start` (packages/devstack/src/main.ts) with its output captured. */
export interface NpmStartProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Everything it wrote, stdout and stderr interleaved. */
  output(): string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  hasExited(): boolean;
}

/**
 * The environment that makes the repo's `.env` inert: main.ts loads it but never over a variable already set (even
 * to an empty value, which Tern's config reads as unset), so every key of a developer's `.env` is named here empty.
 */
export function withoutDotenv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const file = join(repoRoot, ".env");
  const keys = existsSync(file) ? Object.keys(parseEnv(readFileSync(file, "utf8"))) : [];
  return { ...Object.fromEntries(keys.map((key) => [key, ""])), ...env };
}

/** Starts `npm start`'s entry from the repo root with `env` (the whole environment, not added to this one's). */
export function runNpmStart(env: NodeJS.ProcessEnv): NpmStartProcess {
  const child = spawn(process.execPath, START_ARGS, { cwd: repoRoot, env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.setEncoding("utf8");
  child.stderr!.setEncoding("utf8");
  child.stdout!.on("data", (chunk: string) => {
    out += chunk;
  });
  child.stderr!.on("data", (chunk: string) => {
    out += chunk;
  });
  let exitedFlag = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.once("exit", (code, signal) => {
      exitedFlag = true;
      r({ code, signal });
    }),
  );
  return { child, pid: child.pid!, output: () => out, exited, hasExited: () => exitedFlag };
}

/** Waits for `check`, failing at once with the stack's output if it exits first, and at the deadline with it. */
export async function waitWhileRunning<T>(
  proc: NpmStartProcess,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs: number,
  description: string,
): Promise<T> {
  const stop = new AbortController();
  try {
    return await Promise.race([
      waitFor(check, { timeoutMs, intervalMs: 100, description, signal: stop.signal }),
      proc.exited.then((exit) => {
        throw new Error(`npm start exited (${exit.signal ?? exit.code}) before ${description}`);
      }),
    ]);
  } catch (err) {
    throw new Error(`${String(err)}\n--- npm start output (last 6000 characters) ---\n${proc.output().slice(-6000)}`);
  } finally {
    stop.abort();
  }
}

/** A child of the stack found through its pid file: pid, entry script and (for workers) its id. */
export interface StackChild {
  pid: number;
  cmdline: string;
  /** TERN_DATAFLOW_ID / TERN_MODELGATEWAY_ID from its environment, when it has one. */
  workerId?: string;
}

/**
 * The live children recorded in the stack's pid file (each started by the supervisor as a process-group leader), with
 * what /proc says they run.
 */
export function stackChildren(pidFile: string): StackChild[] {
  const children: StackChild[] = [];
  for (const pid of readLockInfo(pidFile)?.children ?? []) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ");
      const environ = readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
      const id = environ.find((e) => e.startsWith("TERN_DATAFLOW_ID=") || e.startsWith("TERN_MODELGATEWAY_ID="));
      children.push({ pid, cmdline, ...(id === undefined ? {} : { workerId: id.slice(id.indexOf("=") + 1) }) });
    } catch {
      // Gone since the pid file was written.
    }
  }
  return children;
}

/** The live child whose command line runs `entry` (and, when given, whose worker id is `workerId`). */
export function stackChild(pidFile: string, entry: string, workerId?: string): StackChild | undefined {
  return stackChildren(pidFile).find(
    (c) => c.cmdline.includes(entry) && (workerId === undefined || c.workerId === workerId),
  );
}

/** True when no process of the group led by `pid` is left. */
export function groupGone(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ESRCH";
  }
}
