import type { ResourceKind } from "@tern/core";
import { parseKindArg } from "../client.js";
import { type Command, EXIT_OK, EXIT_USAGE, parseCommandArgs } from "../io.js";
import { clientFor, reportError, type SchedulerCommandIo } from "./apply.js";

const usage = `Usage: tern list KIND [--json]

Lists the resources of one kind with their state.

Arguments:
  KIND        model, server, pipeline or experiment (plural and capitalised forms work too)

Options:
  --json      print the scheduler's answer as JSON
  -h, --help  show this help

Exit status: 0 listed, 1 the scheduler failed, 2 wrong usage.
`;

type Row = Record<string, unknown>;

/** Formats rows as a left-aligned table with a header line. */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return `${[line(header), ...rows.map(line)].join("\n")}\n`;
}

const text = (v: unknown): string => (v === undefined || v === null ? "" : String(v));

/** The table columns for each kind. */
export function tableFor(kind: ResourceKind, items: Row[]): string {
  switch (kind) {
    case "Model":
      return formatTable(
        ["NAME", "VERSION", "STATE", "REPLICAS", "AVAILABLE", "SERVER", "REASON"],
        items.map((m) => [m.name, m.version, m.state, m.replicas, m.availableReplicas, m.server, m.reason].map(text)),
      );
    case "Server":
      return formatTable(
        ["NAME", "CONFIG", "STATE", "REPLICAS", "AVAILABLE", "MODELS", "REASON"],
        items.map((s) =>
          [s.name, s.serverConfig, s.state, s.replicas, s.availableReplicas, s.loadedModels, s.reason].map(text),
        ),
      );
    case "Pipeline":
      return formatTable(
        ["NAME", "STATE", "REASON"],
        items.map((p) => [p.name, p.state, p.reason].map(text)),
      );
    case "Experiment":
      return formatTable(
        ["NAME", "STATE", "ACTIVE", "REASON"],
        items.map((e) => [e.name, e.state, e.active, e.reason].map(text)),
      );
  }
}

/** `tern list KIND`. */
export async function runList(argv: string[], io: SchedulerCommandIo): Promise<number> {
  const parsed = parseCommandArgs<{ json?: boolean }>("list", argv, { json: { type: "boolean" } }, usage, io, true);
  if ("exit" in parsed) return parsed.exit;
  const { values, positionals } = parsed;
  if (positionals.length !== 1) {
    io.stderr.write(`tern list: expected one KIND\n\n${usage}`);
    return EXIT_USAGE;
  }
  const kind = parseKindArg(positionals[0]!);
  if (kind === undefined) {
    io.stderr.write(`tern list: unknown kind "${positionals[0]}": expected model, server, pipeline or experiment\n`);
    return EXIT_USAGE;
  }
  try {
    const items = await clientFor(io).list<Row>(kind);
    if (values.json === true) io.stdout.write(`${JSON.stringify(items, null, 2)}\n`);
    else if (items.length === 0) io.stdout.write(`no ${kind.toLowerCase()}s\n`);
    else io.stdout.write(tableFor(kind, items));
    return EXIT_OK;
  } catch (err) {
    return reportError(io, "list", err);
  }
}

export const listCommand: Command = {
  name: "list",
  summary: "list models, servers, pipelines or experiments with their state",
  usage,
  run: runList,
};
