import type { ModelStatus } from "@tern/core";
import { findFreePort, waitFor } from "@tern/devstack";
import { afterEach, describe, expect, it } from "vitest";
import { loadState } from "../../packages/scheduler/src/persistence.js";
import { createDynamoDbStore, ensureTable } from "../../packages/scheduler/src/store/dynamodb-store.js";
import { dynamodbEndpoint } from "../helpers/services.js";
import { createFakeAgent, type FakeHttpAgent } from "./fake-agent.js";
import {
  applyManifest,
  getJson,
  type SchedulerProcess,
  schedulerStatus,
  startSchedulerProcess,
  TEST_LEASE_TTL_MS,
  waitActive,
} from "./scheduler-process.js";

const suffix = `${Date.now().toString(36)}-${process.pid}`;
let tables = 0;
const started: SchedulerProcess[] = [];
const agents: FakeHttpAgent[] = [];

function uniqueTable(): string {
  return `tern-sched-it-${suffix}-${++tables}`;
}

async function scheduler(id: string, table: string, port?: number): Promise<SchedulerProcess> {
  const p = await startSchedulerProcess({
    id,
    table,
    dynamodbEndpoint: dynamodbEndpoint(),
    ...(port === undefined ? {} : { port }),
  });
  started.push(p);
  return p;
}

afterEach(async () => {
  for (const a of agents.splice(0)) await a.stop();
  for (const p of started.splice(0)) await p.kill("SIGKILL");
});

const SERVER = `apiVersion: mlops.seldon.io/v1alpha1
kind: Server
metadata: {name: onnx}
spec: {serverConfig: tern-onnx, replicas: 1}
`;

function model(name: string): string {
  return `apiVersion: mlops.seldon.io/v1alpha1
kind: Model
metadata: {name: ${name}}
spec: {storageUri: "file:///models/${name}", requirements: [onnx], memory: 1Mi}
`;
}

async function modelState(url: string, name: string): Promise<ModelStatus | undefined> {
  return getJson<ModelStatus>(`${url}/v1/models/${name}`);
}

describe("scheduler process against DynamoDB Local", () => {
  it("resumes the same state after SIGKILL and a restart, reloading nothing", async () => {
    const table = uniqueTable();
    const port = await findFreePort();
    const first = await scheduler("first", table, port);
    await waitActive(first.url);
    expect((await applyManifest(first.url, `${SERVER}---\n${model("iris")}`)).status).toBe(200);
    const agent = createFakeAgent({ url: first.url, server: "onnx", replica: 0 });
    agents.push(agent);
    await agent.start();
    await waitFor(async () => (await modelState(first.url, "iris"))?.state === "ModelAvailable", {
      timeoutMs: 10_000,
      description: "iris available",
    });
    const before = await modelState(first.url, "iris");
    const connectsBefore = agent.connects;

    await first.kill("SIGKILL");
    const second = await scheduler("second", table, port);
    // The dead scheduler's lease must lapse first.
    await waitActive(second.url, TEST_LEASE_TTL_MS + 10_000);
    await waitFor(() => agent.connects > connectsBefore, { timeoutMs: 10_000, description: "agent reconnected" });
    await waitFor(async () => (await modelState(second.url, "iris"))?.state === "ModelAvailable", {
      timeoutMs: 10_000,
      description: "iris available after restart",
    });
    const after = await modelState(second.url, "iris");
    expect(after).toEqual(before);
    expect(agent.loads).toEqual(["iris@1"]);
    expect(agent.unloads).toEqual([]);
    expect(agent.received.at(-1)?.models.map((m) => `${m.model}@${m.version}`)).toEqual(["iris@1"]);
    const routes = await getJson<{ models: Record<string, { endpoints: unknown[] }> }>(`${second.url}/v1/routes`);
    expect(routes?.models.iris?.endpoints).toHaveLength(1);
  });

  it("lets exactly one of two schedulers act, and the standby take over when the leader is killed", async () => {
    const table = uniqueTable();
    const a = await scheduler("a", table);
    const b = await scheduler("b", table);
    await waitFor(
      async () => {
        const [sa, sb] = await Promise.all([schedulerStatus(a.url), schedulerStatus(b.url)]);
        return sa !== undefined && sb !== undefined && (sa.active || sb.active);
      },
      { timeoutMs: 20_000, intervalMs: 100, description: "a leader elected" },
    );
    const [sa, sb] = await Promise.all([schedulerStatus(a.url), schedulerStatus(b.url)]);
    expect([sa?.active, sb?.active].filter(Boolean)).toHaveLength(1);
    const leader = sa?.active ? a : b;
    const standby = leader === a ? b : a;
    const refused = await applyManifest(standby.url, SERVER);
    expect(refused.status).toBe(503);
    expect(await refused.json()).toMatchObject({ error: "not the active scheduler", leader: { holder: leader.id } });
    expect((await applyManifest(leader.url, SERVER)).status).toBe(200);

    await leader.kill("SIGKILL");
    // Takes over within the lease TTL plus a poll and some slack for process scheduling.
    await waitActive(standby.url, TEST_LEASE_TTL_MS + 5_000);
    const servers = await getJson<{ items: { name: string }[] }>(`${standby.url}/v1/servers`);
    expect(servers?.items.map((s) => s.name)).toEqual(["onnx"]);
    expect((await applyManifest(standby.url, model("after"))).status).toBe(200);
  });

  it("hands over at once when the leader is stopped with SIGTERM (it releases the lease)", async () => {
    const table = uniqueTable();
    const a = await scheduler("a", table);
    await waitActive(a.url);
    const b = await scheduler("b", table);
    expect((await schedulerStatus(b.url))?.active).toBe(false);
    await a.kill("SIGTERM");
    expect(a.output()).toContain("stopped");
    await waitActive(b.url, 5_000);
  });

  it("loses nothing under 20 concurrent applies", async () => {
    const table = uniqueTable();
    const s = await scheduler("solo", table);
    await waitActive(s.url);
    const names = Array.from({ length: 20 }, (_, i) => `m${i}`);
    const responses = await Promise.all(names.map((n) => applyManifest(s.url, model(n))));
    expect(responses.map((r) => r.status)).toEqual(names.map(() => 200));
    const listed = await getJson<{ items: { name: string }[] }>(`${s.url}/v1/models`);
    expect(listed?.items.map((m) => m.name).sort()).toEqual([...names].sort());

    const options = { endpoint: dynamodbEndpoint(), region: "us-east-1", table };
    await ensureTable(options);
    const store = createDynamoDbStore(options);
    try {
      const stored = await loadState(store);
      expect([...stored.state.models.keys()].sort()).toEqual([...names].sort());
      expect(stored.revision).toBeGreaterThanOrEqual(20);
    } finally {
      await store.close();
    }
  });
});
