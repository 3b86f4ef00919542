/**
 * The server processes a benchmark measures: started as `node --import tsx <script>`, ready once they print their
 * `serving http://...` line, pinned to CPUs with `taskset`, their CPU time read from /proc, and stopped on every way
 * out of the run.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root: where the benchmarks start their servers, so that tsx and the workspace packages resolve. */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** A server child process that has printed its ready line (by default `serving http://...`). */
export interface Server<K extends string = string> {
  /** Short name, used as a key in the results (e.g. `agent`, `gateway`, `before`). */
  key: K;
  /** What the server is, for messages and tables. */
  label: string;
  /** Base URL from the ready line, e.g. `http://127.0.0.1:41234` (empty when the ready pattern captures none). */
  url: string;
  child: ChildProcess;
}

/** Inputs of {@link createServerGroup}. */
export interface ServerGroupOptions {
  /**
   * Working directory of every child.
   * @default REPO_ROOT
   */
  cwd?: string;
  /**
   * Upper bound on a server's start, from spawn to its ready line.
   * @default 30_000
   */
  startDeadlineMs?: number;
}

/** Inputs of {@link ServerGroup.start}. */
export interface StartServerOptions<K extends string> {
  key: K;
  label: string;
  /** Entry script, relative to the group's `cwd`. */
  script: string;
  /** Variables added to this process's environment for the child. */
  env?: Record<string, string>;
  /**
   * The ready line, matched against everything the child printed on stdout so far; its first group (if any) becomes
   * the server's `url`.
   * @default /serving (http:\/\/[^\s]+)/
   */
  ready?: RegExp;
  /** Node options put before `--import tsx` (e.g. `--cpu-prof`). @default [] */
  nodeArgs?: readonly string[];
}

/** The server processes of one benchmark run, so that all of them can be stopped together. */
export interface ServerGroup {
  /** Starts `node --import tsx <script>` and resolves once it prints its ready line; rejects on exit or deadline. */
  start<K extends string>(options: StartServerOptions<K>): Promise<Server<K>>;
  /** Stops every child started so far (SIGTERM, then SIGKILL after 10 s); safe to call more than once. */
  stopAll(): Promise<void>;
}

/** How long a child gets to exit after SIGTERM before it is killed. */
const KILL_AFTER_MS = 10_000;
/** How much of a child's stderr is kept for the error message when it fails to start. */
const STDERR_TAIL_CHARS = 4000;

/** Creates an empty {@link ServerGroup}. */
export function createServerGroup(options: ServerGroupOptions = {}): ServerGroup {
  const { cwd = REPO_ROOT, startDeadlineMs = 30_000 } = options;
  const children: ChildProcess[] = [];

  function start<K extends string>({
    key,
    label,
    script,
    env = {},
    ready = /serving (http:\/\/[^\s]+)/,
    nodeArgs = [],
  }: StartServerOptions<K>): Promise<Server<K>> {
    const child = spawn(process.execPath, [...nodeArgs, "--import", "tsx", script], {
      cwd,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.push(child);
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-STDERR_TAIL_CHARS);
    });
    return new Promise<Server<K>>((resolveStart, reject) => {
      let out = "";
      const timer = setTimeout(() => {
        reject(new Error(`${label} did not start within ${startDeadlineMs} ms; stderr: ${stderr}`));
      }, startDeadlineMs);
      let found = false;
      child.stdout!.on("data", (d: Buffer) => {
        if (found) return;
        out += d.toString();
        const m = ready.exec(out);
        if (m) {
          found = true;
          out = "";
          clearTimeout(timer);
          resolveStart({ key, label, url: m[1] ?? "", child });
        }
      });
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`${label} exited (${code ?? signal}) before serving; stderr: ${stderr}`));
      });
    });
  }

  return { start, stopAll: () => Promise.all(children.map(stopChild)).then(() => undefined) };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), KILL_AFTER_MS);
  await exited;
  clearTimeout(timer);
}

/**
 * Runs a benchmark's `main` and makes sure `cleanUp` (stopping its children, removing temporary files) runs on every
 * way out: after a failure (exit code 1) and on Ctrl-C (exit code 130). On success `main` cleans up itself, before it
 * writes its results.
 */
export function runMain(main: () => Promise<void>, cleanUp: () => Promise<void>): void {
  process.once("SIGINT", () => {
    void cleanUp().then(() => process.exit(130));
  });
  main().catch(async (err: unknown) => {
    console.error(err);
    await cleanUp();
    process.exit(1);
  });
}

/**
 * Sets the CPU affinity of every thread of process `pid` (`taskset -a`).
 *
 * @param cpus a CPU list as taskset reads it, e.g. `0`, `0,1`, `0-3`
 */
export function setAffinity(pid: number, cpus: string): void {
  const r = spawnSync("taskset", ["-a", "-p", "-c", cpus, String(pid)], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`taskset -a -p -c ${cpus} ${pid} failed: ${r.stderr || r.error?.message}`);
}

/** Clock ticks per second, the unit of the CPU times in /proc/<pid>/stat. */
const CLK_TCK = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;

/** CPU time (user + system) used so far by process `pid`, in µs, from /proc/<pid>/stat (so in steps of a clock tick). */
export function processCpuUs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may hold spaces) start after the last ')'; utime and stime are 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / CLK_TCK;
}
