/**
 * Kafka bus benchmark (not a test): what one hop through `@tern/kafka` costs with its default settings.
 *
 *   npm run bench:kafka-bus            (node --import tsx bench/kafka-bus/run.ts)
 *
 * 1. Hop latency: one 100-byte record at a time, produced on partition 0 and received by a consumer of the same
 *    process (send() call → onBatch), sequentially; 200 warm-up records, then 1 000 measured.
 * 2. Throughput: 20 000 records of 200 bytes produced in sends of 100 over 4 partitions, timed from the first send to
 *    the last record handled.
 *
 * Uses the brokers in KAFKA_BROKERS, or starts a broker (and DynamoDB Local, which the dev stack always starts) on free
 * ports in a temporary folder. Writes bench/results/kafka-bus.json and .md.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { BusMessage, MessageBus } from "@tern/core";
import { createDevStack, findFreePort, loadDevStackConfig } from "@tern/devstack";
import { createKafkaBus, DEFAULT_KAFKA_SETTINGS } from "@tern/kafka";
import { REPO_ROOT } from "../lib/processes.js";
import { machineLines, notesLines, rerenderIfAsked, startRun, writeResults } from "../lib/report.js";
import { percentile, round2, round3 } from "../lib/stats.js";

const OUT = "kafka-bus";
const WARMUP = 200;
const HOPS = 1_000;
const THROUGHPUT_RECORDS = 20_000;
const SEND_SIZE = 100;
const PARTITIONS = 4;
const DEADLINE_MS = 120_000;

interface Result {
  startedAt: string;
  machine: ReturnType<ReturnType<typeof startRun>["machine"]>;
  settings: { maxWaitTimeInMs: number; minBytes: number; partitionsConsumedConcurrently: number; acks: number };
  hop: { records: number; p50Ms: number; p90Ms: number; p99Ms: number; maxMs: number; meanMs: number };
  throughput: { records: number; recordBytes: number; sendSize: number; seconds: number; recordsPerSecond: number };
}

function render(r: Result): string {
  return [
    "# Kafka bus (`@tern/kafka`)",
    "",
    `Run ${r.startedAt} with \`npm run bench:kafka-bus\`, default settings (maxWaitTimeInMs ${r.settings.maxWaitTimeInMs}, ` +
      `minBytes ${r.settings.minBytes}, partitionsConsumedConcurrently ${r.settings.partitionsConsumedConcurrently}, acks ${r.settings.acks}).`,
    ...machineLines(r.machine),
    "",
    "| Scenario | Figure |",
    "|---|---|",
    `| one hop, 100 B, sequential (${r.hop.records} records) | p50 ${r.hop.p50Ms} ms, p90 ${r.hop.p90Ms} ms, p99 ${r.hop.p99Ms} ms, max ${r.hop.maxMs} ms, mean ${r.hop.meanMs} ms |`,
    `| throughput, ${r.throughput.records} records of ${r.throughput.recordBytes} B in sends of ${r.throughput.sendSize}, ${PARTITIONS} partitions | ${r.throughput.recordsPerSecond} records/s (${r.throughput.seconds} s) |`,
    "",
    ...notesLines(join(REPO_ROOT, "bench/kafka-bus/notes.md")),
  ].join("\n");
}

async function waitUntil(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + DEADLINE_MS;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

async function measure(bus: MessageBus): Promise<Pick<Result, "hop" | "throughput">> {
  const suffix = Date.now().toString(36);
  const hopTopic = `tern-bench.hop.${suffix}`;
  const bulkTopic = `tern-bench.bulk.${suffix}`;
  await bus.admin().ensureTopics([hopTopic, bulkTopic], PARTITIONS);
  const producer = bus.producer();

  // 1. Hop latency.
  let arrived: (() => void) | undefined;
  const hopConsumer = bus.consumer({
    groupId: `tern-bench.hop.${suffix}`,
    topics: [hopTopic],
    async onBatch() {
      arrived?.();
    },
  });
  await hopConsumer.start({ timeoutMs: 60_000 });
  const value = new Uint8Array(100);
  const samples = new Float64Array(HOPS);
  for (let i = 0; i < WARMUP + HOPS; i++) {
    const got = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    const t0 = performance.now();
    await producer.send([{ topic: hopTopic, partition: 0, key: `0.bench.${i}`, value }]);
    await got;
    if (i >= WARMUP) samples[i - WARMUP] = performance.now() - t0;
  }
  await hopConsumer.stop();
  const sorted = samples.slice().sort();
  const hop = {
    records: HOPS,
    p50Ms: round3(percentile(sorted, 50)),
    p90Ms: round3(percentile(sorted, 90)),
    p99Ms: round3(percentile(sorted, 99)),
    maxMs: round3(sorted[sorted.length - 1]!),
    meanMs: round3(sorted.reduce((a, b) => a + b, 0) / sorted.length),
  };
  console.log(`hop: p50 ${hop.p50Ms} ms, p99 ${hop.p99Ms} ms`);

  // 2. Throughput.
  let handled = 0;
  const bulkConsumer = bus.consumer({
    groupId: `tern-bench.bulk.${suffix}`,
    topics: [bulkTopic],
    async onBatch(messages: BusMessage[]) {
      handled += messages.length;
    },
  });
  await bulkConsumer.start({ timeoutMs: 60_000 });
  const record = new Uint8Array(200);
  const t0 = performance.now();
  for (let sent = 0; sent < THROUGHPUT_RECORDS; sent += SEND_SIZE) {
    await producer.send(
      Array.from({ length: SEND_SIZE }, (_, i) => ({
        topic: bulkTopic,
        partition: (sent + i) % PARTITIONS,
        key: `${(sent + i) % PARTITIONS}.bench.${sent + i}`,
        value: record,
      })),
    );
  }
  await waitUntil(() => handled >= THROUGHPUT_RECORDS, "every bulk record");
  const seconds = (performance.now() - t0) / 1000;
  await bulkConsumer.stop();
  await bus.admin().deleteTopics([hopTopic, bulkTopic]);
  const throughput = {
    records: THROUGHPUT_RECORDS,
    recordBytes: record.length,
    sendSize: SEND_SIZE,
    seconds: round2(seconds),
    recordsPerSecond: Math.round(THROUGHPUT_RECORDS / seconds),
  };
  console.log(`throughput: ${throughput.recordsPerSecond} records/s`);
  return { hop, throughput };
}

async function main(): Promise<void> {
  if (rerenderIfAsked<Result>(OUT, render)) return;
  const run = startRun("kafka-bus");
  const config = loadDevStackConfig();
  let stop = async (): Promise<void> => undefined;
  let brokers = config.KAFKA_BROKERS;
  if (brokers === undefined) {
    // Three different ports: two calls of findFreePort may return the same one.
    const ports = new Set<number>();
    while (ports.size < 3) ports.add(await findFreePort());
    const [kafkaPort, kafkaControllerPort, dynamodbPort] = [...ports] as [number, number, number];
    const dir = mkdtempSync(join(tmpdir(), "tern-bench-"));
    const stack = createDevStack({
      dir,
      kafkaLibsDir: join(config.TERN_DEV_DIR, "kafka", "libs"),
      kafkaPort,
      kafkaControllerPort,
      dynamodbPort,
      partitions: PARTITIONS,
      lock: false,
      stopGraceMs: 5_000,
      readyTimeoutMs: config.TERN_DEV_READY_TIMEOUT_MS,
    });
    stop = async () => {
      await stack.stop();
      rmSync(dir, { recursive: true, force: true });
    };
    brokers = (await stack.start()).kafkaBrokers;
  }
  const bus = createKafkaBus({ brokers });
  try {
    const figures = await measure(bus);
    const c = DEFAULT_KAFKA_SETTINGS.consumer;
    writeResults<Result>(
      OUT,
      {
        startedAt: run.startedAt.toISOString(),
        machine: run.machine(),
        settings: {
          maxWaitTimeInMs: c.maxWaitTimeInMs,
          minBytes: c.minBytes,
          partitionsConsumedConcurrently: c.partitionsConsumedConcurrently,
          acks: DEFAULT_KAFKA_SETTINGS.producer.acks,
        },
        ...figures,
      },
      render,
    );
  } finally {
    await bus.close();
    await stop();
  }
}

await main();
