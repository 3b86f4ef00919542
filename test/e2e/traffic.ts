import { type IrisRow, irisRequest, parseIrisAnswer } from "./iris-data.js";

/** What happened to each request of a traffic run. */
export interface TrafficOutcome {
  total: number;
  /** 200 with the expected class. */
  ok: number;
  /** 200 but another class or an unreadable body. */
  wrongAnswer: number;
  /** A non-200 status with an OIP `{"error": "..."}` body, counted by `status: message`. */
  clearErrors: Map<string, number>;
  /** A non-200 status without an `{"error"}` body. */
  unclearErrors: Map<string, number>;
  /** No answer within the client deadline. */
  timeouts: number;
  /** The connection to the gateway itself failed. */
  networkErrors: Map<string, number>;
}

export interface TrafficOptions {
  url: string;
  /** The iris model's name in the manifest. @default "iris" */
  model?: string;
  rows: IrisRow[];
  /** Requests in flight at once. */
  concurrency: number;
  /** Client deadline per request; a request past it counts as a hang. */
  timeoutMs: number;
  /** Hard bound on the run, whatever `stop` says. */
  maxDurationMs: number;
  /** Hard bound on the number of requests. */
  maxRequests: number;
}

export interface TrafficRun {
  /** Asks the workers to finish after their current request. */
  stop(): void;
  /** Resolves when every worker has finished. */
  done: Promise<TrafficOutcome>;
  /** Requests completed so far. */
  completed(): number;
}

function bump(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}

/** A bounded loop of concurrent iris requests (loopback only); it stops by itself at `maxDurationMs`/`maxRequests`. */
export function startTraffic(options: TrafficOptions): TrafficRun {
  const model = options.model ?? "iris";
  const outcome: TrafficOutcome = {
    total: 0,
    ok: 0,
    wrongAnswer: 0,
    clearErrors: new Map(),
    unclearErrors: new Map(),
    timeouts: 0,
    networkErrors: new Map(),
  };
  const endAt = Date.now() + options.maxDurationMs;
  let stopped = false;
  let started = 0;
  const worker = async (w: number) => {
    while (!stopped && Date.now() < endAt && started < options.maxRequests) {
      const row = options.rows[(started + w) % options.rows.length]!;
      started++;
      await one(row);
      outcome.total++;
    }
  };
  const one = async (row: IrisRow) => {
    let res: Response;
    let text: string;
    try {
      res = await fetch(`${options.url}/v2/models/${model}/infer`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: irisRequest(row),
        signal: AbortSignal.timeout(options.timeoutMs),
      });
      text = await res.text();
    } catch (err) {
      const name = (err as Error).name;
      if (name === "TimeoutError" || name === "AbortError") outcome.timeouts++;
      else bump(outcome.networkErrors, `${name}: ${String((err as Error).cause ?? (err as Error).message)}`);
      return;
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    if (res.status === 200) {
      try {
        if (parseIrisAnswer(body).labels[0] === row.label) outcome.ok++;
        else outcome.wrongAnswer++;
      } catch {
        outcome.wrongAnswer++;
      }
      return;
    }
    const error = (body as { error?: unknown } | undefined)?.error;
    if (typeof error === "string" && error.length > 0) bump(outcome.clearErrors, `${res.status}: ${error}`);
    else bump(outcome.unclearErrors, `${res.status}: ${text.slice(0, 200)}`);
  };
  const done = Promise.all(Array.from({ length: options.concurrency }, (_, w) => worker(w))).then(() => outcome);
  return {
    stop: () => {
      stopped = true;
    },
    done,
    completed: () => outcome.total,
  };
}

/** A one-line summary for logs and assertion messages. */
export function describeOutcome(o: TrafficOutcome): string {
  const list = (m: Map<string, number>) => [...m].map(([k, n]) => `${n}× ${k}`).join("; ") || "none";
  return (
    `${o.total} requests: ${o.ok} ok, ${o.wrongAnswer} wrong answers, ${o.timeouts} timeouts; ` +
    `clear errors: ${list(o.clearErrors)}; unclear errors: ${list(o.unclearErrors)}; network errors: ${list(o.networkErrors)}`
  );
}
