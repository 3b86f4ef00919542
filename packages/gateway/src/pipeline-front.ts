import { randomUUID } from "node:crypto";
import {
  type BusConsumer,
  type BusMessage,
  type BusProducer,
  decodeModelInferResponse,
  encodeModelInferRequest,
  formatRecordKey,
  type MessageBus,
  type OipTensor,
  PIPELINE_HEADER,
  parseRecordKey,
  partitionForRequest,
  REQUEST_ID_HEADER,
  responseOutputsToOip,
  type TopicNames,
  tensorsFromOip,
} from "@tern/core";
import type { Logger } from "pino";
import { GatewayError } from "./errors.js";

/** Headers of an error record, as the model gateway and the dataflow workers write them (docs/dataflow.md). */
export const PIPELINE_ERROR_HEADERS = {
  failed: "seldon-pipeline-errors",
  message: "tern-error",
  status: "tern-error-status",
} as const;

/** What came back for one request: the pipeline's output tensors, or its error answer. */
export type PipelineReply =
  | { ok: true; requestId: string; outputs: OipTensor[] }
  | { ok: false; requestId: string; message: string; status?: string };

export interface PipelineInferOptions {
  /** Epoch milliseconds: past it the request fails with `timeout` (504) naming its id. */
  deadline: number;
  /** Carried on the record (the caller's `x-request-id` among them); `pipeline` and the key are the gateway's. */
  headers?: Record<string, string>;
  /** @default a fresh uuid */
  requestId?: string;
}

/** The Node gateway's pipeline client: produces requests to `pipeline.<p>.inputs` and reads the answers. */
export interface PipelineFront {
  infer(pipeline: string, inputs: OipTensor[], options: PipelineInferOptions): Promise<PipelineReply>;
  /** Requests waiting for an answer now. */
  pending(): number;
  /** Stops the reply reader (leaves its group), closes the producer, fails what is still waiting. Idempotent. */
  close(): Promise<void>;
}

export interface PipelineFrontOptions {
  bus: MessageBus;
  topics: TopicNames;
  /** The installation's partition count (KAFKA_PARTITIONS). */
  partitions: number;
  logger: Logger;
  /** The reply reader's group; one per process, so it reads every partition. @default `tern.gateway.<uuid>` */
  groupId?: string;
  /** How long starting the reply reader may take. @default 15000 */
  readerStartTimeoutMs?: number;
  /** @default crypto.randomUUID */
  newRequestId?: () => string;
}

interface Waiter {
  pipeline: string;
  resolve(reply: PipelineReply): void;
}

/**
 * Creates the pipeline front. The reply reader is one consumer of a group of this process's own (`round-robin`, it is
 * the group's only member, so it holds every partition), subscribed to the outputs topics of the pipelines this
 * gateway has been asked for. A pipeline not yet among them restarts the reader with its topic added, and its first
 * request is produced only once that start resolved (the reader then knows where it reads the new topic from, so the
 * answer cannot be missed). Answers of pipelines already read wait out the restart: the group commits what it read,
 * so the restarted reader resumes where the last one stopped. Records whose id nobody waits for (other gateways'
 * answers, duplicates of an answered request) are dropped.
 *
 * One reader for all pipelines is this part's simplification of DESIGN §3's buckets: a new pipeline pauses every
 * pipeline's answers for the restart (a rebalance of a one-member group), not only its bucket's.
 */
