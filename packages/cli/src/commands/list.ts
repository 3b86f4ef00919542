import type { ResourceKind, WorkerKind, WorkerKindStatus } from "@tern/core";
import { parseKindArg } from "../client.js";
import { type Command, EXIT_OK, EXIT_USAGE, parseCommandArgs } from "../io.js";
import { clientFor, reportError, type SchedulerCommandIo } from "./apply.js";

const usage = `Usage: tern list KIND [--json]

Lists the resources of one kind with their state, the model gateways with their buckets, or the dataflow
workers with the pipelines they own.

Arguments:
  KIND        model, server, pipeline or experiment (plural and capitalised forms work too);
              modelgateways: the model-gateway replicas (id, state, last heartbeat, buckets) and every
              bucket (owner, consumer group, consumers, models);
              dataflow: the dataflow workers (id, state, last heartbeat, pipelines) and every pipeline
              (version, state, consumer group, owners in ring order, and what each worker reports
              running: worker=state, with @vN when not the current version)

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

/** One row per registered worker of a kind: id, state, last heartbeat and its share of the work. */
function workersTable(
  status: WorkerKindStatus,
  noun: string,
  [idHeader, shareHeader]: [string, string],
  share: (worker: WorkerKindStatus["replicas"][number]) => string,
): string {
  if (status.replicas.length === 0) return `no ${noun} registered\n`;
  return formatTable(
    [idHeader, "STATE", "LAST HEARTBEAT", shareHeader],
    status.replicas.map((r) => [
      r.id,
      r.state,
      r.lastHeartbeatAt > 0 ? new Date(r.lastHeartbeatAt).toISOString() : "",
      share(r),
    ]),
  );
}

const MODEL_GATEWAY_ALIASES = new Set(["modelgateway", "modelgateways", "model-gateway", "model-gateways", "mg"]);

/** The model gateways and their buckets, as two tables under a summary line. */
export function modelGatewaysTable(status: WorkerKindStatus): string {
  const buckets = status.buckets ?? [];
  const kafka = status.kafkaConfigured ? "" : " (Kafka not configured on the scheduler: no topics are managed)";
  const summary = `${status.replicas.length} model-gateway replicas, ${buckets.length} buckets, ${status.partitions} partitions${kafka}\n`;
  const replicas = workersTable(status, "model-gateway replicas", ["REPLICA", "BUCKETS"], (r) => r.buckets.join(","));
  const table = formatTable(
    ["BUCKET", "OWNER", "GROUP", "CONSUMERS", "MODELS"],
    buckets.map((b) => [String(b.bucket), b.owner ?? "", b.groupId, String(b.consumers), b.models.join(",")]),
  );
  return `${summary}\n${replicas}\n${table}`;
}

const DATAFLOW_ALIASES = new Set(["dataflow", "dataflows", "dataflow-workers", "df"]);

/** The dataflow workers and every pipeline's owners, as two tables under a summary line. */
export function dataflowTable(status: WorkerKindStatus): string {
  const pipelines = status.pipelines ?? [];
  const kafka = status.kafkaConfigured ? "" : " (Kafka not configured on the scheduler: no topics are managed)";
  const summary =
    `${status.replicas.length} dataflow workers, ${pipelines.length} pipelines, ` +
    `replication ${text(status.replication)}, ${status.partitions} partitions${kafka}\n`;
  const workers = workersTable(status, "dataflow workers", ["WORKER", "PIPELINES"], (r) =>
    (r.pipelines ?? []).join(","),
  );
  const table =
    pipelines.length === 0
      ? "no pipelines\n"
      : formatTable(
          ["PIPELINE", "VERSION", "STATE", "GROUP", "OWNERS", "RUNS"],
          pipelines.map((p) => [
            p.pipeline,
            String(p.version),
            text(p.state),
            p.groupId,
            p.owners.join(","),
            (p.runs ?? [])
              .map((r) => `${r.worker}=${r.state}${r.version === p.version ? "" : `@v${r.version}`}`)
              .join(","),
          ]),
        );
  return `${summary}\n${workers}\n${table}`;
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
  const asked = positionals[0]!.toLowerCase();
  if (MODEL_GATEWAY_ALIASES.has(asked)) return listWorkers("modelgateway", values.json === true, io);
  if (DATAFLOW_ALIASES.has(asked)) return listWorkers("dataflow", values.json === true, io);
  const kind = parseKindArg(positionals[0]!);
  if (kind === undefined) {
    io.stderr.write(
      `tern list: unknown kind "${positionals[0]}": expected model, server, pipeline, experiment, modelgateways or dataflow\n`,
    );
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

async function listWorkers(kind: WorkerKind, json: boolean, io: SchedulerCommandIo): Promise<number> {
  try {
    const status = await clientFor(io).workers(kind);
    const table = kind === "dataflow" ? dataflowTable(status) : modelGatewaysTable(status);
    io.stdout.write(json ? `${JSON.stringify(status, null, 2)}\n` : table);
    return EXIT_OK;
  } catch (err) {
    return reportError(io, "list", err);
  }
}

export const listCommand: Command = {
  name: "list",
  summary: "list models, servers, pipelines, experiments, model gateways or dataflow workers with their state",
  usage,
  run: runList,
};
