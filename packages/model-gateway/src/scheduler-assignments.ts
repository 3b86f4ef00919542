import {
  type BucketAssignment,
  readSseStream,
  type WorkerAssignments,
  type WorkerKind,
  type WorkerRegistered,
} from "@tern/core";
import type { Logger } from "pino";
import type { AssignmentSource } from "./assignment-source.js";

export interface SchedulerAssignmentsOptions {
  /** Base URL of the scheduler's control API. */
  url: string;
  token?: string;
  kind: WorkerKind;
  id: string;
  logger: Logger;
  /** Deadline of one register, heartbeat or leave call. @default 5000 */
  callTimeoutMs?: number;
  /** First wait after a failure; doubles up to `backoffMaxMs`. @default 200 */
  backoffInitialMs?: number;
  /** @default 5000 */
  backoffMaxMs?: number;
  /** An assignment stream silent this long is dropped and re-opened (the scheduler comments every 15 s). @default 60000 */
  idleTimeoutMs?: number;
  /** @default globalThis.fetch */
  fetch?: typeof fetch;
}

/**
 * Follows the scheduler as a data-plane worker (`worker-protocol.ts` in core): registers, heartbeats, and reads the
 * assignments stream (each event is the full set). While the scheduler is away the last assignment stays in force —
 * the consumers keep running — and the worker registers again when it is back (a new leader answers 404 to a
 * heartbeat of a worker it does not know).
 */
export function createSchedulerAssignments(options: SchedulerAssignmentsOptions): AssignmentSource {
  const base = options.url.replace(/\/+$/, "");
  const doFetch = options.fetch ?? globalThis.fetch;
  const callTimeout = options.callTimeoutMs ?? 5000;
  const backoffInitial = options.backoffInitialMs ?? 200;
  const backoffMax = options.backoffMaxMs ?? 5000;
  const idleTimeout = options.idleTimeoutMs ?? 60_000;
  const { kind, id, logger } = options;
  const auth: Record<string, string> = options.token ? { authorization: `Bearer ${options.token}` } : {};
  const path = `${base}/v1/workers/${kind}/${id}`;
  const stop = new AbortController();
  let heartbeatTimer: NodeJS.Timeout | undefined;
  let registered = false;
  let running: Promise<void> | undefined;

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      stop.signal.addEventListener("abort", () => {
        clearTimeout(t);
        resolve();
      });
    });
  const signal = () => AbortSignal.any([stop.signal, AbortSignal.timeout(callTimeout)]);

  async function register(): Promise<WorkerRegistered> {
    const res = await doFetch(`${base}/v1/workers`, {
      method: "POST",
      headers: { ...auth, "content-type": "application/json" },
      body: JSON.stringify({ kind, id }),
      signal: signal(),
    });
    if (!res.ok) throw new Error(`POST /v1/workers answered ${res.status}: ${(await res.text()).slice(0, 300)}`);
    return (await res.json()) as WorkerRegistered;
  }

  function startHeartbeats(intervalMs: number): void {
    clearInterval(heartbeatTimer);
    heartbeatTimer = setInterval(() => {
      void doFetch(`${path}/heartbeat`, { method: "POST", headers: auth, signal: signal() }).then(
        (res) => {
          if (res.status === 404) registered = false;
        },
        () => {},
      );
    }, intervalMs);
    heartbeatTimer.unref();
  }

  async function follow(onChange: (buckets: BucketAssignment[]) => void): Promise<void> {
    let backoff = backoffInitial;
    while (!stop.signal.aborted) {
      try {
        if (!registered) {
          const answer = await register();
          registered = true;
          startHeartbeats(answer.heartbeatIntervalMs);
          logger.info({ kind, id }, "registered with the scheduler");
        }
        const local = new AbortController();
        let idle = setTimeout(() => local.abort(), idleTimeout);
        try {
          const res = await doFetch(`${path}/assignments`, {
            headers: { ...auth, accept: "text/event-stream" },
            signal: AbortSignal.any([stop.signal, local.signal]),
          });
          if (res.status === 404) {
            registered = false;
            continue;
          }
          if (!res.ok || !res.body) throw new Error(`GET assignments answered ${res.status}`);
          backoff = backoffInitial;
          await readSseStream(res.body, {
            onChunk: () => {
              clearTimeout(idle);
              idle = setTimeout(() => local.abort(), idleTimeout);
            },
            message: ({ data }) => {
              const assignments = JSON.parse(data) as WorkerAssignments;
              onChange(assignments.buckets);
            },
          });
        } finally {
          clearTimeout(idle);
          local.abort();
        }
        // The stream ended (leader change, or this worker was dropped): check in again.
        registered = false;
      } catch (err) {
        if (stop.signal.aborted) return;
        logger.warn(
          { err: (err as Error).message, backoffMs: backoff },
          "scheduler unreachable; keeping the last assignment",
        );
        registered = false;
        await sleep(backoff);
        backoff = Math.min(backoff * 2, backoffMax);
      }
    }
  }

  return {
    async start(onChange) {
      running ??= follow(onChange);
    },
    async close() {
      if (stop.signal.aborted) return;
      stop.abort();
      clearInterval(heartbeatTimer);
      await running?.catch(() => {});
      // Leaving at once moves this replica's buckets now rather than after the heartbeat timeout.
      await doFetch(path, { method: "DELETE", headers: auth, signal: AbortSignal.timeout(callTimeout) }).catch(
        () => {},
      );
    },
  };
}
