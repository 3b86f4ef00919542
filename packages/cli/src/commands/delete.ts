import type { ResourceKind } from "@tern/core";
import { parseKindArg } from "../client.js";
import { type Command, EXIT_FAILED, EXIT_OK, EXIT_USAGE, parseCommandArgs } from "../io.js";
import { clientFor, readManifestArgs, reportError, type SchedulerCommandIo } from "./apply.js";

const usage = `Usage: tern delete -f FILE|DIR|- [-f ...]
       tern delete KIND NAME

Deletes resources. A model's replicas are unloaded first (ModelTerminating), then it is gone.

Arguments:
  KIND                 model, server, pipeline or experiment (plural and capitalised forms work too)
  NAME                 the resource's metadata.name

Options:
  -f, --filename PATH  delete every resource in these manifests; repeatable
  -h, --help           show this help

Exit status: 0 deleted, 1 not found or refused, 2 wrong usage.
`;

/** `tern delete -f FILE` or `tern delete KIND NAME`. */
export async function runDelete(argv: string[], io: SchedulerCommandIo): Promise<number> {
  const parsed = parseCommandArgs<{ filename?: string[] }>(
    "delete",
    argv,
    { filename: { type: "string", short: "f", multiple: true } },
    usage,
    io,
    true,
  );
  if ("exit" in parsed) return parsed.exit;
  const { values, positionals } = parsed;
  const files = values.filename ?? [];
  let targets: { kind: ResourceKind; name: string }[];
  if (files.length > 0) {
    if (positionals.length > 0) {
      io.stderr.write(`tern delete: give either -f FILE or KIND NAME, not both\n\n${usage}`);
      return EXIT_USAGE;
    }
    const { resources, problems } = await readManifestArgs(files, io);
    if (problems.length > 0) {
      io.stderr.write(`${problems.join("\n")}\ntern delete: nothing deleted\n`);
      return EXIT_FAILED;
    }
    targets = resources.map((r) => ({ kind: r.kind, name: r.metadata.name }));
  } else {
    if (positionals.length !== 2) {
      io.stderr.write(`tern delete: expected KIND NAME (or -f FILE)\n\n${usage}`);
      return EXIT_USAGE;
    }
    const kind = parseKindArg(positionals[0]!);
    if (kind === undefined) {
      io.stderr.write(
        `tern delete: unknown kind "${positionals[0]}": expected model, server, pipeline or experiment\n`,
      );
      return EXIT_USAGE;
    }
    targets = [{ kind, name: positionals[1]! }];
  }
  const client = clientFor(io);
  let code = EXIT_OK;
  for (const t of targets) {
    try {
      await client.remove(t.kind, t.name);
      io.stdout.write(`${t.kind} ${t.name} deleted\n`);
    } catch (err) {
      code = reportError(io, "delete", err);
    }
  }
  return code === EXIT_OK ? EXIT_OK : EXIT_FAILED;
}

export const deleteCommand: Command = {
  name: "delete",
  summary: "delete resources named in manifests, or one by kind and name",
  usage,
  run: runDelete,
};
