import { describe, expect, it } from "vitest";
import { createWorkerClient } from "../../src/worker-client.js";
import type { WorkerAssignments, WorkerReport } from "../../src/worker-protocol.js";

/**
 * A scheduler's worker API as `fetch` sees it (the platform's fetch is the seam; the client is the real one): it
 * records every call and streams assignment events the test pushes.
 */
function fakeScheduler() {
  const calls: Array<{ method: string; path: string; body?: string }> = [];
  let push: ((text: string) => void) | undefined;
  let heartbeatStatus = 204;
  const fetchImpl: typeof fetch = async (input, init) => {
    const url = new URL(String(input));
    const method = init?.method ?? "GET";
    calls.push({ method, path: url.pathname, ...(typeof init?.body === "string" ? { body: init.body } : {}) });
    if (method === "POST" && url.pathname === "/v1/workers") {
      return Response.json({ heartbeatIntervalMs: 20, heartbeatTimeoutMs: 1000 });
    }
    if (url.pathname.endsWith("/heartbeat")) return new Response(null, { status: heartbeatStatus });
    if (url.pathname.endsWith("/assignments")) {
      const encoder = new TextEncoder();
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          push = (text) => controller.enqueue(encoder.encode(text));
          init?.signal?.addEventListener("abort", () => controller.error(new Error("aborted")));
        },
      });
      return new Response(body, { status: 200, headers: { "content-type": "text/event-stream" } });
    }
    return new Response(null, { status: 204 });
  };
  return {
    calls,
    fetch: fetchImpl,
    send: (a: WorkerAssignments) => push?.(`event: assignments\ndata: ${JSON.stringify(a)}\n\n`),
    setHeartbeatStatus: (status: number) => {
      heartbeatStatus = status;
    },
  };
}

const silent = { info() {}, warn() {} };
const clientOf = (scheduler: ReturnType<typeof fakeScheduler>, id: string) =>
  createWorkerClient({
    url: "http://scheduler.test/",
    kind: "dataflow",
    id,
    logger: silent,
    backoffInitialMs: 10,
    fetch: scheduler.fetch,
  });
const until = async (check: () => boolean, what: string) => {
  const deadline = Date.now() + 5000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
};
const assignments = (revision: number, pipelines: string[]): WorkerAssignments => ({
  revision,
  kind: "dataflow",
  id: "dataflow-0",
  partitions: 4,
  errorsTopic: "seldon.default.errors.errors",
  buckets: [],
  pipelines: pipelines.map((p) => ({ pipeline: p, version: 1, groupId: `g-${p}`, owners: ["dataflow-0"] })),
});

describe("the data-plane worker client", () => {
  it("passes every assignment event whole, and sends a report at once and then with every heartbeat", async () => {
    const scheduler = fakeScheduler();
    const client = clientOf(scheduler, "dataflow-0");
    const seen: WorkerAssignments[] = [];
    await client.start((a) => seen.push(a));
    await until(() => scheduler.calls.some((c) => c.path.endsWith("/assignments")), "the stream");
    scheduler.send(assignments(3, ["p1", "p2"]));
    await until(() => seen.length === 1, "an assignment event");
    expect(seen[0]).toEqual(assignments(3, ["p1", "p2"]));

    const report: WorkerReport = { pipelines: [{ pipeline: "p1", version: 1, state: "Ready", partitions: [0, 2] }] };
    const before = scheduler.calls.length;
    client.report(report);
    // Sent at once: the call is made synchronously, before any heartbeat tick.
    const immediate = scheduler.calls.slice(before).find((c) => c.path.endsWith("/heartbeat"));
    expect(immediate?.body).toBe(JSON.stringify(report));
    await until(
      () =>
        scheduler.calls.filter((c) => c.path.endsWith("/heartbeat") && c.body === JSON.stringify(report)).length >= 3,
      "heartbeats carrying the report",
    );
    await client.close();
    expect(scheduler.calls.at(-1)).toMatchObject({ method: "DELETE", path: "/v1/workers/dataflow/dataflow-0" });
  });

  it("registers again when a heartbeat answers 404 and tells the new leader its report at once", async () => {
    const scheduler = fakeScheduler();
    const client = clientOf(scheduler, "dataflow-1");
    await client.start(() => {});
    await until(() => scheduler.calls.some((c) => c.path.endsWith("/assignments")), "the stream");
    const report: WorkerReport = { pipelines: [{ pipeline: "p", version: 2, state: "Starting" }] };
    client.report(report);
    scheduler.setHeartbeatStatus(404);
    const registrations = () => scheduler.calls.filter((c) => c.method === "POST" && c.path === "/v1/workers").length;
    expect(registrations()).toBe(1);
    // The scheduler forgot the worker (a new leader, or it was dropped) while the stream stays open.
    scheduler.setHeartbeatStatus(404);
    await until(() => registrations() >= 2, "a second registration");
    scheduler.setHeartbeatStatus(204);
    const afterRegistration = scheduler.calls.findLastIndex((c) => c.method === "POST" && c.path === "/v1/workers");
    await until(
      () => scheduler.calls.slice(afterRegistration).some((c) => c.path.endsWith("/heartbeat")),
      "a heartbeat after registering again",
    );
    expect(scheduler.calls.slice(afterRegistration).find((c) => c.path.endsWith("/heartbeat"))?.body).toBe(
      JSON.stringify(report),
    );
    await client.close();
  });
});
