import {
  createTopicNames,
  DEFAULT_TOPIC_NAMESPACE,
  DEFAULT_TOPIC_PREFIX,
  decodeModelInferRequest,
  decodeModelInferResponse,
  ERROR_HEADER,
  ERROR_MESSAGE_HEADER,
  ERROR_STATUS_HEADER,
  type OipTensor,
  PIPELINE_HEADER,
  parseRecordKey,
  REQUEST_ID_HEADER,
  requestInputsToOip,
  responseOutputsToOip,
  type TopicNames,
  tensorDataToJson,
} from "@tern/core";
import type { TailRecord, TopicTails } from "@tern/kafka";
import { type InspectTopic, inspectTopics, parseInspectPath } from "../inspect-path.js";
import { type Command, EXIT_FAILED, EXIT_OK, EXIT_USAGE, parseCommandArgs } from "../io.js";
import { clientFor, envOf, reportError, type SchedulerCommandIo } from "./apply.js";

/** Brokers when neither --kafka-brokers nor KAFKA_BROKERS says: the broker `npm start` runs. */
export const DEFAULT_INSPECT_BROKERS = "localhost:9092";
const DEFAULT_TIMEOUT_SECONDS = 30;

const usage = `Usage: tern pipeline inspect PIPELINE[.STEP[.inputs|outputs[.TENSOR]]] [options]

Reads the latest records of a pipeline's Kafka topics and prints them decoded: topic, partition, offset, key,
request id, headers, and each tensor's name, datatype, shape and data (Seldon's "seldon pipeline inspect").

Expression:
  PIPELINE                  the pipeline's inputs, every step's inputs and outputs, the pipeline's outputs
  PIPELINE.inputs|outputs   the pipeline's own inputs or outputs topic
  PIPELINE.STEP             the step's inputs and outputs (its model's topics, only this pipeline's records)
  PIPELINE.STEP.inputs|outputs[.TENSOR]
                            one side of the step; with TENSOR only that tensor (records without it are left out)

Options:
  --offset N               read the last N records of every partition of each topic (default 1); the filters
                           below apply to those records
  --request-id ID          only the records of this request: the id in the record key (the gateway's request id,
                           x-tern-request-id) or the caller's x-request-id header
  --format raw|json        raw (default): a few lines per record; json: one JSON document on stdout
  --kafka-brokers LIST     host:port,... (default: $KAFKA_BROKERS, else ${DEFAULT_INSPECT_BROKERS})
  --namespace NS           topic namespace (default: $TERN_NAMESPACE, else ${DEFAULT_TOPIC_NAMESPACE})
  --topic-prefix PREFIX    topic prefix (default: $TERN_TOPIC_PREFIX, else ${DEFAULT_TOPIC_PREFIX})
  --timeout SECONDS        give up after this long (default ${DEFAULT_TIMEOUT_SECONDS}); what was read is printed
  -h, --help               show this help

The pipeline's steps come from the scheduler (TERN_SCHEDULER_URL, TERN_SCHEDULER_TOKEN). Reading joins a throwaway
consumer group of its own (tern-inspect-<random>), commits nothing and deletes the group afterwards: the platform's
offsets never move.

Exit status: 0 read, 1 unknown pipeline or step, unreachable scheduler or brokers, or not everything read in time,
2 wrong usage.
`;

const topUsage = `Usage: tern pipeline SUBCOMMAND [options]

Subcommands:
  inspect    print the latest records of a pipeline's topics, decoded

Run "tern pipeline inspect --help" for its options.
`;

/** A tensor as printed: data as plain JSON values (64-bit integers beyond 2^53 lose precision). */
export interface InspectedTensor {
  name: string;
  datatype: string;
  shape: number[];
  data: unknown[];
}

/** One record as `tern pipeline inspect` shows it. */
export interface InspectedRecord {
  topic: string;
  /** What the topic is to the pipeline (`inputs`, `step add10 outputs`, …). */
  label: string;
  partition: number;
  offset: string;
  timestamp: string;
  key: string;
  /** The id in the key, else the `x-request-id` header, else "". */
  requestId: string;
  headers: Record<string, string>;
  tensors: InspectedTensor[];
  /** An error record's message (`tern-error`), with its status and what failed when the record names them. */
  error?: { message: string; status?: string; failed?: string };
  /** Why the value could not be decoded as OIP protobuf. */
  undecodable?: string;
}

