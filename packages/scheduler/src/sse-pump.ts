import type { Context } from "hono";
import { type SSEStreamingApi, streamSSE } from "hono/streaming";

/**
 * Moves items from a synchronous producer (scheduler callbacks) to an SSE stream in order, with heartbeat comments
 * while idle, until `end()` or the client goes away.
 */
export function createSsePump<T>(stream: SSEStreamingApi, heartbeatMs: number) {
  const queue: T[] = [];
  let ended = false;
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  return {
    push(item: T) {
      queue.push(item);
      notify();
    },
    end() {
      ended = true;
      notify();
    },
    async run(write: (item: T) => Promise<void>): Promise<void> {
      while (!ended && !stream.aborted) {
        while (queue.length > 0 && !stream.aborted) await write(queue.shift()!);
        if (ended) break;
        let timer: NodeJS.Timeout | undefined;
        const woke = await new Promise<boolean>((resolve) => {
          wake = () => resolve(true);
          timer = setTimeout(() => resolve(false), heartbeatMs);
        });
        clearTimeout(timer);
        wake = undefined;
        if (!woke && !ended && !stream.aborted) await stream.write(": heartbeat\n\n");
      }
      // Items pushed just before the end still go out.
      while (queue.length > 0 && !stream.aborted) await write(queue.shift()!);
    },
  };
}

/**
 * An `event: assignments` stream (agents' and workers' alike): each item the subscription delivers is written as one
 * event with its revision as the id; the stream ends when the subscription closes or the client goes away.
 */
export function streamAssignments<T extends { revision: number }>(
  c: Context,
  heartbeatMs: number,
  subscribe: (listener: { assignments(item: T): void; close(): void }) => (() => void) | undefined,
): Response {
  return streamSSE(c, async (stream) => {
    const pump = createSsePump<T>(stream, heartbeatMs);
    const unsubscribe = subscribe({ assignments: pump.push, close: pump.end });
    if (unsubscribe === undefined) return;
    stream.onAbort(() => {
      unsubscribe();
      pump.end();
    });
    await pump.run((a) => stream.writeSSE({ event: "assignments", id: String(a.revision), data: JSON.stringify(a) }));
    unsubscribe();
  });
}
