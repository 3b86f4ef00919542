import { randomUUID } from "node:crypto";
import {
  type BusConsumer,
  type BusMessage,
  type BusProducer,
  DEADLINE_HEADER,
  decodeModelInferResponse,
  ERROR_HEADER,
  ERROR_MESSAGE_HEADER,
  ERROR_STATUS_HEADER,
  encodeModelInferRequest,
  formatRecordKey,
  type MessageBus,
  type OipTensor,
  PIPELINE_HEADER,
  parseRecordKey,
  partitionForRequest,
  REQUEST_ID_HEADER,
  type RouteTable,
  responseOutputsToOip,
  type TopicNames,
  tensorsFromOip,
} from "@tern/core";
import type { Logger } from "pino";
import { GatewayError } from "./errors.js";

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
  /** The reply readers started so far, for status and tests: group, pipelines read, starts so far. */
  readers(): Array<{ bucket: number; groupId: string; pipelines: string[]; starts: number }>;
  /**
   * Stops reading the outputs of deleted pipelines: those the table no longer lists, and those `PipelineTerminating`
   * with no request waiting (one that waits may still be answered while the workers drain). Their buckets' readers
   * restart without them; requests still waiting on a pipeline the table dropped fail with NOT_FOUND. Resolves with the
   * pipelines dropped. Optional: a front without long-lived readers has nothing to drop.
   */
  prune?(table: RouteTable): Promise<string[]>;
  /** Stops the reply reader (leaves its group), closes the producer, fails what is still waiting. Idempotent. */
  close(): Promise<void>;
}

/**
 * The pipelines a reply reader should stop reading, of those it reads (pure): gone from the table, or terminating with
 * nothing waiting for them.
 */
export function deletedPipelines(
  reading: Iterable<string>,
  table: RouteTable,
  waitingFor: (pipeline: string) => number,
): string[] {
  const out: string[] = [];
  for (const p of reading) {
    const route = table.pipelines[p];
    if (!route || route.state === "PipelineTerminated") out.push(p);
    else if (route.state === "PipelineTerminating" && waitingFor(p) === 0) out.push(p);
  }
  return out.sort();
}

export interface PipelineFrontOptions {
  bus: MessageBus;
  topics: TopicNames;
  /** The installation's partition count (KAFKA_PARTITIONS). */
  partitions: number;
  logger: Logger;
  /**
   * Prefix of the reply readers' groups (`<prefix>.b<bucket>`); unique per process, so each reader is its group's only
   * member and reads every partition. @default `tern.gateway.<uuid>`
   */
  groupId?: string;
  /** Pipelines are hashed into this many buckets, one reply reader each. @default 4 */
  buckets?: number;
  /** How long starting the reply reader may take. @default 15000 */
  readerStartTimeoutMs?: number;
  /** @default crypto.randomUUID */
  newRequestId?: () => string;
}

interface Reader {
  bucket: number;
  groupId: string;
  /** Pipelines whose outputs this reader should read; `reading` what its running consumer reads. */
  wanted: Set<string>;
  reading: Set<string>;
  consumer: BusConsumer | undefined;
  chain: Promise<void>;
  starts: number;
}

interface Waiter {
  pipeline: string;
  resolve(reply: PipelineReply): void;
}

/**
 * Creates the pipeline front. Pipelines are hashed into buckets; each bucket has one reply reader, a consumer of a
 * group of this process's own (`round-robin`; it is the group's only member, so it holds every partition), subscribed
 * to the outputs topics of its bucket's pipelines that this gateway has been asked for. A pipeline not yet among them
 * restarts its bucket's reader with its topic added, and its first request is produced only once that start, and any
 * restart queued behind it, resolved (the reader then knows where it reads the new topic from, so the answer cannot be
 * missed). The other buckets' readers
 * go on reading; answers of the restarted bucket's pipelines wait out the restart: the group commits what it read, and
 * where it started on partitions it read nothing from (`commitStartOffsets`), so the restarted reader resumes where the
 * last one stopped on every partition. Records whose id nobody waits for (other gateways' answers,
 * duplicates of an answered request) are dropped.
 */
