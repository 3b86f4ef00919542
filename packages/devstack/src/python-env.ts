import { spawn } from "node:child_process";
import { closeSync, mkdirSync, openSync, readFileSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import { TernError } from "@tern/core";

/**
 * `scripts/python-env.sh <name>` run in the background by `npm start`: it creates `.tern/python/<name>` once (pip from
 * PyPI; MLServer takes minutes and ~560 MB) and returns at once when the venv is current. The script's whole output goes
 * to a log file; what the console gets is a progress line now and then, built from pip's own lines.
 */

/** What pip has done so far, read from its output lines. */
export interface PipProgress {
  /** An install is running (the script said it creates the venv); false when the venv was already current. */
  installing: boolean;
  /** Packages pip has resolved ("Collecting ..." lines). */
  collected: number;
  /** Bytes of the wheels pip announced it downloads ("Downloading x.whl (12.3 MB)"). */
  downloadBytes: number;
  /** pip reached "Installing collected packages" (unpacking; the longest quiet part). */
  unpacking: boolean;
  /** The script's last own line ("python-env: ..."): its reason when it fails. */
  lastScriptLine?: string;
}

const units: Record<string, number> = { kB: 1e3, KB: 1e3, MB: 1e6, GB: 1e9, B: 1 };

/** Folds one line of the script's output into the progress (a pure function, unit-tested). */
export function readPipLine(progress: PipProgress, line: string): PipProgress {
  const text = line.trim();
  if (text.startsWith("python-env: ")) {
    return {
      ...progress,
      lastScriptLine: text,
      installing: progress.installing || text.startsWith("python-env: creating "),
    };
  }
  if (text.startsWith("Collecting ")) return { ...progress, collected: progress.collected + 1 };
  const download = /^Downloading \S+ \(([\d.]+) (kB|KB|MB|GB|B)\)$/.exec(text);
  if (download)
    return { ...progress, downloadBytes: progress.downloadBytes + Number(download[1]) * units[download[2]!]! };
  if (text.startsWith("Installing collected packages")) return { ...progress, unpacking: true };
  return progress;
}

/** Packages a requirements file pins (lines that are neither blank nor comments). */
export function countRequirements(text: string): number {
  return text.split("\n").filter((line) => line.trim() !== "" && !line.trim().startsWith("#")).length;
}

/** One console line for the progress so far. */
export function formatPipProgress(progress: PipProgress, pinned: number, elapsedMs: number): string {
  const seconds = Math.round(elapsedMs / 1000);
  const time = seconds >= 60 ? `${Math.floor(seconds / 60)} min ${seconds % 60} s` : `${seconds} s`;
  if (progress.collected === 0) return `creating the venv and starting pip, ${time} so far`;
  const what = progress.unpacking
    ? `all ${progress.collected} packages fetched, installing them`
    : `${progress.collected} of ~${pinned} packages fetched`;
  return `${what} (${Math.round(progress.downloadBytes / 1e6)} MB downloaded), ${time} so far`;
}

export interface PythonEnvOptions {
  /** Repository root: the script is `<root>/scripts/python-env.sh`, the venv `<root>/.tern/python/<name>`. */
  root: string;
  /** The environment's name (`scripts/python/<name>.txt`). */
  name: string;
  /** The script's whole output (pip's included) goes here, truncated at start. */
  logFile: string;
  /** Environment of the script (e.g. `TERN_PYTHON`). @default process.env */
  env?: NodeJS.ProcessEnv;
  /** Called once when an install really runs (the venv is missing or out of date). */
  onInstalling?: () => void;
  /** Called every `progressEveryMs` while an install runs. */
  onProgress?: (line: string) => void;
  /** @default 15000 */
  progressEveryMs?: number;
}

export interface PythonEnvRun {
  /** The script's process group leader (recorded in the pid file, so a start after a killed stack stops it). */
  readonly pid: number | undefined;
  /** The venv's python; rejects with the script's one-line reason (`python-env: ...`). */
  readonly python: Promise<string>;
  /** Whether an install ran (false: the venv was current). Meaningful once `python` settled. */
  installed(): boolean;
  /** Ends the script's process group (SIGTERM, SIGKILL after 3 s) if it still runs. */
  stop(): Promise<void>;
}

/** Runs `scripts/python-env.sh <name>` in its own process group and follows its progress. */
export function runPythonEnv(options: PythonEnvOptions): PythonEnvRun {
  const started = Date.now();
  const pinned = countRequirements(readFileSync(join(options.root, "scripts/python", `${options.name}.txt`), "utf8"));
  mkdirSync(dirname(options.logFile), { recursive: true });
  const log = openSync(options.logFile, "w");
  let progress: PipProgress = { installing: false, collected: 0, downloadBytes: 0, unpacking: false };
  let stdout = "";
  let pending = "";
  let timer: NodeJS.Timeout | undefined;
  let exited = false;

  const child = spawn("bash", [join(options.root, "scripts/python-env.sh"), options.name], {
    cwd: options.root,
    env: options.env ?? process.env,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  // Like the supervisor's children: never outlive this process, even when it exits without stopping them.
  const killOnExit = (): void => killGroup(child.pid, "SIGKILL");
  process.on("exit", killOnExit);

  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (chunk: string) => {
    stdout += chunk;
    writeSync(log, chunk);
  });
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk: string) => {
    writeSync(log, chunk);
    pending += chunk;
    // pip redraws its progress bars with \r: only whole lines count.
    const lines = pending.split(/\r?\n|\r/);
    pending = lines.pop() ?? "";
    for (const line of lines) {
      const wasInstalling = progress.installing;
      progress = readPipLine(progress, line);
      if (progress.installing && !wasInstalling) {
        options.onInstalling?.();
        timer = setInterval(
          () => options.onProgress?.(formatPipProgress(progress, pinned, Date.now() - started)),
          options.progressEveryMs ?? 15_000,
        );
        timer.unref();
      }
    }
  });

  const python = new Promise<string>((resolve, reject) => {
    child.once("error", (err) => {
      exited = true;
      clearInterval(timer);
      reject(new TernError("unavailable", `cannot run scripts/python-env.sh: ${err.message}`, { cause: err }));
    });
    child.once("close", (code, signal) => {
      exited = true;
      clearInterval(timer);
      process.off("exit", killOnExit);
      closeSync(log);
      if (pending !== "") progress = readPipLine(progress, pending);
      const path = stdout.trim().split("\n").at(-1);
      if (code === 0 && path) {
        resolve(path);
        return;
      }
      const why =
        progress.lastScriptLine?.replace(/^python-env: /, "") ??
        `scripts/python-env.sh ${options.name} ended with ${signal ?? `exit code ${code}`}`;
      reject(new TernError("unavailable", why));
    });
  });

  return {
    pid: child.pid,
    python,
    installed: () => progress.installing,
    async stop() {
      if (exited) return;
      killGroup(child.pid, "SIGTERM");
      const forced = setTimeout(() => killGroup(child.pid, "SIGKILL"), 3000);
      await python.catch(() => undefined);
      clearTimeout(forced);
    },
  };
}

function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}
