import { closestMatch } from "@tern/core";
import { applyCommand } from "./commands/apply.js";
import { deleteCommand } from "./commands/delete.js";
import { inferCommand } from "./commands/infer.js";
import { listCommand } from "./commands/list.js";
import { pipelineCommand } from "./commands/pipeline.js";
import { serverCommand } from "./commands/server.js";
import { statusCommand } from "./commands/status.js";
import { validateCommand } from "./commands/validate.js";
import { type CliIo, type Command, createProcessIo, EXIT_FAILED, EXIT_OK, EXIT_USAGE } from "./io.js";

/**
 * The `tern` command line: a small dispatcher over subcommands. To add one, write `commands/<name>.ts` exporting a
 * {@link Command} and list it here.
 */
export const commands: readonly Command[] = [
  validateCommand,
  applyCommand,
  deleteCommand,
  listCommand,
  statusCommand,
  serverCommand,
  inferCommand,
  pipelineCommand,
];

function topUsage(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  const lines = commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return [
    "Usage: tern <command> [options]",
    "",
    "Tern serves models described by Seldon Core v2 manifests (mlops.seldon.io/v1alpha1).",
    "",
    "Commands:",
    ...lines,
    "",
    'Run "tern <command> --help" for the options of a command.',
    "",
  ].join("\n");
}

/**
 * Runs the CLI with `argv` (without `node` and the script) and returns the exit code: 0 ok, 1 invalid input or
 * failure, 2 usage error. Never calls `process.exit`, so tests can call it in-process with fake `io`.
 */
export async function main(argv: readonly string[], io: CliIo = createProcessIo()): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    io.stderr.write(topUsage());
    return EXIT_USAGE;
  }
  if (name === "--help" || name === "-h" || name === "help") {
    const target = name === "help" ? commands.find((c) => c.name === rest[0]) : undefined;
    io.stdout.write(target?.usage ?? topUsage());
    return EXIT_OK;
  }
  const command = commands.find((c) => c.name === name);
  if (command === undefined) {
    const close = closestMatch(
      name,
      commands.map((c) => c.name),
    );
    const hint = close === undefined ? "" : ` (did you mean "${close}"?)`;
    io.stderr.write(`tern: unknown command "${name}"${hint}\n\n${topUsage()}`);
    return EXIT_USAGE;
  }
  try {
    return await command.run(rest, io);
  } catch (err) {
    // Commands report expected failures themselves; anything reaching here is a bug or an environment problem.
    io.stderr.write(`tern ${command.name}: ${err instanceof Error ? err.message : String(err)}\n`);
    return EXIT_FAILED;
  }
}