export function createPipelineFront(options: PipelineFrontOptions): PipelineFront {
  const { bus, topics, partitions, logger } = options;
  const groupId = options.groupId ?? `tern.gateway.${randomUUID()}`;
  const startTimeoutMs = options.readerStartTimeoutMs ?? 15_000;
  const newRequestId = options.newRequestId ?? randomUUID;
  const waiting = new Map<string, Waiter>();
  /** Pipelines whose outputs the reader should read; `reading` what the running consumer reads. */
  const wanted = new Set<string>();
  let reading = new Set<string>();
  let consumer: BusConsumer | undefined;
  let producer: BusProducer | undefined;
  /** Reader restarts run one at a time, in order. */
  let chain: Promise<void> = Promise.resolve();
  let closed = false;

  const onBatch = async (messages: BusMessage[]) => {
    for (const m of messages) {
      const key = parseRecordKey(m.key);
      const waiter = key ? waiting.get(key.requestId) : undefined;
      if (!key || !waiter) continue;
      waiting.delete(key.requestId);
      const message = m.headers[PIPELINE_ERROR_HEADERS.message];
      if (message !== undefined || m.headers[PIPELINE_ERROR_HEADERS.failed] !== undefined) {
        const status = m.headers[PIPELINE_ERROR_HEADERS.status];
        waiter.resolve({
          ok: false,
          requestId: key.requestId,
          message: message ?? `pipeline ${waiter.pipeline} answered an error without a message`,
          ...(status === undefined ? {} : { status }),
        });
        continue;
      }
      try {
        waiter.resolve({
          ok: true,
          requestId: key.requestId,
          outputs: responseOutputsToOip(decodeModelInferResponse(m.value)),
        });
      } catch (err) {
        waiter.resolve({
          ok: false,
          requestId: key.requestId,
          message: `pipeline ${waiter.pipeline}: its answer is not an OIP response: ${(err as Error).message}`,
          status: "INTERNAL",
        });
      }
    }
  };

  /** Starts a consumer over `wanted`; when that fails, `wanted` is emptied (each pipeline's next request asks again). */
  async function restart(): Promise<void> {
    if (closed) return;
    if ([...wanted].every((p) => reading.has(p)) && consumer) return;
    const previous = consumer;
    consumer = undefined;
    reading = new Set();
    await previous?.stop();
    if (wanted.size > 0 && !closed) {
      const names = [...wanted].sort();
      const next = bus.consumer({
        groupId,
        topics: names.map((p) => topics.pipelineOutputs(p)),
        assignment: "round-robin",
        fromBeginning: false,
        commit: "after-handler",
        onBatch,
        onFailure: (err) => {
          if (consumer !== next || closed) return;
          logger.warn({ err }, "pipeline reply reader stopped: starting it again");
          consumer = undefined;
          reading = new Set();
          chain = chain.then(restart).catch((e: unknown) => logger.error({ err: e }, "reply reader restart failed"));
        },
      });
      try {
        await next.start({ timeoutMs: startTimeoutMs });
        consumer = next;
        reading = new Set(names);
        logger.debug({ pipelines: names, groupId }, "pipeline reply reader reading");
        return;
      } catch (err) {
        await next.stop().catch(() => {});
        // Which topic failed is not known: the pipelines are asked for again by their next request.
        logger.warn({ err, pipelines: names }, "pipeline reply reader could not start");
        wanted.clear();
        throw err;
      }
    }
  }

  /** Resolves once the reader reads the pipeline's outputs topic. */
  async function ensureReading(pipeline: string): Promise<void> {
    if (reading.has(pipeline) && consumer) return;
    wanted.add(pipeline);
    const run = chain.then(restart);
    chain = run.catch(() => {});
    await run.catch(() => {});
    if (!reading.has(pipeline)) {
      throw new GatewayError("unavailable", `pipeline ${pipeline}: the gateway could not read its outputs topic`, {
        retriable: true,
      });
    }
  }

  return {
    async infer(pipeline, inputs, inferOptions) {
      if (closed) throw new GatewayError("unavailable", "the gateway is shutting down", { retriable: true });
      const requestId = inferOptions.requestId ?? newRequestId();
      const left = () => Math.max(0, inferOptions.deadline - Date.now());
      const timeoutMs = left();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const answer = new Promise<PipelineReply>((resolve, reject) => {
        timer = setTimeout(
          () => {
            waiting.delete(requestId);
            reject(
              new GatewayError(
                "timeout",
                `pipeline ${pipeline} did not answer request id ${requestId} within ${timeoutMs} ms`,
              ),
            );
          },
          Math.min(timeoutMs, 2 ** 31 - 1),
        );
        waiting.set(requestId, { pipeline, resolve });
      });
      // Waiting is registered first: an answer can only come after the produce, and must find its waiter then.
      answer.catch(() => {});
      try {
        await Promise.race([ensureReading(pipeline), answer]);
        const partition = partitionForRequest(requestId, partitions);
        const wire = tensorsFromOip(inputs, false);
        producer ??= bus.producer();
        await Promise.race([
          producer.send([
            {
              topic: topics.pipelineInputs(pipeline),
              partition,
              key: formatRecordKey({ partition, resource: pipeline, requestId }),
              value: encodeModelInferRequest({ model_name: pipeline, id: requestId, inputs: wire.tensors }),
              headers: {
                [REQUEST_ID_HEADER]: requestId,
                ...inferOptions.headers,
                [PIPELINE_HEADER]: pipeline,
              },
            },
          ]),
          answer,
        ]);
        return await answer;
      } catch (err) {
        waiting.delete(requestId);
        throw err;
      } finally {
        clearTimeout(timer);
      }
    },
    pending: () => waiting.size,
    async close() {
      if (closed) return;
      closed = true;
      for (const [id, w] of waiting) {
        w.resolve({ ok: false, requestId: id, message: "the gateway is shutting down", status: "UNAVAILABLE" });
      }
      waiting.clear();
      await chain.catch(() => {});
      await Promise.all([consumer?.stop(), producer?.close()]);
      consumer = undefined;
    },
  };
}
