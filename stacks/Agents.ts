import { Duration } from "aws-cdk-lib";
import * as ecs from "aws-cdk-lib/aws-ecs";
import * as iam from "aws-cdk-lib/aws-iam";
import * as logs from "aws-cdk-lib/aws-logs";
import { type StackContext, use } from "sst/constructs";
import { configOf, PORTS } from "./config.js";
import { Data, grantReplicaIdClaims } from "./Data.js";
import { containerImage } from "./images.js";
import { Network } from "./Network.js";

/** Where every component in the VPC reaches the scheduler: the control service's Cloud Map name. */
export const SCHEDULER_NAMESPACE = "tern.local";
export const SCHEDULER_URL = `http://scheduler.${SCHEDULER_NAMESPACE}:${PORTS.scheduler}`;

/** Server types with a task definition; the controller makes one ECS service per Server from its type's. */
const SERVER_TYPES = {
  "tern-onnx": { image: "agentOnnx", cpu: 1024, memoryMiB: 2048, agentMemory: "1Gi", env: {} },
  mlserver: {
    image: "agentMlserver",
    cpu: 1024,
    memoryMiB: 4096,
    agentMemory: "2Gi",
    env: { TERN_MLSERVER_PYTHON: "/opt/mlserver/bin/python" },
  },
} as const;
export type ServerType = keyof typeof SERVER_TYPES;

/**
 * The agents' own ECS cluster and one task definition per server type — no services: the controller in the control
 * task creates, sizes and deletes one service per Server at run time. A cluster of their own lets the control task's
 * role touch agent services and nothing else.
 */
export function Agents({ stack, app }: StackContext) {
  const config = configOf(app);
  const { vpc } = use(Network);
  const { schedulerToken, table } = use(Data);
  const cluster = new ecs.Cluster(stack, "AgentsCluster", { vpc, clusterName: `${app.stage}-${app.name}-agents` });
  const taskRole = new iam.Role(stack, "AgentTaskRole", {
    assumedBy: new iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
    description: "Tern agents: read model artifacts from the configured buckets",
  });
  for (const bucket of config.TERN_ARTIFACT_BUCKETS ?? []) {
    taskRole.addToPolicy(
      new iam.PolicyStatement({
        actions: ["s3:GetObject", "s3:ListBucket"],
        resources: [`arn:aws:s3:::${bucket}`, `arn:aws:s3:::${bucket}/*`],
      }),
    );
  }
  grantReplicaIdClaims(table, taskRole);
  const executionRole = new iam.Role(stack, "AgentExecutionRole", {
    assumedBy: new iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
    managedPolicies: [iam.ManagedPolicy.fromAwsManagedPolicyName("service-role/AmazonECSTaskExecutionRolePolicy")],
  });
  const logGroup = new logs.LogGroup(stack, "AgentLogs", { retention: logs.RetentionDays.ONE_MONTH });

  const taskDefinitions = {} as Record<ServerType, ecs.FargateTaskDefinition>;
  for (const [serverType, spec] of Object.entries(SERVER_TYPES) as [ServerType, (typeof SERVER_TYPES)[ServerType]][]) {
    const td = new ecs.FargateTaskDefinition(stack, `Agent-${serverType}`, {
      family: `${app.stage}-${app.name}-agent-${serverType}`,
      cpu: spec.cpu,
      memoryLimitMiB: spec.memoryMiB,
      taskRole,
      executionRole,
      runtimePlatform: {
        cpuArchitecture: ecs.CpuArchitecture.X86_64,
        operatingSystemFamily: ecs.OperatingSystemFamily.LINUX,
      },
    });
    td.addContainer("agent", {
      image: containerImage(config, spec.image),
      essential: true,
      portMappings: [{ containerPort: PORTS.agentHttp }, { containerPort: PORTS.agentGrpc }],
      environment: {
        AWS_REGION: stack.region,
        LOG_LEVEL: config.LOG_LEVEL,
        TERN_AGENT_SERVER_TYPE: serverType,
        TERN_AGENT_HOST: "0.0.0.0",
        TERN_AGENT_HTTP_PORT: String(PORTS.agentHttp),
        TERN_AGENT_GRPC_PORT: String(PORTS.agentGrpc),
        TERN_AGENT_MEMORY: spec.agentMemory,
        TERN_AGENT_CACHE_DIR: "/tmp/tern-agent-cache",
        TERN_SCHEDULER_URL: SCHEDULER_URL,
        TERN_TABLE: table.tableName,
        // The tasks of a Server's service are identical: each claims its replica number and advertises its own task IP
        // (the ECS task metadata endpoint), docs/replica-ids.md.
        TERN_AGENT_REPLICA: "auto",
        TERN_AGENT_ADVERTISE_HOST: "ecs",
        ...spec.env,
      },
      secrets: { TERN_SCHEDULER_TOKEN: ecs.Secret.fromSecretsManager(schedulerToken) },
      logging: ecs.LogDrivers.awsLogs({ logGroup, streamPrefix: serverType }),
      // The agent drains on SIGTERM (its models move elsewhere first): give it longer than its drain bound.
      stopTimeout: Duration.seconds(30),
    });
    taskDefinitions[serverType] = td;
  }
  return { cluster, taskDefinitions, taskRole, executionRole };
}
