import { randomUUID } from "node:crypto";
import { createTopicNames, DEADLINE_HEADER, type PipelineResource, parseRecordKey } from "@tern/core";
import { compilePipeline, createPipelineHost, type PipelineHost } from "@tern/dataflow";
import { waitFor } from "@tern/devstack";
import { createMemoryRouteSource, type RunningGateway, startGateway } from "@tern/gateway";
import { createKafkaBus } from "@tern/kafka";
import { createMemoryAssignmentSource, createModelGateway, type ModelGateway } from "@tern/model-gateway";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { routesTo, startCountingAgent, tableOf } from "../../packages/model-gateway/tests/unit/in-process-agent.js";
import { createOutsideKafka, type OutsideKafka, type OutsideRecord } from "../helpers/outside-kafka.js";
import { kafkaBrokers } from "../helpers/services.js";
import { testSettings } from "../kafka/test-settings.js";

/**
 * The caller's deadline through the whole Kafka path on the real broker: the Node gateway (in this process, short
 * pipeline deadline) → a dataflow host → the model gateway → a gRPC agent whose model is slow and counts its calls.
 * A request the gateway answers 504 must not go on costing model calls: the slow first step is called once, the
 * later steps never.
 */

const PARTITIONS = 2;
/** The gateway's pipeline deadline: long enough for the warm-up (three fast steps) on a loaded machine. */
const DEADLINE_MS = 4_000;
const logger = pino({ level: "silent" });
const suffix = randomUUID().slice(0, 8);
const namespace = `dl${suffix}`;
const topics = createTopicNames({ namespace });
const models = ["slow1", "slow2", "slow3"];
const plan = compilePipeline(
  {
    apiVersion: "mlops.seldon.io/v1alpha1",
    kind: "Pipeline",
    metadata: { name: "slow-chain" },
    spec: {
      steps: [
        { name: "slow1" },
        { name: "slow2", inputs: ["slow1.outputs.y"], tensorMap: { "slow1.outputs.y": "x" } },
        { name: "slow3", inputs: ["slow2.outputs.y"], tensorMap: { "slow2.outputs.y": "x" } },
      ],
      output: { steps: ["slow3"] },
    },
  } as PipelineResource,
  { topics },
);

let agent: Awaited<ReturnType<typeof startCountingAgent>>;
let modelGateway: ModelGateway;
let host: PipelineHost;
let gateway: RunningGateway;
let outside: OutsideKafka;
let answers: OutsideRecord[];
const closeBuses: Array<() => Promise<void>> = [];

async function infer(x: number): Promise<{ status: number; error?: string }> {
  const res = await fetch(`${gateway.url}/v2/pipelines/slow-chain/infer`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ inputs: [{ name: "x", datatype: "FP32", shape: [1, 1], data: [x] }] }),
    signal: AbortSignal.timeout(DEADLINE_MS + 10_000),
  });
  const json = (await res.json()) as { error?: string };
  return { status: res.status, ...(json.error === undefined ? {} : { error: json.error }) };
}

beforeAll(async () => {
  agent = await startCountingAgent({ delayMs: 0 });
  const routes = createMemoryRouteSource({
    ...tableOf(...routesTo(agent.address, ...models)),
    pipelines: { "slow-chain": { name: "slow-chain", state: "PipelineReady" } },
  });
  const admin = createKafkaBus({ brokers: kafkaBrokers(), settings: testSettings });
  await admin
    .admin()
    .ensureTopics(
      [
        ...new Set([
          ...plan.subscribe,
          ...plan.produce,
          ...models.flatMap((m) => [topics.modelInputs(m), topics.modelOutputs(m)]),
          topics.errors(),
        ]),
      ],
      PARTITIONS,
    );
  await admin.close();

  modelGateway = createModelGateway({
    bus: createKafkaBus({ brokers: kafkaBrokers(), settings: testSettings }),
    routes: createMemoryRouteSource(await routes.table()),
    assignments: createMemoryAssignmentSource([
      {
        bucket: 0,
        groupId: `it-dl-${suffix}.modelgateway`,
        models: models.map((m) => ({
          model: m,
          inputTopic: topics.modelInputs(m),
          outputTopic: topics.modelOutputs(m),
        })),
      },
    ]),
    topics,
    logger,
  });
  await modelGateway.start();

  const dataflowBus = createKafkaBus({ brokers: kafkaBrokers(), settings: testSettings });
  closeBuses.push(() => dataflowBus.close());
  host = createPipelineHost({
    bus: dataflowBus,
    plan,
    groupId: `it-dl-${suffix}.dataflow`,
    partitions: PARTITIONS,
    errorsTopic: topics.errors(),
    logger,
  });
  await host.start({ timeoutMs: 30_000 });

  gateway = await startGateway({
    port: 0,
    grpcPort: false,
    routes,
    logger,
    config: { pipelineDeadlineMs: DEADLINE_MS },
    kafka: { brokers: kafkaBrokers(), partitions: PARTITIONS, namespace, readerBuckets: 1 },
  });
  outside = await createOutsideKafka(kafkaBrokers(), `dl-${suffix}`);
  answers = await outside.read([plan.outputsTopic]);
}, 120_000);

afterAll(async () => {
  await gateway?.close();
  await host?.stop();
  await modelGateway?.stop();
  for (const close of closeBuses) await close();
  await outside?.close();
  agent?.close();
});

describe("a pipeline request's deadline on the Kafka path", () => {
  it("a request answered 504 calls the slow first step once and the later steps never", async () => {
    // Fast models first, until the gateway's reply reader and every consumer group are up (an answer comes back).
    await waitFor(async () => (await infer(1)).status === 200, {
      timeoutMs: 60_000,
      intervalMs: 200,
      description: "a fast request answered through the whole path",
    });

    agent.setDelay(DEADLINE_MS + 3_000);
    const late = await infer(2);
    expect(late.status).toBe(504);
    const id = /did not answer request id ([0-9a-f-]{36}) within/.exec(late.error ?? "")?.[1];
    expect(id, late.error).toBeDefined();

    // The dataflow finishes the request (its answer reaches nobody, but it is written and the offsets move on).
    const answer = await waitFor(() => answers.find((r) => parseRecordKey(r.key)?.requestId === id), {
      timeoutMs: 30_000,
      intervalMs: 50,
      description: `the pipeline's answer to ${id}`,
    });
    const calls = (model: string) => agent.calls.filter((c) => c.id === id && c.model === model).length;
    expect([calls("slow1"), calls("slow2"), calls("slow3")]).toEqual([1, 0, 0]);
    expect(answer.headers["tern-error-status"]).toBe("DEADLINE_EXCEEDED");
    expect(answer.headers["tern-error"]).toMatch(/deadline/);
    expect(Number(answer.headers[DEADLINE_HEADER])).toBeGreaterThan(0);
    await waitFor(() => host.inFlight() === 0, { timeoutMs: 10_000, intervalMs: 50, description: "nothing in flight" });
  }, 120_000);
});
