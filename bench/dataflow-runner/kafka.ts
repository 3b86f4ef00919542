/**
 * What the pipeline runner adds on the real broker (not a test), all in one process:
 *
 *   node --import tsx bench/dataflow-runner/kafka.ts
 *
 * - model path: a request produced on a model's inputs topic, answered by a stub model gateway (a consumer that writes
 *   a prepared answer on the same partition of the outputs topic), read back by a reader: two hops.
 * - 1-step pipeline: the same model behind `createPipelineHost` (pipeline inputs → runner → model inputs → stub →
 *   model outputs → runner → pipeline outputs → reader): four hops, plus the runner's work.
 * Both at 1 in flight (sequential; BENCH_WARMUP then BENCH_REQUESTS measured, p50/p99 of send → answer read), and the
 * pipeline at 32 in flight for throughput. Iris-sized requests, 4 partitions, `@tern/kafka`'s default settings.
 *
 * Uses KAFKA_BROKERS, or starts a broker on free ports in a temporary folder. Environment (optional): BENCH_WARMUP
 * (100), BENCH_REQUESTS (500), BENCH_THROUGHPUT (4000). Writes bench/results/dataflow-runner-kafka.json and .md.
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import {
  type BusConsumer,
  type BusMessage,
  createTopicNames,
  encodeModelInferRequest,
  encodeModelInferResponse,
  type MessageBus,
  type PipelineResource,
  parseRecordKey,
  tensorsFromOip,
} from "@tern/core";
import { compilePipeline, createPipelineHost } from "@tern/dataflow";
import { createDevStack, findFreePort, loadDevStackConfig } from "@tern/devstack";
import { createKafkaBus } from "@tern/kafka";
import { pino } from "pino";
import { commandLine, envNumber } from "../lib/config.js";
import { REPO_ROOT } from "../lib/processes.js";
import { machineLines, notesLines, startRun, writeResults } from "../lib/report.js";
import { percentile, round2 } from "../lib/stats.js";

const CONFIG = {
  warmup: envNumber("BENCH_WARMUP", 100, 0),
  requests: envNumber("BENCH_REQUESTS", 500, 10),
  throughput: envNumber("BENCH_THROUGHPUT", 4000, 100),
};
const PARTITIONS = 4;
const DEADLINE_MS = 30_000;

const tensor = (name: string) =>
  tensorsFromOip([{ name, datatype: "FP32", shape: [1, 4], data: Float32Array.of(5.1, 3.5, 1.4, 0.2) }], true);

interface Path {
  /** Sends request `id` on `partition`; the promise resolves when its answer was read. */
  call(id: string, partition: number): Promise<void>;
}

