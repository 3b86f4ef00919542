import { type Command, EXIT_FAILED, EXIT_OK, EXIT_USAGE, parseCommandArgs } from "../io.js";
import { clientFor, reportError, type SchedulerCommandIo } from "./apply.js";
import { tableFor } from "./list.js";
import { formatStatus } from "./status.js";

const usage = `Usage: tern server list [--json]
       tern server status NAME [--json]

Shows Servers: their state, replicas asked for and connected, and (status) each replica with the models it
holds and whether it is leaving in a scale-down.

Options:
  --json      print the scheduler's answer as JSON
  -h, --help  show this help

Exit status: 0 shown, 1 not found or the scheduler failed, 2 wrong usage.
`;

/** `tern server list|status NAME`. */
export async function runServer(argv: string[], io: SchedulerCommandIo): Promise<number> {
  const parsed = parseCommandArgs<{ json?: boolean }>("server", argv, { json: { type: "boolean" } }, usage, io, true);
  if ("exit" in parsed) return parsed.exit;
  const { values, positionals } = parsed;
  const [sub, name, ...extra] = positionals;
  const client = clientFor(io);
  try {
    if (sub === "list" && name === undefined) {
      const items = await client.list<Record<string, unknown>>("Server");
      if (values.json === true) io.stdout.write(`${JSON.stringify(items, null, 2)}\n`);
      else if (items.length === 0) io.stdout.write("no servers\n");
      else io.stdout.write(tableFor("Server", items));
      return EXIT_OK;
    }
    if (sub === "status" && name !== undefined && extra.length === 0) {
      const s = await client.get<Record<string, unknown>>("Server", name);
      if (s === undefined) {
        io.stderr.write(`tern server: Server ${name} not found\n`);
        return EXIT_FAILED;
      }
      io.stdout.write(values.json === true ? `${JSON.stringify(s, null, 2)}\n` : formatStatus("Server", s));
      return EXIT_OK;
    }
  } catch (err) {
    return reportError(io, "server", err);
  }
  io.stderr.write(`tern server: expected "list" or "status NAME"\n\n${usage}`);
  return EXIT_USAGE;
}

export const serverCommand: Command = {
  name: "server",
  summary: "list Servers or show one with its replicas",
  usage,
  run: runServer,
};
