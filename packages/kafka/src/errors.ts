import { TernError, type TernErrorCode } from "@tern/core";

/**
 * Turns whatever the Kafka client threw into a {@link TernError} with a stable code, so callers match on `code` and
 * never on the client's error classes (which would tie them to kafkajs). kafkajs errors carry a `code` of their own
 * (a protocol number or a socket errno): they must never leak, or `hasCode` would read the client's code as ours.
 *
 * - an unknown topic or partition → `not_found`;
 * - a request or admin deadline → `timeout` (retriable);
 * - anything else the client calls retriable (connection refused or closed, leader moving, retries exhausted on
 *   such an error) → `unavailable`, retriable;
 * - the rest → `unavailable`, not retriable.
 *
 * A {@link TernError} passes through unchanged.
 */
export function fromKafkaError(err: unknown, action: string): TernError {
  if (err instanceof TernError) return err;
  const chain: Array<{ name?: unknown; type?: unknown; retriable?: unknown; message?: unknown }> = [];
  for (
    let e: unknown = err;
    typeof e === "object" && e !== null && chain.length < 8;
    e = (e as { cause?: unknown }).cause
  ) {
    chain.push(e as (typeof chain)[number]);
  }
  const root = chain.at(-1) ?? {};
  const types = chain.map((e) => e.type);
  const names = chain.map((e) => e.name);
  const reason = typeof root.message === "string" && root.message !== "" ? root.message : String(err);
  let code: TernErrorCode = "unavailable";
  let retriable = chain.some((e) => e.retriable === true);
  if (types.includes("UNKNOWN_TOPIC_OR_PARTITION")) {
    code = "not_found";
    retriable = false;
  } else if (names.includes("KafkaJSRequestTimeoutError") || types.includes("REQUEST_TIMED_OUT")) {
    code = "timeout";
    retriable = true;
  }
  return new TernError(code, `${action}: ${reason}`, { cause: err, retriable });
}

/** Rejects with a `timeout` error naming `what` when `work` has not settled within `timeoutMs`. */
export async function withDeadline<T>(work: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new TernError("timeout", `${what}: no answer within ${timeoutMs} ms`, { retriable: true })),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
