import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as protoLoader from "@grpc/proto-loader";
import { OIP_LOADER_OPTIONS, OIP_PROTO_PATH } from "@tern/agent";
import type { WorkerKindStatus } from "@tern/core";
import { waitFor } from "@tern/devstack";
import { ensureTopics } from "@tern/kafka";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type E2eStack, serverManifest, startE2eStack } from "../e2e/harness.js";
import { type DataflowProcess, startDataflowProcess } from "../helpers/dataflow-process.js";
import { createOutsideKafka, type OutsideKafka, type OutsideRecord } from "../helpers/outside-kafka.js";
import { repoRoot } from "../helpers/platform-process.js";
import { kafkaBrokers } from "../helpers/services.js";
import { type ModelGatewayProcess, startModelGatewayProcess } from "../model-gateway/model-gateway-process.js";

/**
 * Two dataflow worker processes against a real scheduler, agent, model gateway and broker: the sample pipeline
 * add-then-mul (samples/manifests) placed on both, answered on its outputs topic for an outside Kafka client, a new
 * version picked up, and one worker's SIGTERM leaving the other answering.
 */

// protobufjs through proto-loader: an OIP encoder independent of Tern's codec.
const definition = protoLoader.loadSync(OIP_PROTO_PATH, OIP_LOADER_OPTIONS);
const infer = (definition["inference.GRPCInferenceService"] as protoLoader.ServiceDefinition).ModelInfer!;

const PIPELINE = "add-then-mul";
const PARTITIONS = 4;
const namespace = `df${Date.now().toString(36)}`;
const inputs = `seldon.${namespace}.pipeline.${PIPELINE}.inputs`;
const outputs = `seldon.${namespace}.pipeline.${PIPELINE}.outputs`;

function request(id: string, x: number[]): Buffer {
  return infer.requestSerialize({
    model_name: PIPELINE,
    id,
    inputs: [{ name: "x", datatype: "FP32", shape: [1, x.length], contents: { fp32_contents: x } }],
  });
}

/** The FP32 tensor `name` of an answer, whether the answer carries typed contents or raw bytes. */
function outputOf(record: OutsideRecord, name: string): number[] {
  const response = infer.responseDeserialize(record.value) as {
    outputs: Array<{ name: string; contents?: { fp32_contents?: number[] } }>;
    raw_output_contents: Buffer[];
  };
  const index = response.outputs.findIndex((o) => o.name === name);
  if (index < 0) throw new Error(`no output ${name} in ${JSON.stringify(response.outputs.map((o) => o.name))}`);
  const raw = response.raw_output_contents[index];
  if (raw !== undefined && raw.length > 0) {
    return Array.from(new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length)));
  }
  return [...(response.outputs[index]!.contents?.fp32_contents ?? [])];
}

/** One document of a samples file, by its metadata name (the test applies what `npm start` applies). */
function sampleDocument(file: string, name: string): string {
  const text = readFileSync(join(repoRoot, "samples/manifests", file), "utf8");
  const doc = text.split(/^---$/m).find((d) => new RegExp(`^\\s+name: ${name}$`, "m").test(d));
  if (doc === undefined) throw new Error(`no ${name} in samples/manifests/${file}`);
  return doc;
}

let stack: E2eStack;
let outside: OutsideKafka;
let modelGateway: ModelGatewayProcess | undefined;
const workers: DataflowProcess[] = [];
let counter = 0;

const dataflowStatus = async () =>
  (await (await fetch(`${stack.scheduler.url}/v1/workers/dataflow`)).json()) as WorkerKindStatus;

/** True once the worker logged its run of `version` as ready (the heartbeat report says the same). */
const readyAt = (worker: DataflowProcess, version: number) =>
  worker.logs().some((l) => l.msg === "pipeline ready" && l.pipeline === PIPELINE && l.version === version);

/** Sends one request per partition and waits for every answer on the outputs topic. */
async function roundTrip(
  label: string,
  expected: (x: number) => number,
): Promise<Array<{ key: string; got: number[]; want: number[] }>> {
  const seen = await outside.read([outputs]);
  const sent: Array<{ key: string; x: number[] }> = [];
  for (let partition = 0; partition < PARTITIONS; partition++) {
    const id = `${label}-${counter++}`;
    const key = `${partition}.${PIPELINE}.${id}`;
    const x = [partition + 1, -2.5, counter];
    sent.push({ key, x });
    await outside.send(inputs, partition, key, request(id, x), { "x-request-id": id });
  }
  await waitFor(() => sent.every((s) => seen.some((r) => r.key === s.key)) || undefined, {
    timeoutMs: 45_000,
    intervalMs: 100,
    description: `answers to ${label} on ${outputs}`,
  });
  return sent.map((s) => {
    const answer = seen.find((r) => r.key === s.key)!;
    expect(answer.headers["seldon-pipeline-errors"], answer.headers["tern-error"]).toBeUndefined();
    expect(answer.partition).toBe(Number(s.key.split(".")[0]));
    return { key: s.key, got: outputOf(answer, "y"), want: s.x.map(expected) };
  });
}

function expectClose(answer: { key: string; got: number[]; want: number[] }): void {
  expect(answer.got.length, answer.key).toBe(answer.want.length);
  for (const [i, v] of answer.got.entries()) expect(v, answer.key).toBeCloseTo(answer.want[i]!, 3);
}

