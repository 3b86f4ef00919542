import { createSseParser, type MessageBus, type WorkerAssignments, type WorkerKindStatus } from "@tern/core";
import { waitFor } from "@tern/devstack";
import { createKafkaBus } from "@tern/kafka";
import { afterEach, describe, expect, it } from "vitest";
import type { WatchEvent } from "../../packages/scheduler/src/scheduler.js";
import type { PipelineStatus } from "../../packages/scheduler/src/views.js";
import { dynamodbEndpoint, kafkaBrokers } from "../helpers/services.js";
import { createFakeAgent, type FakeHttpAgent } from "./fake-agent.js";
import { createFakeWorker, type FakeWorker } from "./fake-worker.js";
import {
  applyManifest,
  getJson,
  type SchedulerProcess,
  startSchedulerProcess,
  TEST_LEASE_TTL_MS,
  waitActive,
} from "./scheduler-process.js";

const unique = `${Date.now().toString(36)}${process.pid}`;
const table = `tern-pipeline-states-it-${unique}`;
/** A namespace of its own, so the topics this test makes and deletes are only its own. */
const namespace = `ps${unique}`;
const topic = (kind: "model" | "pipeline", name: string, io: "inputs" | "outputs") =>
  `seldon.${namespace}.${kind}.${name}.${io}`;

const started: SchedulerProcess[] = [];
const clients: Array<FakeHttpAgent | FakeWorker> = [];
const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
  for (const c of clients.splice(0)) await c.stop();
  for (const p of started.splice(0)) await p.kill("SIGKILL");
});

async function scheduler(id: string): Promise<SchedulerProcess> {
  const p = await startSchedulerProcess({
    id,
    table,
    dynamodbEndpoint: dynamodbEndpoint(),
    env: {
      KAFKA_BROKERS: kafkaBrokers().join(","),
      KAFKA_PARTITIONS: "4",
      TERN_NAMESPACE: namespace,
      TERN_DATAFLOW_REPLICATION: "2",
      TERN_DATAFLOW_CLEAN_TOPICS_ON_DELETE: "true",
      // The fake agent talks to the first scheduler only: a long timeout keeps its models on the standby after the
      // failover, so what the test watches there is the pipeline, not the model being rescheduled.
      TERN_AGENT_HEARTBEAT_TIMEOUT_MS: "60000",
    },
  });
  started.push(p);
  return p;
}

const MANIFESTS = `apiVersion: mlops.seldon.io/v1alpha1
kind: Server
metadata: {name: onnx}
spec: {serverConfig: tern-onnx, replicas: 1}
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Model
metadata: {name: a}
spec: {storageUri: "file:///models/a", requirements: [onnx], memory: 1Mi}
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Model
metadata: {name: b}
spec: {storageUri: "file:///models/b", requirements: [onnx], memory: 1Mi}
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: chain}
spec:
  steps:
    - name: a
    - name: b
      inputs: [a]
  output:
    steps: [b]
`;

/** A dataflow worker's report: every pipeline it is assigned, Ready at its version (what a healthy worker says). */
function readyReport(a: WorkerAssignments | undefined) {
  return {
    pipelines: (a?.pipelines ?? []).map((p) => ({ pipeline: p.pipeline, version: p.version, state: "Ready" as const })),
  };
}

