import { MODEL_STATES, PIPELINE_STATES, type ResourceKind } from "@tern/core";
import { parseKindArg, type SchedulerClient } from "../client.js";
import { type Command, EXIT_FAILED, EXIT_OK, EXIT_USAGE, parseCommandArgs } from "../io.js";
import { clientFor, reportError, type SchedulerCommandIo } from "./apply.js";

/** States `-w` accepts per kind (the scheduler's names). */
export const WAITABLE_STATES: Readonly<Record<ResourceKind, readonly string[]>> = {
  Model: MODEL_STATES,
  Server: ["ServerReady", "ServerProgressing", "ServerFailed", "ServerTerminating", "ServerTerminated"],
  Pipeline: PIPELINE_STATES,
  Experiment: ["ExperimentReady", "ExperimentNotReady", "ExperimentTerminated"],
};

/** A resource that is gone has reached these states. */
const GONE_STATES = new Set(["ModelTerminated", "PipelineTerminated", "ServerTerminated", "ExperimentTerminated"]);

const usage = `Usage: tern status KIND NAME [-w STATE] [--timeout SECONDS] [--json]

Shows the state of one resource; for models: state, reason, replicas asked for, desired (autoscaling) and
available, the last autoscaling decision with its reason, and where each replica is (server, replica index,
replica state).

Arguments:
  KIND                model, server, pipeline or experiment (plural and capitalised forms work too)
  NAME                the resource's metadata.name

Options:
  -w, --wait STATE     wait until the resource is in STATE (e.g. ModelAvailable; ModelTerminated waits until
                       it is gone), polling the scheduler
  --timeout SECONDS    give up waiting after this long (default 60)
  --json               print the status as JSON (for models: name, version, state, reason, replicas,
                       desiredReplicas, availableReplicas, server, placement [{server, replica, state}],
                       autoscaling {minReplicas, maxReplicas, lastDecision, wantsServerReplicas}); only JSON goes to
                       stdout, messages go to stderr ({kind, name, state} once a waited-for deletion is done)
  -h, --help           show this help

Exit status: 0 shown (or the state was reached), 1 not found, failed or timed out, 2 wrong usage.
`;

type Status = Record<string, unknown>;

/** A person's view of one status. */
export function formatStatus(kind: ResourceKind, s: Status): string {
  const lines: string[] = [];
  const head = `${kind} ${String(s.name)}${s.version === undefined ? "" : ` version ${String(s.version)}`}: ${String(s.state)}`;
  lines.push(head);
  if (kind === "Model") {
    const server = s.server === undefined ? "" : `, server ${String(s.server)}`;
    const desired =
      s.desiredReplicas === undefined || s.desiredReplicas === s.replicas
        ? ""
        : `, ${String(s.desiredReplicas)} desired`;
    lines.push(
      `  replicas: ${String(s.replicas)} requested${desired}, ${String(s.availableReplicas)} available${server}`,
    );
    const scaling = s.autoscaling as
      | { minReplicas: number; maxReplicas?: number; lastDecision?: { at: number; reason: string } }
      | undefined;
    if (scaling !== undefined) {
      lines.push(
        `  autoscaling: ${scaling.minReplicas}..${scaling.maxReplicas ?? "server replicas"}, ${String(s.desiredReplicas)} desired now`,
      );
      if (scaling.lastDecision !== undefined) {
        lines.push(
          `  last decision (${new Date(scaling.lastDecision.at).toISOString()}): ${scaling.lastDecision.reason}`,
        );
      }
    }
  }
  if (kind === "Server") {
    const spec =
      s.specReplicas === undefined || s.specReplicas === s.replicas ? "" : ` (manifest ${String(s.specReplicas)})`;
    lines.push(
      `  replicas: ${String(s.replicas)} desired${spec}, ${String(s.availableReplicas)} connected; ${String(s.loadedModels)} model replicas held`,
    );
    const scaling = s.autoscaling as { minReplicas: number; maxReplicas?: number; reason?: string } | undefined;
    if (scaling !== undefined) {
      const why = scaling.reason === undefined ? "" : `; last: ${scaling.reason}`;
      lines.push(`  autoscaling: ${scaling.minReplicas}..${scaling.maxReplicas ?? "unbounded"}${why}`);
    }
  }
  if (s.reason !== undefined) lines.push(`  reason: ${String(s.reason)}`);
  if (kind === "Model" && Array.isArray(s.placement) && s.placement.length > 0) {
    lines.push("  placement:");
    for (const p of s.placement as { server: string; replica: number; state: string; reason?: string }[]) {
      lines.push(`    ${p.server}/${p.replica}  ${p.state}${p.reason === undefined ? "" : `  (${p.reason})`}`);
    }
  }
  if (kind === "Server" && Array.isArray(s.replicaStatus)) {
    for (const r of s.replicaStatus as { replica: number; models: unknown[]; leaving: boolean; mayStop: boolean }[]) {
      const flags = [r.leaving ? "leaving" : "", r.mayStop ? "may stop" : ""].filter((f) => f !== "").join(", ");
      lines.push(`    replica ${r.replica}: ${r.models.length} models${flags === "" ? "" : ` (${flags})`}`);
    }
  }
  return `${lines.join("\n")}\n`;
}

