import { Duration, Stack } from "aws-cdk-lib";
import * as ecs from "aws-cdk-lib/aws-ecs";
import * as iam from "aws-cdk-lib/aws-iam";
import * as logs from "aws-cdk-lib/aws-logs";
import * as servicediscovery from "aws-cdk-lib/aws-servicediscovery";
import { type StackContext, use } from "sst/constructs";
import { Agents, SCHEDULER_NAMESPACE, SCHEDULER_URL } from "./Agents.js";
import { configOf, PORTS } from "./config.js";
import { Data } from "./Data.js";
import { containerImage } from "./images.js";
import { Network } from "./Network.js";
import { Streaming } from "./Streaming.js";

/** The namespace CloudWatch metrics of Tern go to; the model gateway's lag is `ModelGatewayLag` with a `Stage` dimension. */
export const METRICS_NAMESPACE = "Tern";

/**
 * The long-lived container: one Fargate task running the scheduler, TERN_DATAFLOW_WORKERS dataflow workers and the ECS
 * controller under a supervisor (packages/control). A deployment starts the new task before it stops the old one
 * (min healthy 100 %, max 200 %): the scheduler lease keeps one scheduler active and hands over when the old task
 * releases it on SIGTERM, and both tasks' dataflow workers share the pipelines meanwhile. The task registers in Cloud
 * Map as `scheduler.tern.local`, which agents, model gateways and the gateway Lambda call.
 */
