import type { PipelineReplyItem } from "@tern/core";

/** An answer for the rendezvous, before the writer stamps its expiry. */
export type PipelineReplyDraft = PipelineReplyItem extends infer T
  ? T extends unknown
    ? Omit<T, "expiresAt">
    : never
  : never;

/**
 * Where a worker also puts the answers of requests that asked for them with `tern-reply-to: dynamodb` (the Lambda
 * gateway's rendezvous, DESIGN §3). `put` never throws and never blocks the caller: the Kafka output path goes on
 * whatever happens to the put, and a failed put is the writer's to log.
 */
export interface ReplyWriter {
  put(reply: PipelineReplyDraft): void;
  /** Puts in flight; for status and tests. */
  inFlight(): number;
  /** Waits (at most `timeoutMs`) for the puts in flight; later puts are dropped. Idempotent. */
  close(timeoutMs: number): Promise<void>;
}

/** The in-memory writer for unit tests: keeps the last reply per request id, stamped with `expiresAt`. */
export function createMemoryReplyWriter(options: { ttlSeconds?: number; now?: () => number } = {}): ReplyWriter & {
  readonly items: Map<string, PipelineReplyItem>;
} {
  const items = new Map<string, PipelineReplyItem>();
  const now = options.now ?? Date.now;
  const ttl = options.ttlSeconds ?? 600;
  let closed = false;
  return {
    items,
    put(reply) {
      if (closed) return;
      items.set(reply.requestId, { ...reply, expiresAt: Math.ceil(now() / 1000) + ttl } as PipelineReplyItem);
    },
    inFlight: () => 0,
    async close() {
      closed = true;
    },
  };
}
