import { TernError } from "./errors.js";
import { murmur3 } from "./hash-ring.js";

/**
 * Kafka topic names, record keys and header names, laid out like Seldon Core v2's so that tools written for it can read
 * Tern's topics:
 *
 * - `<prefix>.<namespace>.model.<m>.inputs|outputs`
 * - `<prefix>.<namespace>.pipeline.<p>.inputs|outputs`
 * - `<prefix>.<namespace>.errors.errors`
 * - record key `<partition>.<resource>.<requestId>`
 *
 * Segments other than the request id never contain dots (resource names cannot, by the manifest rules; prefix and
 * namespace cannot, by the rule below), which is what makes names and keys parse back unambiguously.
 */

/** Record header naming the pipeline a record belongs to; a dataflow worker ignores records of other pipelines. */
export const PIPELINE_HEADER = "pipeline";
/** Record and HTTP header carrying the request id. */
export const REQUEST_ID_HEADER = "x-request-id";
/**
 * HTTP response header (and gRPC response metadata key) with the gateway's own id of a pipeline request — the request
 * id in its record keys — next to the caller's x-request-id.
 */
export const PIPELINE_REQUEST_ID_HEADER = "x-tern-request-id";

// An error record, as the model gateway writes it for a failed model request and a dataflow worker for a pipeline's
// error answer (docs/dataflow.md). Seldon's components mark one with ERROR_HEADER and put the message in the value of
// the record on the errors topic; Tern does the same and, on the outputs topics, also carries the message and the
// gRPC status name in headers, so a reader of the outputs (the dataflow, the gateway, `tern pipeline inspect`) can
// fail the request without consulting the errors topic.

/** Marks an error record; its value names what failed (the model, or the pipeline of an error answer). */
export const ERROR_HEADER = "seldon-pipeline-errors";
/** The error's message on an error record. */
export const ERROR_MESSAGE_HEADER = "tern-error";
/** The gRPC status name of the error (`INVALID_ARGUMENT`, `UNAVAILABLE`, ...) on an error record. */
export const ERROR_STATUS_HEADER = "tern-error-status";
/** HTTP header that routes like the path: `m` (model), `p.pipeline` (pipeline), `e.experiment` (experiment). */
export const SELDON_MODEL_HEADER = "seldon-model";
/** Response header naming the route an experiment took; sending it back pins the route. */
export const SELDON_ROUTE_HEADER = "x-seldon-route";

/**
 * Record header carrying the caller's deadline: epoch milliseconds, decimal. The gateway sets it on a pipeline request;
 * the dataflow carries it to every record derived from the request; the model gateway and the dataflow do no work for a
 * request past it (docs/dataflow.md, "Deadlines"). A record without it has no deadline but the components' own.
 */
export const DEADLINE_HEADER = "tern-deadline";

/** The deadline a record's headers carry (epoch ms), or undefined when there is none or it is not a decimal epoch. */
export function deadlineOf(headers: Readonly<Record<string, string>>): number | undefined {
  const text = headers[DEADLINE_HEADER];
  if (text === undefined || !/^[0-9]{1,16}$/.test(text)) return undefined;
  const value = Number(text);
  return Number.isSafeInteger(value) ? value : undefined;
}

/** @default "seldon" */
export const DEFAULT_TOPIC_PREFIX = "seldon";
/** @default "default" */
export const DEFAULT_TOPIC_NAMESPACE = "default";
/** Kafka refuses longer topic names. */
export const MAX_TOPIC_NAME_LENGTH = 249;

/** One dot-free segment: Kafka's legal topic characters minus the dot that separates segments. */
const SEGMENT = /^[a-zA-Z0-9_-]+$/;
const TOPIC = /^[a-zA-Z0-9._-]+$/;

export type TopicKind = "model" | "pipeline" | "errors";
export type TopicDirection = "inputs" | "outputs";

export interface TopicNamesOptions {
  /** @default "seldon" */
  prefix?: string;
  /** @default "default" */
  namespace?: string;
}

/** A parsed topic name. `name` and `direction` are set for model and pipeline topics, absent for the errors topic. */
export interface ParsedTopic {
  prefix: string;
  namespace: string;
  kind: TopicKind;
  name?: string;
  direction?: TopicDirection;
}

/** Topic names of one installation (one prefix and namespace). */
export interface TopicNames {
  readonly prefix: string;
  readonly namespace: string;
  /** @throws TernError `bad_request` when the model name cannot appear in a topic name. */
  modelInputs(model: string): string;
  modelOutputs(model: string): string;
  pipelineInputs(pipeline: string): string;
  pipelineOutputs(pipeline: string): string;
  errors(): string;
  /** Like {@link parseTopic}, but null also for topics of another prefix or namespace. */
  parse(topic: string): ParsedTopic | null;
}

/**
 * Topic naming for one prefix and namespace.
 * @throws TernError `config.invalid` when the prefix or namespace is empty or holds a character other than letters,
 * digits, `_` and `-`.
 */
