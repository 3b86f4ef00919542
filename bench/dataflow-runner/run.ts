/**
 * The pipeline runner's own cost (not a test): `createPipelineRunner` driven in one process without a broker, so the
 * figure is what the dataflow worker spends per request on top of Kafka's hops:
 *
 *   node --import tsx bench/dataflow-runner/run.ts
 *
 * The producer is a stub that keeps the records; a stub model answers each model request with a prepared
 * `ModelInferResponse` (same partition, key and headers), fed back to the runner in batches of the same size as the
 * requests. Requests are iris-sized (one FP32 tensor [1, 4], raw contents) spread over 4 partitions.
 * Scenarios: a 1-step and a 3-step chain, with 1 and 100 records per `onBatch` (one record at a time is the latency
 * path at 1 in flight; 100 is a loaded consumer's batch). Each figure is the median over BENCH_ROUNDS rounds of
 * BENCH_REQUESTS requests of the process CPU time (process.cpuUsage) per request, stubs included (they are a small
 * part: no encoding, one object per record).
 *
 * Environment (optional): BENCH_ROUNDS (5), BENCH_REQUESTS (20000). Writes bench/results/dataflow-runner.json and .md.
 */
import {
  type BusBatchContext,
  type BusMessage,
  createTopicNames,
  encodeModelInferRequest,
  encodeModelInferResponse,
  type OutgoingMessage,
  type PipelineResource,
  tensorsFromOip,
} from "@tern/core";
import { compilePipeline, createPipelineRunner, type PipelinePlan } from "@tern/dataflow";
import { pino } from "pino";
import { commandLine, envNumber } from "../lib/config.js";
import { machineLines, startRun, writeResults } from "../lib/report.js";
import { median, round2 } from "../lib/stats.js";

const CONFIG = { rounds: envNumber("BENCH_ROUNDS", 5, 1), requests: envNumber("BENCH_REQUESTS", 20_000, 100) };
const PARTITIONS = 4;
const topics = createTopicNames();

function chain(steps: number): PipelinePlan {
  const names = Array.from({ length: steps }, (_, i) => `m${i}`);
  return compilePipeline(
    {
      apiVersion: "mlops.seldon.io/v1alpha1",
      kind: "Pipeline",
      metadata: { name: `chain${steps}` },
      spec: {
        steps: names.map((name, i) =>
          i === 0
            ? { name }
            : { name, inputs: [`${names[i - 1]}.outputs.y`], tensorMap: { [`${names[i - 1]}.outputs.y`]: "x" } },
        ),
      },
    } as PipelineResource,
    { topics },
  );
}

const tensor = (name: string) =>
  tensorsFromOip([{ name, datatype: "FP32", shape: [1, 4], data: Float32Array.of(5.1, 3.5, 1.4, 0.2) }], true);

