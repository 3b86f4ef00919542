import type { WorkerKindStatus } from "@tern/core";
import { waitFor } from "@tern/devstack";
import { afterEach, describe, expect, it } from "vitest";
import { bucketOf } from "../../packages/scheduler/src/bucket-placement.js";
import { loadState } from "../../packages/scheduler/src/persistence.js";
import { createDynamoDbStore } from "../../packages/scheduler/src/store/dynamodb-store.js";
import { dynamodbEndpoint } from "../helpers/services.js";
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

const table = `tern-workers-it-${Date.now().toString(36)}-${process.pid}`;
const started: SchedulerProcess[] = [];
const clients: Array<FakeHttpAgent | FakeWorker> = [];

afterEach(async () => {
  for (const c of clients.splice(0)) await c.stop();
  for (const p of started.splice(0)) await p.kill("SIGKILL");
});

async function scheduler(id: string): Promise<SchedulerProcess> {
  const p = await startSchedulerProcess({
    id,
    table,
    dynamodbEndpoint: dynamodbEndpoint(),
    env: { TERN_MODELGATEWAY_BUCKETS: "16", KAFKA_PARTITIONS: "4" },
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
metadata: {name: iris}
spec: {storageUri: "file:///models/iris", requirements: [onnx], memory: 1Mi}
`;

const all = Array.from({ length: 16 }, (_, b) => b);
const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);

describe("model-gateway workers against DynamoDB Local", () => {
  it("gives a registered worker every bucket, spreads them when a second joins, and a standby serves the same assignment", async () => {
    const first = await scheduler("first");
    await waitActive(first.url);
    const second = await scheduler("second");
    const urls = [first.url, second.url];

    expect((await applyManifest(first.url, MANIFESTS)).status).toBe(200);
    const agent = createFakeAgent({ url: first.url, server: "onnx", replica: 0 });
    clients.push(agent);
    await agent.start();

    const w0 = createFakeWorker({ urls, kind: "modelgateway", id: "modelgateway-0" });
    clients.push(w0);
    await w0.start();
    await waitFor(() => sorted(w0.buckets()).join() === all.join(), {
      timeoutMs: 10_000,
      description: "w0 holds every bucket",
    });
    // iris becomes available and joins its bucket (no topic admin: every routable model goes in).
    const irisBucket = bucketOf("iris", 16);
    await waitFor(() => w0.received.at(-1)?.buckets.find((b) => b.bucket === irisBucket)?.models[0]?.model === "iris", {
      timeoutMs: 10_000,
      description: "iris in w0's assignments",
    });
    expect(w0.received.at(-1)!.buckets.find((b) => b.bucket === irisBucket)).toEqual({
      bucket: irisBucket,
      groupId: `tern.default.modelgateway.bucket-${irisBucket}`,
      models: [
        {
          model: "iris",
          inputTopic: "seldon.default.model.iris.inputs",
          outputTopic: "seldon.default.model.iris.outputs",
        },
      ],
    });

    const w1 = createFakeWorker({ urls, kind: "modelgateway", id: "modelgateway-1" });
    clients.push(w1);
    await w1.start();
    await waitFor(() => w1.buckets().length > 0 && w0.buckets().length + w1.buckets().length === 16, {
      timeoutMs: 10_000,
      description: "buckets spread over both workers",
    });
    expect(sorted([...w0.buckets(), ...w1.buckets()])).toEqual(all);
    const before = await getJson<WorkerKindStatus>(`${first.url}/v1/workers/modelgateway`);
    expect(before!.replicas.map((r) => [r.id, r.state])).toEqual([
      ["modelgateway-0", "Ready"],
      ["modelgateway-1", "Ready"],
    ]);
    expect(before!.buckets!.every((b) => b.consumers === 1)).toBe(true);

    // Stored: DynamoDB holds both workers and the sixteen buckets with their owners.
    const store = createDynamoDbStore({ endpoint: dynamodbEndpoint(), region: "us-east-1", table });
    try {
      const stored = await loadState(store);
      expect([...stored.state.workers.keys()].sort()).toEqual([
        "modelgateway/modelgateway-0",
        "modelgateway/modelgateway-1",
      ]);
      expect(
        sorted([...stored.state.buckets.values()].filter((b) => b.owner === "modelgateway-1").map((b) => b.bucket)),
      ).toEqual(sorted(w1.buckets()));
    } finally {
      await store.close();
    }

    // The leader goes away; the standby takes over from the stored state and the workers follow it.
    const w0Buckets = sorted(w0.buckets());
    const w1Buckets = sorted(w1.buckets());
    const receivedBefore = w1.received.length;
    await first.kill("SIGTERM");
    started.splice(started.indexOf(first), 1);
    await waitActive(second.url, TEST_LEASE_TTL_MS + 10_000);
    await waitFor(() => w1.received.length > receivedBefore, {
      timeoutMs: 10_000,
      description: "w1 reconnected to the new leader",
    });
    expect(sorted(w1.buckets())).toEqual(w1Buckets);
    const after = await getJson<WorkerKindStatus>(`${second.url}/v1/workers/modelgateway`);
    // Owners and groups are the same; the models may differ, since the fake agent stays with the old leader and the
    // new one removes it (and iris's route) once its heartbeat deadline passes.
    const owners = (s: WorkerKindStatus) => s.buckets!.map((b) => [b.bucket, b.owner, b.groupId]);
    expect(owners(after!)).toEqual(owners(before!));
    expect(sorted(after!.replicas.find((r) => r.id === "modelgateway-0")!.buckets)).toEqual(w0Buckets);
  });
});

describe("dataflow workers against DynamoDB Local", () => {
  it("places each pipeline on two of the workers, stores the owners, and a join or leave moves only what the ring says", async () => {
    const leader = await scheduler("dataflow");
    await waitActive(leader.url);
    const pipelines = Array.from({ length: 24 }, (_, i) => `p${i}`);
    const yaml = pipelines
      .map(
        (p) =>
          `apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata: {name: ${p}}\nspec:\n  steps: [{name: m}]\n`,
      )
      .join("---\n");
    expect((await applyManifest(leader.url, yaml)).status).toBe(200);

    const workers = new Map<string, FakeWorker>();
    const join = async (id: string) => {
      const w = createFakeWorker({ urls: [leader.url], kind: "dataflow", id });
      clients.push(w);
      workers.set(id, w);
      await w.start();
    };
    const status = async () => (await getJson<WorkerKindStatus>(`${leader.url}/v1/workers/dataflow`))!;
    const ownerSets = async () => new Map((await status()).pipelines!.map((p) => [p.pipeline, p.owners]));
    /** Every worker's newest assignments agree with the owners the scheduler reports. */
    const settled = async (ids: string[]) => {
      const owners = await ownerSets();
      return ids.every((id) => {
        const own = (workers.get(id)!.received.at(-1)?.pipelines ?? []).map((p) => p.pipeline);
        return (
          own.join() ===
          pipelines
            .filter((p) => owners.get(p)?.includes(id))
            .sort()
            .join()
        );
      });
    };

    for (const id of ["dataflow-0", "dataflow-1", "dataflow-2"]) await join(id);
    await waitFor(() => settled(["dataflow-0", "dataflow-1", "dataflow-2"]), {
      timeoutMs: 10_000,
      description: "three workers hold the pipelines the scheduler placed",
    });
    const before = await ownerSets();
    for (const p of pipelines) expect(new Set(before.get(p)).size).toBe(2);
    const assignment = workers
      .get(before.get("p0")![0]!)!
      .received.at(-1)!
      .pipelines.find((p) => p.pipeline === "p0");
    expect(assignment).toEqual({
      pipeline: "p0",
      version: 1,
      groupId: "tern.default.dataflow.pipeline.p0",
      owners: before.get("p0"),
    });

    // Stored in the pipeline records in DynamoDB, so a standby would serve the same owners.
    const store = createDynamoDbStore({ endpoint: dynamodbEndpoint(), region: "us-east-1", table });
    try {
      const stored = await loadState(store);
      for (const p of pipelines) expect(stored.state.pipelines.get(p)!.owners).toEqual(before.get(p));
    } finally {
      await store.close();
    }

    // A fourth worker joins: the changed sets each replace exactly one owner, by the joiner.
    await join("dataflow-3");
    const four = ["dataflow-0", "dataflow-1", "dataflow-2", "dataflow-3"];
    await waitFor(() => settled(four), { timeoutMs: 10_000, description: "four workers settled" });
    const joined = await ownerSets();
    const moved = pipelines.filter((p) => !sameSet(before.get(p)!, joined.get(p)!));
    for (const p of moved) {
      expect(joined.get(p)).toContain("dataflow-3");
      expect(before.get(p)!.filter((o) => joined.get(p)!.includes(o))).toHaveLength(1);
    }
    for (const p of pipelines.filter((x) => !moved.includes(x))) expect(joined.get(p)).toEqual(before.get(p));
    console.log(
      `dataflow join 3 → 4 workers, replication 2, ${pipelines.length} pipelines: moved ${moved.length} ` +
        `(${(moved.length / pipelines.length).toFixed(2)}; R/(N+1) = 0.50)`,
    );
    expect(moved.length).toBeGreaterThan(0);

    // dataflow-1 leaves: only the sets it was in change.
    await workers.get("dataflow-1")!.stop();
    expect((await fetch(`${leader.url}/v1/workers/dataflow/dataflow-1`, { method: "DELETE" })).status).toBe(204);
    const three = ["dataflow-0", "dataflow-2", "dataflow-3"];
    await waitFor(() => settled(three), { timeoutMs: 10_000, description: "three workers settled after the leave" });
    const left = await ownerSets();
    for (const p of pipelines) {
      if (joined.get(p)!.includes("dataflow-1")) {
        expect(left.get(p)).not.toContain("dataflow-1");
        expect(left.get(p)).toHaveLength(2);
      } else expect(left.get(p)).toEqual(joined.get(p));
    }
    expect((await status()).replicas.map((r) => r.id)).toEqual(three);
  });
});

const sameSet = (a: string[], b: string[]) => a.length === b.length && a.every((x) => b.includes(x));
