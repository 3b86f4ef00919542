import {
  createTopicNames,
  decodeModelInferRequest,
  decodeModelInferResponse,
  encodeModelInferRequest,
  formatRecordKey,
  type OipTensor,
  PIPELINE_HEADER,
  parseRecordKey,
  partitionForRequest,
  REQUEST_ID_HEADER,
  requestInputsToOip,
  responseOutputsToOip,
  type TopicNames,
  tensorsFromOip,
} from "@tern/core";
import { waitFor } from "@tern/devstack";
import { createOutsideKafka, type OutsideKafka, type OutsideRecord } from "./outside-kafka.js";

/**
 * A pipeline's client on Kafka, as the pipeline gateway (issue 11) will be: it produces an OIP `ModelInferRequest`
 * (protobuf, core's codec) to `pipeline.<p>.inputs` on the partition `partitionForRequest` gives the request id, under
 * the key `<k>.<p>.<requestId>` with the headers `pipeline` and `x-request-id`, and reads the answer with the same
 * key on `pipeline.<p>.outputs`. The Kafka client is plain kafkajs (the outside client of outside-kafka.ts): none of
 * Tern's Kafka code is on the test's side of the topics.
 *
 * Answers are matched by request id, never by order; an error record (headers `tern-error`, `tern-error-status`,
 * `seldon-pipeline-errors`) is an answer too. Every wait has a deadline.
 */

/** Headers of an error record, as the model gateway and the dataflow workers write them. */
export const ERROR_HEADERS = {
  /** The step (model) or pipeline that failed. Seldon's header. */
  failed: "seldon-pipeline-errors",
  message: "tern-error",
  status: "tern-error-status",
} as const;

export interface PipelineKafkaOptions {
  brokers: string[];
  /** Topic namespace of the installation under test (unique per test file). */
  namespace: string;
  /** @default "seldon" */
  prefix?: string;
  /** The installation's partition count (KAFKA_PARTITIONS). */
  partitions: number;
  /** Names the client's groups. */
  name: string;
}

export interface SendOptions {
  /** @default a fresh unique id */
  requestId?: string;
  /** Put the request on this partition instead of `partitionForRequest(requestId)` (the gateway may pick ids that land on its partitions). */
  partition?: number;
  /** Extra headers (a caller's `x-*` headers travel with the request). */
  headers?: Record<string, string>;
}

export interface SentRequest {
  pipeline: string;
  requestId: string;
  partition: number;
  key: string;
  tensors: OipTensor[];
}

/** A record read back, with its key parsed and its value decoded by the topic's direction. */
export interface DecodedRecord extends OutsideRecord {
  /** The parsed key, or null when it is not `<k>.<resource>.<id>`. */
  parsedKey: { partition: number; resource: string; requestId: string } | null;
  /** `model` / `pipeline` and the name, from the topic. */
  resource: { kind: "model" | "pipeline" | "errors"; name?: string; direction?: "inputs" | "outputs" };
  /** True when the record carries the error headers. */
  error: boolean;
}

export type PipelineAnswer =
  | { ok: true; requestId: string; record: DecodedRecord; tensors: OipTensor[] }
  | {
      ok: false;
      requestId: string;
      record: DecodedRecord;
      /** `tern-error`, or the record's value as text. */
      message: string;
      status?: string;
      /** `seldon-pipeline-errors`: what failed. */
      failed?: string;
    };

/** A live view of some topics, read from the beginning by a group of its own. */
export interface TopicWatch {
  readonly records: readonly OutsideRecord[];
  /** Every record so far, decoded. */
  all(): DecodedRecord[];
  /** Every record so far whose key names this request id, decoded. */
  forRequest(requestId: string): DecodedRecord[];
  /** Waits (bounded) until `count` records of the request are on `topic`. */
  waitRecords(topic: string, requestId: string, count: number, timeoutMs: number): Promise<DecodedRecord[]>;
}

export interface PipelineOutputs extends TopicWatch {
  /** Waits (bounded) for the first answer to `requestId` on the outputs topic. */
  answer(requestId: string, timeoutMs: number): Promise<PipelineAnswer>;
  /** Every answer to `requestId` seen so far (at-least-once: there may be duplicates, the gateway drops them). */
  answers(requestId: string): PipelineAnswer[];
}

