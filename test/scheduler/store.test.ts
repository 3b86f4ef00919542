import { describe, expect, it } from "vitest";
import { createDynamoDbStore, describeTable, ensureTable } from "../../packages/scheduler/src/store/dynamodb-store.js";
import { describeStateStore } from "../../packages/scheduler/tests/unit/store-contract.js";
import { dynamodbEndpoint } from "../helpers/services.js";

const suffix = `${Date.now().toString(36)}-${process.pid}`;
const tableOptions = (table: string) => ({ endpoint: dynamodbEndpoint(), region: "us-east-1", table });

describeStateStore("dynamodb", async () => {
  const options = tableOptions(`tern-store-contract-${suffix}`);
  await ensureTable(options);
  return createDynamoDbStore(options);
});

describe("dynamodb table", () => {
  it("is created once with pk/sk keys and TTL on expiresAt, even when several processes ensure it at once", async () => {
    const options = tableOptions(`tern-store-ensure-${suffix}`);
    const results = await Promise.all([ensureTable(options), ensureTable(options), ensureTable(options)]);
    expect(results.filter((r) => r.created)).toHaveLength(1);
    expect(await ensureTable(options)).toEqual({ created: false });
    expect(await describeTable(options)).toEqual({
      status: "ACTIVE",
      partitionKey: "pk",
      sortKey: "sk",
      ttlAttribute: "expiresAt",
      ttlEnabled: true,
    });
  });

  it("reports a missing table as unavailable, naming it", async () => {
    const store = createDynamoDbStore(tableOptions(`tern-store-missing-${suffix}`));
    try {
      const err = await store.get({ collection: "model", id: "iris" }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: "unavailable" });
      expect((err as Error).message).toContain(`tern-store-missing-${suffix}`);
    } finally {
      await store.close();
    }
  });

  it("fails fast with config.invalid on a bad table name, region or endpoint", () => {
    expect(() => createDynamoDbStore(tableOptions("x"))).toThrow(expect.objectContaining({ code: "config.invalid" }));
    expect(() => createDynamoDbStore({ region: "", table: "valid-name" })).toThrow(/region/);
    expect(() => createDynamoDbStore({ endpoint: "not a url", region: "us-east-1", table: "valid-name" })).toThrow(
      /endpoint/,
    );
  });
});