export function createPipelineFront(options: PipelineFrontOptions): PipelineFront {
  const { bus, topics, partitions, logger } = options;
  const groupPrefix = options.groupId ?? `tern.gateway.${randomUUID()}`;
  const startTimeoutMs = options.readerStartTimeoutMs ?? 15_000;
  const newRequestId = options.newRequestId ?? randomUUID;
  const buckets = options.buckets ?? 4;
  const waiting = new Map<string, Waiter>();
  const readers = new Map<number, Reader>();
  let producer: BusProducer | undefined;
  let closed = false;

  const onBatch = async (messages: BusMessage[]) => {
    for (const m of messages) {
      const key = parseRecordKey(m.key);
      const waiter = key ? waiting.get(key.requestId) : undefined;
      if (!key || !waiter) continue;
      waiting.delete(key.requestId);
      const message = m.headers[ERROR_MESSAGE_HEADER];
      if (message !== undefined || m.headers[ERROR_HEADER] !== undefined) {
        const status = m.headers[ERROR_STATUS_HEADER];
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

  /**
   * The reply reader of one bucket. Its restarts run one at a time, in order; a failed start empties `wanted` (which
   * topic failed is not known), so each of its pipelines is asked for again by its next request.
   */
  function createReader(bucket: number): Reader {
    const reader: Reader = {
      bucket,
      groupId: `${groupPrefix}.b${bucket}`,
      wanted: new Set(),
      reading: new Set(),
      consumer: undefined,
      chain: Promise.resolve(),
      starts: 0,
    };
    return reader;
  }

  async function restart(reader: Reader): Promise<void> {
    if (closed) return;
    if (reader.consumer && sameSet(reader.wanted, reader.reading)) return;
    const previous = reader.consumer;
    reader.consumer = undefined;
    reader.reading = new Set();
    await previous?.stop();
    if (reader.wanted.size === 0 || closed) return;
    const names = [...reader.wanted].sort();
    const next = bus.consumer({
      groupId: reader.groupId,
      topics: names.map((p) => topics.pipelineOutputs(p)),
      assignment: "round-robin",
      fromBeginning: false,
      commit: "after-handler",
      // A partition the reader read nothing from has no committed offset: without this, the next start would begin
      // at its end then, past an answer written during the restart (its request waiting for it until 504).
      commitStartOffsets: true,
      onBatch,
      onFailure: (err) => {
        if (reader.consumer !== next || closed) return;
        logger.warn({ err, groupId: reader.groupId }, "pipeline reply reader stopped: starting it again");
        reader.consumer = undefined;
        reader.reading = new Set();
        reader.chain = reader.chain
          .then(() => restart(reader))
          .catch((e: unknown) => logger.error({ err: e }, "reply reader restart failed"));
      },
    });
    reader.starts++;
    try {
      await next.start({ timeoutMs: startTimeoutMs });
      reader.consumer = next;
      reader.reading = new Set(names);
      logger.debug({ pipelines: names, groupId: reader.groupId }, "pipeline reply reader reading");
    } catch (err) {
      await next.stop().catch(() => {});
      logger.warn({ err, pipelines: names, groupId: reader.groupId }, "pipeline reply reader could not start");
      reader.wanted.clear();
      throw err;
    }
  }

  /** Resolves once the pipeline's bucket reader reads its outputs topic; only that bucket's reader restarts. */
  async function ensureReading(pipeline: string): Promise<void> {
    // partitionForRequest is a stable hash of a name into [0, n): the same pipeline always lands in the same bucket.
    const bucket = partitionForRequest(pipeline, buckets);
    let reader = readers.get(bucket);
    if (!reader) {
      reader = createReader(bucket);
      readers.set(bucket, reader);
    }
    if (reader.consumer && reader.reading.has(pipeline)) return;
    reader.wanted.add(pipeline);
    const r = reader;
    const run = r.chain.then(() => restart(r));
    r.chain = run.catch(() => {});
    // Waits for the chain, not just this start: a restart queued meanwhile (another pipeline of the bucket) stops the
    // reader the moment this start is done, so `reading` is only true, and an answer only safe to ask for, once none is
    // left.
    for (let tail = r.chain; ; tail = r.chain) {
      await tail;
      if (tail === r.chain) break;
    }
    if (!r.reading.has(pipeline)) {
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
        // One HTTP request is one record; the bus's producer sends those of concurrent requests together.
        producer ??= bus.producer();
        const produced = producer
          .send([
            {
              topic: topics.pipelineInputs(pipeline),
              partition,
              key: formatRecordKey({ partition, resource: pipeline, requestId }),
              value: encodeModelInferRequest({ model_name: pipeline, id: requestId, inputs: wire.tensors }),
              headers: {
                [REQUEST_ID_HEADER]: requestId,
                ...inferOptions.headers,
                [PIPELINE_HEADER]: pipeline,
                // Past it nobody waits: the dataflow and the model gateway stop working for the request.
                [DEADLINE_HEADER]: String(Math.floor(inferOptions.deadline)),
              },
            },
          ])
          .catch((err: unknown) => {
            // The cause (broker addresses, client internals) goes to the log, not to the caller.
            logger.warn({ err, pipeline, requestId }, "pipeline request could not be produced");
            throw new GatewayError("unavailable", `pipeline ${pipeline}: request id ${requestId} could not be sent`, {
              cause: err,
              retriable: true,
            });
          });
        await Promise.race([produced, answer]);
        return await answer;
      } catch (err) {
        waiting.delete(requestId);
        throw err;
      } finally {
        clearTimeout(timer);
      }
    },
    pending: () => waiting.size,
    async prune(table) {
      if (closed) return [];
      const waitingFor = (p: string) => [...waiting.values()].filter((w) => w.pipeline === p).length;
      const known = new Set<string>();
      for (const r of readers.values()) for (const p of r.wanted) known.add(p);
      const dropped = deletedPipelines(known, table, waitingFor);
      if (dropped.length === 0) return [];
      for (const [id, w] of waiting) {
        if (!dropped.includes(w.pipeline)) continue;
        waiting.delete(id);
        w.resolve({ ok: false, requestId: id, message: `pipeline ${w.pipeline} was deleted`, status: "NOT_FOUND" });
      }
      const touched = new Set<Reader>();
      for (const p of dropped) {
        const reader = readers.get(partitionForRequest(p, buckets));
        if (reader?.wanted.delete(p)) touched.add(reader);
      }
      await Promise.all(
        [...touched].map((r) => {
          const run = r.chain.then(() => restart(r));
          r.chain = run.catch(() => {});
          return run.catch((err: unknown) => logger.warn({ err, groupId: r.groupId }, "reply reader restart failed"));
        }),
      );
      logger.info({ pipelines: dropped }, "stopped reading the outputs of deleted pipelines");
      return dropped;
    },
    readers: () =>
      [...readers.values()]
        .map((r) => ({ bucket: r.bucket, groupId: r.groupId, pipelines: [...r.reading].sort(), starts: r.starts }))
        .sort((a, b) => a.bucket - b.bucket),
    async close() {
      if (closed) return;
      closed = true;
      for (const [id, w] of waiting) {
        w.resolve({ ok: false, requestId: id, message: "the gateway is shutting down", status: "UNAVAILABLE" });
      }
      waiting.clear();
      const all = [...readers.values()];
      await Promise.all(all.map((r) => r.chain.catch(() => {})));
      await Promise.all([...all.map((r) => r.consumer?.stop()), producer?.close()]);
      for (const r of all) r.consumer = undefined;
    },
  };
}

function sameSet(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a.size !== b.size) return false;
  for (const x of a) if (!b.has(x)) return false;
  return true;
}
