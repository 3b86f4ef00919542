import { Duration } from "aws-cdk-lib";
import * as cloudwatch from "aws-cdk-lib/aws-cloudwatch";
import * as ecs from "aws-cdk-lib/aws-ecs";
import * as iam from "aws-cdk-lib/aws-iam";
import * as logs from "aws-cdk-lib/aws-logs";
import { type StackContext, use } from "sst/constructs";
import { SCHEDULER_URL } from "./Agents.js";
import { Control, grantPutMetrics, METRICS_NAMESPACE, topicNames } from "./Control.js";
import { configOf } from "./config.js";
import { Data, grantReplicaIdClaims } from "./Data.js";
import { containerImage } from "./images.js";
import { Network } from "./Network.js";
import { Streaming } from "./Streaming.js";

/** The CloudWatch metric the model gateway's scaling follows (published by packages/control's lag publisher). */
export const MODEL_GATEWAY_LAG_METRIC = "ModelGatewayLag";

/**
 * The model gateway: a Fargate service autoscaled on its consumers' lag, between TERN_MODELGATEWAY_MIN_TASKS and
 * KAFKA_PARTITIONS tasks — the consumers of one group never exceed the partition count, so a task beyond it would sit
 * idle (DESIGN §3).
 */
export function ModelGateway({ stack, app }: StackContext) {
  const config = configOf(app);
  const { privateSubnets, securityGroups } = use(Network);
  const { schedulerToken, table } = use(Data);
  const streaming = use(Streaming);
  const { cluster } = use(Control);
  const { modelTopicsPattern } = topicNames(config.TERN_TOPIC_PREFIX, config.TERN_NAMESPACE);

  const taskRole = new iam.Role(stack, "ModelGatewayTaskRole", {
    assumedBy: new iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
    description: "Tern model gateway: model topics, its bucket groups, the lag metric",
  });
  streaming.grantKafka(taskRole, {
    topics: [modelTopicsPattern],
    groups: [`tern.${config.TERN_NAMESPACE}.modelgateway.*`],
  });
  grantPutMetrics(taskRole);
  grantReplicaIdClaims(table, taskRole);

  const taskDefinition = new ecs.FargateTaskDefinition(stack, "ModelGatewayTask", {
    family: `${app.stage}-${app.name}-model-gateway`,
    cpu: 512,
    memoryLimitMiB: 1024,
    taskRole,
    runtimePlatform: {
      cpuArchitecture: ecs.CpuArchitecture.X86_64,
      operatingSystemFamily: ecs.OperatingSystemFamily.LINUX,
    },
  });
  taskDefinition.addContainer("model-gateway", {
    image: containerImage(config, "modelGateway"),
    essential: true,
    environment: {
      AWS_REGION: stack.region,
      LOG_LEVEL: config.LOG_LEVEL,
      TERN_STAGE: app.stage,
      TERN_TOPIC_PREFIX: config.TERN_TOPIC_PREFIX,
      TERN_NAMESPACE: config.TERN_NAMESPACE,
      TERN_SCHEDULER_URL: SCHEDULER_URL,
      TERN_TABLE: table.tableName,
      // Each task claims the lowest free modelgateway-<i>, i < KAFKA_PARTITIONS (docs/replica-ids.md).
      TERN_MODELGATEWAY_ID: "auto",
      // The lag the service scales on (Tern/ModelGatewayLag, dimension Stage = TERN_STAGE), published every 60 s.
      TERN_MODELGATEWAY_LAG_METRIC: "cloudwatch",
      ...streaming.kafkaEnv,
    },
    secrets: { TERN_SCHEDULER_TOKEN: ecs.Secret.fromSecretsManager(schedulerToken), ...streaming.kafkaSecrets },
    logging: ecs.LogDrivers.awsLogs({
      logGroup: new logs.LogGroup(stack, "ModelGatewayLogs", { retention: logs.RetentionDays.ONE_MONTH }),
      streamPrefix: "model-gateway",
    }),
    stopTimeout: Duration.seconds(30),
  });
  const service = new ecs.FargateService(stack, "ModelGatewayService", {
    cluster,
    serviceName: "model-gateway",
    taskDefinition,
    desiredCount: config.TERN_MODELGATEWAY_MIN_TASKS,
    minHealthyPercent: 100,
    maxHealthyPercent: 200,
    circuitBreaker: { rollback: true },
    vpcSubnets: { subnets: privateSubnets.subnets },
    securityGroups: [securityGroups.modelGateway],
    assignPublicIp: false,
  });

  const scaling = service.autoScaleTaskCount({
    minCapacity: config.TERN_MODELGATEWAY_MIN_TASKS,
    maxCapacity: config.KAFKA_PARTITIONS,
  });
  scaling.scaleToTrackCustomMetric("Lag", {
    metric: new cloudwatch.Metric({
      namespace: METRICS_NAMESPACE,
      metricName: MODEL_GATEWAY_LAG_METRIC,
      dimensionsMap: { Stage: app.stage },
      statistic: "Average",
      period: Duration.minutes(1),
    }),
    targetValue: config.TERN_MODELGATEWAY_LAG_TARGET,
    scaleOutCooldown: Duration.seconds(60),
    scaleInCooldown: Duration.minutes(5),
  });
  return { service };
}
