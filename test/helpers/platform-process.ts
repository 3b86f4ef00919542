import { type ChildProcess, spawn } from "node:child_process";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root: platform processes run from it, as `npm start` runs them. */
export const repoRoot = resolve(fileURLToPath(new URL(".", import.meta.url)), "../..");

/** A platform entry (scheduler, gateway, agent) running as its own process. */
export interface PlatformProcess<T> {
  /** What `ready` extracted from the output (a URL, a port, ...). */
  readonly ready: T;
  readonly child: ChildProcess;
  /** Everything it wrote (stdout and stderr), for assertions and failure messages. */
  output(): string;
  /** Resolves with the exit code (or the signal's name) once it has exited. */
  readonly exited: Promise<number | string>;
  hasExited(): boolean;
  /** Signals it unless it has exited already. */
  kill(signal: NodeJS.Signals): void;
}

export interface PlatformProcessOptions<T> {
  /** Entry file relative to the repo root, e.g. `packages/agent/src/main.ts`. */
  script: string;
  /** Names it in failure messages. */
  name: string;
  /** Added to the test process's environment. */
  env: Record<string, string>;
  /** Looks at everything written so far; a defined result means "ready". Called on every stdout chunk until then. */
  ready(stdout: string): T | undefined;
  /**
   * A hang guard, not a speed check: tsx compiles the entry and its packages at start, which took over 30 s with
   * two test files running beside another checkout's full suite on 2 cores (load 13).
   * @default 60000
   */
  timeoutMs?: number;
}

/**
 * Starts `node --import tsx <script>` from the repo root and resolves once `ready` finds what it looks for in the
 * output. It fails at once, with the output, when the process exits first, and after `timeoutMs` otherwise; either
 * way the process is SIGKILLed so that it cannot outlive the test.
 */
export async function startPlatformProcess<T>(options: PlatformProcessOptions<T>): Promise<PlatformProcess<T>> {
  const child = spawn(process.execPath, ["--import", "tsx", options.script], {
    cwd: repoRoot,
    env: { ...process.env, ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let stdout = "";
  let exitedFlag = false;
  const exited = new Promise<number | string>((r) =>
    child.once("exit", (code, signal) => {
      exitedFlag = true;
      r(code ?? signal ?? "unknown");
    }),
  );
  const timeoutMs = options.timeoutMs ?? 60_000;
  const ready = new Promise<T>((resolveReady, reject) => {
    let found = false;
    const timer = setTimeout(() => {
      if (!found) reject(new Error(`${options.name} not ready within ${timeoutMs} ms`));
    }, timeoutMs);
    child.stdout!.setEncoding("utf8");
    child.stderr!.setEncoding("utf8");
    child.stdout!.on("data", (chunk: string) => {
      out += chunk;
      if (found) return;
      stdout += chunk;
      const value = options.ready(stdout);
      if (value === undefined) return;
      found = true;
      stdout = "";
      clearTimeout(timer);
      resolveReady(value);
    });
    child.stderr!.on("data", (chunk: string) => {
      out += chunk;
    });
    void exited.then((code) => {
      clearTimeout(timer);
      if (!found) reject(new Error(`${options.name} exited (${code}) before it was ready`));
    });
  });
  let value: T;
  try {
    value = await ready;
  } catch (err) {
    if (!exitedFlag) child.kill("SIGKILL");
    await exited;
    throw new Error(`${(err as Error).message}\n${out}`);
  }
  return {
    ready: value,
    child,
    output: () => out,
    exited,
    hasExited: () => exitedFlag,
    kill(signal) {
      if (!exitedFlag) child.kill(signal);
    },
  };
}

/** The JSON (pino) lines of a process's output; other lines (banners, stack traces) are skipped. */
export function jsonLines(output: string): Array<Record<string, unknown>> {
  const lines: Array<Record<string, unknown>> = [];
  for (const line of output.split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      lines.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // A line cut short (the process was killed mid-write).
    }
  }
  return lines;
}
