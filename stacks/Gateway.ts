import * as apigwv2 from "aws-cdk-lib/aws-apigatewayv2";
import { HttpJwtAuthorizer } from "aws-cdk-lib/aws-apigatewayv2-authorizers";
import { HttpLambdaIntegration } from "aws-cdk-lib/aws-apigatewayv2-integrations";
import * as iam from "aws-cdk-lib/aws-iam";
import * as lambda from "aws-cdk-lib/aws-lambda";
import { Function as SstFunction, type StackContext, use } from "sst/constructs";
import { SCHEDULER_URL } from "./Agents.js";
import { topicNames } from "./Control.js";
import { configOf } from "./config.js";
import { Data } from "./Data.js";
import { Network } from "./Network.js";
import { Streaming } from "./Streaming.js";

/** The Lambda's timeout: above the gateway's own deadline (at most 28 s), below API Gateway's 30 s. */
const LAMBDA_TIMEOUT_S = 29;

/**
 * The HTTPS endpoint: an API Gateway HTTP API whose routes go to the `live` alias of the gateway Lambda (the same Hono
 * app as the Node gateway, packages/gateway/src/lambda.ts). Reserved concurrency caps the instances; provisioned
 * concurrency, where configured, follows utilisation by target tracking. Model routes go straight to agents in the
 * VPC; pipeline routes produce to Kafka and read the reply item from the table.
 */
export function Gateway({ stack, app }: StackContext) {
  const config = configOf(app);
  const { vpc, privateSubnets, securityGroups } = use(Network);
  const { table, schedulerToken } = use(Data);
  const streaming = use(Streaming);

  const role = new iam.Role(stack, "GatewayLambdaRole", {
    assumedBy: new iam.ServicePrincipal("lambda.amazonaws.com"),
    description: "Tern gateway Lambda: reads the route item and reply items, produces pipeline requests",
    managedPolicies: [iam.ManagedPolicy.fromAwsManagedPolicyName("service-role/AWSLambdaVPCAccessExecutionRole")],
  });
  // Reads only, and only the route table item (pk "routes") and pipeline replies (pk "reply#<id>"): scheduler items
  // stay out of reach, and nothing in the table can be written from the public edge.
  role.addToPolicy(
    new iam.PolicyStatement({
      sid: "ReadRoutesAndReplies",
      actions: ["dynamodb:GetItem", "dynamodb:Query"],
      resources: [table.tableArn],
      conditions: { "ForAllValues:StringLike": { "dynamodb:LeadingKeys": ["routes", "reply#*"] } },
    }),
  );
  streaming.grantKafka(role, {
    topics: [topicNames(config.TERN_TOPIC_PREFIX, config.TERN_NAMESPACE).pipelineInputsPattern],
    groups: [],
    writeOnly: true,
  });

  const fn = new SstFunction(stack, "GatewayFunction", {
    handler: "packages/gateway/src/lambda.handler",
    runtime: "nodejs22.x",
    architecture: "arm_64",
    memorySize: config.TERN_LAMBDA_MEMORY_MB,
    timeout: LAMBDA_TIMEOUT_S,
    role,
    vpc,
    vpcSubnets: { subnets: privateSubnets.subnets },
    securityGroups: [securityGroups.lambda],
    reservedConcurrentExecutions: config.TERN_LAMBDA_RESERVED_CONCURRENCY,
    environment: {
      LOG_LEVEL: config.LOG_LEVEL,
      TERN_TABLE: table.tableName,
      TERN_TOPIC_PREFIX: config.TERN_TOPIC_PREFIX,
      TERN_NAMESPACE: config.TERN_NAMESPACE,
      TERN_SCHEDULER_URL: SCHEDULER_URL,
      // Resolved by CloudFormation at deploy (a dynamic reference): the Lambda configuration holds the value.
      TERN_SCHEDULER_TOKEN: schedulerToken.secretValue.unsafeUnwrap(),
      TERN_GATEWAY_DEADLINE_MS: String(config.TERN_GATEWAY_DEADLINE_MS),
      TERN_GATEWAY_BODY_LIMIT_BYTES: String(config.TERN_GATEWAY_BODY_LIMIT_BYTES),
      ...(config.TERN_GATEWAY_PIPELINE_TIMEOUT_MS === undefined
        ? {}
        : { TERN_GATEWAY_PIPELINE_TIMEOUT_MS: String(config.TERN_GATEWAY_PIPELINE_TIMEOUT_MS) }),
      ...(config.TERN_AUTH === "api-key"
        ? { TERN_GATEWAY_API_KEY_SHA256: config.TERN_GATEWAY_API_KEY_SHA256!.join(",") }
        : {}),
      ...streaming.kafkaEnv,
      ...streaming.lambdaKafkaEnv,
    },
  });

  const provisioned = config.TERN_LAMBDA_PROVISIONED_MAX > 0;
  const alias = new lambda.Alias(stack, "GatewayAlias", {
    aliasName: "live",
    version: fn.currentVersion,
    ...(provisioned ? { provisionedConcurrentExecutions: config.TERN_LAMBDA_PROVISIONED_MIN } : {}),
  });
  if (provisioned) {
    alias
      .addAutoScaling({
        minCapacity: config.TERN_LAMBDA_PROVISIONED_MIN,
        maxCapacity: config.TERN_LAMBDA_PROVISIONED_MAX,
      })
      .scaleOnUtilization({ utilizationTarget: config.TERN_LAMBDA_PROVISIONED_UTILIZATION });
  }

  const authorizer =
    config.TERN_AUTH === "jwt"
      ? new HttpJwtAuthorizer("Jwt", config.TERN_JWT_ISSUER!, { jwtAudience: config.TERN_JWT_AUDIENCE! })
      : undefined;
  const api = new apigwv2.HttpApi(stack, "Api", {
    apiName: `${app.stage}-${app.name}`,
    description: "Tern inference endpoint (Open Inference Protocol, REST)",
    ...(authorizer ? { defaultAuthorizer: authorizer } : {}),
  });
  const integration = new HttpLambdaIntegration("Gateway", alias);
  // `/v2` (server metadata) and everything under it; nothing else of the app (e.g. /metrics) is exposed.
  for (const path of ["/v2", "/v2/{proxy+}"]) {
    api.addRoutes({ path, methods: [apigwv2.HttpMethod.ANY], integration });
  }
  stack.addOutputs({ ApiEndpoint: api.apiEndpoint, GatewayFunction: fn.functionName });
  return { api, fn, alias, role };
}
