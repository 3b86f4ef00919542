import type { RouteTable } from "@tern/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDynamoDbRouteReader } from "../../packages/gateway/src/dynamodb-route-source.js";
import { routeTableItemSize, routeTableToStore } from "../../packages/scheduler/src/build-routes.js";
import { loadState } from "../../packages/scheduler/src/persistence.js";
import { ROUTES_KEY } from "../../packages/scheduler/src/records.js";
import { createDynamoDbStore, ensureTable } from "../../packages/scheduler/src/store/dynamodb-store.js";
import { dynamodbEndpoint } from "../helpers/services.js";

const REGION = "us-east-1";

/** A realistic table: two replicas per model, spread over 20 servers of 50 replicas. */
function tableOf(models: number, revision: number): RouteTable {
  const table: RouteTable = { revision, models: {}, pipelines: {}, experiments: {} };
  for (let i = 0; i < models; i++) {
    const endpoints = [0, 1].map((r) => ({
      server: `server-${i % 20}`,
      replica: (i + r) % 50,
      version: 1,
      http: `http://server-${i % 20}-${(i + r) % 50}.tern.internal:9500`,
      grpc: `server-${i % 20}-${(i + r) % 50}.tern.internal:9501`,
    }));
    table.models[`model-${i}`] = { name: `model-${i}`, version: 1, state: "ModelAvailable", endpoints };
  }
  return table;
}

const tableName = `tern-route-item-${Date.now().toString(36)}-${process.pid}`;
const options = () => ({ endpoint: dynamodbEndpoint(), region: REGION, table: tableName });
let store: ReturnType<typeof createDynamoDbStore>;

beforeAll(async () => {
  await ensureTable(options());
  store = createDynamoDbStore(options());
});

afterAll(async () => {
  await store?.close();
});

describe("the routes item on DynamoDB Local, as the scheduler writes it and a Lambda gateway reads it", () => {
  it("round-trips a small table stored plain and a 10 000-model table stored packed in one item", async () => {
    const reader = createDynamoDbRouteReader({ tableName, region: REGION, endpoint: dynamodbEndpoint() });
    let version = 0;
    for (const table of [tableOf(5, 1), tableOf(10_000, 2)]) {
      const stored = routeTableToStore(table);
      expect(stored.fits).toBe(true);
      expect(stored.packed).toBe(!routeTableItemSize(table).fits);
      const [item] = await store.write([
        { type: "put", key: ROUTES_KEY, value: stored.value, expectedVersion: version },
      ]);
      version = item!.version;
      expect(await reader(new AbortController().signal)).toEqual(table);
      // A restarted scheduler reads the same table back.
      expect((await loadState(store)).routes).toEqual(table);
    }
  });
});
