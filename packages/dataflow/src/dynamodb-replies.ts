// The only file of @tern/dataflow that imports the DynamoDB client.
import { DynamoDBClient, PutItemCommand } from "@aws-sdk/client-dynamodb";
import { fitReplyItem, type PipelineReplyItem, replyItemAttributes } from "@tern/core";
import type { Logger } from "pino";
import type { ReplyWriter } from "./replies.js";

export interface DynamoDbReplyWriterOptions {
  /** The state table (TERN_TABLE), whose TTL attribute is `expiresAt`. */
  tableName: string;
  region: string;
  /** DynamoDB Local; unset in AWS. */
  endpoint?: string;
  logger: Logger;
  /** A reply item lives this long (DynamoDB's TTL deletes it some time after). @default 600 */
  ttlSeconds?: number;
  /** One put not answered by then is abandoned (and logged). @default 2000 */
  putTimeoutMs?: number;
  /** Puts in flight at once; beyond it a reply is dropped and logged, so a slow table cannot grow the worker's memory. @default 1000 */
  maxInFlight?: number;
  /** Injected in tests; otherwise one is made from endpoint and region. */
  client?: DynamoDBClient;
  /** @default Date.now */
  now?: () => number;
}

/**
 * Puts each reply with a plain PutItem under `reply#<requestId>` (core's pipeline-replies.ts describes the item). A
 * replay of the request (at-least-once) puts the same item again, which is harmless. An answer above DynamoDB's item
 * limit is put as an error naming the limit instead.
 */
export function createDynamoDbReplyWriter(options: DynamoDbReplyWriterOptions): ReplyWriter {
  const client =
    options.client ??
    new DynamoDBClient({
      region: options.region,
      ...(options.endpoint
        ? { endpoint: options.endpoint, credentials: { accessKeyId: "local", secretAccessKey: "local" } }
        : {}),
    });
  const { logger } = options;
  const ttlSeconds = options.ttlSeconds ?? 600;
  const putTimeoutMs = options.putTimeoutMs ?? 2000;
  const maxInFlight = options.maxInFlight ?? 1000;
  const now = options.now ?? Date.now;
  const inFlight = new Set<Promise<void>>();
  let closed = false;
  let closing: Promise<void> | undefined;

  async function send(item: PipelineReplyItem): Promise<void> {
    try {
      await client.send(new PutItemCommand({ TableName: options.tableName, Item: replyItemAttributes(item) }), {
        abortSignal: AbortSignal.timeout(putTimeoutMs),
      });
    } catch (err) {
      logger.warn(
        { err, requestId: item.requestId, pipeline: item.pipeline, table: options.tableName },
        "pipeline reply could not be put in DynamoDB (its Kafka answer went out regardless)",
      );
    }
  }

  return {
    put(reply) {
      if (closed) return;
      if (inFlight.size >= maxInFlight) {
        logger.warn(
          { requestId: reply.requestId, pipeline: reply.pipeline, maxInFlight },
          "pipeline reply dropped: too many DynamoDB puts in flight",
        );
        return;
      }
      const item = fitReplyItem({ ...reply, expiresAt: Math.ceil(now() / 1000) + ttlSeconds } as PipelineReplyItem);
      if (!item.ok && reply.ok) {
        logger.warn({ requestId: reply.requestId, pipeline: reply.pipeline }, item.message);
      }
      const p = send(item);
      inFlight.add(p);
      void p.then(() => inFlight.delete(p));
    },
    inFlight: () => inFlight.size,
    close(timeoutMs) {
      closed = true;
      closing ??= (async () => {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          Promise.all(inFlight),
          new Promise<void>((resolve) => {
            timer = setTimeout(resolve, timeoutMs);
          }),
        ]);
        clearTimeout(timer);
        client.destroy();
      })();
      return closing;
    },
  };
}
