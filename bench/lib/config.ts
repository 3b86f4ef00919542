/**
 * A benchmark's inputs: the BENCH_* environment variables, read once when the run starts, and the command line that
 * sets them again (written into the results, so that a recorded run can be reproduced).
 */

/**
 * The number in environment variable `name`, or `fallback` when it is unset or empty.
 *
 * @throws Error naming the variable when it is not a finite number >= `min`
 */
export function envNumber(name: string, fallback: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min) throw new Error(`${name} must be a number >= ${min}, got ${JSON.stringify(raw)}`);
  return n;
}

/** The CPU layouts a benchmark can run in (each benchmark says which processes go where). */
export const LAYOUTS = ["pinned", "unpinned", "cost"] as const;
/** One of {@link LAYOUTS}. */
export type Layout = (typeof LAYOUTS)[number];

/**
 * The layouts listed (comma-separated) in BENCH_LAYOUTS, in that order.
 *
 * @default all of {@link LAYOUTS}
 * @throws Error naming the variable on a layout that is not in {@link LAYOUTS}
 */
function envLayouts(): Layout[] {
  const layouts = (process.env.BENCH_LAYOUTS ?? LAYOUTS.join(",")).split(",").map((s) => s.trim());
  for (const l of layouts) {
    if (!(LAYOUTS as readonly string[]).includes(l))
      throw new Error(`BENCH_LAYOUTS: unknown layout ${JSON.stringify(l)}`);
  }
  return layouts as Layout[];
}

/** The command that reproduces this run: every BENCH_* variable set, then `command` (e.g. `npm run bench:x`). */
export function commandLine(command: string): string {
  const env = Object.entries(process.env)
    .filter(([k]) => k.startsWith("BENCH_"))
    .map(([k, v]) => `${k}=${v}`);
  return [...env, command].join(" ");
}

/** The settings every load benchmark reads, from the BENCH_* variables of the same names. */
export interface LoadBenchConfig {
  /** BENCH_DURATION_S: seconds per target per round (at least 1). */
  durationS: number;
  /** BENCH_ROUNDS: rounds per layout (at least 1). @default 5 */
  rounds: number;
  /** BENCH_WARMUP_S: warm-up seconds per target, once before the first layout (0 for none). @default 5 */
  warmupS: number;
  /** BENCH_CONNECTIONS: autocannon connections (at least 1). @default 50 */
  connections: number;
  /** BENCH_LAYOUTS: comma-separated, in the order to run them. @default all of {@link LAYOUTS} */
  layouts: Layout[];
  /** BENCH_COST_RATE: requests per second in the cost layout (at least 1). @default 1000 */
  costRate: number;
  /** BENCH_OUT: basename of the result files in bench/results/. */
  out: string;
}

/** Inputs of {@link loadBenchConfig}: the defaults that differ between benchmarks. */
export interface LoadBenchDefaults {
  durationS: number;
  out: string;
}

/**
 * Reads the settings every load benchmark shares.
 *
 * @throws Error naming the variable when one is out of range
 */
export function loadBenchConfig(defaults: LoadBenchDefaults): LoadBenchConfig {
  return {
    durationS: envNumber("BENCH_DURATION_S", defaults.durationS, 1),
    rounds: envNumber("BENCH_ROUNDS", 5, 1),
    warmupS: envNumber("BENCH_WARMUP_S", 5, 0),
    connections: envNumber("BENCH_CONNECTIONS", 50, 1),
    layouts: envLayouts(),
    costRate: envNumber("BENCH_COST_RATE", 1000, 1),
    out: process.env.BENCH_OUT ?? defaults.out,
  };
}
