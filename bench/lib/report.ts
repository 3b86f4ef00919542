/**
 * A benchmark's record: when and on what machine it ran (with the load average before and after, since the machine
 * is shared), and the result files in bench/results/: `<out>.json`, and `<out>.md` rendered from it.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join, resolve } from "node:path";
import { REPO_ROOT } from "./processes.js";
import { round2 } from "./stats.js";

/** Where the result files go. */
export const RESULTS_DIR = join(REPO_ROOT, "bench/results");

/** What a result file records about the machine. */
export interface MachineInfo {
  nproc: number;
  cpu: string;
  memoryGiB: number;
  node: string;
  platform: string;
  /** 1, 5 and 15 minute load averages when the run started. */
  loadAverageBefore: number[];
  /** The same when the run ended. */
  loadAverageAfter: number[];
}

/** A run in progress, from {@link startRun}. */
export interface BenchRun {
  startedAt: Date;
  /** CPUs on this machine. */
  nproc: number;
  /** The machine, with the load average from the start of the run and the one now (call it at the end). */
  machine(): MachineInfo;
}

/**
 * Starts the record of a run: notes the time and the load average, and prints
 * `<benchmark> bench: <n> CPUs, node <version>, load <1 5 15 min>`.
 */
export function startRun(benchmark: string): BenchRun {
  const startedAt = new Date();
  const loadAverageBefore = loadAverage();
  const nproc = os.cpus().length;
  console.log(`${benchmark} bench: ${nproc} CPUs, node ${process.version}, load ${loadAverageBefore.join(" ")}`);
  return { startedAt, nproc, machine: () => machineInfo(loadAverageBefore) };
}

function loadAverage(): number[] {
  return os.loadavg().map((n) => round2(n));
}

function machineInfo(loadAverageBefore: number[]): MachineInfo {
  const cpus = os.cpus();
  return {
    nproc: cpus.length,
    cpu: cpus[0]?.model ?? "unknown",
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
    loadAverageBefore,
    loadAverageAfter: loadAverage(),
  };
}

/** The .md lines that describe the machine and its load average. */
export function machineLines(m: MachineInfo): string[] {
  return [
    `Machine: ${m.nproc} CPUs (\`nproc\`), ${m.cpu}, ${m.memoryGiB} GiB, Node ${m.node}, ${m.platform}.`,
    `Load average (1, 5, 15 min): ${m.loadAverageBefore.join(", ")} before, ` +
      `${m.loadAverageAfter.join(", ")} after. The machine is shared with other work.`,
  ];
}

/**
 * The written analysis in `file` (a benchmark's notes.md) as lines to end a rendered .md with, or none when the
 * file does not exist.
 */
export function notesLines(file: string): string[] {
  return existsSync(file) ? [readFileSync(file, "utf8").trimEnd(), ""] : [];
}

/** Writes `result` to bench/results/`<out>.json` and its rendering to `<out>.md`. */
export function writeResults<T>(out: string, result: T, render: (result: T) => string): void {
  writeFileSync(resolve(RESULTS_DIR, `${out}.json`), `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(resolve(RESULTS_DIR, `${out}.md`), render(result));
  console.log(`wrote ${resolve(RESULTS_DIR, out)}.json and .md`);
}

/**
 * With BENCH_RENDER_ONLY=1, rewrites bench/results/`<out>.md` from the recorded `<out>.json` (e.g. after editing
 * notes.md) and returns true: the run then measures nothing. Otherwise does nothing and returns false.
 */
export function rerenderIfAsked<T>(out: string, render: (recorded: T) => string): boolean {
  if (process.env.BENCH_RENDER_ONLY !== "1") return false;
  const recorded = JSON.parse(readFileSync(resolve(RESULTS_DIR, `${out}.json`), "utf8")) as T;
  writeFileSync(resolve(RESULTS_DIR, `${out}.md`), render(recorded));
  console.log(`rewrote ${resolve(RESULTS_DIR, out)}.md from the recorded .json`);
  return true;
}
