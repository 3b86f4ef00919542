import { sleepUnlessAborted } from "./abortable.js";
import { readSseStream } from "./sse.js";
import type { WorkerAssignments, WorkerKind, WorkerRegistered, WorkerReport } from "./worker-protocol.js";

/** A pino-compatible logger (pino's `Logger` fits): core has no logging backend of its own. */
export interface WorkerClientLogger {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

export interface WorkerClientOptions {
  /** Base URL of the scheduler's control API. */
  url: string;
  token?: string;
  kind: WorkerKind;
  id: string;
  logger: WorkerClientLogger;
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
 * A data-plane worker's link to the scheduler (`worker-protocol.ts`): the model gateway and the dataflow worker both
 * use it, so registration, heartbeats and the assignment stream behave the same for every worker kind.
 */
export interface WorkerClient {
  /**
   * Registers, heartbeats, and follows the assignments stream: `onChange` gets every event, the FULL set (the first as
   * soon as the scheduler sends it). While the scheduler is away nothing is called — the last assignment stays in
   * force — and the worker registers again once a leader answers (a new leader answers 404 to an unknown worker).
   * Resolves at once; calling it again does nothing.
   */
  start(onChange: (assignments: WorkerAssignments) => void): Promise<void>;
  /**
   * What the worker runs now (the full set): sent at once in a heartbeat, then with every heartbeat, so a new leader
   * learns it with the first beat it sees.
   */
  report(report: WorkerReport): void;
  /** Stops following and tells the scheduler the worker is leaving (its share moves at once). Idempotent. */
  close(): Promise<void>;
}

export function createWorkerClient(options: WorkerClientOptions): WorkerClient {
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
  let heartbeatTimer: ReturnType<typeof setInterval> | undefined;
  let registered = false;
  let running: Promise<void> | undefined;
  let lastReport: string | undefined;
  /** The open assignments stream's own abort: a 404 heartbeat ends it, so the loop registers again at once. */
  let stream: AbortController | undefined;
  let forgotten = false;

  const sleep = (ms: number) => sleepUnlessAborted(ms, stop.signal);
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

  function heartbeat(): void {
    if (!registered || stop.signal.aborted) return;
    const body =
      lastReport === undefined ? {} : { headers: { ...auth, "content-type": "application/json" }, body: lastReport };
    void doFetch(`${path}/heartbeat`, { method: "POST", headers: auth, ...body, signal: signal() }).then(
      async (res) => {
        await res.body?.cancel();
        if (res.status === 404 && registered) {
          // The scheduler forgot this worker (a new leader, or it was dropped) though the stream may still be open.
          registered = false;
          forgotten = true;
          stream?.abort();
        }
      },
      () => {},
    );
  }

  function startHeartbeats(intervalMs: number): void {
    clearInterval(heartbeatTimer);
    heartbeatTimer = setInterval(heartbeat, intervalMs);
    // A timer of its own would keep a process alive that has nothing else to do; the worker's consumers do that.
    (heartbeatTimer as { unref?: () => void }).unref?.();
  }

  async function follow(onChange: (assignments: WorkerAssignments) => void): Promise<void> {
    let backoff = backoffInitial;
    while (!stop.signal.aborted) {
      try {
        if (!registered) {
          const answer = await register();
          registered = true;
          startHeartbeats(answer.heartbeatIntervalMs);
          logger.info({ kind, id }, "registered with the scheduler");
          // A new leader learns what this worker runs now, not a heartbeat interval later.
          if (lastReport !== undefined) heartbeat();
        }
        const local = new AbortController();
        stream = local;
        let idle = setTimeout(() => local.abort(), idleTimeout);
        try {
          const res = await doFetch(`${path}/assignments`, {
            headers: { ...auth, accept: "text/event-stream" },
            signal: AbortSignal.any([stop.signal, local.signal]),
          });
          if (res.status === 404) {
            await res.body?.cancel();
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
            message: ({ data }) => onChange(JSON.parse(data) as WorkerAssignments),
          });
        } finally {
          clearTimeout(idle);
          local.abort();
        }
        // The stream ended (leader change, or this worker was dropped): check in again.
        registered = false;
      } catch (err) {
        if (stop.signal.aborted) return;
        if (forgotten) {
          // Not an outage: check in again after the shortest wait (a scheduler answering 404 to every beat
          // must not turn this into a busy loop).
          forgotten = false;
          await sleep(backoffInitial);
          continue;
        }
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
    report(report) {
      const text = JSON.stringify(report);
      if (text === lastReport) return;
      lastReport = text;
      heartbeat();
    },
    async close() {
      if (stop.signal.aborted) return;
      stop.abort();
      clearInterval(heartbeatTimer);
      await running?.catch(() => {});
      await doFetch(path, { method: "DELETE", headers: auth, signal: AbortSignal.timeout(callTimeout) }).then(
        (res) => res.body?.cancel(),
        () => {},
      );
    },
  };
}
