import { DynamoDBClient, ListTablesCommand } from "@aws-sdk/client-dynamodb";

/**
 * One readiness probe: a real ListTables call with a short deadline. DynamoDB Local accepts connections before it
 * can answer, so only an answer counts. Resolves with the number of tables listed.
 */
export async function probeDynamoDb(endpoint: string, region = "us-east-1"): Promise<number> {
  const client = new DynamoDBClient({
    endpoint,
    region,
    // DynamoDB Local accepts any credentials; fixed ones keep the probe from searching the machine for real ones.
    credentials: { accessKeyId: "local", secretAccessKey: "local" },
    maxAttempts: 1,
  });
  try {
    const result = await client.send(new ListTablesCommand({ Limit: 1 }), { abortSignal: AbortSignal.timeout(3_000) });
    return result.TableNames?.length ?? 0;
  } finally {
    client.destroy();
  }
}
