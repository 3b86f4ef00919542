import { setTimeout as sleep } from "node:timers/promises";
import { errorText } from "@tern/control";
import { TernError } from "@tern/core";

export { errorText };

/** Options of {@link waitFor}. */
export interface WaitForOptions {
  /** Give up after this long. */
  timeoutMs: number;
  /**
   * Pause between attempts.
   * @default 250
   */
  intervalMs?: number;
  /** What is awaited, for the error message, e.g. "Kafka broker at localhost:9092". */
  description: string;
  /** Stops waiting early; the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

/**
 * Calls `check` until it returns a value other than `undefined`, `null` or `false`, and resolves with that value.
 * A `check` that throws counts as "not yet"; its last error is quoted when the deadline passes, so a failed wait says
 * why (connection refused, table missing, ...). Rejects with a `timeout` TernError after `timeoutMs`.
 */
export async function waitFor<T>(
  check: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  options: WaitForOptions,
): Promise<T> {
  const { timeoutMs, intervalMs = 250, description, signal } = options;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    signal?.throwIfAborted();
    try {
      const value = await check();
      if (value !== undefined && value !== null && value !== false) return value;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    const remaining = deadline - Date.now();
    if (remaining <= 0) {
      const why = lastError === undefined ? "" : `: ${errorText(lastError)}`;
      throw new TernError("timeout", `${description} not ready after ${timeoutMs} ms${why}`, {
        cause: lastError,
        retriable: true,
      });
    }
    await sleep(Math.min(intervalMs, remaining), undefined, signal ? { signal } : undefined).catch(() => {
      signal?.throwIfAborted();
    });
  }
}