/** Polls until the resource is in `state`, or the deadline passes. Returns the last status seen (undefined: gone). */
export async function waitForState(
  client: SchedulerClient,
  kind: ResourceKind,
  name: string,
  state: string,
  timeoutMs: number,
  intervalMs = 250,
): Promise<{ reached: boolean; last: Status | undefined; error?: unknown }> {
  const deadline = Date.now() + timeoutMs;
  let last: Status | undefined;
  let error: unknown;
  for (;;) {
    try {
      last = await client.get<Status>(kind, name);
      error = undefined;
      if (last === undefined ? GONE_STATES.has(state) : last.state === state) return { reached: true, last };
    } catch (err) {
      // The scheduler may be restarting or failing over: keep trying until the deadline.
      error = err;
    }
    const remaining = deadline - Date.now();
    if (remaining <= 0) return { reached: false, last, error };
    await new Promise((r) => setTimeout(r, Math.min(intervalMs, remaining)));
  }
}

/** `tern status KIND NAME [-w STATE] [--timeout SECONDS] [--json]`. */
export async function runStatus(argv: string[], io: SchedulerCommandIo): Promise<number> {
  const parsed = parseCommandArgs<{ wait?: string; timeout?: string; json?: boolean }>(
    "status",
    argv,
    {
      wait: { type: "string", short: "w" },
      timeout: { type: "string" },
      json: { type: "boolean" },
    },
    usage,
    io,
    true,
  );
  if ("exit" in parsed) return parsed.exit;
  const { values, positionals } = parsed;
  if (positionals.length !== 2) {
    io.stderr.write(`tern status: expected KIND NAME\n\n${usage}`);
    return EXIT_USAGE;
  }
  const kind = parseKindArg(positionals[0]!);
  const name = positionals[1]!;
  if (kind === undefined) {
    io.stderr.write(`tern status: unknown kind "${positionals[0]}": expected model, server, pipeline or experiment\n`);
    return EXIT_USAGE;
  }
  let timeoutMs = 60_000;
  if (values.timeout !== undefined) {
    const seconds = Number(values.timeout);
    if (!Number.isFinite(seconds) || seconds <= 0) {
      io.stderr.write(`tern status: --timeout must be a positive number of seconds (got "${values.timeout}")\n`);
      return EXIT_USAGE;
    }
    timeoutMs = seconds * 1000;
  }
  if (values.wait !== undefined && !WAITABLE_STATES[kind].includes(values.wait)) {
    io.stderr.write(
      `tern status: unknown ${kind} state "${values.wait}": expected one of ${WAITABLE_STATES[kind].join(", ")}\n`,
    );
    return EXIT_USAGE;
  }
  const client = clientFor(io);
  const print = (s: Status) =>
    io.stdout.write(values.json === true ? `${JSON.stringify(s, null, 2)}\n` : formatStatus(kind, s));

  if (values.wait === undefined) {
    try {
      const s = await client.get<Status>(kind, name);
      if (s === undefined) {
        io.stderr.write(`tern status: ${kind} ${name} not found\n`);
        return EXIT_FAILED;
      }
      print(s);
      return EXIT_OK;
    } catch (err) {
      return reportError(io, "status", err);
    }
  }

  const result = await waitForState(client, kind, name, values.wait, timeoutMs);
  if (result.reached) {
    // Gone: there is no status to print, only the state that was waited for.
    if (result.last === undefined)
      io.stdout.write(
        values.json === true
          ? `${JSON.stringify({ kind, name, state: values.wait }, null, 2)}\n`
          : `${kind} ${name}: ${values.wait}\n`,
      );
    else print(result.last);
    return EXIT_OK;
  }
  if (result.last !== undefined) print(result.last);
  const now =
    result.last === undefined
      ? result.error instanceof Error
        ? `last error: ${result.error.message}`
        : "it does not exist"
      : `it is ${String(result.last.state)}${result.last.reason === undefined ? "" : ` (${String(result.last.reason)})`}`;
  io.stderr.write(
    `tern status: timed out after ${timeoutMs / 1000} s waiting for ${kind} ${name} to be ${values.wait}; ${now}\n`,
  );
  return EXIT_FAILED;
}

export const statusCommand: Command = {
  name: "status",
  summary: "show a resource's state, or wait for one (-w STATE)",
  usage,
  run: runStatus,
};
