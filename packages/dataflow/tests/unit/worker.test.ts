import {
  createMemoryBus,
  createTopicNames,
  encodeModelInferRequest,
  type PipelineResource,
  type PipelineRunReport,
  type WorkerAssignments,
  type WorkerClient,
  type WorkerReport,
} from "@tern/core";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { createDataflowWorker, type DataflowWorker } from "../../src/worker.js";

/**
 * The worker over the in-memory bus with the engine's real pipeline host; the scheduler side is an in-memory
 * WorkerClient (the port's test adapter: it hands assignments over and keeps every report) and an in-memory spec store.
 */
const topics = createTopicNames({ prefix: "seldon", namespace: "unit" });
const logger = pino({ level: "silent" });

function memoryClient() {
  const reports: WorkerReport[] = [];
  let listener: ((a: WorkerAssignments) => void) | undefined;
  let closed = false;
  const client: WorkerClient = {
    async start(onChange) {
      listener = onChange;
    },
    report: (r) => reports.push(structuredClone(r)),
    async close() {
      closed = true;
    },
  };
  return { client, reports, assign: (a: WorkerAssignments) => listener?.(a), closed: () => closed };
}

const chain = (name: string, steps: string[]): PipelineResource => ({
  apiVersion: "mlops.seldon.io/v1alpha1",
  kind: "Pipeline",
  metadata: { name },
  spec: { steps: steps.map((s) => ({ name: s })) },
});

const assignments = (revision: number, pipelines: Array<[string, number]>): WorkerAssignments => ({
  revision,
  kind: "dataflow",
  id: "dataflow-0",
  partitions: 2,
  errorsTopic: topics.errors(),
  buckets: [],
  pipelines: pipelines.map(([pipeline, version]) => ({
    pipeline,
    version,
    groupId: `tern.unit.pipeline.${pipeline}`,
    owners: ["dataflow-0"],
  })),
});

async function until<T>(probe: () => T | undefined, what: string): Promise<T> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const running: DataflowWorker[] = [];
afterEach(async () => {
  for (const w of running.splice(0)) await w.stop(1000);
});

async function setup(specs: Map<string, { version: number; resource: PipelineResource }>) {
  const bus = createMemoryBus();
  const scheduler = memoryClient();
  let fetches = 0;
  const worker = createDataflowWorker({
    id: "dataflow-0",
    bus,
    client: scheduler.client,
    specs: async (pipeline) => {
      fetches++;
      const spec = specs.get(pipeline);
      if (spec === undefined) throw new Error(`no pipeline ${pipeline}`);
      return structuredClone(spec);
    },
    topics,
    logger,
    drainMs: 1000,
    retryInitialMs: 10,
    reportIntervalMs: 20,
  });
  running.push(worker);
  await worker.start();
  const entry = (pipeline: string) => (): PipelineRunReport | undefined =>
    scheduler.reports.at(-1)?.pipelines.find((p) => p.pipeline === pipeline);
  const states = (pipeline: string) =>
    scheduler.reports.map((r) => r.pipelines.find((p) => p.pipeline === pipeline)).filter((p) => p !== undefined);
  return { bus, scheduler, worker, entry, states, fetches: () => fetches };
}

async function makeTopics(bus: ReturnType<typeof createMemoryBus>, pipeline: string, models: string[]) {
  await bus
    .admin()
    .ensureTopics(
      [
        topics.pipelineInputs(pipeline),
        topics.pipelineOutputs(pipeline),
        topics.errors(),
        ...models.flatMap((m) => [topics.modelInputs(m), topics.modelOutputs(m)]),
      ],
      2,
    );
}

