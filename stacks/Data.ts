import { RemovalPolicy } from "aws-cdk-lib";
import * as dynamodb from "aws-cdk-lib/aws-dynamodb";
import * as iam from "aws-cdk-lib/aws-iam";
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

/**
 * Lets a role claim a replica id (packages/core/src/replica-index.ts): model gateways, agents and dataflow workers
 * started with `auto` ids take a lease item (pk `lease`, sk `replica-id:<kind>:<index>`) with conditional UpdateItems.
 * IAM can only scope the partition key, so the role can write lease items and nothing else in the table.
 */
export function grantReplicaIdClaims(table: dynamodb.ITableV2, role: iam.IRole): void {
  role.addToPrincipalPolicy(
    new iam.PolicyStatement({
      sid: "ClaimReplicaIds",
      actions: ["dynamodb:UpdateItem"],
      resources: [table.tableArn],
      conditions: { "ForAllValues:StringEquals": { "dynamodb:LeadingKeys": ["lease"] } },
    }),
  );
}