async function reader(bus: MessageBus, topic: string, group: string): Promise<{ wait(id: string): Promise<void> }> {
  const waiting = new Map<string, () => void>();
  const seen = new Set<string>();
  const consumer = bus.consumer({
    groupId: group,
    topics: [topic],
    assignment: "round-robin",
    onBatch: async (messages: BusMessage[]) => {
      for (const m of messages) {
        const id = parseRecordKey(m.key)?.requestId;
        if (id === undefined) continue;
        const wake = waiting.get(id);
        if (wake) {
          waiting.delete(id);
          wake();
        } else seen.add(id);
      }
    },
  });
  await consumer.start({ timeoutMs: DEADLINE_MS });
  return {
    wait: (id) =>
      new Promise<void>((resolve, reject) => {
        if (seen.delete(id)) return resolve();
        const timer = setTimeout(() => reject(new Error(`no answer to ${id} within ${DEADLINE_MS} ms`)), DEADLINE_MS);
        waiting.set(id, () => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}

async function measureLatency(path: Path, prefix: string): Promise<{ p50Ms: number; p99Ms: number; meanMs: number }> {
  for (let i = 0; i < CONFIG.warmup; i++) await path.call(`${prefix}-w${i}`, i % PARTITIONS);
  const times = new Float64Array(CONFIG.requests);
  for (let i = 0; i < CONFIG.requests; i++) {
    const started = performance.now();
    await path.call(`${prefix}-${i}`, i % PARTITIONS);
    times[i] = performance.now() - started;
  }
  const sorted = times.slice().sort();
  return {
    p50Ms: round2(percentile(sorted, 50)),
    p99Ms: round2(percentile(sorted, 99)),
    meanMs: round2(sorted.reduce((a, b) => a + b, 0) / sorted.length),
  };
}

async function measureThroughput(path: Path, inFlight: number): Promise<{ requestsPerSecond: number }> {
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    while (next < CONFIG.throughput) {
      const i = next++;
      await path.call(`tp-${i}`, i % PARTITIONS);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  return { requestsPerSecond: Math.round(CONFIG.throughput / ((performance.now() - started) / 1000)) };
}

async function measure(bus: MessageBus) {
  const suffix = randomUUID().slice(0, 8);
  const topics = createTopicNames({ prefix: `bench-df-${suffix}` });
  const plan = compilePipeline(
    {
      apiVersion: "mlops.seldon.io/v1alpha1",
      kind: "Pipeline",
      metadata: { name: "one" },
      spec: { steps: [{ name: "iris" }] },
    } as PipelineResource,
    { topics },
  );
  await bus.admin().ensureTopics([...new Set([...plan.subscribe, ...plan.produce])], PARTITIONS);
  const producer = bus.producer();
  const x = tensor("x");
  const request = (model: string, id: string) =>
    encodeModelInferRequest({ model_name: model, id, inputs: x.tensors, raw_input_contents: x.raw! });
  const y = tensor("y");
  const answer = encodeModelInferResponse({ model_name: "iris", outputs: y.tensors, raw_output_contents: y.raw! });

  // The stub model gateway: answers every record of the model's inputs topic at once.
  const gateway: BusConsumer = bus.consumer({
    groupId: `bench-df-${suffix}-gateway`,
    topics: [topics.modelInputs("iris")],
    assignment: "round-robin",
    onBatch: (messages) =>
      producer.send(
        messages.map((m) => ({
          topic: topics.modelOutputs("iris"),
          partition: m.partition,
          key: m.key,
          value: answer,
          headers: m.headers,
        })),
      ),
  });
  await gateway.start({ timeoutMs: DEADLINE_MS });

  const modelAnswers = await reader(bus, topics.modelOutputs("iris"), `bench-df-${suffix}-model-reader`);
  const modelPath: Path = {
    async call(id, partition) {
      const answered = modelAnswers.wait(id);
      await producer.send([
        { topic: topics.modelInputs("iris"), partition, key: `${partition}.iris.${id}`, value: request("iris", id) },
      ]);
      await answered;
    },
  };
  const model = await measureLatency(modelPath, "model");

  const host = createPipelineHost({
    bus,
    plan,
    groupId: `bench-df-${suffix}-pipeline`,
    partitions: PARTITIONS,
    errorsTopic: topics.errors(),
    logger: pino({ level: "silent" }),
  });
  await host.start({ timeoutMs: DEADLINE_MS });
  const pipelineAnswers = await reader(bus, plan.outputsTopic, `bench-df-${suffix}-pipeline-reader`);
  const pipelinePath: Path = {
    async call(id, partition) {
      const answered = pipelineAnswers.wait(id);
      await producer.send([
        {
          topic: plan.inputsTopic,
          partition,
          key: `${partition}.one.${id}`,
          value: request("one", id),
          headers: { pipeline: "one" },
        },
      ]);
      await answered;
    },
  };
  const pipeline = await measureLatency(pipelinePath, "pipeline");
  const cpu = process.cpuUsage();
  const throughput = await measureThroughput(pipelinePath, 32);
  const used = process.cpuUsage(cpu);
  await host.stop();
  await gateway.stop();
  await producer.close();
  return {
    model,
    pipeline,
    addedP50Ms: round2(pipeline.p50Ms - model.p50Ms),
    throughput32: { ...throughput, processCpuUsPerRequest: Math.round((used.user + used.system) / CONFIG.throughput) },
  };
}

async function main(): Promise<void> {
  const run = startRun("dataflow-runner-kafka");
  const config = loadDevStackConfig();
  let stop = async (): Promise<void> => undefined;
  let brokers = config.KAFKA_BROKERS;
  if (brokers === undefined) {
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
    console.log(JSON.stringify(figures));
    const result = {
      config: CONFIG,
      command: commandLine("node --import tsx bench/dataflow-runner/kafka.ts"),
      machine: run.machine(),
      ...figures,
    };
    writeResults("dataflow-runner-kafka", result, (r) =>
      [
        "# Pipeline runner on Kafka: a 1-step pipeline against the model topic directly",
        "",
        `Command: \`${r.command}\`; ${r.config.warmup} warm-up then ${r.config.requests} sequential requests per path;`,
        `${r.config.throughput} requests at 32 in flight. One process: stub model gateway, pipeline host, readers.`,
        "",
        ...machineLines(r.machine),
        "",
        "| Path (1 in flight) | p50 ms | p99 ms | mean ms |",
        "|---|---|---|---|",
        `| model topic directly (2 hops) | ${r.model.p50Ms} | ${r.model.p99Ms} | ${r.model.meanMs} |`,
        `| 1-step pipeline (4 hops + runner) | ${r.pipeline.p50Ms} | ${r.pipeline.p99Ms} | ${r.pipeline.meanMs} |`,
        "",
        `Added by the pipeline at p50: **${r.addedP50Ms} ms** (target ≤ 5 ms).`,
        `At 32 in flight: **${r.throughput32.requestsPerSecond} req/s** through the pipeline (target ≥ 1,000 per worker),`,
        `${r.throughput32.processCpuUsPerRequest} µs of CPU per request for the whole process (stub gateway, host, readers, kafkajs).`,
        "",
        ...notesLines(join(REPO_ROOT, "bench/dataflow-runner/notes.md")),
      ].join("\n"),
    );
  } finally {
    await bus.close();
    await stop();
  }
}

await main();
