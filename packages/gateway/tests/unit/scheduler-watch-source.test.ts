import http from "node:http";
import type { AddressInfo } from "node:net";
import type { RouteTable } from "@tern/core";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { createSchedulerWatchSource, type SchedulerWatchSource } from "../../src/scheduler-watch-source.js";
import { waitFor } from "./fake-agent.js";

const logger = pino({ level: "silent" });

function routes(revision: number, model = "iris"): RouteTable {
  return {
    revision,
    models: { [model]: { name: model, version: 1, state: "ModelAvailable", endpoints: [] } },
    pipelines: {},
    experiments: {},
  };
}

/** A fake scheduler control API: `/v1/routes` answers `table`; `/v1/watch` streams what the test writes. */
async function startFakeScheduler() {
  const state = {
    table: routes(1) as RouteTable | undefined,
    lists: 0,
    watchFrom: [] as number[],
    streams: [] as http.ServerResponse[],
    authorization: [] as Array<string | undefined>,
  };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    state.authorization.push(req.headers.authorization);
    if (url.pathname === "/v1/routes") {
      state.lists++;
      if (!state.table) return void res.writeHead(503).end("{}");
      return void res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(state.table));
    }
    if (url.pathname === "/v1/watch") {
      state.watchFrom.push(Number(url.searchParams.get("fromRevision")));
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(": hello\n\n");
      state.streams.push(res);
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    state,
    /** Writes an SSE event to the newest watch stream. */
    send(event: string | undefined, data: unknown, id?: number) {
      const res = state.streams[state.streams.length - 1]!;
      res.write(
        `${event ? `event: ${event}\n` : ""}${id === undefined ? "" : `id: ${id}\n`}data: ${JSON.stringify(data)}\n\n`,
      );
    },
    dropStreams() {
      for (const res of state.streams.splice(0)) res.destroy();
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

type FakeScheduler = Awaited<ReturnType<typeof startFakeScheduler>>;
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(
  options: { token?: string; backoffInitialMs?: number; backoffMaxMs?: number; onTable?: (t: RouteTable) => void } = {},
): Promise<{ scheduler: FakeScheduler; source: SchedulerWatchSource }> {
  const scheduler = await startFakeScheduler();
  cleanups.push(() => scheduler.close());
  const source = createSchedulerWatchSource({
    url: scheduler.url,
    logger,
    backoffInitialMs: 10,
    backoffMaxMs: 50,
    ...options,
  });
  cleanups.push(() => source.close());
  return { scheduler, source };
}

describe("scheduler watch source", () => {
  it("lists the routes, then watches from that revision", async () => {
    const { scheduler, source } = await setup({ token: "t0k" });
    expect(await source.whenReady(5000)).toBe(true);
    expect(source.table()?.revision).toBe(1);
    await waitFor(() => scheduler.state.watchFrom.length === 1, 5000, "the watch");
    expect(scheduler.state.watchFrom).toEqual([1]);
    expect(scheduler.state.authorization.every((a) => a === "Bearer t0k")).toBe(true);
  });

  it("applies a route table carried by a watch event", async () => {
    const { scheduler, source } = await setup();
    await waitFor(() => scheduler.state.streams.length === 1, 5000, "the watch");
    scheduler.send("routes", routes(5, "wine"), 5);
    await waitFor(() => source.table()?.revision === 5, 5000, "revision 5");
    expect(Object.keys(source.table()!.models)).toEqual(["wine"]);
    // The scheduler's own event shape: a transaction whose routes change carries the table.
    scheduler.send(undefined, { revision: 8, changes: [{ kind: "model", name: "x", type: "put", status: {} }] });
    scheduler.send(undefined, {
      revision: 9,
      changes: [{ kind: "routes", name: "current", type: "put", status: routes(9, "nine") }],
    });
    await waitFor(() => source.table()?.revision === 9, 5000, "revision 9");
    expect(Object.keys(source.table()!.models)).toEqual(["nine"]);
    // An older table never replaces a newer one.
    scheduler.send("routes", { routes: routes(3, "old") }, 3);
    scheduler.send("routes", { collection: "routes", value: routes(16, "sixteen") }, 16);
    await waitFor(() => source.table()?.revision === 16, 5000, "revision 16");
    expect(scheduler.state.lists).toBe(1);
  });

  it("calls onTable once with each newer table it holds, never with an older or the same one", async () => {
    const seen: number[] = [];
    const { scheduler, source } = await setup({ onTable: (t) => seen.push(t.revision) });
    await waitFor(() => scheduler.state.streams.length === 1, 5000, "the watch");
    scheduler.send("routes", routes(4), 4);
    scheduler.send("routes", routes(2), 2);
    scheduler.send("routes", routes(4), 4);
    scheduler.send("routes", routes(6), 6);
    await waitFor(() => source.table()?.revision === 6, 5000, "revision 6");
    expect(seen).toEqual([1, 4, 6]);
  });

  it("lists again when an event without a table reports a newer revision", async () => {
    const { scheduler, source } = await setup();
    await waitFor(() => scheduler.state.streams.length === 1, 5000, "the watch");
    scheduler.state.table = routes(7, "seven");
    scheduler.send("model", { revision: 7, kind: "Model", name: "seven", type: "updated" });
    await waitFor(() => source.table()?.revision === 7, 5000, "revision 7");
    expect(scheduler.state.lists).toBe(2);
    expect(scheduler.state.streams).toHaveLength(1);
  });

  it("lists again and watches from the new revision after a reset event", async () => {
    const { scheduler, source } = await setup();
    await waitFor(() => scheduler.state.streams.length === 1, 5000, "the watch");
    scheduler.state.table = routes(20);
    scheduler.send("reset", { revision: 20 });
    await waitFor(() => scheduler.state.watchFrom.length === 2, 5000, "the second watch");
    expect(scheduler.state.watchFrom).toEqual([1, 20]);
    expect(source.table()?.revision).toBe(20);
  });

  it("keeps the last table while the connection is down, then lists and watches again", async () => {
    const { scheduler, source } = await setup();
    await waitFor(() => scheduler.state.streams.length === 1, 5000, "the watch");
    scheduler.state.table = routes(9);
    scheduler.dropStreams();
    expect(source.table()?.revision).toBe(1);
    await waitFor(() => scheduler.state.watchFrom.length === 2, 5000, "a new watch");
    expect(scheduler.state.watchFrom).toEqual([1, 9]);
    expect(source.table()?.revision).toBe(9);
  });

  it("is not ready while the scheduler has no routes, and becomes ready when it has", async () => {
    const { scheduler, source } = await setup();
    scheduler.state.table = undefined;
    expect(await source.whenReady(100)).toBe(false);
    expect(source.table()).toBeUndefined();
    scheduler.state.table = routes(2);
    expect(await source.whenReady(5000)).toBe(true);
    expect(scheduler.state.lists).toBeGreaterThan(1);
  });

  it("stops following on close", async () => {
    // Both sources back off exactly 10 ms. The control keeps following; once it has listed and watched again after the
    // streams drop, a closed source that still followed would have done the same.
    const backoff = { backoffInitialMs: 10, backoffMaxMs: 10 };
    const { scheduler, source } = await setup({ token: "closed", ...backoff });
    const control = createSchedulerWatchSource({ url: scheduler.url, logger, token: "control", ...backoff });
    cleanups.push(() => control.close());
    await waitFor(() => scheduler.state.streams.length === 2, 5000, "both watches");
    await source.close();
    const mark = scheduler.state.authorization.length;
    scheduler.state.table = routes(30);
    scheduler.dropStreams();
    await waitFor(() => scheduler.state.watchFrom.includes(30), 5000, "the control watching from revision 30");
    expect(control.table()?.revision).toBe(30);
    expect(scheduler.state.authorization.slice(mark)).not.toContain("Bearer closed");
    expect(source.table()?.revision).toBe(1);
  });
});
