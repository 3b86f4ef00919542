import type { SSEStreamingApi } from "hono/streaming";

/**
 * Moves items from a synchronous producer (scheduler callbacks) to an SSE stream in order, with heartbeat comments
 * while idle, until `end()` or the client goes away. (The same pump app.ts keeps privately for the agent streams; one
 * can replace the other once both branches are merged.)
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
