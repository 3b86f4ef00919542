import { type ParseArgsConfig, parseArgs } from "node:util";

/**
 * What a command may touch of the outside world, injected so that tests can call `main()` in-process with fake
 * streams. Commands never use `process.stdout`, `process.exit` or `process.cwd()` directly.
 */
export interface CliIo {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
  /** Reads all of standard input (for `-f -`). */
  readStdin(): Promise<string>;
  /**
   * True when standard input is a terminal. A command that would read it without being asked to (e.g. `tern infer`
   * without DATA) treats that as a usage error instead of waiting for typing nobody intends. Absent: not a terminal.
   */
  stdinIsTTY?: boolean;
  /** The directory relative paths are resolved against. */
  cwd: string;
}

/** A CLI subcommand. `run` returns the exit code: 0 ok, 1 failed or invalid, 2 usage error. */
export interface Command {
  name: string;
  /** One line for `tern --help`. */
  summary: string;
  /** The full `tern <name> --help` text. */
  usage: string;
  run(args: string[], io: CliIo): Promise<number>;
}

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/** The real process streams. */
export function createProcessIo(): CliIo {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    cwd: process.cwd(),
    stdinIsTTY: process.stdin.isTTY === true,
    readStdin: async () => {
      // Without this a person who typed `-f -` (or `-`) by mistake sees a silent, seemingly hung command.
      if (process.stdin.isTTY) process.stderr.write("reading standard input (end with Ctrl-D)\n");
      const chunks: Buffer[] = [];
      for await (const chunk of process.stdin) chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : chunk);
      return Buffer.concat(chunks).toString("utf8");
    },
  };
}

/** Turns a `node:util` parseArgs error into the one-line message a person needs; other errors pass through. */
export function usageErrorMessage(err: unknown): string | undefined {
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string" && code.startsWith("ERR_PARSE_ARGS_")) return (err as Error).message;
  return undefined;
}

/**
 * Parses a command's arguments with `node:util` parseArgs (strict; `-h/--help` added) and handles the two outcomes
 * every command shares: a usage error (printed with the usage, exit 2) and `--help` (usage on stdout, exit 0).
 * `V` is the shape of the parsed values, which the caller states.
 */
export function parseCommandArgs<V extends object>(
  command: string,
  args: string[],
  options: NonNullable<ParseArgsConfig["options"]>,
  usage: string,
  io: Pick<CliIo, "stdout" | "stderr">,
  allowPositionals = false,
): { values: V; positionals: string[] } | { exit: number } {
  let parsed: { values: object; positionals: string[] };
  try {
    parsed = parseArgs({
      args,
      options: { ...options, help: { type: "boolean", short: "h" } },
      allowPositionals,
      strict: true,
    });
  } catch (err) {
    const message = usageErrorMessage(err);
    if (message === undefined) throw err;
    io.stderr.write(`tern ${command}: ${message}\n\n${usage}`);
    return { exit: EXIT_USAGE };
  }
  if ((parsed.values as { help?: boolean }).help === true) {
    io.stdout.write(usage);
    return { exit: EXIT_OK };
  }
  return { values: parsed.values as V, positionals: parsed.positionals };
}