export interface PipelineKafka {
  readonly topics: TopicNames;
  readonly partitions: number;
  readonly outside: OutsideKafka;
  /** Produces a request to the pipeline's inputs topic. */
  send(pipeline: string, tensors: OipTensor[], options?: SendOptions): Promise<SentRequest>;
  /** Several requests in one produce request, so that a worker reads them in one fetch (a batch's requests). */
  sendTogether(
    pipeline: string,
    requests: Array<{ tensors: OipTensor[]; options?: SendOptions }>,
  ): Promise<SentRequest[]>;
  /** Reads a pipeline's outputs topic from the beginning. Start it before sending (or not: it reads from the start). */
  outputs(pipeline: string): Promise<PipelineOutputs>;
  /** Reads any topics (model inputs/outputs for hop checks, the errors topic) from the beginning. */
  watch(topics: string[]): Promise<TopicWatch>;
  close(): Promise<void>;
}

let counter = 0;

/** A request id unique across test runs and processes. */
export function newRequestId(label = "r"): string {
  return `${label}-${Date.now().toString(36)}-${process.pid}-${counter++}`;
}

/** A fresh request id that `partitionForRequest` puts on `partition` (as a gateway picks ids landing on its partitions). */
export function requestIdOnPartition(label: string, partition: number, partitions: number): string {
  for (;;) {
    const id = newRequestId(label);
    if (partitionForRequest(id, partitions) === partition) return id;
  }
}

/** An FP32 tensor from rows (every row the same length): shape [rows, columns]. */
export function f32(name: string, rows: number[][]): OipTensor {
  const columns = rows[0]?.length ?? 0;
  return { name, datatype: "FP32", shape: [rows.length, columns], data: Float32Array.from(rows.flat()) };
}

/** A tensor's elements as rows of numbers (shape [rows, columns]), for comparing with expectations. */
export function rowsOf(tensor: OipTensor | undefined): number[][] {
  if (tensor === undefined) throw new Error("no such tensor");
  const flat = Array.from(tensor.data as ArrayLike<number | bigint>, Number);
  const columns = tensor.shape.length > 1 ? tensor.shape[tensor.shape.length - 1]! : flat.length;
  const rows: number[][] = [];
  for (let i = 0; i < flat.length; i += Math.max(columns, 1)) rows.push(flat.slice(i, i + columns));
  return rows;
}

/** The named tensor of a list; throws naming the ones there are when it is missing. */
export function tensor(tensors: OipTensor[], name: string): OipTensor {
  const found = tensors.find((t) => t.name === name);
  if (!found) throw new Error(`no tensor ${name} among [${tensors.map((t) => t.name).join(", ")}]`);
  return found;
}

/**
 * Decodes a record's value by its topic: `…inputs` as a ModelInferRequest, `…outputs` as a ModelInferResponse.
 * Throws (a `bad_request` TernError from the codec) when the bytes are not that message.
 */
export function decodeTensors(record: DecodedRecord): OipTensor[] {
  if (record.resource.direction === "inputs") return requestInputsToOip(decodeModelInferRequest(record.value));
  return responseOutputsToOip(decodeModelInferResponse(record.value));
}

