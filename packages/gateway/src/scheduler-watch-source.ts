import { createSseParser, type RouteTable, type SseMessage } from "@tern/core";
import type { Logger } from "pino";
import type { RouteSource } from "./route-source.js";
import { asRouteTable } from "./route-table.js";

export interface SchedulerWatchSourceOptions {
  /** Base URL of the scheduler's control API, e.g. `http://127.0.0.1:9004`. */
  url: string;
  /** Sent as `Authorization: Bearer <token>` when the control API is guarded. */
  token?: string;
  logger: Logger;
  /** @default globalThis.fetch */
  fetch?: typeof fetch;
  /** First wait after a failure; doubles up to `backoffMaxMs`. @default 200 */
  backoffInitialMs?: number;
  /** @default 5000 */
  backoffMaxMs?: number;
  /** Deadline of one `GET /v1/routes`. @default 5000 */
  listTimeoutMs?: number;
  /** A watch silent for this long is dropped and re-established (a half-open connection sends nothing). @default 120000 */
  idleTimeoutMs?: number;
  /** Called with each newer table once it is held (the Node entry prunes its pipeline reply readers with it). */
  onTable?: (table: RouteTable) => void;
}

export interface SchedulerWatchSource extends RouteSource {
  table(): RouteTable | undefined;
  /** Resolves true once a table is held, false when `timeoutMs` passes first. */
  whenReady(timeoutMs: number): Promise<boolean>;
}

/** SSE event names (or `type` fields) by which the scheduler says "your revision is gone: list again". */
const RESET_EVENTS = new Set(["reset", "gap", "resync", "relist"]);

/**
 * Follows the scheduler: lists `GET /v1/routes`, then watches `GET /v1/watch?fromRevision=N` (server-sent events), and
 * lists again after a reset/gap event (or a 410 answer) or a dropped connection, with exponential backoff. The last table
 * is kept while the scheduler is away (the data plane keeps serving). Events are the scheduler's WatchEvent
 * (`{revision, changes}`: a `routes` change carries the new table); a bare route table, or any other change with a
 * newer revision (the table is then listed again, coalesced), is accepted too.
 */