export function createTopicNames(options: TopicNamesOptions = {}): TopicNames {
  const prefix = options.prefix ?? DEFAULT_TOPIC_PREFIX;
  const namespace = options.namespace ?? DEFAULT_TOPIC_NAMESPACE;
  checkSegment("config.invalid", "topic prefix", prefix);
  checkSegment("config.invalid", "topic namespace", namespace);
  const base = `${prefix}.${namespace}`;
  const resourceTopic = (kind: "model" | "pipeline", name: string, direction: TopicDirection): string => {
    checkSegment("bad_request", `${kind} name`, name);
    return checkTopic(`${base}.${kind}.${name}.${direction}`);
  };
  return {
    prefix,
    namespace,
    modelInputs: (model) => resourceTopic("model", model, "inputs"),
    modelOutputs: (model) => resourceTopic("model", model, "outputs"),
    pipelineInputs: (pipeline) => resourceTopic("pipeline", pipeline, "inputs"),
    pipelineOutputs: (pipeline) => resourceTopic("pipeline", pipeline, "outputs"),
    errors: () => checkTopic(`${base}.errors.errors`),
    parse: (topic) => {
      const parsed = parseTopic(topic);
      return parsed && parsed.prefix === prefix && parsed.namespace === namespace ? parsed : null;
    },
  };
}

/**
 * Reads a topic name back into its parts, or null when it is not a Tern/Seldon topic (wrong shape, illegal characters,
 * too long). Never throws: topic lists come from the broker and may hold anything.
 */
export function parseTopic(topic: string): ParsedTopic | null {
  if (typeof topic !== "string" || topic.length > MAX_TOPIC_NAME_LENGTH || !TOPIC.test(topic)) return null;
  const parts = topic.split(".");
  if (parts.some((p) => p.length === 0)) return null;
  const [prefix, namespace, kind, name, direction] = parts as [string, string, string, string?, string?];
  if (parts.length === 4 && kind === "errors" && name === "errors") return { prefix, namespace, kind: "errors" };
  if (parts.length !== 5 || (kind !== "model" && kind !== "pipeline")) return null;
  if (direction !== "inputs" && direction !== "outputs") return null;
  return { prefix, namespace, kind, name: name!, direction };
}

/** The parts of a record key. */
export interface RecordKey {
  /** The partition the request was first produced on; every hop writes to the same partition number. */
  partition: number;
  /** The model or pipeline name (no dots). */
  resource: string;
  /** The request id; may contain dots. */
  requestId: string;
}

/**
 * `<partition>.<resource>.<requestId>`.
 * @throws TernError `bad_request` naming the field: partition not a non-negative safe integer, resource not a dot-free
 * name, or requestId empty.
 */
export function formatRecordKey(key: RecordKey): string {
  const { partition, resource, requestId } = key;
  if (!Number.isSafeInteger(partition) || partition < 0) {
    throw new TernError(
      "bad_request",
      `record key partition must be a non-negative integer (got ${String(partition)})`,
    );
  }
  checkSegment("bad_request", "record key resource", resource);
  if (typeof requestId !== "string" || requestId.length === 0) {
    throw new TernError("bad_request", "record key requestId must be a non-empty string");
  }
  return `${partition}.${resource}.${requestId}`;
}

/**
 * Splits a record key on its first two dots; everything after the second dot is the request id, so request ids may
 * contain dots. Null when the key is not of that shape (keys come from the broker and may hold anything), including a
 * partition with a sign or leading zeros, so that every parsed key formats back to the same string.
 */
export function parseRecordKey(key: string): RecordKey | null {
  if (typeof key !== "string") return null;
  const first = key.indexOf(".");
  if (first <= 0) return null;
  const second = key.indexOf(".", first + 1);
  if (second < 0) return null;
  const partitionText = key.slice(0, first);
  const resource = key.slice(first + 1, second);
  const requestId = key.slice(second + 1);
  if (!/^(0|[1-9][0-9]*)$/.test(partitionText) || !SEGMENT.test(resource) || requestId.length === 0) return null;
  const partition = Number(partitionText);
  if (!Number.isSafeInteger(partition)) return null;
  return { partition, resource, requestId };
}

/**
 * The partition a request id hashes to, with the ring's hash (MurmurHash3 of the UTF-8 bytes), so every gateway and
 * worker agrees. A long-lived gateway that owns a partition picks request ids landing on it, or uses this to spread.
 *
 * @throws TernError `bad_request` when `partitions` is not a positive integer or `requestId` is not a string.
 */
export function partitionForRequest(requestId: string, partitions: number): number {
  if (typeof requestId !== "string") {
    throw new TernError("bad_request", `requestId must be a string (got ${typeof requestId})`);
  }
  if (!Number.isSafeInteger(partitions) || partitions < 1) {
    throw new TernError("bad_request", `partitions must be a positive integer (got ${String(partitions)})`);
  }
  return murmur3(requestId) % partitions;
}

function checkSegment(code: "bad_request" | "config.invalid", field: string, value: string): void {
  if (typeof value !== "string" || !SEGMENT.test(value)) {
    throw new TernError(
      code,
      `${field} ${JSON.stringify(value)} is not valid: use letters, digits, "_" and "-" only (no dots, not empty)`,
    );
  }
}

function checkTopic(topic: string): string {
  if (topic.length > MAX_TOPIC_NAME_LENGTH) {
    throw new TernError(
      "bad_request",
      `topic name ${JSON.stringify(topic.slice(0, 40))}… is ${topic.length} characters; Kafka allows at most ${MAX_TOPIC_NAME_LENGTH}`,
    );
  }
  return topic;
}