export function Control({ stack, app }: StackContext) {
  const config = configOf(app);
  const { vpc, privateSubnets, securityGroups } = use(Network);
  const { table, schedulerToken } = use(Data);
  const streaming = use(Streaming);
  const agents = use(Agents);

  const cluster = new ecs.Cluster(stack, "Cluster", { vpc, clusterName: `${app.stage}-${app.name}` });
  const namespace = new servicediscovery.PrivateDnsNamespace(stack, "Namespace", { vpc, name: SCHEDULER_NAMESPACE });
  const logGroup = new logs.LogGroup(stack, "ControlLogs", { retention: logs.RetentionDays.ONE_MONTH });
  const { topicsPattern } = topicNames(config.TERN_TOPIC_PREFIX, config.TERN_NAMESPACE);

  const shared = {
    AWS_REGION: stack.region,
    LOG_LEVEL: config.LOG_LEVEL,
    TERN_STAGE: app.stage,
    TERN_TABLE: table.tableName,
    TERN_TOPIC_PREFIX: config.TERN_TOPIC_PREFIX,
    TERN_NAMESPACE: config.TERN_NAMESPACE,
    TERN_SCHEDULER_URL: SCHEDULER_URL,
    TERN_DATAFLOW_WORKERS: String(config.TERN_DATAFLOW_WORKERS),
    // The old and new control task run side by side during a deploy (and extra worker tasks beside them): each worker
    // claims its id instead of every task naming its workers dataflow-0 … (docs/control.md).
    TERN_CONTROL_WORKER_IDS: "auto",
    ...streaming.kafkaEnv,
  };
  const secrets = {
    TERN_SCHEDULER_TOKEN: ecs.Secret.fromSecretsManager(schedulerToken),
    ...streaming.kafkaSecrets,
  };

  const taskRole = new iam.Role(stack, "ControlTaskRole", {
    assumedBy: new iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
    description: "Tern control task: the state table, Kafka topics, agent services and the lag metric",
  });
  table.grantReadWriteData(taskRole);
  streaming.grantKafka(taskRole, { topics: [topicsPattern], groups: ["*"], admin: true });
  grantPutMetrics(taskRole);
  const { region, account } = Stack.of(stack);
  taskRole.addToPolicy(
    new iam.PolicyStatement({
      sid: "AgentServicesOnly",
      actions: ["ecs:CreateService", "ecs:UpdateService", "ecs:DeleteService", "ecs:DescribeServices"],
      resources: [`arn:aws:ecs:${region}:${account}:service/${agents.cluster.clusterName}/*`],
    }),
  );
  // The ECS controller (packages/control/src/ecs-controller.ts) lists the agent cluster's services, registers one task
  // definition per Server (family tern-<stage>-<server>, from the server type's base, which it describes) and tags
  // what it creates with the stage. List/Describe/RegisterTaskDefinition have no resource-level permissions.
  taskRole.addToPolicy(
    new iam.PolicyStatement({
      sid: "ListAgentServices",
      actions: ["ecs:ListServices"],
      resources: ["*"],
      conditions: { ArnEquals: { "ecs:cluster": agents.cluster.clusterArn } },
    }),
  );
  taskRole.addToPolicy(
    new iam.PolicyStatement({
      sid: "AgentTaskDefinitions",
      actions: ["ecs:DescribeTaskDefinition", "ecs:RegisterTaskDefinition"],
      resources: ["*"],
    }),
  );
  taskRole.addToPolicy(
    new iam.PolicyStatement({
      sid: "TagAgentResources",
      actions: ["ecs:TagResource"],
      resources: [
        `arn:aws:ecs:${region}:${account}:service/${agents.cluster.clusterName}/*`,
        `arn:aws:ecs:${region}:${account}:task-definition/tern-${app.stage}-*:*`,
      ],
    }),
  );
  taskRole.addToPolicy(
    new iam.PolicyStatement({
      sid: "PassAgentRoles",
      actions: ["iam:PassRole"],
      resources: [agents.taskRole.roleArn, agents.executionRole.roleArn],
      conditions: { StringEquals: { "iam:PassedToService": "ecs-tasks.amazonaws.com" } },
    }),
  );

  const taskDefinition = new ecs.FargateTaskDefinition(stack, "ControlTask", {
    family: `${app.stage}-${app.name}-control`,
    cpu: 1024,
    memoryLimitMiB: 2048,
    taskRole,
    runtimePlatform: {
      cpuArchitecture: ecs.CpuArchitecture.X86_64,
      operatingSystemFamily: ecs.OperatingSystemFamily.LINUX,
    },
  });
  taskDefinition.addContainer("control", {
    image: containerImage(config, "control"),
    essential: true,
    portMappings: [{ containerPort: PORTS.scheduler }],
    environment: {
      ...shared,
      TERN_SCHEDULER_HOST: "0.0.0.0",
      TERN_SCHEDULER_PORT: String(PORTS.scheduler),
      // The stack owns the table; the scheduler must not try to create it.
      TERN_SCHEDULER_ENSURE_TABLE: "false",
      TERN_ECS_CLUSTER: agents.cluster.clusterName,
      TERN_ECS_TASK_DEFINITION_TERN_ONNX: agents.taskDefinitions["tern-onnx"].taskDefinitionArn,
      TERN_ECS_TASK_DEFINITION_MLSERVER: agents.taskDefinitions.mlserver.taskDefinitionArn,
      TERN_ECS_SUBNETS: privateSubnets.subnetIds.join(","),
      TERN_ECS_SECURITY_GROUPS: securityGroups.agents.securityGroupId,
    },
    secrets,
    logging: ecs.LogDrivers.awsLogs({ logGroup, streamPrefix: "control" }),
    // SIGTERM drains the workers and releases the lease; Fargate allows at most 120 s.
    stopTimeout: Duration.seconds(60),
  });
  const service = new ecs.FargateService(stack, "ControlService", {
    cluster,
    serviceName: "control",
    taskDefinition,
    desiredCount: 1,
    minHealthyPercent: 100,
    maxHealthyPercent: 200,
    circuitBreaker: { rollback: true },
    vpcSubnets: { subnets: privateSubnets.subnets },
    securityGroups: [securityGroups.control],
    assignPublicIp: false,
    cloudMapOptions: {
      cloudMapNamespace: namespace,
      name: "scheduler",
      dnsRecordType: servicediscovery.DnsRecordType.A,
      dnsTtl: Duration.seconds(10),
    },
  });

  let workersService: ecs.FargateService | undefined;
  if (config.TERN_DATAFLOW_EXTRA_TASKS > 0) {
    const workersRole = new iam.Role(stack, "DataflowTaskRole", {
      assumedBy: new iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
      description: "Tern extra dataflow workers: the state table (pipeline replies) and Kafka topics",
    });
    table.grantReadWriteData(workersRole);
    streaming.grantKafka(workersRole, { topics: [topicsPattern], groups: ["*"] });
    const workersTask = new ecs.FargateTaskDefinition(stack, "DataflowTask", {
      family: `${app.stage}-${app.name}-dataflow`,
      cpu: 1024,
      memoryLimitMiB: 2048,
      taskRole: workersRole,
      runtimePlatform: {
        cpuArchitecture: ecs.CpuArchitecture.X86_64,
        operatingSystemFamily: ecs.OperatingSystemFamily.LINUX,
      },
    });
    workersTask.addContainer("dataflow", {
      image: containerImage(config, "control"),
      essential: true,
      // The same supervisor without the scheduler and the controller: only dataflow workers.
      environment: { ...shared, TERN_CONTROL_SCHEDULER: "false", TERN_CONTROLLER: "none" },
      secrets,
      logging: ecs.LogDrivers.awsLogs({ logGroup, streamPrefix: "dataflow" }),
      stopTimeout: Duration.seconds(60),
    });
    workersService = new ecs.FargateService(stack, "DataflowService", {
      cluster,
      serviceName: "dataflow",
      taskDefinition: workersTask,
      desiredCount: config.TERN_DATAFLOW_EXTRA_TASKS,
      minHealthyPercent: 100,
      maxHealthyPercent: 200,
      circuitBreaker: { rollback: true },
      vpcSubnets: { subnets: privateSubnets.subnets },
      securityGroups: [securityGroups.control],
      assignPublicIp: false,
    });
  }

  stack.addOutputs({
    Cluster: cluster.clusterName,
    AgentsCluster: agents.cluster.clusterName,
    SchedulerUrl: SCHEDULER_URL,
  });
  return { cluster, namespace, service, workersService };
}

/** Topic name patterns for IAM (DESIGN §3: `<prefix>.<namespace>.model.<m>.inputs`, ...). */
export function topicNames(prefix: string, namespace: string) {
  return {
    topicsPattern: `${prefix}.${namespace}.*`,
    modelTopicsPattern: `${prefix}.${namespace}.model.*`,
    pipelineInputsPattern: `${prefix}.${namespace}.pipeline.*.inputs`,
  };
}

/** PutMetricData cannot be limited by resource, only by namespace. */
export function grantPutMetrics(role: iam.IRole): void {
  role.addToPrincipalPolicy(
    new iam.PolicyStatement({
      actions: ["cloudwatch:PutMetricData"],
      resources: ["*"],
      conditions: { StringEquals: { "cloudwatch:namespace": METRICS_NAMESPACE } },
    }),
  );
}
