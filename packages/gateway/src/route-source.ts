import type { RouteTable } from "@tern/core";

/**
 * Where the gateway gets its route table. The Node entry follows the scheduler's watch stream
 * (`scheduler-watch-source.ts`), the Lambda entry reads DynamoDB with a short cache (`dynamodb-route-source.ts`),
 * tests use {@link createMemoryRouteSource}.
 */
export interface RouteSource {
  /**
   * The current table, or undefined while the gateway has none yet. May be asynchronous (a cache refresh); rejects
   * with a `unavailable` error only when no table can be served at all.
   */
  table(): RouteTable | undefined | Promise<RouteTable | undefined>;
  /** Stops background work; idempotent. */
  close(): Promise<void>;
}

/** An in-memory route source for tests and embedding: the table is whatever was last `set`. */
export interface MemoryRouteSource extends RouteSource {
  set(table: RouteTable | undefined): void;
}

export function createMemoryRouteSource(initial?: RouteTable): MemoryRouteSource {
  let current = initial;
  return {
    table: () => current,
    set(table) {
      current = table;
    },
    close: async () => {},
  };
}
