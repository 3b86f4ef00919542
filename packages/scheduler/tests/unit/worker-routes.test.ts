import { createSseParser, type SseMessage, type WorkerAssignments } from "@tern/core";
import { afterEach, describe, expect, it } from "vitest";
import { createControlApp } from "../../src/app.js";
import { createHarness, type Harness, silentLogger } from "./helpers.js";

let h: Harness;
afterEach(async () => {
  await h?.close();
});

async function setup(options: { standby?: boolean } = {}) {
  h = await createHarness({ dataPlane: { buckets: 4, partitions: 4 } });
  return createControlApp({
    active: () => (options.standby ? undefined : h.scheduler),
    store: h.store,
    leaseName: "scheduler",
    logger: silentLogger,
  });
}

const json = { "content-type": "application/json" };
const register = (body: unknown) => ({ method: "POST", headers: json, body: JSON.stringify(body) });

/** The first server-sent event of a response, with a deadline; the stream is cancelled after it. */
async function firstEvent(res: Response, deadlineMs = 3000): Promise<SseMessage | undefined> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let found: SseMessage | undefined;
  const parser = createSseParser({ message: (m) => (found ??= m) });
  const deadline = Date.now() + deadlineMs;
  try {
    while (found === undefined && Date.now() < deadline) {
      const timeout = new Promise<{ done: true; value: undefined }>((r) =>
        setTimeout(() => r({ done: true, value: undefined }), Math.max(1, deadline - Date.now())),
      );
      const { done, value } = await Promise.race([reader.read(), timeout]);
      if (done) break;
      parser.push(decoder.decode(value, { stream: true }));
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
  return found;
}

describe("worker routes", () => {
  it("registers a model gateway, streams its buckets, takes heartbeats, shows it, and lets it leave", async () => {
    const app = await setup();
    const res = await app.request("/v1/workers", register({ kind: "modelgateway", id: "modelgateway-0" }));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ heartbeatIntervalMs: 2000, heartbeatTimeoutMs: 6000 });

    const event = await firstEvent(await app.request("/v1/workers/modelgateway/modelgateway-0/assignments"));
    expect(event?.event).toBe("assignments");
    const assignments = JSON.parse(event!.data) as WorkerAssignments;
    expect(assignments.buckets.map((b) => b.bucket)).toEqual([0, 1, 2, 3]);

    expect((await app.request("/v1/workers/modelgateway/modelgateway-0/heartbeat", { method: "POST" })).status).toBe(
      204,
    );
    const view = await (await app.request("/v1/workers/modelgateway/modelgateway-0")).json();
    expect(view).toMatchObject({ kind: "modelgateway", id: "modelgateway-0", state: "Ready", buckets: [0, 1, 2, 3] });
    const status = (await (await app.request("/v1/workers/modelgateway")).json()) as { buckets: unknown[] };
    expect(status).toMatchObject({ kind: "modelgateway", partitions: 4, kafkaConfigured: false });
    expect(status.buckets).toHaveLength(4);

    expect((await app.request("/v1/workers/modelgateway/modelgateway-0", { method: "DELETE" })).status).toBe(204);
    const gone = await app.request("/v1/workers/modelgateway/modelgateway-0/heartbeat", { method: "POST" });
    expect(gone.status).toBe(404);
    expect(await gone.json()).toEqual({ error: "unknown worker modelgateway/modelgateway-0: register again" });
  });

  it("refuses a registration with an unknown field or a bad id, naming the field", async () => {
    const app = await setup();
    const extra = await app.request("/v1/workers", register({ kind: "modelgateway", id: "mg-0", server: "x" }));
    expect(extra.status).toBe(400);
    expect(((await extra.json()) as { error: string }).error).toMatch(/invalid worker registration: .*server/);
    const badId = await app.request("/v1/workers", register({ kind: "dataflow", id: "Dataflow_0" }));
    expect(badId.status).toBe(400);
    expect(((await badId.json()) as { error: string }).error).toMatch(/^invalid worker registration: id:/);
    const notJson = await app.request("/v1/workers", { method: "POST", headers: json, body: "{" });
    expect(notJson.status).toBe(400);
    expect(h.scheduler.workers.status("dataflow").replicas).toEqual([]);
  });

  it("answers 409 naming both numbers when a model gateway would exceed the partition count", async () => {
    const app = await setup();
    for (let i = 0; i < 4; i++) {
      expect((await app.request("/v1/workers", register({ kind: "modelgateway", id: `mg-${i}` }))).status).toBe(200);
    }
    const res = await app.request("/v1/workers", register({ kind: "modelgateway", id: "mg-4" }));
    expect(res.status).toBe(409);
    expect(((await res.json()) as { error: string }).error).toMatch(/4 model-gateway replicas .*KAFKA_PARTITIONS is 4/);
  });

  it("answers 400 for an unknown kind or bad id in a path, and 404 for an unknown worker's stream", async () => {
    const app = await setup();
    expect((await app.request("/v1/workers/agent/x/heartbeat", { method: "POST" })).status).toBe(400);
    expect((await app.request("/v1/workers/agents")).status).toBe(400);
    expect((await app.request("/v1/workers/dataflow/Bad.Id")).status).toBe(400);
    expect((await app.request("/v1/workers/dataflow/dataflow-9/assignments")).status).toBe(404);
  });

  it("takes a dataflow worker's report on its heartbeat, and refuses a bad one with 400 naming the field", async () => {
    const app = await setup();
    await h.apply(`apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: chain}
spec:
  steps: [{name: m}]
`);
    expect((await app.request("/v1/workers", register({ kind: "dataflow", id: "dataflow-0" }))).status).toBe(200);
    const heartbeat = (body?: string) =>
      app.request("/v1/workers/dataflow/dataflow-0/heartbeat", {
        method: "POST",
        ...(body === undefined ? {} : { headers: json, body }),
      });
    // An empty body is a plain heartbeat (model gateways, older workers): nothing is reported.
    expect((await heartbeat()).status).toBe(204);
    expect(h.scheduler.workers.dataflowReports().has("dataflow-0")).toBe(false);

    const report = { pipelines: [{ pipeline: "chain", version: 1, state: "Starting", partitions: [3, 1] }] };
    expect((await heartbeat(JSON.stringify(report))).status).toBe(204);
    expect(h.scheduler.workers.status("dataflow").pipelines![0]!.runs).toEqual([
      { worker: "dataflow-0", version: 1, state: "Starting", partitions: [1, 3] },
    ]);

    const bad = await heartbeat(JSON.stringify({ pipelines: [{ pipeline: "chain", version: 0, state: "Running" }] }));
    expect(bad.status).toBe(400);
    const error = ((await bad.json()) as { error: string }).error;
    expect(error).toContain("pipelines.0.version");
    expect(error).toContain("pipelines.0.state");
    expect((await heartbeat("{not json")).status).toBe(400);
    // The bad reports changed nothing.
    expect(h.scheduler.workers.dataflowReports().get("dataflow-0")!.pipelines[0]!.state).toBe("Starting");
    // An unknown worker is told to register again, report or not.
    const unknown = await app.request("/v1/workers/dataflow/dataflow-9/heartbeat", {
      method: "POST",
      headers: json,
      body: JSON.stringify(report),
    });
    expect(unknown.status).toBe(404);
  });

  it("answers 503 on a standby", async () => {
    const app = await setup({ standby: true });
    const res = await app.request("/v1/workers", register({ kind: "modelgateway", id: "mg-0" }));
    expect(res.status).toBe(503);
    expect((await app.request("/v1/workers/modelgateway")).status).toBe(503);
  });
});
