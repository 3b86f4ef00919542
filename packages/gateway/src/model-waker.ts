import type { ModelRoute, RouteTable } from "@tern/core";
import type { Logger } from "pino";
import { GatewayError } from "./errors.js";
import type { RouteSource } from "./route-source.js";

/**
 * Scale from zero (docs/autoscaling.md): a request for an autoscaled model that has no replica (the route table lists
 * it without endpoints, `ModelScaledDown` or on its way back) asks the scheduler for one and waits, within the
 * request's deadline, until the route has endpoints — the request is answered, not refused.
 */
export interface ModelWaker {
  /**
   * Wakes `model` and resolves with the first route table in which it has endpoints. Concurrent calls for one model
   * share one scheduler call (and the scheduler's side is idempotent), so a burst of first requests makes one load.
   * @throws GatewayError `timeout` when the deadline passes first; `unavailable` when the scheduler refuses.
   */
  wake(model: string, routes: RouteSource, deadline: number): Promise<RouteTable>;
  /**
   * The scale-down race: the only listed replica answered that it no longer holds `model` (the replica-miss marker), so
   * the route `missed` the request was sent by is stale. Waits, within the deadline and at most `settleMs`, for the
   * route table to move past it: when the model is now asleep it is woken ({@link wake}); when it lists other
   * endpoints (or is gone) that table is returned for one retry. Undefined when the route never changed: the miss
   * stands.
   */
  afterMiss(
    model: string,
    missed: ModelRoute | undefined,
    routes: RouteSource,
    deadline: number,
  ): Promise<RouteTable | undefined>;
}

export interface SchedulerWakerOptions {
  /** Base URL of the scheduler's control API. */
  url: string;
  token?: string;
  logger: Logger;
  /** How often the route table is looked at while waiting. @default 25 */
  pollMs?: number;
  /**
   * After a replica miss, how long the route table may take to show the change before the miss is answered as is
   * (a route that never changes is not a scale-down). @default 2000
   */
  settleMs?: number;
  /** @default globalThis.fetch */
  fetch?: typeof fetch;
}

/**
 * True when `model` is listed but has no endpoint because it is scaled to zero or coming back (the scheduler lists
 * only such models without endpoints; a woken model that cannot be placed yet is `ScheduleFailed` until a server
 * replica comes).
 */
export function isAsleep(table: RouteTable, model: string): boolean {
  const route = table.models[model];
  return (
    route !== undefined &&
    route.endpoints.length === 0 &&
    (route.state === "ModelScaledDown" || route.state === "ModelProgressing" || route.state === "ScheduleFailed")
  );
}

/** A waker that calls the scheduler's `POST /v1/models/{name}/activate`. */
export function createSchedulerWaker(options: SchedulerWakerOptions): ModelWaker {
  const doFetch = options.fetch ?? globalThis.fetch;
  const pollMs = options.pollMs ?? 25;
  const settleMs = options.settleMs ?? 2_000;
  const base = options.url.replace(/\/+$/, "");
  /** One activation call in flight per model. */
  const activating = new Map<string, Promise<void>>();

  function activate(model: string, deadline: number): Promise<void> {
    let pending = activating.get(model);
    if (pending === undefined) {
      pending = (async () => {
        const res = await doFetch(`${base}/v1/models/${encodeURIComponent(model)}/activate`, {
          method: "POST",
          headers: options.token === undefined ? {} : { authorization: `Bearer ${options.token}` },
          signal: AbortSignal.timeout(Math.max(1, deadline - Date.now())),
        });
        const text = await res.text();
        if (res.ok) {
          options.logger.info({ model, status: res.status }, "asked the scheduler to wake a model scaled to zero");
          return;
        }
        let message = text.slice(0, 200);
        try {
          message = (JSON.parse(text) as { error?: string }).error ?? message;
        } catch {}
        throw new GatewayError("unavailable", `model ${model} is scaled to zero and could not be woken: ${message}`, {
          retriable: res.status >= 500,
        });
      })().finally(() => activating.delete(model));
      activating.set(model, pending);
    }
    return pending;
  }

  const waker: ModelWaker = {
    async afterMiss(model, missed, routes, deadline) {
      const until = Math.min(deadline, Date.now() + settleMs);
      for (;;) {
        const table = await readBefore(routes, deadline, model);
        if (table !== undefined && !sameRoute(table.models[model], missed)) {
          options.logger.debug(
            { model, state: table.models[model]?.state },
            "retrying a replica miss on a newer route",
          );
          return isAsleep(table, model) ? waker.wake(model, routes, deadline) : table;
        }
        const left = until - Date.now();
        if (left <= 0) return undefined;
        await new Promise((r) => setTimeout(r, Math.min(pollMs, left)));
      }
    },
    async wake(model, routes, deadline) {
      try {
        await activate(model, deadline);
      } catch (err) {
        if (err instanceof GatewayError) throw err;
        if (Date.now() >= deadline) throw timeout(model);
        options.logger.warn({ model, err }, "could not reach the scheduler to wake a model");
        throw new GatewayError("unavailable", `model ${model} is scaled to zero and the scheduler is unreachable`, {
          retriable: true,
          cause: err,
        });
      }
      for (;;) {
        const table = await readBefore(routes, deadline, model);
        // Serving now — or no longer asleep for another reason (deleted, failed): routing says what that means.
        if (table !== undefined && !isAsleep(table, model)) return table;
        const left = deadline - Date.now();
        if (left <= 0) throw timeout(model, table?.models[model]?.state);
        await new Promise((r) => setTimeout(r, Math.min(pollMs, left)));
      }
    },
  };
  return waker;
}

/**
 * The waker of a gateway that cannot reach the scheduler (the Lambda entry without `TERN_SCHEDULER_URL`): a request for a
 * model scaled to zero is answered at once with 503 saying so and why, instead of the bare "no available replica"; a
 * replica miss stands as it is.
 */
export function createRefusingWaker(why: string): ModelWaker {
  return {
    async wake(model) {
      throw new GatewayError(
        "unavailable",
        `model ${model} is scaled to zero and this gateway cannot wake it (${why})`,
        {
          retriable: false,
        },
      );
    },
    async afterMiss() {
      return undefined;
    },
  };
}

/** Same state and endpoints (route tables are rebuilt on change, so equal content means nothing moved). */
function sameRoute(a: ModelRoute | undefined, b: ModelRoute | undefined): boolean {
  if (a === b) return true;
  if (a === undefined || b === undefined) return false;
  return a.state === b.state && a.version === b.version && JSON.stringify(a.endpoints) === JSON.stringify(b.endpoints);
}

/**
 * One look at the route table, over by the request's deadline. A source with a cache (the Lambda entry's DynamoDB item)
 * answers from it until the cache expires and then reads again, so polling sees the woken model within a cache period;
 * such a read can be slow (its own timeout is TERN_GATEWAY_ROUTE_READ_TIMEOUT_MS), and it must not hold the request
 * past its deadline.
 */
async function readBefore(routes: RouteSource, deadline: number, model: string): Promise<RouteTable | undefined> {
  const pending = routes.table();
  if (!(pending instanceof Promise)) return pending;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(timeout(model)), Math.max(0, deadline - Date.now()));
  });
  return Promise.race([pending, expired]).finally(() => clearTimeout(timer));
}

function timeout(model: string, state?: string): GatewayError {
  const now = state === undefined ? "" : ` (it is ${state})`;
  return new GatewayError(
    "timeout",
    `model ${model} was scaled to zero and no replica came up within the request's deadline${now}`,
  );
}
