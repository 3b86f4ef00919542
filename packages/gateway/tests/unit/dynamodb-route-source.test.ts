import type { RouteTable } from "@tern/core";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { createDynamoDbRouteReader, createDynamoDbRouteSource } from "../../src/dynamodb-route-source.js";

const logger = pino({ level: "silent" });

function routes(revision: number): RouteTable {
  return { revision, models: {}, pipelines: {}, experiments: {} };
}

/** A reader whose answers the test scripts: a table, undefined (no item), or an error. */
function scriptedReader() {
  const state = {
    next: routes(1) as RouteTable | undefined | Error,
    reads: 0,
    gate: undefined as Promise<void> | undefined,
  };
  const read = async () => {
    state.reads++;
    if (state.gate) await state.gate;
    if (state.next instanceof Error) throw state.next;
    return state.next;
  };
  return { state, read };
}

/** Fails the test instead of hanging it when `p` never settles. */
function bounded<T>(p: T | Promise<T>, ms = 2000): Promise<T> {
  return Promise.race([
    Promise.resolve(p),
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`still pending after ${ms} ms`)), ms)),
  ]);
}

describe("DynamoDB route source", () => {
  it("reads once per cache period however many requests ask", async () => {
    let clock = 1000;
    const { state, read } = scriptedReader();
    const source = createDynamoDbRouteSource({ read, logger, cacheMs: 1000, now: () => clock });
    expect((await source.table())?.revision).toBe(1);
    state.next = routes(2);
    clock += 999;
    expect((await source.table())?.revision).toBe(1);
    expect(state.reads).toBe(1);
    clock += 1;
    expect((await source.table())?.revision).toBe(2);
    expect(state.reads).toBe(2);
  });

  it("shares one read between concurrent misses", async () => {
    const { state, read } = scriptedReader();
    let open!: () => void;
    state.gate = new Promise<void>((r) => {
      open = r;
    });
    const source = createDynamoDbRouteSource({ read, logger, now: () => 0 });
    const all = Promise.all([source.table(), source.table(), source.table()]);
    open();
    expect((await all).map((t) => t?.revision)).toEqual([1, 1, 1]);
    expect(state.reads).toBe(1);
  });

  it("serves the cached table when a read fails within the stale bound, then fails with 503", async () => {
    let clock = 0;
    const { state, read } = scriptedReader();
    const source = createDynamoDbRouteSource({ read, logger, cacheMs: 100, staleMs: 1000, now: () => clock });
    await source.table();
    state.next = new Error("throttled");
    clock = 500;
    expect((await source.table())?.revision).toBe(1);
    clock = 1000;
    await expect(source.table()).rejects.toMatchObject({ code: "unavailable" });
  });

  it("bounds a read that never ends, serving the cached table and not reading again for a cache period", async () => {
    let clock = 0;
    const { state, read } = scriptedReader();
    const signals: AbortSignal[] = [];
    const source = createDynamoDbRouteSource({
      read: (signal) => {
        signals.push(signal);
        return read();
      },
      logger,
      cacheMs: 100,
      staleMs: 1000,
      readTimeoutMs: 20,
      now: () => clock,
    });
    expect((await source.table())?.revision).toBe(1);
    state.gate = new Promise<void>(() => {});
    clock = 150;
    expect((await bounded(source.table()))?.revision).toBe(1);
    expect(signals[1]?.aborted).toBe(true);
    clock = 200;
    expect((await source.table())?.revision).toBe(1);
    expect(state.reads).toBe(2);
  });

  it("fails with 503 naming the timeout when a read never ends and no table is cached", async () => {
    const { state, read } = scriptedReader();
    state.gate = new Promise<void>(() => {});
    const source = createDynamoDbRouteSource({ read, logger, readTimeoutMs: 20, now: () => 0 });
    const err = await bounded(source.table()).catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: "unavailable",
      message: "route table is unavailable: reading it took longer than 20 ms",
    });
  });

  it("has no table while the item does not exist", async () => {
    const { state, read } = scriptedReader();
    state.next = undefined;
    const source = createDynamoDbRouteSource({ read, logger, now: () => 0 });
    expect(await source.table()).toBeUndefined();
  });

  it("reads the scheduler's item layout (pk routes, sk current, JSON in `json`)", async () => {
    const sent: unknown[] = [];
    const client = {
      send: async (command: { input: unknown }) => {
        sent.push(command.input);
        return {
          Item: {
            pk: { S: "routes" },
            sk: { S: "current" },
            version: { N: "3" },
            json: { S: JSON.stringify(routes(42)) },
          },
        };
      },
    };
    const reader = createDynamoDbRouteReader({ tableName: "tern-x", region: "us-east-1", client: client as never });
    expect((await reader(new AbortController().signal))?.revision).toBe(42);
    expect(sent).toEqual([{ TableName: "tern-x", Key: { pk: { S: "routes" }, sk: { S: "current" } } }]);
  });

  it("refuses an item that does not hold a route table", async () => {
    const client = { send: async () => ({ Item: { json: { S: JSON.stringify({ nope: true }) } } }) };
    const reader = createDynamoDbRouteReader({ tableName: "tern-x", region: "us-east-1", client: client as never });
    await expect(reader(new AbortController().signal)).rejects.toMatchObject({ code: "internal" });
  });
});