export function createSchedulerWatchSource(options: SchedulerWatchSourceOptions): SchedulerWatchSource {
  const base = options.url.replace(/\/+$/, "");
  const doFetch = options.fetch ?? globalThis.fetch;
  const backoffInitial = options.backoffInitialMs ?? 200;
  const backoffMax = options.backoffMaxMs ?? 5000;
  const listTimeout = options.listTimeoutMs ?? 5000;
  const idleTimeout = options.idleTimeoutMs ?? 120_000;
  const { logger } = options;
  const headers: Record<string, string> = options.token ? { authorization: `Bearer ${options.token}` } : {};

  let current: RouteTable | undefined;
  let closed = false;
  const stop = new AbortController();
  let readyWaiters: Array<() => void> = [];
  let relisting: Promise<void> | undefined;
  let relistAgain = false;

  function apply(table: RouteTable): void {
    if (current && table.revision < current.revision) return;
    const newer = current === undefined || table.revision > current.revision;
    current = table;
    if (newer) notify(table);
    const waiters = readyWaiters;
    readyWaiters = [];
    for (const w of waiters) w();
  }

  function notify(table: RouteTable): void {
    try {
      options.onTable?.(table);
    } catch (err) {
      logger.warn({ err }, "route table listener failed");
    }
  }

  async function list(): Promise<RouteTable> {
    const signal = AbortSignal.any([stop.signal, AbortSignal.timeout(listTimeout)]);
    const res = await doFetch(`${base}/v1/routes`, { headers, signal });
    if (!res.ok) throw new Error(`GET /v1/routes answered ${res.status}`);
    const table = asRouteTable(await res.json());
    if (!table) throw new Error("GET /v1/routes did not return a route table");
    apply(table);
    return table;
  }

  /** Lists again in the background; bursts of change events collapse into at most one extra list. */
  function relistSoon(): void {
    if (relisting) {
      relistAgain = true;
      return;
    }
    relisting = (async () => {
      do {
        relistAgain = false;
        try {
          await list();
        } catch (err) {
          if (!closed) logger.warn({ err }, "re-listing routes failed; keeping the last table");
        }
      } while (relistAgain && !closed);
    })().finally(() => {
      relisting = undefined;
    });
  }

  /** Follows the stream; resolves "reset" when a fresh list is needed at once, "ended" when the stream closed. */
  async function watch(fromRevision: number, onEvent: () => void): Promise<"reset" | "ended"> {
    const local = new AbortController();
    const signal = AbortSignal.any([stop.signal, local.signal]);
    let idle = setTimeout(() => local.abort(), idleTimeout);
    const touch = () => {
      clearTimeout(idle);
      idle = setTimeout(() => local.abort(), idleTimeout);
    };
    try {
      const res = await doFetch(`${base}/v1/watch?fromRevision=${fromRevision}`, {
        headers: { ...headers, accept: "text/event-stream" },
        signal,
      });
      if (res.status === 410) return "reset";
      if (!res.ok || !res.body) throw new Error(`GET /v1/watch answered ${res.status}`);
      let reset = false;
      const parser = createSseParser({
        message: (message) => {
          if (!reset && handleEvent(message, onEvent) === "reset") reset = true;
        },
      });
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) {
          parser.end();
          return reset ? "reset" : "ended";
        }
        touch();
        parser.push(value);
        if (reset) {
          await reader.cancel().catch(() => {});
          return "reset";
        }
      }
    } finally {
      clearTimeout(idle);
      local.abort();
    }
  }

  function handleEvent({ event, data, id }: SseMessage, onEvent: () => void): "reset" | undefined {
    onEvent();
    if (RESET_EVENTS.has(event)) return "reset";
    let payload: unknown;
    try {
      payload = JSON.parse(data);
    } catch {
      logger.warn({ event }, "ignoring a watch event that is not JSON");
      return undefined;
    }
    const p = (typeof payload === "object" && payload !== null ? payload : {}) as Record<string, unknown>;
    if ((typeof p.type === "string" && RESET_EVENTS.has(p.type)) || p.reset === true) return "reset";
    // The scheduler's events are `{revision, changes: [{kind, name, type, status}]}`; a route change carries the whole
    // table as its status, and a transaction that changed no route needs nothing from us.
    if (Array.isArray(p.changes)) {
      for (const change of p.changes as Array<Record<string, unknown>>) {
        if (change?.kind !== "routes") continue;
        const table = asRouteTable(change.status);
        if (table) apply(table);
        else relistSoon();
      }
      return undefined;
    }
    const table = asRouteTable(payload) ?? asRouteTable(p.routes) ?? asRouteTable(p.value);
    if (table) {
      apply(table);
      return undefined;
    }
    const revision = typeof p.revision === "number" ? p.revision : Number(id);
    if (!Number.isFinite(revision) || !current || revision > current.revision) relistSoon();
    return undefined;
  }

  async function sleep(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      stop.signal.addEventListener(
        "abort",
        () => {
          clearTimeout(timer);
          resolve();
        },
        { once: true },
      );
    });
  }

  async function run(): Promise<void> {
    let failures = 0;
    while (!closed) {
      let healthy = false;
      try {
        const table = await list();
        const outcome = await watch(table.revision, () => {
          healthy = true;
        });
        if (outcome === "reset") {
          logger.info({ revision: current?.revision }, "route watch reset: listing again");
          failures = 0;
          continue;
        }
        if (!closed) logger.warn("route watch ended: listing again");
      } catch (err) {
        if (closed) break;
        logger.warn({ err: (err as Error).message }, "route watch failed; keeping the last table");
      }
      failures = healthy ? 1 : failures + 1;
      await sleep(Math.min(backoffMax, backoffInitial * 2 ** (failures - 1)));
    }
  }

  const running = run();

  return {
    table: () => current,
    whenReady(timeoutMs) {
      if (current) return Promise.resolve(true);
      return new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => {
          readyWaiters = readyWaiters.filter((w) => w !== done);
          resolve(false);
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          resolve(true);
        };
        readyWaiters.push(done);
      });
    },
    async close() {
      if (closed) return;
      closed = true;
      stop.abort();
      await running;
      await relisting;
    },
  };
}
