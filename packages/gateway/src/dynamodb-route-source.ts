import { DynamoDBClient, GetItemCommand } from "@aws-sdk/client-dynamodb";
import { type RouteTable, unpackRouteTable } from "@tern/core";
import type { Logger } from "pino";
import { GatewayError } from "./errors.js";
import type { RouteSource } from "./route-source.js";
import { asRouteTable } from "./route-table.js";

/**
 * Reads the route table once; undefined when the scheduler has not written one yet. `signal` aborts when the read
 * took too long: the reader should stop its request then (the source stops waiting for it either way).
 */
export type RouteTableReader = (signal: AbortSignal) => Promise<RouteTable | undefined>;

export interface DynamoDbRouteSourceOptions {
  read: RouteTableReader;
  logger: Logger;
  /** A table younger than this is served without reading again. @default 1000 */
  cacheMs?: number;
  /** When a read fails, a table younger than this is still served (stale-on-error); older means 503. @default 30000 */
  staleMs?: number;
  /**
   * A read that has not answered by then counts as failed (stale table or 503). Kept well under the request deadline,
   * which the read is part of. @default 2000
   */
  readTimeoutMs?: number;
  /** Epoch milliseconds. @default Date.now */
  now?: () => number;
}

/**
 * The Lambda entry's route source: reads the item the scheduler writes on every change and caches it briefly, so a
 * warm function reads DynamoDB at most once per `cacheMs` however many requests it serves. Concurrent misses share
 * one read.
 */
export function createDynamoDbRouteSource(options: DynamoDbRouteSourceOptions): RouteSource {
  const cacheMs = options.cacheMs ?? 1000;
  const staleMs = options.staleMs ?? 30_000;
  const readTimeoutMs = options.readTimeoutMs ?? 2000;
  const now = options.now ?? Date.now;
  let cached: { table: RouteTable | undefined; at: number } | undefined;
  /** When the last read failed while a stale table could be served: no new read for a cache period after it. */
  let failedAt: number | undefined;
  let inFlight: Promise<RouteTable | undefined> | undefined;

  async function refresh(): Promise<RouteTable | undefined> {
    const abort = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = new GatewayError("timeout", `reading it took longer than ${readTimeoutMs} ms`);
        abort.abort(err);
        reject(err);
      }, readTimeoutMs);
    });
    try {
      const table = await Promise.race([options.read(abort.signal), timeout]);
      cached = { table, at: now() };
      failedAt = undefined;
      return table;
    } catch (err) {
      const reason = err instanceof GatewayError && err.code === "timeout" ? err.message : "reading it failed";
      if (cached && now() - cached.at < staleMs) {
        failedAt = now();
        options.logger.warn({ err: (err as Error).message }, "reading routes failed; serving the cached table");
        return cached.table;
      }
      throw new GatewayError("unavailable", `route table is unavailable: ${reason}`, { cause: err, retriable: true });
    } finally {
      clearTimeout(timer);
    }
  }

  return {
    table() {
      if (cached && now() - cached.at < cacheMs) return cached.table;
      // A read just failed and a stale table is being served: do not make every request wait for another failure.
      if (cached && failedAt !== undefined && now() - failedAt < cacheMs && now() - cached.at < staleMs) {
        return cached.table;
      }
      inFlight ??= refresh().finally(() => {
        inFlight = undefined;
      });
      return inFlight;
    },
    close: async () => {},
  };
}

export interface DynamoDbRouteReaderOptions {
  tableName: string;
  /** DynamoDB Local locally; unset in AWS. */
  endpoint?: string;
  region: string;
  /** Injected in tests; otherwise one is made from endpoint and region. */
  client?: DynamoDBClient;
}

/**
 * Item layout written by the scheduler's store (packages/scheduler/src/store/table.ts): `pk`="routes", `sk`="current",
 * the value as JSON text in the string attribute `json`: the table, or when large the table packed (see PackedRouteTable).
 */
const ROUTE_ITEM_KEY = { pk: { S: "routes" }, sk: { S: "current" } };
const VALUE_ATTRIBUTE = "json";

/** A reader of the scheduler's route item. Eventually consistent reads: the cache is staler than their lag anyway. */
export function createDynamoDbRouteReader(options: DynamoDbRouteReaderOptions): RouteTableReader {
  const client =
    options.client ??
    new DynamoDBClient({
      region: options.region,
      ...(options.endpoint
        ? { endpoint: options.endpoint, credentials: { accessKeyId: "local", secretAccessKey: "local" } }
        : {}),
    });
  return async (signal) => {
    const out = await client.send(new GetItemCommand({ TableName: options.tableName, Key: ROUTE_ITEM_KEY }), {
      abortSignal: signal,
    });
    const json = out.Item?.[VALUE_ATTRIBUTE]?.S;
    if (json === undefined) return undefined;
    const table = asRouteTable(unpackRouteTable(JSON.parse(json)));
    if (!table) throw new GatewayError("internal", "the routes item does not hold a route table");
    return table;
  };
}