describe("the dataflow worker", () => {
  it("reports Starting then Ready with the partitions its consumer holds", async () => {
    const specs = new Map([["p", { version: 1, resource: chain("p", ["m"]) }]]);
    const { bus, scheduler, entry, states } = await setup(specs);
    await makeTopics(bus, "p", ["m"]);
    scheduler.assign(assignments(1, [["p", 1]]));
    const ready = await until(() => (entry("p")()?.state === "Ready" ? entry("p")() : undefined), "p Ready");
    expect(ready).toEqual({ pipeline: "p", version: 1, state: "Ready", partitions: [0, 1] });
    expect(states("p")[0]?.state).toBe("Starting");
  });

  it("drains the old version before it starts a new one, and reports Draining meanwhile", async () => {
    const specs = new Map([["p", { version: 1, resource: chain("p", ["m"]) }]]);
    const { bus, scheduler, entry, states } = await setup(specs);
    await makeTopics(bus, "p", ["m", "n"]);
    scheduler.assign(assignments(1, [["p", 1]]));
    await until(() => (entry("p")()?.state === "Ready" ? true : undefined), "v1 Ready");
    specs.set("p", { version: 2, resource: chain("p", ["m", "n"]) });
    scheduler.assign(assignments(2, [["p", 2]]));
    await until(() => (entry("p")()?.state === "Ready" && entry("p")()?.version === 2 ? true : undefined), "v2 Ready");
    const sequence = states("p").map((s) => `${s.version}:${s.state}`);
    const compact = sequence.filter((s, i) => s !== sequence[i - 1]);
    expect(compact).toEqual(["1:Starting", "1:Ready", "1:Draining", "2:Starting", "2:Ready"]);
  });

  it("a spec that does not compile is Failed with the compiler's reason and not retried", async () => {
    const bad = chain("p", ["m"]);
    bad.spec.steps[0]!.inputs = ["nowhere.outputs.x"];
    const specs = new Map([["p", { version: 1, resource: bad }]]);
    const { scheduler, entry, fetches } = await setup(specs);
    scheduler.assign(assignments(1, [["p", 1]]));
    const failed = await until(() => (entry("p")()?.state === "Failed" ? entry("p")() : undefined), "p Failed");
    expect(failed.reason).toMatch(/nowhere/);
    // Retrying would fetch again (the retry backoff here starts at 10 ms).
    const seen = fetches();
    await new Promise((r) => setTimeout(r, 100));
    expect(fetches()).toBe(seen);
  });

  it("a missing topic is Failed with the reason, then retried until the topic exists", async () => {
    const specs = new Map([["p", { version: 1, resource: chain("p", ["m"]) }]]);
    const { bus, scheduler, entry } = await setup(specs);
    scheduler.assign(assignments(1, [["p", 1]]));
    const failed = await until(() => (entry("p")()?.state === "Failed" ? entry("p")() : undefined), "p Failed");
    expect(failed.reason).toMatch(/do not exist/);
    await makeTopics(bus, "p", ["m"]);
    await until(() => (entry("p")()?.state === "Ready" ? true : undefined), "p Ready once the topics exist");
  });

  it("a consumer that fails while running is reported Failed, then replaced by a new one that holds the partitions", async () => {
    const specs = new Map([["p", { version: 1, resource: chain("p", ["m"]) }]]);
    const { bus, scheduler, entry, states } = await setup(specs);
    await makeTopics(bus, "p", ["m"]);
    scheduler.assign(assignments(1, [["p", 1]]));
    await until(() => (entry("p")()?.state === "Ready" ? true : undefined), "p Ready");
    expect(states("p").some((s) => s.state === "Failed")).toBe(false);
    expect(await bus.crash("tern.unit.pipeline.p")).toBe(1);
    const failed = await until(() => states("p").find((s) => s.state === "Failed"), "p Failed after the crash");
    expect(failed.reason).toMatch(/consumer stopped: .*crashed/);
    const back = await until(() => (entry("p")()?.state === "Ready" ? entry("p")() : undefined), "p Ready again");
    expect(back).toEqual({ pipeline: "p", version: 1, state: "Ready", partitions: [0, 1] });
    // The replacement really consumes: a request on the pipeline's inputs reaches the step's model topic.
    await bus.producer().send([
      {
        topic: topics.pipelineInputs("p"),
        partition: 1,
        key: "1.p.req-after-crash",
        value: encodeModelInferRequest({
          model_name: "p",
          id: "req-after-crash",
          inputs: [{ name: "x", datatype: "FP32", shape: [1], contents: { fp32_contents: new Float32Array([1]) } }],
        }),
        headers: { pipeline: "p", "x-request-id": "req-after-crash" },
      },
    ]);
    await until(
      () => (bus.records(topics.modelInputs("m"), 1).some((r) => r.key.endsWith("req-after-crash")) ? true : undefined),
      "the request on m's inputs",
    );
  });

  it("a pipeline taken away is drained, stopped and dropped from the report; stop leaves the scheduler", async () => {
    const specs = new Map([
      ["p", { version: 1, resource: chain("p", ["m"]) }],
      ["q", { version: 1, resource: chain("q", ["m"]) }],
    ]);
    const { bus, scheduler, worker, entry } = await setup(specs);
    await makeTopics(bus, "p", ["m"]);
    await makeTopics(bus, "q", ["m"]);
    scheduler.assign(
      assignments(1, [
        ["p", 1],
        ["q", 1],
      ]),
    );
    await until(() => (entry("p")()?.state === "Ready" && entry("q")()?.state === "Ready" ? true : undefined), "Ready");
    scheduler.assign(assignments(2, [["q", 1]]));
    await until(() => (scheduler.reports.at(-1)?.pipelines.length === 1 ? true : undefined), "p dropped");
    expect(scheduler.reports.at(-1)?.pipelines[0]).toMatchObject({ pipeline: "q", state: "Ready" });
    expect(scheduler.reports.some((r) => r.pipelines.some((e) => e.pipeline === "p" && e.state === "Draining"))).toBe(
      true,
    );
    await worker.stop(1000);
    expect(scheduler.reports.at(-1)?.pipelines).toEqual([]);
    expect(scheduler.closed()).toBe(true);
    expect(worker.state).toBe("stopped");
  });
});
