import {
  createSseParser,
  type WorkerAssignments,
  type WorkerKind,
  type WorkerRegistered,
  type WorkerReport,
} from "@tern/core";

/**
 * A test double of a data-plane worker (a model gateway, say): a real HTTP client of the scheduler's worker API —
 * register, heartbeat, the assignments stream — that runs no consumers and only records what it was assigned. It
 * knows every scheduler's URL and moves to the next one when the one it uses fails or stands by (503), re-registering
 * there, as a worker behind a load balancer in front of the schedulers would.
 */
export interface FakeWorkerOptions {
  urls: string[];
  kind: WorkerKind;
  id: string;
  /**
   * What to report on every heartbeat, from the newest assignments (undefined before the first), as a dataflow worker
   * does; absent: heartbeats carry no body. A new assignment is reported at once, not at the next heartbeat.
   */
  report?: (assignments: WorkerAssignments | undefined) => WorkerReport;
}

export interface FakeWorker {
  /** Assignment events received (across reconnects), newest last. */
  readonly received: WorkerAssignments[];
  /** The buckets of the newest assignments. */
  buckets(): number[];
  /** The pipelines of the newest assignments, by name. */
  pipelines(): string[];
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function createFakeWorker(options: FakeWorkerOptions): FakeWorker {
  const received: WorkerAssignments[] = [];
  const controller = new AbortController();
  const base = `/v1/workers/${options.kind}/${options.id}`;
  const loops: Promise<void>[] = [];
  let index = 0;
  let registeredAt: string | undefined;
  let heartbeatMs = 300;
  let stopped = false;
  let wake: (() => void) | undefined;

  const url = () => options.urls[index % options.urls.length]!;
  const next = (failed: string) => {
    if (url() === failed) index++;
    registeredAt = undefined;
  };
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  /** The heartbeat loop's pause, cut short when an assignment arrives (so a report follows it at once). */
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wake = undefined;
        resolve();
      }
      wake = done;
    });

  async function call(target: string, path: string, init: RequestInit = {}): Promise<Response> {
    const signal = AbortSignal.any([controller.signal, AbortSignal.timeout(3000)]);
    return fetch(`${target}${path}`, { ...init, signal });
  }

  async function register(target: string): Promise<void> {
    const res = await call(target, "/v1/workers", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ kind: options.kind, id: options.id }),
    });
    if (res.status !== 200) throw new Error(`register at ${target}: HTTP ${res.status} ${await res.text()}`);
    heartbeatMs = ((await res.json()) as WorkerRegistered).heartbeatIntervalMs;
    registeredAt = target;
  }

  async function heartbeatLoop(): Promise<void> {
    while (!stopped) {
      const target = url();
      try {
        if (registeredAt !== target) await register(target);
        const body = options.report?.(received.at(-1));
        const res = await call(
          target,
          `${base}/heartbeat`,
          body === undefined
            ? { method: "POST" }
            : { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) },
        );
        if (res.status === 404) registeredAt = undefined;
        else if (res.status !== 204) next(target);
      } catch {
        if (!stopped) next(target);
      }
      await pause(heartbeatMs);
    }
  }

  async function streamLoop(): Promise<void> {
    while (!stopped) {
      const target = url();
      try {
        if (registeredAt !== target) await register(target);
        const res = await fetch(`${target}${base}/assignments`, { signal: controller.signal });
        if (res.status !== 200 || res.body === null) throw new Error(`assignments: HTTP ${res.status}`);
        const parser = createSseParser({
          message: (m) => {
            if (m.event === "assignments") {
              received.push(JSON.parse(m.data) as WorkerAssignments);
              wake?.();
            }
          },
        });
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          parser.push(decoder.decode(value, { stream: true }));
        }
      } catch {
        if (!stopped) next(target);
      }
      if (!stopped) await sleep(200);
    }
  }

  return {
    received,
    buckets: () => (received.at(-1)?.buckets ?? []).map((b) => b.bucket),
    pipelines: () => (received.at(-1)?.pipelines ?? []).map((p) => p.pipeline),
    async start() {
      await register(url());
      loops.push(heartbeatLoop(), streamLoop());
    },
    async stop() {
      stopped = true;
      controller.abort();
      wake?.();
      await Promise.allSettled(loops);
    },
  };
}