/** Decodes one record: a `ModelInferRequest` on an inputs topic, a `ModelInferResponse` on an outputs topic. */
export function inspectRecord(record: TailRecord, label: string, topics: TopicNames): InspectedRecord {
  const requestId = parseRecordKey(record.key)?.requestId ?? record.headers[REQUEST_ID_HEADER] ?? "";
  const base = {
    topic: record.topic,
    label,
    partition: record.partition,
    offset: record.offset,
    timestamp: record.timestamp,
    key: record.key,
    requestId,
    headers: record.headers,
  };
  const message = record.headers[ERROR_MESSAGE_HEADER];
  if (message !== undefined || record.headers[ERROR_HEADER] !== undefined) {
    const status = record.headers[ERROR_STATUS_HEADER];
    const failed = record.headers[ERROR_HEADER];
    return {
      ...base,
      tensors: [],
      error: {
        message: message ?? Buffer.from(record.value).toString("utf8"),
        ...(status === undefined ? {} : { status }),
        ...(failed === undefined ? {} : { failed }),
      },
    };
  }
  try {
    const tensors: OipTensor[] =
      topics.parse(record.topic)?.direction === "inputs"
        ? requestInputsToOip(decodeModelInferRequest(record.value))
        : responseOutputsToOip(decodeModelInferResponse(record.value));
    return {
      ...base,
      tensors: tensors.map((t) => ({
        name: t.name,
        datatype: t.datatype,
        shape: t.shape,
        data: tensorDataToJson(t.datatype, t.data),
      })),
    };
  } catch (err) {
    return { ...base, tensors: [], undecodable: (err as Error).message };
  }
}

/** The records an expression's filters keep, tensors narrowed to `tensor` when one is named. */
export function filterRecords(
  records: readonly InspectedRecord[],
  filters: { requestId?: string; tensor?: string },
): InspectedRecord[] {
  const kept: InspectedRecord[] = [];
  for (const r of records) {
    if (
      filters.requestId !== undefined &&
      r.requestId !== filters.requestId &&
      r.headers[REQUEST_ID_HEADER] !== filters.requestId
    ) {
      continue;
    }
    if (filters.tensor !== undefined && r.error === undefined) {
      const tensors = r.tensors.filter((t) => t.name === filters.tensor);
      if (tensors.length === 0) continue;
      kept.push({ ...r, tensors });
      continue;
    }
    kept.push(r);
  }
  return kept;
}

/** The raw format: a header line per record, then its headers and one line per tensor (or its error). */
export function formatRaw(records: readonly InspectedRecord[]): string {
  const lines: string[] = [];
  for (const r of records) {
    lines.push(`${r.topic} [${r.label}] partition ${r.partition} offset ${r.offset} key ${r.key}`);
    lines.push(`  request id: ${r.requestId === "" ? "(none)" : r.requestId}`);
    const headers = Object.entries(r.headers)
      .map(([name, value]) => `${name}=${value}`)
      .join(" ");
    lines.push(`  headers: ${headers === "" ? "(none)" : headers}`);
    if (r.error !== undefined) {
      const extra = [
        r.error.status === undefined ? "" : `status ${r.error.status}`,
        r.error.failed === undefined ? "" : `failed: ${r.error.failed}`,
      ].filter((e) => e !== "");
      lines.push(`  error: ${r.error.message}${extra.length === 0 ? "" : ` (${extra.join(", ")})`}`);
    }
    if (r.undecodable !== undefined) lines.push(`  value is not OIP protobuf: ${r.undecodable}`);
    for (const t of r.tensors) {
      lines.push(`  ${t.name} ${t.datatype} [${t.shape.join(",")}] ${JSON.stringify(t.data)}`);
    }
  }
  return lines.length === 0 ? "" : `${lines.join("\n")}\n`;
}

/** Status of a pipeline as the scheduler shows it; only the steps are read here. */
interface PipelineStatusView {
  steps?: string[];
}

type InspectValues = {
  "request-id"?: string;
  offset?: string;
  format?: string;
  "kafka-brokers"?: string;
  namespace?: string;
  "topic-prefix"?: string;
  timeout?: string;
};

