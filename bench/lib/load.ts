/**
 * Load on one HTTP endpoint: autocannon runs in the bench process, with exact per-response latencies and the CPU time
 * that the servers and the load generator spend meanwhile; and a single POST for checks before anything is timed.
 */
import http from "node:http";
import { createRequire } from "node:module";
import { processCpuUs, type Server } from "./processes.js";
import { percentile, round2, round3 } from "./stats.js";

// autocannon has no type declarations; this is the part of its API the benchmarks use.
interface AutocannonResult {
  duration: number;
  errors: number;
  timeouts: number;
  non2xx: number;
}
interface AutocannonInstance {
  on(event: "response", listener: (client: unknown, status: number, bytes: number, ms: number) => void): void;
}
type Autocannon = (
  options: Record<string, unknown>,
  done: (err: Error | null, result: AutocannonResult) => void,
) => AutocannonInstance;
const autocannon = createRequire(import.meta.url)("autocannon") as Autocannon;

/** Inputs of {@link runLoad}. */
export interface LoadOptions {
  /** Full URL of the endpoint. */
  url: string;
  /** Request body, POSTed as `application/json` (with content-length) on every request. */
  body: string;
  connections: number;
  seconds: number;
  /** Requests per second over all connections; unset, each connection sends its next request once answered. */
  overallRate?: number;
  /**
   * Processes whose CPU time over the run is measured, by their key.
   * @default []
   */
  watch?: readonly Server[];
}

/** Figures of one {@link runLoad}. Latencies are in ms, over the 2xx responses only. */
export interface LoadRun {
  /** 2xx responses per second. */
  rps: number;
  p50: number;
  p90: number;
  p99: number;
  mean: number;
  /** Count of 2xx responses. */
  requests: number;
  /** Errors, timeouts and non-2xx responses. */
  errors: number;
  /**
   * CPU time (user + system) in µs spent during the run by every watched process, under its key, and then by this
   * process (the load generator) under `loadgen`.
   */
  cpuUs: Record<string, number>;
}

/**
 * One autocannon run against `url`. Latencies are the exact per-response times (autocannon's own histogram rounds
 * them to whole ms). autocannon's default 10 s request timeout is kept: a stalled request counts as an error.
 */
export function runLoad(options: LoadOptions): Promise<LoadRun> {
  const { url, body, connections, seconds, overallRate, watch = [] } = options;
  const latencies: number[] = [];
  const before = watch.map((s) => processCpuUs(s.child.pid!));
  const loadgenBefore = process.cpuUsage();
  return new Promise((resolveLoad, reject) => {
    const instance = autocannon(
      {
        url,
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
        connections,
        duration: seconds,
        ...(overallRate ? { overallRate } : {}),
      },
      (err, result) => {
        if (err) {
          reject(err);
          return;
        }
        const sorted = Float64Array.from(latencies).sort();
        const requests = latencies.length;
        const cpuUs: Record<string, number> = {};
        watch.forEach((s, i) => {
          cpuUs[s.key] = processCpuUs(s.child.pid!) - before[i]!;
        });
        const lg = process.cpuUsage(loadgenBefore);
        cpuUs.loadgen = lg.user + lg.system;
        resolveLoad({
          rps: round2(requests / result.duration),
          p50: round3(percentile(sorted, 50)),
          p90: round3(percentile(sorted, 90)),
          p99: round3(percentile(sorted, 99)),
          mean: round3(sorted.reduce((a, b) => a + b, 0) / Math.max(1, requests)),
          requests,
          errors: result.errors + result.timeouts + result.non2xx,
          cpuUs,
        });
      },
    );
    instance.on("response", (_client, status, _bytes, ms) => {
      if (status >= 200 && status < 300) latencies.push(ms);
    });
  });
}

/** Inputs of {@link post}. */
export interface PostOptions {
  /**
   * Leave out content-length, so that the body goes with chunked transfer encoding.
   * @default false
   */
  chunked?: boolean;
  /**
   * Upper bound on the whole exchange, from sending to the end of the answer.
   * @default 30_000
   */
  timeoutMs?: number;
}

/** Status and body text of an answer to {@link post}. */
export interface PostAnswer {
  status: number;
  body: string;
}

/**
 * One POST of `body` as `application/json` to `url`, on a connection of its own, written in 4 KiB pieces. A server
 * may answer (e.g. 413) and close before it has read the whole body: the write error that follows (EPIPE, ECONNRESET)
 * is ignored, the answer still counts, and without one the deadline rejects.
 */
export function post(url: string, body: string, options: PostOptions = {}): Promise<PostAnswer> {
  const { chunked = false, timeoutMs = 30_000 } = options;
  return new Promise((resolvePost, reject) => {
    const bytes = Buffer.from(body);
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (!chunked) headers["content-length"] = String(bytes.length);
    const req = http.request(url, { method: "POST", headers, agent: false }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => {
        text += d;
      });
      res.on("end", () => {
        clearTimeout(deadline);
        resolvePost({ status: res.statusCode ?? 0, body: text });
      });
    });
    const deadline = setTimeout(() => {
      req.destroy();
      reject(new Error(`POST ${url}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    req.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "EPIPE" || err.code === "ECONNRESET") return;
      clearTimeout(deadline);
      reject(err);
    });
    for (let o = 0; o < bytes.length; o += 4096) req.write(bytes.subarray(o, o + 4096));
    req.end();
  });
}
