import { RemovalPolicy } from "aws-cdk-lib";
import * as dynamodb from "aws-cdk-lib/aws-dynamodb";
import * as secretsmanager from "aws-cdk-lib/aws-secretsmanager";
import type { StackContext } from "sst/constructs";

/**
 * The state table: partition key `pk` (the collection), sort key `sk` (the id), TTL on `expiresAt` (epoch seconds)
 * for short-lived items such as pipeline replies. Same layout as `ensureTable` creates on DynamoDB Local.
 *
 * Also the control API's bearer token (TERN_SCHEDULER_TOKEN): the scheduler listens on the VPC, which needs one, and
 * every component that calls it gets the same generated secret.
 */
export function Data({ stack, app }: StackContext) {
  const removalPolicy = app.stage === "prod" ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY;
  const table = new dynamodb.TableV2(stack, "State", {
    tableName: `${app.stage}-${app.name}-state`,
    partitionKey: { name: "pk", type: dynamodb.AttributeType.STRING },
    sortKey: { name: "sk", type: dynamodb.AttributeType.STRING },
    billing: dynamodb.Billing.onDemand(),
    timeToLiveAttribute: "expiresAt",
    pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
    removalPolicy,
  });
  const schedulerToken = new secretsmanager.Secret(stack, "SchedulerToken", {
    description: "Bearer token of Tern's control API (TERN_SCHEDULER_TOKEN)",
    generateSecretString: { passwordLength: 48, excludePunctuation: true },
    removalPolicy,
  });
  stack.addOutputs({ StateTable: table.tableName });
  return { table, schedulerToken };
}
