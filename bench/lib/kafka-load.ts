/**
 * Load on the Kafka path, as a client of Tern's topics sees it: produce a request on partition k of an inputs topic,
 * read the answer with the same key from the outputs topic, in closed loops of N requests in flight, with the CPU time
 * every watched process spends meanwhile. The client is `@tern/kafka`'s bus with its default settings, the same client
 * code the model gateway and the dataflow workers run.
 */
import { readFile } from "node:fs/promises";
import { performance } from "node:perf_hooks";
import type { BusMessage, MessageBus } from "@tern/core";
import { waitFor } from "@tern/devstack";
import { processCpuUs } from "./processes.js";
import { percentile, round2, round3 } from "./stats.js";

/** Sends request `i` and resolves with the answer's bytes; rejects on an error answer or at the deadline. */
export type Call = (i: number) => Promise<Uint8Array>;

/** Figures of one closed-loop window. Latencies in ms. */
export interface LoadWindow {
  rps: number;
  p50: number;
  p90: number;
  p99: number;
  requests: number;
  /** CPU µs per request, per watched process; this process is `client`. */
  cpuUsPerRequest: Record<string, number>;
}

/**
 * A closed loop: `inFlight` loops, each sending its next request once the previous one was answered, for `seconds`.
 * `check(i, answer)` throws on a wrong answer (it fails the run: a benchmark of wrong answers measures nothing).
 */
export async function closedLoop(options: {
  call: Call;
  inFlight: number;
  seconds: number;
  pids: Record<string, number>;
  check(i: number, answer: Uint8Array): void;
}): Promise<LoadWindow> {
  const { call, inFlight, seconds, pids, check } = options;
  const latencies: number[] = [];
  let next = 0;
  const before = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, processCpuUs(pid)]));
  const clientBefore = process.cpuUsage();
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  const loop = async () => {
    while (performance.now() < end) {
      const i = next++;
      const started = performance.now();
      const answer = await call(i);
      latencies.push(performance.now() - started);
      check(i, answer);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, loop));
  const elapsed = (performance.now() - t0) / 1000;
  const requests = latencies.length;
  const cpuUsPerRequest: Record<string, number> = {};
  for (const [k, pid] of Object.entries(pids)) cpuUsPerRequest[k] = round2((processCpuUs(pid) - before[k]!) / requests);
  const c = process.cpuUsage(clientBefore);
  cpuUsPerRequest.client = round2((c.user + c.system) / requests);
  const sorted = Float64Array.from(latencies).sort();
  return {
    rps: round2(requests / elapsed),
    p50: round3(percentile(sorted, 50)),
    p90: round3(percentile(sorted, 90)),
    p99: round3(percentile(sorted, 99)),
    requests,
    cpuUsPerRequest,
  };
}

/** Inputs of {@link createKafkaCaller}. */
export interface KafkaCallerOptions {
  /** Topic the requests go to. */
  inputs: string;
  /** Topic the answers come from (read in a group of the caller's own, every partition). */
  outputs: string;
  /** The caller's consumer group; also the prefix of its request ids, so runs never share keys. */
  groupId: string;
  /** The resource segment of the record keys (`<partition>.<resource>.<id>`): the model or pipeline name. */
  resource: string;
  partitions: number;
  /** The request of call `i` (OIP ModelInferRequest bytes). */
  request(i: number): Uint8Array;
  /** Headers on every request (e.g. `pipeline: <p>`); `x-request-id` is added per request. */
  headers?: Record<string, string>;
  /** Bound on one request: a request without an answer by then fails the run. */
  deadlineMs: number;
}

/**
 * A Kafka-path client: request `n` goes to partition `n % partitions` with key `<k>.<resource>.<groupId>-<n>`; the
 * answer is matched by key. Sends made in the same tick go out as one produce request. An answer carrying the error
 * headers of the model gateway or a dataflow worker (`seldon-pipeline-errors`, `tern-error`) rejects the call.
 */
export async function createKafkaCaller(
  bus: MessageBus,
  options: KafkaCallerOptions,
): Promise<{ call: Call; close(): Promise<void> }> {
  const { inputs, outputs, groupId, resource, partitions, request, headers = {}, deadlineMs } = options;
  const waiting = new Map<string, { resolve(v: Uint8Array): void; reject(e: Error): void; timer: NodeJS.Timeout }>();
  const consumer = bus.consumer({
    groupId,
    topics: [outputs],
    assignment: "round-robin",
    async onBatch(messages: BusMessage[]) {
      for (const m of messages) {
        const w = waiting.get(m.key);
        if (!w) continue;
        waiting.delete(m.key);
        clearTimeout(w.timer);
        if (m.headers["seldon-pipeline-errors"] !== undefined || m.headers["tern-error"] !== undefined) {
          w.reject(new Error(`error answer for ${m.key}: ${m.headers["tern-error"] ?? "?"}`));
        } else {
          w.resolve(m.value);
        }
      }
    },
  });
  await consumer.start({ timeoutMs: 60_000 });
  const producer = bus.producer();
  let queued: Array<{
    topic: string;
    partition: number;
    key: string;
    value: Uint8Array;
    headers: Record<string, string>;
  }> = [];
  let failure: Error | undefined;
  const flush = () => {
    const batch = queued;
    queued = [];
    producer.send(batch).catch((err: unknown) => {
      failure = err as Error;
      for (const m of batch) waiting.get(m.key)?.reject(err as Error);
    });
  };
  let sequence = 0;
  const call: Call = (i) => {
    if (failure) return Promise.reject(failure);
    const n = sequence++;
    const partition = n % partitions;
    const id = `${groupId}-${n}`;
    const key = `${partition}.${resource}.${id}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        waiting.delete(key);
        reject(new Error(`no answer for ${key} within ${deadlineMs} ms`));
      }, deadlineMs).unref();
      waiting.set(key, { resolve, reject, timer });
      if (queued.length === 0) setImmediate(flush);
      queued.push({ topic: inputs, partition, key, value: request(i), headers: { ...headers, "x-request-id": id } });
    });
  };
  return {
    call,
    async close() {
      await consumer.stop();
      await producer.close();
    },
  };
}

/** Resident set size of process `pid` now and at its peak, in MiB, from /proc/<pid>/status (VmRSS, VmHWM). */
export async function processMemoryMiB(pid: number): Promise<{ rss: number; peak: number }> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kib = (field: string) => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status);
    if (!m) throw new Error(`/proc/${pid}/status has no ${field}`);
    return Number(m[1]);
  };
  return { rss: round2(kib("VmRSS") / 1024), peak: round2(kib("VmHWM") / 1024) };
}

/**
 * Resolves once a consumer group can be joined on the broker. A fresh broker creates its offsets topic for the first
 * group; on a busy machine that can outlast kafkajs's coordinator look-up, and the data-plane processes then start
 * their consumers again with backoff: a benchmark starts them after this, so that their start-up is not in its figures.
 */
export async function waitGroupCoordinator(bus: MessageBus, name: string): Promise<void> {
  const topic = `${name}.warm`;
  await bus.admin().ensureTopics([topic], 1);
  await waitFor(
    async () => {
      const consumer = bus.consumer({ groupId: `${topic}.group`, topics: [topic], onBatch: async () => {} });
      try {
        await consumer.start({ timeoutMs: 20_000 });
        return true;
      } finally {
        await consumer.stop();
      }
    },
    { timeoutMs: 90_000, intervalMs: 500, description: "a consumer group joined on the broker" },
  );
  await bus.admin().deleteTopics([topic]);
}