beforeAll(async () => {
  stack = await startE2eStack({
    name: "dataflow",
    agents: 1,
    schedulerEnv: {
      KAFKA_BROKERS: kafkaBrokers().join(","),
      KAFKA_PARTITIONS: String(PARTITIONS),
      TERN_NAMESPACE: namespace,
    },
  });
  await stack.apply(serverManifest("mlserver", 1));
  await stack.apply(
    `${sampleDocument("pipeline-models.yaml", "add10")}\n---\n${sampleDocument("pipeline-models.yaml", "mul10")}`,
  );
  for (const model of ["add10", "mul10"]) {
    await stack.waitModel(model, (s) => s.state === "ModelAvailable", `${model} available`, 60_000);
  }
  // The pipeline's own topics: the scheduler creates them once it manages pipeline topics; until then the test does
  // (ensuring is idempotent, so this stays harmless after).
  // kafkajs's wait for leaders may fail while the metadata lags a creation: try again until it holds.
  await waitFor(() => ensureTopics(kafkaBrokers(), [inputs, outputs], PARTITIONS), {
    timeoutMs: 30_000,
    intervalMs: 500,
    description: "the pipeline's topics",
  });
  outside = await createOutsideKafka(kafkaBrokers(), namespace);
  const env = { TERN_NAMESPACE: namespace, KAFKA_PARTITIONS: String(PARTITIONS), LOG_LEVEL: "info" };
  const started = await Promise.allSettled([
    startModelGatewayProcess({
      id: "modelgateway-0",
      schedulerUrl: stack.scheduler.url,
      brokers: kafkaBrokers(),
      env: { ...env, LOG_LEVEL: "warn" },
    }).then((g) => {
      modelGateway = g;
    }),
    ...["dataflow-0", "dataflow-1"].map((id) =>
      startDataflowProcess({
        id,
        schedulerUrl: stack.scheduler.url,
        brokers: kafkaBrokers(),
        env: { ...env, TERN_DATAFLOW_DRAIN_MS: "10000" },
      }).then((w) => {
        workers.push(w);
      }),
    ),
  ]);
  const failed = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
}, 180_000);

afterAll(async () => {
  await outside?.close();
  for (const w of workers) w.kill("SIGKILL");
  modelGateway?.kill("SIGKILL");
  await Promise.all([...workers.map((w) => w.exited), modelGateway?.exited]);
  await stack?.close();
});

describe("dataflow workers running the sample pipeline add-then-mul", () => {
  it("both register, the pipeline is placed on both, and each runs it Ready", async () => {
    await stack.apply(sampleDocument("pipelines.yaml", PIPELINE));
    const status = await waitFor(
      async () => {
        const s = await dataflowStatus();
        const placed = s.pipelines?.find((p) => p.pipeline === PIPELINE);
        return s.replicas.length === 2 && placed?.owners.length === 2 ? s : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 100, description: "add-then-mul placed on both workers" },
    );
    expect(status.replicas.map((r) => r.id).sort()).toEqual(["dataflow-0", "dataflow-1"]);
    await waitFor(() => workers.every((w) => readyAt(w, 1)) || undefined, {
      timeoutMs: 45_000,
      intervalMs: 200,
      description: `both workers run ${PIPELINE} v1 Ready\n${workers.map((w) => w.output()).join("\n")}`,
    });
  }, 90_000);

  it("answers a request produced on the inputs topic with (x + 10) * 10 on the outputs topic", async () => {
    for (const answer of await roundTrip("v1", (x) => (x + 10) * 10)) {
      expectClose(answer);
    }
  }, 60_000);

  it("picks up a changed pipeline (a new version) on both workers: mul10 then add10 answers x * 10 + 10", async () => {
    await stack.apply(`apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata:
  name: ${PIPELINE}
spec:
  steps:
    - name: mul10
    - name: add10
      inputs:
        - mul10.outputs.y
      tensorMap:
        mul10.outputs.y: x
  output:
    steps:
      - add10
`);
    await waitFor(() => workers.every((w) => readyAt(w, 2)) || undefined, {
      timeoutMs: 60_000,
      intervalMs: 200,
      description: `both workers run ${PIPELINE} v2 Ready`,
    });
    // Each drained the old version before starting the new one.
    for (const w of workers) {
      expect(w.logs().some((l) => l.msg === "pipeline version stopped" && l.version === 1)).toBe(true);
    }
    for (const answer of await roundTrip("v2", (x) => x * 10 + 10)) {
      expectClose(answer);
    }
  }, 120_000);

  it("a SIGTERMed worker exits 0 and the other keeps answering every partition", async () => {
    const [leaving, staying] = workers as [DataflowProcess, DataflowProcess];
    const code = await leaving.stop("SIGTERM", 20_000);
    expect(code, leaving.output()).toBe(0);
    expect(leaving.logs().some((l) => l.msg === "stopped")).toBe(true);
    await waitFor(
      async () => ((await dataflowStatus()).replicas.map((r) => r.id).join() === staying.id ? true : undefined),
      { timeoutMs: 10_000, intervalMs: 100, description: `${leaving.id} gone from the scheduler` },
    );
    for (const answer of await roundTrip("after-sigterm", (x) => x * 10 + 10)) {
      expectClose(answer);
    }
    expect(staying.hasExited()).toBe(false);
  }, 120_000);
});
