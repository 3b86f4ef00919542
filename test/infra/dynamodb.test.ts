import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  ConditionalCheckFailedException,
  CreateTableCommand,
  DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
} from "@aws-sdk/client-dynamodb";
import { findFreePort, isProcessAlive, startDynamoDbLocal } from "@tern/devstack";
import { afterEach, describe, expect, inject, it } from "vitest";

const region = inject("awsRegion");

function client(endpoint: string): DynamoDBClient {
  const c = new DynamoDBClient({
    endpoint,
    region,
    credentials: { accessKeyId: "local", secretAccessKey: "local" },
  });
  closers.push(async () => c.destroy());
  return c;
}

function uniqueTable(label: string): string {
  return `tern-it-${label}-${randomUUID().slice(0, 8)}`;
}

async function createTable(db: DynamoDBClient, name: string): Promise<void> {
  await db.send(
    new CreateTableCommand({
      TableName: name,
      BillingMode: "PAY_PER_REQUEST",
      AttributeDefinitions: [{ AttributeName: "pk", AttributeType: "S" }],
      KeySchema: [{ AttributeName: "pk", KeyType: "HASH" }],
    }),
  );
}

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  // Newest first: clients before the instances they talk to.
  for (const close of closers.splice(0).reverse()) await close().catch(() => undefined);
});

describe("DynamoDB Local", () => {
  it("applies a conditional put once and rejects the second with ConditionalCheckFailedException", async () => {
    const db = client(inject("dynamodbEndpoint"));
    const table = uniqueTable("conditional");
    await createTable(db, table);

    const putIfAbsent = (owner: string) =>
      db.send(
        new PutItemCommand({
          TableName: table,
          Item: { pk: { S: "lease" }, owner: { S: owner } },
          ConditionExpression: "attribute_not_exists(pk)",
        }),
      );

    await expect(putIfAbsent("first")).resolves.toBeDefined();
    const error = await putIfAbsent("second").then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(ConditionalCheckFailedException);
    expect((error as Error).name).toBe("ConditionalCheckFailedException");

    const { Item } = await db.send(new GetItemCommand({ TableName: table, Key: { pk: { S: "lease" } } }));
    expect(Item?.owner?.S).toBe("first");
  });

  it("keeps tables and items across a restart on the same dbPath", async () => {
    const dbPath = mkdtempSync(join(tmpdir(), "tern-it-ddb-"));
    closers.push(async () => rmSync(dbPath, { recursive: true, force: true }));
    const port = await findFreePort();
    const table = uniqueTable("restart");
    const value = randomUUID();

    const first = await startDynamoDbLocal({ port, dbPath });
    closers.push(() => first.stop());
    const before = client(first.endpoint);
    await createTable(before, table);
    await before.send(new PutItemCommand({ TableName: table, Item: { pk: { S: "k" }, value: { S: value } } }));
    before.destroy();
    await first.stop();
    expect(isProcessAlive(first.pid)).toBe(false);

    const second = await startDynamoDbLocal({ port, dbPath });
    closers.push(() => second.stop());
    expect(second.pid).not.toBe(first.pid);
    const after = client(second.endpoint);
    const { Item } = await after.send(new GetItemCommand({ TableName: table, Key: { pk: { S: "k" } } }));
    expect(Item?.value?.S).toBe(value);
  });
});
