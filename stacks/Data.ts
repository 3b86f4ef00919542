import { RemovalPolicy } from "aws-cdk-lib";
import * as dynamodb from "aws-cdk-lib/aws-dynamodb";
import type { StackContext } from "sst/constructs";

/**
 * The state table: partition key `pk` (the collection), sort key `sk` (the id), TTL on `expiresAt` (epoch seconds)
 * for short-lived items such as pipeline replies. Same layout as `ensureTable` creates on DynamoDB Local.
 */
export function Data({ stack, app }: StackContext) {
  const table = new dynamodb.TableV2(stack, "State", {
    tableName: `${app.stage}-${app.name}-state`,
    partitionKey: { name: "pk", type: dynamodb.AttributeType.STRING },
    sortKey: { name: "sk", type: dynamodb.AttributeType.STRING },
    billing: dynamodb.Billing.onDemand(),
    timeToLiveAttribute: "expiresAt",
    pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
    removalPolicy: app.stage === "prod" ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY,
  });
  stack.addOutputs({ StateTable: table.tableName });
  return { table };
}
