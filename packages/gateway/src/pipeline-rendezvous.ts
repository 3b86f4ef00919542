import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import {
  type BusProducer,
  DEADLINE_HEADER,
  decodeModelInferResponse,
  encodeModelInferRequest,
  formatRecordKey,
  type MessageBus,
  type OutgoingMessage,
  PIPELINE_HEADER,
  partitionForRequest,
  REPLY_TO_DYNAMODB,
  REPLY_TO_HEADER,
  REQUEST_ID_HEADER,
  responseOutputsToOip,
  type TopicNames,
  tensorsFromOip,
} from "@tern/core";
import type { Logger } from "pino";
import type { ReplyReader } from "./dynamodb-replies.js";
import { GatewayError } from "./errors.js";
import type { PipelineFront, PipelineReply } from "./pipeline-front.js";

export interface RendezvousFrontOptions {
  bus: MessageBus;
  topics: TopicNames;
  /** The installation's partition count (KAFKA_PARTITIONS). */
  partitions: number;
  /** Reads the `reply#<requestId>` item the dataflow worker puts. */
  readReply: ReplyReader;
  logger: Logger;
  /** First wait between two reads of the reply item. @default 5 */
  pollInitialMs?: number;
  /** The wait doubles up to this. @default 50 */
  pollMaxMs?: number;
  /** @default crypto.randomUUID */
  newRequestId?: () => string;
}

/** A send failure worth one fresh producer: the broker could not be reached, or did not answer in time. */
function isConnectionFailure(err: unknown): boolean {
  const { code, retriable } = err as { code?: unknown; retriable?: unknown };
  return code === "timeout" || (code === "unavailable" && retriable === true);
}

/**
 * The Lambda entry's pipeline client (DESIGN §3, "Rendezvous"): a Lambda function is frozen between invocations and
 * cannot hold a consumer group, so it reads no topic at all. It produces the request to `pipeline.<p>.inputs` with
 * `tern-reply-to: dynamodb`; the dataflow worker that writes the pipeline's answer also puts it (or the error) under
 * `reply#<requestId>` in the state table, and this front polls that item with a consistent GetItem, waiting
 * `pollInitialMs` doubling to `pollMaxMs` between reads, until the request's deadline (then 504 naming the id).
 *
 * The producer is made on the first request and kept for the life of the execution environment (this front lives as
 * long as the module that built it). After a freeze its connections may be dead: a send that fails for want of the
 * broker closes it, makes a fresh one and sends once more. The reply item is left for DynamoDB's TTL (`expiresAt`)
 * rather than deleted: a delete would cost a write on every request, and once the answer is returned the function may
 * be frozen before a background delete ran.
 */
export function createRendezvousFront(options: RendezvousFrontOptions): PipelineFront {
  const { bus, topics, partitions, logger, readReply } = options;
  const pollInitialMs = options.pollInitialMs ?? 5;
  const pollMaxMs = options.pollMaxMs ?? 50;
  const newRequestId = options.newRequestId ?? randomUUID;
  let producer: BusProducer | undefined;
  let waiting = 0;
  let closed = false;

  async function send(records: OutgoingMessage[]): Promise<void> {
    producer ??= bus.producer();
    const first = producer;
    try {
      await first.send(records);
      return;
    } catch (err) {
      if (!isConnectionFailure(err)) throw err;
      logger.info({ err }, "pipeline request not sent: reconnecting to Kafka once");
      // Another request may have replaced it already: then use that one.
      if (producer === first) {
        producer = undefined;
        void first.close().catch(() => {});
      }
    }
    producer ??= bus.producer();
    await producer.send(records);
  }

  async function poll(
    pipeline: string,
    requestId: string,
    deadline: number,
    timeoutMs: number,
  ): Promise<PipelineReply> {
    let delay = pollInitialMs;
    let lastError: unknown;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0 || closed) break;
      try {
        const item = await readReply(requestId, AbortSignal.timeout(left));
        lastError = undefined;
        if (item !== undefined) {
          if (!item.ok) return { ok: false, requestId, message: item.message, status: item.status };
          try {
            return { ok: true, requestId, outputs: responseOutputsToOip(decodeModelInferResponse(item.response)) };
          } catch (err) {
            return {
              ok: false,
              requestId,
              message: `pipeline ${pipeline}: its answer is not an OIP response: ${(err as Error).message}`,
              status: "INTERNAL",
            };
          }
        }
      } catch (err) {
        // A read that failed is tried again until the deadline; the log says why the answer never came.
        if (lastError === undefined) logger.warn({ err, pipeline, requestId }, "reading the pipeline reply failed");
        lastError = err;
      }
      const rest = deadline - Date.now();
      if (rest <= 0) break;
      await sleep(Math.min(delay, rest));
      delay = Math.min(delay * 2, pollMaxMs);
    }
    throw new GatewayError(
      "timeout",
      `pipeline ${pipeline} did not answer request id ${requestId} within ${timeoutMs} ms`,
      {
        ...(lastError === undefined ? {} : { cause: lastError }),
      },
    );
  }

  return {
    async infer(pipeline, inputs, inferOptions) {
      if (closed) throw new GatewayError("unavailable", "the gateway is shutting down", { retriable: true });
      const requestId = inferOptions.requestId ?? newRequestId();
      const { deadline } = inferOptions;
      const timeoutMs = Math.max(0, deadline - Date.now());
      waiting++;
      try {
        const partition = partitionForRequest(requestId, partitions);
        const wire = tensorsFromOip(inputs, false);
        const record: OutgoingMessage = {
          topic: topics.pipelineInputs(pipeline),
          partition,
          key: formatRecordKey({ partition, resource: pipeline, requestId }),
          value: encodeModelInferRequest({ model_name: pipeline, id: requestId, inputs: wire.tensors }),
          headers: {
            [REQUEST_ID_HEADER]: requestId,
            ...inferOptions.headers,
            [PIPELINE_HEADER]: pipeline,
            [REPLY_TO_HEADER]: REPLY_TO_DYNAMODB,
            // Past it nobody waits: the dataflow and the model gateway stop working for the request.
            [DEADLINE_HEADER]: String(Math.floor(deadline)),
          },
        };
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new GatewayError(
                  "timeout",
                  `pipeline ${pipeline} did not answer request id ${requestId} within ${timeoutMs} ms`,
                ),
              ),
            Math.min(timeoutMs, 2 ** 31 - 1),
          );
        });
        const sent = send([record]).catch((err: unknown) => {
          // The cause (broker addresses, client internals) goes to the log, not to the caller.
          logger.warn({ err, pipeline, requestId }, "pipeline request could not be produced");
          throw new GatewayError("unavailable", `pipeline ${pipeline}: request id ${requestId} could not be sent`, {
            cause: err,
            retriable: true,
          });
        });
        sent.catch(() => {});
        try {
          await Promise.race([sent, late]);
        } finally {
          clearTimeout(timer);
        }
        return await poll(pipeline, requestId, deadline, timeoutMs);
      } finally {
        waiting--;
      }
    },
    pending: () => waiting,
    readers: () => [],
    async close() {
      if (closed) return;
      closed = true;
      await producer?.close();
      producer = undefined;
    },
  };
}