async function runOnce(plan: PipelinePlan, batch: number): Promise<{ cpuUsPerRequest: number; wallMs: number }> {
  const out: OutgoingMessage[] = [];
  const producer = { send: async (m: OutgoingMessage[]) => void out.push(...m), close: async () => undefined };
  const runner = createPipelineRunner({
    plan,
    producer,
    partitions: PARTITIONS,
    errorsTopic: topics.errors(),
    logger: pino({ level: "silent" }),
  });
  const context: BusBatchContext = { commit: () => undefined, isRunning: () => true };
  const offsets = new Map<string, number>();
  const record = (m: OutgoingMessage): BusMessage => {
    const k = `${m.topic}#${m.partition}`;
    const offset = offsets.get(k) ?? 0;
    offsets.set(k, offset + 1);
    return {
      topic: m.topic,
      partition: m.partition,
      offset: String(offset),
      key: m.key,
      value: m.value,
      headers: m.headers ?? {},
    };
  };
  const x = tensor("x");
  const request = encodeModelInferRequest({ model_name: plan.pipeline, inputs: x.tensors, raw_input_contents: x.raw! });
  const y = tensor("y");
  const answer = encodeModelInferResponse({ model_name: "m", outputs: y.tensors, raw_output_contents: y.raw! });
  const answerTopic = new Map(plan.steps.map((s) => [s.requestTopic, s.answerTopic]));
  const inputs: BusMessage[] = Array.from({ length: CONFIG.requests }, (_, i) =>
    record({
      topic: plan.inputsTopic,
      partition: i % PARTITIONS,
      key: `${i % PARTITIONS}.${plan.pipeline}.req-${i}`,
      value: request,
      headers: { pipeline: plan.pipeline, "x-request-id": `req-${i}` },
    }),
  );
  let answered = 0;
  const cpu = process.cpuUsage();
  const started = performance.now();
  // Requests in chunks of `batch` per topic-partition; then every model request answered in the same chunks.
  const feed = async (messages: BusMessage[]) => {
    const byTp = new Map<string, BusMessage[]>();
    for (const m of messages) {
      const k = `${m.topic}#${m.partition}`;
      byTp.set(k, [...(byTp.get(k) ?? []), m]);
    }
    for (const list of byTp.values()) {
      for (let i = 0; i < list.length; i += batch) await runner.onBatch(list.slice(i, i + batch), context);
    }
  };
  await feed(inputs);
  while (out.length > 0) {
    const produced = out.splice(0);
    const next: BusMessage[] = [];
    for (const m of produced) {
      if (m.topic === plan.outputsTopic) answered++;
      const to = answerTopic.get(m.topic);
      if (to !== undefined) next.push(record({ ...m, topic: to, value: answer }));
    }
    await feed(next);
  }
  const used = process.cpuUsage(cpu);
  const wallMs = performance.now() - started;
  await runner.close();
  if (answered !== CONFIG.requests) throw new Error(`answered ${answered} of ${CONFIG.requests}`);
  return { cpuUsPerRequest: (used.user + used.system) / CONFIG.requests, wallMs };
}

interface Scenario {
  steps: number;
  batch: number;
  cpuUsPerRequest: number;
  requestsPerCoreSecond: number;
}

async function main(): Promise<void> {
  const run = startRun("dataflow-runner");
  const scenarios: Scenario[] = [];
  for (const steps of [1, 3]) {
    const plan = chain(steps);
    for (const batch of [1, 100]) {
      await runOnce(plan, batch); // warm-up
      const figures: number[] = [];
      for (let r = 0; r < CONFIG.rounds; r++) figures.push((await runOnce(plan, batch)).cpuUsPerRequest);
      const cpuUsPerRequest = round2(median(figures));
      scenarios.push({ steps, batch, cpuUsPerRequest, requestsPerCoreSecond: Math.round(1e6 / cpuUsPerRequest) });
      console.log(`${steps}-step chain, ${batch} per batch: ${cpuUsPerRequest} µs CPU per request`);
    }
  }
  const result = {
    config: CONFIG,
    command: commandLine("node --import tsx bench/dataflow-runner/run.ts"),
    machine: run.machine(),
    scenarios,
  };
  writeResults("dataflow-runner", result, (r) =>
    [
      "# Pipeline runner: CPU per request (no broker)",
      "",
      `Command: \`${r.command}\`; ${r.config.requests} requests per round, median of ${r.config.rounds} rounds.`,
      "",
      ...machineLines(r.machine),
      "",
      "| Pipeline | Records per onBatch | CPU µs per request | Requests per core-second |",
      "|---|---|---|---|",
      ...r.scenarios.map(
        (s) => `| ${s.steps}-step chain | ${s.batch} | ${s.cpuUsPerRequest} | ${s.requestsPerCoreSecond} |`,
      ),
      "",
      "The runner's work only (decode, join, encode, bookkeeping of offsets); Kafka's hops and the kafkajs client's own",
      "CPU come on top (see bench/results/kafka-bus.md).",
      "",
    ].join("\n"),
  );
}

await main();