/** `tern pipeline inspect EXPRESSION [options]`. */
export async function runPipelineInspect(args: string[], io: SchedulerCommandIo): Promise<number> {
  const parsed = parseCommandArgs<InspectValues>(
    "pipeline inspect",
    args,
    {
      "request-id": { type: "string" },
      offset: { type: "string" },
      format: { type: "string" },
      "kafka-brokers": { type: "string" },
      namespace: { type: "string" },
      "topic-prefix": { type: "string" },
      timeout: { type: "string" },
    },
    usage,
    io,
    true,
  );
  if ("exit" in parsed) return parsed.exit;
  const { values, positionals } = parsed;
  const env = envOf(io);
  const usageError = (message: string) => {
    io.stderr.write(`tern pipeline inspect: ${message}\n`);
    return EXIT_USAGE;
  };
  if (positionals.length !== 1) return usageError(`expected one expression, PIPELINE[.STEP[.inputs|outputs[.TENSOR]]]`);
  const path = parseInspectPath(positionals[0]!);
  if ("problem" in path) return usageError(path.problem);

  const offsetText = values.offset ?? "1";
  const last = Number(offsetText);
  if (!Number.isSafeInteger(last) || last < 1 || offsetText.trim() === "") {
    return usageError(`--offset must be a whole number of at least 1 (got "${offsetText}")`);
  }
  const format = values.format ?? "raw";
  if (format !== "raw" && format !== "json") return usageError(`--format must be raw or json (got "${format}")`);
  let timeoutMs = DEFAULT_TIMEOUT_SECONDS * 1000;
  if (values.timeout !== undefined) {
    const seconds = Number(values.timeout);
    if (!Number.isFinite(seconds) || seconds <= 0 || values.timeout.trim() === "") {
      return usageError(`--timeout must be a positive number of seconds (got "${values.timeout}")`);
    }
    timeoutMs = Math.ceil(seconds * 1000);
  }
  const orEnv = (option: string | undefined, name: string, fallback: string) =>
    option ?? (env[name] !== undefined && env[name] !== "" ? env[name]! : fallback);
  const brokers = orEnv(values["kafka-brokers"], "KAFKA_BROKERS", DEFAULT_INSPECT_BROKERS)
    .split(",")
    .map((b) => b.trim())
    .filter((b) => b !== "");
  if (brokers.length === 0) return usageError("--kafka-brokers names no broker: give host:port,...");
  let topics: TopicNames;
  try {
    topics = createTopicNames({
      prefix: orEnv(values["topic-prefix"], "TERN_TOPIC_PREFIX", DEFAULT_TOPIC_PREFIX),
      namespace: orEnv(values.namespace, "TERN_NAMESPACE", DEFAULT_TOPIC_NAMESPACE),
    });
  } catch (err) {
    return usageError((err as Error).message);
  }

  let steps: string[];
  try {
    const status = await clientFor(io).get<PipelineStatusView>("Pipeline", path.pipeline);
    if (status === undefined) {
      io.stderr.write(`tern pipeline inspect: pipeline ${path.pipeline} not found\n`);
      return EXIT_FAILED;
    }
    steps = status.steps ?? [];
  } catch (err) {
    return reportError(io, "pipeline inspect", err);
  }
  const targets = inspectTopics(path, steps, topics);
  if ("problem" in targets) {
    io.stderr.write(`tern pipeline inspect: ${targets.problem}\n`);
    return EXIT_FAILED;
  }

  let read: TopicTails;
  try {
    // Loaded here, so that the other commands never load the Kafka client.
    const { readTopicTails } = await import("@tern/kafka");
    read = await readTopicTails(brokers, {
      topics: [...new Set(targets.map((t) => t.topic))],
      last,
      timeoutMs,
    });
  } catch (err) {
    io.stderr.write(`tern pipeline inspect: ${(err as Error).message} (brokers ${brokers.join(",")})\n`);
    return EXIT_FAILED;
  }
  const byTopic = new Map<string, InspectTopic>(targets.map((t) => [t.topic, t]));
  const records = filterRecords(
    read.records.flatMap((record) => {
      const target = byTopic.get(record.topic)!;
      if (target.shared && record.headers[PIPELINE_HEADER] !== path.pipeline) return [];
      return [inspectRecord(record, target.label, topics)];
    }),
    {
      ...(values["request-id"] === undefined ? {} : { requestId: values["request-id"] }),
      ...(path.tensor === undefined ? {} : { tensor: path.tensor }),
    },
  );
  if (format === "json") {
    const doc = {
      pipeline: path.pipeline,
      topics: targets.map((t) => ({ topic: t.topic, label: t.label })),
      records,
      unfinished: read.unfinished,
    };
    io.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
  } else {
    io.stdout.write(formatRaw(records));
    if (records.length === 0) {
      io.stderr.write(
        `tern pipeline inspect: no matching records among the last ${last} of each partition (--offset widens it)\n`,
      );
    }
  }
  if (read.unfinished.length > 0) {
    io.stderr.write(
      `tern pipeline inspect: not read to the end within ${timeoutMs / 1000} s (--timeout): ${read.unfinished.join(", ")}\n`,
    );
    return EXIT_FAILED;
  }
  return EXIT_OK;
}

/** `tern pipeline SUBCOMMAND`: only `inspect` for now. */
export async function runPipeline(args: string[], io: SchedulerCommandIo): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === "inspect") return runPipelineInspect(rest, io);
  if (sub === "--help" || sub === "-h") {
    io.stdout.write(topUsage);
    return EXIT_OK;
  }
  io.stderr.write(
    `tern pipeline: ${sub === undefined ? "missing subcommand" : `unknown subcommand "${sub}"`}\n\n${topUsage}`,
  );
  return EXIT_USAGE;
}

export const pipelineCommand: Command = {
  name: "pipeline",
  summary: "inspect a pipeline's Kafka topics (tern pipeline inspect p[.step[.inputs|outputs[.tensor]]])",
  usage: topUsage,
  run: runPipeline,
};