/** Follows the watch stream of `url`, keeping every pipeline change (state, reason) of `name`, in order. */
function watchPipeline(url: string, name: string): { states: PipelineStatus[] } {
  const states: PipelineStatus[] = [];
  const controller = new AbortController();
  const run = (async () => {
    const res = await fetch(`${url}/v1/watch`, { signal: controller.signal });
    if (res.status !== 200 || res.body === null) throw new Error(`watch: HTTP ${res.status}`);
    const parser = createSseParser({
      message: (m) => {
        if (m.event !== "change") return;
        for (const c of (JSON.parse(m.data) as WatchEvent).changes) {
          if (c.kind === "pipeline" && c.name === name && c.status !== undefined)
            states.push(c.status as PipelineStatus);
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
  })().catch(() => undefined);
  cleanups.push(async () => {
    controller.abort();
    await run;
  });
  return { states };
}

describe("pipeline states against DynamoDB Local and the Kafka broker", () => {
  it("creates the pipeline's topics, is Ready once its owners report it, rebalances when one leaves, survives a failover, and terminates on delete", async () => {
    const bus: MessageBus = createKafkaBus({ brokers: kafkaBrokers() });
    cleanups.push(() => bus.close());
    const admin = bus.admin();

    const first = await scheduler("ps-first");
    await waitActive(first.url);
    const second = await scheduler("ps-second");
    const urls = [first.url, second.url];
    const watched = watchPipeline(first.url, "chain");

    expect((await applyManifest(first.url, MANIFESTS)).status).toBe(200);
    const pipeline = async (url: string) => getJson<PipelineStatus>(`${url}/v1/pipelines/chain`);
    const dataflow = async (url: string) => (await getJson<WorkerKindStatus>(`${url}/v1/workers/dataflow`))!;
    // Nothing can run it yet: no server replica is connected, so its models cannot be scheduled.
    await waitFor(async () => (await pipeline(first.url))?.state === "PipelineFailed", {
      timeoutMs: 10_000,
      description: "chain Failed",
    });
    expect((await pipeline(first.url))!.reason).toMatch(/^step a: model a is ScheduleFailed \(.+\); step b: model b/);

    const agent = createFakeAgent({ url: first.url, server: "onnx", replica: 0 });
    clients.push(agent);
    await agent.start();
    // The models serve and have their topics: now only the workers are missing.
    await waitFor(async () => (await pipeline(first.url))?.reason === "no dataflow worker registered", {
      timeoutMs: 20_000,
      description: "chain waits for a dataflow worker",
    });
    const workers = new Map<string, FakeWorker>();
    for (const id of ["dataflow-0", "dataflow-1", "dataflow-2"]) {
      const w = createFakeWorker({ urls, kind: "dataflow", id, report: readyReport });
      clients.push(w);
      workers.set(id, w);
      await w.start();
    }
    await waitFor(async () => (await pipeline(first.url))?.state === "PipelineReady", {
      timeoutMs: 20_000,
      description: "chain Ready",
    });
    // On its way: Failed (no server replica, so its models could not be scheduled), then Creating (models loading,
    // topics being made, no worker, owners not reported), each change with a reason; never Ready or Rebalancing.
    const firstReady = watched.states.findIndex((s) => s.state === "PipelineReady");
    const before = watched.states.slice(0, firstReady);
    const lastFailed = before.map((s) => s.state).lastIndexOf("PipelineFailed");
    expect(before.slice(lastFailed + 1).every((s) => s.state === "PipelineCreating")).toBe(true);
    expect(before.slice(0, lastFailed + 1).every((s) => s.state === "PipelineFailed")).toBe(true);
    expect(before.every((s) => s.reason !== undefined)).toBe(true);
    expect(before.map((s) => s.reason)).toContain("no dataflow worker registered");

    // The topics exist on the broker, with the installation's partition count.
    const topics = [
      topic("pipeline", "chain", "inputs"),
      topic("pipeline", "chain", "outputs"),
      topic("model", "a", "inputs"),
      topic("model", "a", "outputs"),
      topic("model", "b", "inputs"),
      topic("model", "b", "outputs"),
    ];
    expect(await admin.describeTopics(topics)).toEqual(Object.fromEntries(topics.map((t) => [t, 4])));

    // Both owners' reports show in the dataflow status.
    const owners = (await pipeline(first.url))!.owners!;
    expect(owners).toHaveLength(2);
    const chainOf = (s: WorkerKindStatus) => s.pipelines!.find((p) => p.pipeline === "chain")!;
    expect(chainOf(await dataflow(first.url)).runs).toEqual(
      owners.toSorted().map((worker) => ({ worker, version: 1, state: "Ready" })),
    );

    // An owner leaves: the pipeline rebalances onto the remaining workers, then is Ready again.
    const leaver = owners[0]!;
    const seenBeforeLeave = watched.states.length;
    await workers.get(leaver)!.stop();
    expect((await fetch(`${first.url}/v1/workers/dataflow/${leaver}`, { method: "DELETE" })).status).toBe(204);
    await waitFor(
      async () => {
        const p = await pipeline(first.url);
        return p?.state === "PipelineReady" && p.owners !== undefined && !p.owners.includes(leaver);
      },
      { timeoutMs: 20_000, description: "chain Ready on the remaining workers" },
    );
    await waitFor(() => watched.states.slice(seenBeforeLeave).some((s) => s.state === "PipelineReady"), {
      timeoutMs: 5_000,
      description: "the watch stream carried the way back to Ready",
    });
    const afterLeave = watched.states.slice(seenBeforeLeave);
    expect(afterLeave[0]!.state).toBe("PipelineRebalancing");
    expect(afterLeave[0]!.reason).toMatch(/^waiting for its owners to run version 1: dataflow-\d has not started it$/);
    expect(afterLeave.at(-1)!.state).toBe("PipelineReady");
    const remaining = (await pipeline(first.url))!.owners!;

    // The leader goes away: the standby takes over from the store and reaches the same state from the workers' next
    // heartbeats (their reports are not stored: the runs it shows prove it heard them).
    await first.kill("SIGTERM");
    started.splice(started.indexOf(first), 1);
    await waitActive(second.url, TEST_LEASE_TTL_MS + 10_000);
    await waitFor(
      async () => {
        const runs = chainOf(await dataflow(second.url)).runs ?? [];
        return runs.filter((r) => r.state === "Ready" && remaining.includes(r.worker)).length === remaining.length;
      },
      { timeoutMs: 20_000, description: "the new leader heard both owners' reports" },
    );
    expect(await pipeline(second.url)).toMatchObject({ state: "PipelineReady", version: 1, owners: remaining });

    // Delete (TERN_DATAFLOW_CLEAN_TOPICS_ON_DELETE=true): the owners drop it, it terminates, and its topics go.
    expect((await fetch(`${second.url}/v1/pipelines/chain`, { method: "DELETE" })).status).toBeLessThan(300);
    await waitFor(async () => (await pipeline(second.url))?.state === "PipelineTerminated", {
      timeoutMs: 20_000,
      description: "chain Terminated",
    });
    await waitFor(async () => Object.keys(await admin.describeTopics(topics.slice(0, 2))).length === 0, {
      timeoutMs: 20_000,
      description: "the pipeline's topics deleted",
    });
    // The models' topics stay: other pipelines may use the models.
    expect(Object.keys(await admin.describeTopics(topics.slice(2))).sort()).toEqual(topics.slice(2).sort());
    expect(
      (await getJson<{ pipelines: Record<string, unknown> }>(`${second.url}/v1/routes`))!.pipelines.chain,
    ).toBeUndefined();
  });
});
