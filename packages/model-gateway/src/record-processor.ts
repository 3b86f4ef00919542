import * as grpc from "@grpc/grpc-js";
import {
  type BusMessage,
  deadlineOf,
  ERROR_HEADER,
  ERROR_MESSAGE_HEADER,
  ERROR_STATUS_HEADER,
  type OutgoingMessage,
  type RouteTable,
  type TopicNames,
} from "@tern/core";
import {
  codeOf,
  type GrpcUpstream,
  type RouteSource,
  readNameAndVersion,
  resolveModelDirect,
  withNameAndVersion,
} from "@tern/gateway";
import type { Logger } from "pino";

export interface RecordProcessorOptions {
  topics: TopicNames;
  routes: RouteSource;
  upstream: GrpcUpstream;
  logger: Logger;
  /**
   * Deadline of one request, counted from when this gateway takes the record; a record whose `tern-deadline` header
   * (the caller's) comes sooner gets only the time left until then. @default 60000
   */
  deadlineMs?: number;
  /**
   * How long a record for a model with no available replica (or not yet in the route table: a model just applied)
   * waits for one before it is answered with an error record. @default 5000
   */
  routeWaitMs?: number;
  /** Poll interval of that wait. @default 50 */
  routePollMs?: number;
}

/** Turns one record of a model's inputs topic into the records to write: the answer, or an error record. */
export interface RecordProcessor {
  process(message: BusMessage): Promise<AnswerRecord[]>;
}

/** A record to write, headers always set (the caller's, plus error markers on a failure). */
export type AnswerRecord = OutgoingMessage & { headers: Record<string, string> };

/** A request that cannot be answered, with the gRPC status name the error record carries. */
class RecordFailure extends Error {
  constructor(
    readonly status: string,
    message: string,
  ) {
    super(message);
  }
}

const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();

/**
 * The model gateway's work on one record (DESIGN §3): call the agent that holds the model over gRPC with the record's
 * bytes (only the model name and version fields are rewritten; tensors are never decoded), then write the answer on
 * the same partition of the model's outputs topic with the same key and headers. A failure is never dropped: it
 * becomes an error record on the outputs topic (message and status in headers) and on the errors topic (message as the
 * value, as Seldon writes it).
 */
export function createRecordProcessor(options: RecordProcessorOptions): RecordProcessor {
  const deadlineMs = options.deadlineMs ?? 60_000;
  const routeWaitMs = options.routeWaitMs ?? 5000;
  const routePollMs = options.routePollMs ?? 50;
  const { topics, routes, upstream, logger } = options;

  async function route(model: string, waitUntil: number) {
    for (;;) {
      let table: RouteTable | undefined;
      try {
        table = await routes.table();
      } catch {
        table = undefined;
      }
      try {
        if (!table) throw new RecordFailure("UNAVAILABLE", "the model gateway has no route table yet");
        const decision = resolveModelDirect(table, model);
        const endpoints = decision.endpoints.filter((e) => e.grpc);
        if (endpoints.length === 0) {
          throw new RecordFailure("UNAVAILABLE", `model ${model} has no replica serving gRPC`);
        }
        return { version: String(table.models[model]!.version), endpoints };
      } catch (err) {
        if (Date.now() + routePollMs > waitUntil) {
          if (err instanceof RecordFailure) throw err;
          const status = codeOf(err) === "not_found" ? "NOT_FOUND" : "UNAVAILABLE";
          throw new RecordFailure(status, (err as Error).message);
        }
      }
      await new Promise((resolve) => setTimeout(resolve, routePollMs));
    }
  }

  async function answer(model: string, message: BusMessage): Promise<Uint8Array> {
    const started = Date.now();
    const callerDeadline = deadlineOf(message.headers);
    if (callerDeadline !== undefined && callerDeadline <= started) {
      // Nobody waits for this answer any more: calling the agent would only add to the load that made it late.
      throw new RecordFailure(
        "DEADLINE_EXCEEDED",
        `model ${model} not called: the caller's deadline passed ${started - callerDeadline} ms before the model gateway took the request`,
      );
    }
    const deadline = Math.min(started + deadlineMs, callerDeadline ?? Number.POSITIVE_INFINITY);
    try {
      readNameAndVersion(message.value);
    } catch (err) {
      throw new RecordFailure(
        "INVALID_ARGUMENT",
        `record value is not an OIP ModelInferRequest: ${(err as Error).message}`,
      );
    }
    const { version, endpoints } = await route(model, Math.min(deadline, started + routeWaitMs));
    const body = withNameAndVersion(message.value, model, version);
    const result = await upstream.call(model, endpoints, "ModelInfer", body, deadline);
    if ("error" in result) {
      const status = grpc.status[result.error.code] ?? "UNKNOWN";
      const details = result.error.details || result.error.message;
      if (result.error.code === grpc.status.DEADLINE_EXCEEDED) {
        throw new RecordFailure(
          status,
          callerDeadline !== undefined && callerDeadline < started + deadlineMs
            ? `model ${model} did not answer before the caller's deadline (${callerDeadline - started} ms left when called)`
            : `model ${model} did not answer within ${deadlineMs} ms`,
        );
      }
      if (result.error.code === grpc.status.UNAVAILABLE) {
        // grpc-js puts the agent's address in these details: log it, keep it out of the record (as the gateway does).
        logger.warn({ model, details }, "no replica answered (Kafka path)");
        throw new RecordFailure(status, `model ${model} is unavailable: the call to its replica failed`);
      }
      throw new RecordFailure(status, details);
    }
    return result.value;
  }

  return {
    async process(message) {
      const parsed = topics.parse(message.topic);
      if (parsed?.kind !== "model" || parsed.direction !== "inputs" || !parsed.name) {
        logger.warn({ topic: message.topic }, "record from a topic that is not a model inputs topic: ignored");
        return [];
      }
      const model = parsed.name;
      const headers = withoutErrorHeaders(message.headers);
      try {
        const value = await answer(model, message);
        return [{ topic: topics.modelOutputs(model), partition: message.partition, key: message.key, value, headers }];
      } catch (err) {
        const failure =
          err instanceof RecordFailure ? err : new RecordFailure("INTERNAL", `model gateway error: ${String(err)}`);
        if (!(err instanceof RecordFailure)) logger.error({ err, model }, "unexpected error handling a record");
        const marked = { ...headers, [ERROR_HEADER]: model };
        return [
          {
            topic: topics.modelOutputs(model),
            partition: message.partition,
            key: message.key,
            value: EMPTY,
            headers: { ...marked, [ERROR_MESSAGE_HEADER]: failure.message, [ERROR_STATUS_HEADER]: failure.status },
          },
          {
            topic: topics.errors(),
            partition: message.partition,
            key: message.key,
            value: encoder.encode(failure.message),
            headers: marked,
          },
        ];
      }
    },
  };
}

/** The caller's headers, minus error markers a previous hop may have set (they describe that hop, not this one). */
function withoutErrorHeaders(headers: Record<string, string>): Record<string, string> {
  if (!(ERROR_HEADER in headers || ERROR_MESSAGE_HEADER in headers || ERROR_STATUS_HEADER in headers)) return headers;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (k !== ERROR_HEADER && k !== ERROR_MESSAGE_HEADER && k !== ERROR_STATUS_HEADER) out[k] = v;
  }
  return out;
}
