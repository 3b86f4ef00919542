import { DynamoDBClient, GetItemCommand } from "@aws-sdk/client-dynamodb";
import { type PipelineReplyItem, replyItemFromAttributes, replyItemKey } from "@tern/core";

/** Reads the reply item of a request once; undefined while the worker has not put it. */
export type ReplyReader = (requestId: string, signal: AbortSignal) => Promise<PipelineReplyItem | undefined>;

export interface DynamoDbClientOptions {
  region: string;
  /** DynamoDB Local; unset in AWS. */
  endpoint?: string;
}

/** One DynamoDB client for the Lambda entry's reads (routes and replies share its connections). */
export function createDynamoDbClient(options: DynamoDbClientOptions): DynamoDBClient {
  return new DynamoDBClient({
    region: options.region,
    ...(options.endpoint
      ? { endpoint: options.endpoint, credentials: { accessKeyId: "local", secretAccessKey: "local" } }
      : {}),
  });
}

/**
 * A reader of `reply#<requestId>` items (core's pipeline-replies.ts) with strongly consistent GetItem: an eventually
 * consistent read could miss an item put a moment ago and cost another poll round.
 */
export function createDynamoDbReplyReader(options: { client: DynamoDBClient; tableName: string }): ReplyReader {
  const { client, tableName } = options;
  return async (requestId, signal) => {
    const key = replyItemKey(requestId);
    const out = await client.send(
      new GetItemCommand({
        TableName: tableName,
        Key: { pk: { S: key.pk }, sk: { S: key.sk } },
        ConsistentRead: true,
      }),
      { abortSignal: signal },
    );
    return replyItemFromAttributes(out.Item);
  };
}