export async function createPipelineKafka(options: PipelineKafkaOptions): Promise<PipelineKafka> {
  const topics = createTopicNames({
    namespace: options.namespace,
    ...(options.prefix ? { prefix: options.prefix } : {}),
  });
  const outside = await createOutsideKafka(options.brokers, options.name);

  const decode = (r: OutsideRecord): DecodedRecord => {
    const parsed = topics.parse(r.topic);
    return {
      ...r,
      parsedKey: parseRecordKey(r.key),
      resource: parsed
        ? {
            kind: parsed.kind,
            ...(parsed.name ? { name: parsed.name } : {}),
            ...(parsed.direction ? { direction: parsed.direction } : {}),
          }
        : { kind: "errors" },
      error: ERROR_HEADERS.message in r.headers || ERROR_HEADERS.failed in r.headers,
    };
  };

  const watch = async (names: string[]): Promise<TopicWatch> => {
    const records = await outside.read(names);
    const forRequest = (requestId: string) =>
      records.filter((r) => parseRecordKey(r.key)?.requestId === requestId).map(decode);
    return {
      records,
      all: () => records.map(decode),
      forRequest,
      waitRecords: (topic, requestId, count, timeoutMs) =>
        waitFor(
          () => {
            const found = forRequest(requestId).filter((r) => r.topic === topic);
            return found.length >= count ? found : undefined;
          },
          { timeoutMs, intervalMs: 25, description: `${count} record(s) of request ${requestId} on ${topic}` },
        ),
    };
  };

  const toAnswer = (record: DecodedRecord): PipelineAnswer => {
    const requestId = record.parsedKey?.requestId ?? "";
    if (record.error) {
      const status = record.headers[ERROR_HEADERS.status];
      const failed = record.headers[ERROR_HEADERS.failed];
      return {
        ok: false,
        requestId,
        record,
        message: record.headers[ERROR_HEADERS.message] ?? record.value.toString("utf8"),
        ...(status === undefined ? {} : { status }),
        ...(failed === undefined ? {} : { failed }),
      };
    }
    return { ok: true, requestId, record, tensors: decodeTensors(record) };
  };

  const sendTogether: PipelineKafka["sendTogether"] = async (pipeline, requests) => {
    const sent = requests.map(({ tensors, options: sendOptions = {} }) => {
      const requestId = sendOptions.requestId ?? newRequestId(pipeline);
      const partition = sendOptions.partition ?? partitionForRequest(requestId, options.partitions);
      const key = formatRecordKey({ partition, resource: pipeline, requestId });
      const wire = tensorsFromOip(tensors, false);
      const value = encodeModelInferRequest({ model_name: pipeline, id: requestId, inputs: wire.tensors });
      const headers = { ...sendOptions.headers, [PIPELINE_HEADER]: pipeline, [REQUEST_ID_HEADER]: requestId };
      return { sent: { pipeline, requestId, partition, key, tensors }, message: { partition, key, value, headers } };
    });
    await outside.sendMany(
      topics.pipelineInputs(pipeline),
      sent.map((s) => s.message),
    );
    return sent.map((s) => s.sent);
  };

  return {
    topics,
    partitions: options.partitions,
    outside,
    sendTogether,
    async send(pipeline, tensors, sendOptions = {}) {
      const [sent] = await sendTogether(pipeline, [{ tensors, options: sendOptions }]);
      return sent!;
    },
    async outputs(pipeline) {
      const topic = topics.pipelineOutputs(pipeline);
      const w = await watch([topic]);
      const answers = (requestId: string) =>
        w
          .forRequest(requestId)
          .filter((r) => r.topic === topic)
          .map(toAnswer);
      return {
        ...w,
        answers,
        answer: (requestId, timeoutMs) =>
          waitFor(() => answers(requestId)[0], {
            timeoutMs,
            intervalMs: 25,
            description: `the answer to request ${requestId} on ${topic}`,
          }),
      };
    },
    watch,
    close: () => outside.close(),
  };
}

/**
 * The hop check of issue 10: every record of the request (on the watched topics) has the key `<k>.<resource>.<id>`
 * with the request's k, the resource of its topic, and sits on partition k; its value decodes as OIP protobuf (a
 * request on inputs topics, a response on outputs topics; error records carry their message in headers and are not
 * decoded). Returns the problems found, empty when every hop is right.
 */
export function hopProblems(records: DecodedRecord[], sent: SentRequest): string[] {
  const problems: string[] = [];
  for (const r of records) {
    const where = `${r.topic}[${r.partition}] key ${r.key}`;
    if (r.parsedKey === null) {
      problems.push(`${where}: key is not <k>.<resource>.<id>`);
      continue;
    }
    if (r.parsedKey.partition !== sent.partition) problems.push(`${where}: key's k is not ${sent.partition}`);
    if (r.partition !== sent.partition)
      problems.push(`${where}: written to partition ${r.partition}, not ${sent.partition}`);
    if (r.resource.name !== undefined && r.parsedKey.resource !== r.resource.name) {
      problems.push(`${where}: key names ${r.parsedKey.resource}, the topic is ${r.resource.name}'s`);
    }
    if (r.error) continue;
    try {
      decodeTensors(r);
    } catch (err) {
      problems.push(`${where}: value does not decode as OIP protobuf: ${(err as Error).message}`);
    }
  }
  return problems;
}
