import {
  CreateClusterCommand,
  DescribeServicesCommand,
  DescribeTaskDefinitionCommand,
  ECSClient,
  RegisterTaskDefinitionCommand,
} from "@aws-sdk/client-ecs";
import {
  createControlClient,
  createEcsController,
  type EcsController,
  type EcsSettings,
  loadControlConfig,
} from "@tern/control";
import { waitFor } from "@tern/devstack";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Emulator, startMoto } from "../helpers/emulators.js";
import { serverManifest } from "../helpers/manifests.js";
import { runPython } from "../helpers/python.js";
import { dynamodbEndpoint } from "../helpers/services.js";
import {
  applyManifest,
  type SchedulerProcess,
  startSchedulerProcess,
  waitActive,
} from "../scheduler/scheduler-process.js";

// The ECS adapter of the controller against moto server's ECS and a real scheduler on DynamoDB Local: a Server
// applied to the scheduler becomes an ECS service whose desired count follows the Server's replicas, and goes away
// with the Server.

const REGION = "us-east-1";
const credentials = { accessKeyId: "testing", secretAccessKey: "testing" };
const suffix = `${Date.now().toString(36)}${process.pid}`;
const stage = `t${suffix}`;
const cluster = `tern-${suffix}`;
const server = `onnx-${suffix}`;
const service = `tern-${stage}-${server}`;

/** moto checks that a service's subnets and security groups exist: a VPC with one of each, made with moto's boto3. */
const SEED_NETWORK = `
import json, sys, boto3
cfg = json.load(sys.stdin)
ec2 = boto3.client("ec2", endpoint_url=cfg["endpoint"], region_name="${REGION}", aws_access_key_id="testing", aws_secret_access_key="testing")
vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
sg = ec2.create_security_group(GroupName="tern-agents", Description="agents", VpcId=vpc)["GroupId"]
print(json.dumps({"subnet": subnet, "securityGroup": sg}))
`;

describe("ECS controller (moto server, real scheduler)", () => {
  let moto: Emulator & { python: string };
  let network: { subnet: string; securityGroup: string };
  let scheduler: SchedulerProcess;
  let ecs: ECSClient;
  let controller: EcsController | undefined;
  const logs: string[] = [];

  function settings(overrides: Partial<EcsSettings> = {}): EcsSettings {
    return {
      stage,
      region: REGION,
      cluster,
      subnets: [network.subnet],
      securityGroups: [network.securityGroup],
      taskDefinitions: { "tern-onnx": "tern-agent-onnx" },
      agentContainer: "agent",
      schedulerUrl: "http://scheduler.tern.internal:9004",
      assignPublicIp: false,
      endpoint: moto.url,
      resyncMs: 1_000,
      ...overrides,
    };
  }

  async function describeService(name = service): Promise<{
    status?: string;
    desiredCount?: number;
    taskDefinition?: string;
    deploymentConfiguration?: { minimumHealthyPercent?: number; maximumPercent?: number };
  }> {
    const out = await ecs.send(new DescribeServicesCommand({ cluster, services: [name] }));
    return out.services?.[0] ?? {};
  }

  beforeAll(async () => {
    moto = await startMoto();
    network = JSON.parse(await runPython(moto.python, ["-c", SEED_NETWORK], JSON.stringify({ endpoint: moto.url })));
    ecs = new ECSClient({ region: REGION, endpoint: moto.url, credentials });
    await ecs.send(new CreateClusterCommand({ clusterName: cluster }));
    await ecs.send(
      new RegisterTaskDefinitionCommand({
        family: "tern-agent-onnx",
        networkMode: "awsvpc",
        requiresCompatibilities: ["FARGATE"],
        cpu: "512",
        memory: "1024",
        containerDefinitions: [
          {
            name: "agent",
            image: "tern-agent:test",
            environment: [{ name: "LOG_LEVEL", value: "info" }],
          },
        ],
      }),
    );
    scheduler = await startSchedulerProcess({
      id: `ecs-${suffix}`,
      dynamodbEndpoint: dynamodbEndpoint(),
      table: `tern-ecs-${suffix}`,
      env: { TERN_SCHEDULER_ENSURE_TABLE: "true" },
    });
    await waitActive(scheduler.url);
  });

  afterAll(async () => {
    await controller?.stop();
    ecs?.destroy();
    await scheduler?.kill("SIGTERM");
    await moto?.stop();
  });

  it("creates the Server's service with its replicas, follows a change of replicas, and deletes it with the Server", async () => {
    controller = createEcsController({
      settings: settings(),
      client: createControlClient({ url: scheduler.url }),
      logger: { info: (m) => logs.push(m), warn: (m) => logs.push(m) },
      credentials,
      retryMs: 200,
    });
    try {
      controller.start();
      expect((await applyManifest(scheduler.url, serverManifest(server, 2))).status).toBe(200);

      await waitFor(async () => (await describeService()).desiredCount === 2, {
        timeoutMs: 20_000,
        description: `service ${service} with desired count 2\n${logs.join("\n")}`,
      });
      // Its task definition is the base's, with the variables that make its tasks register as this Server.
      const created = await describeService();
      expect(created.status).toBe("ACTIVE");
      const { taskDefinition } = await ecs.send(
        new DescribeTaskDefinitionCommand({ taskDefinition: created.taskDefinition }),
      );
      const env = Object.fromEntries(
        (taskDefinition?.containerDefinitions?.[0]?.environment ?? []).map((e) => [e.name, e.value]),
      );
      expect(env).toMatchObject({
        LOG_LEVEL: "info",
        TERN_AGENT_SERVER: server,
        TERN_AGENT_SERVER_TYPE: "tern-onnx",
        TERN_AGENT_CAPABILITIES: "onnx",
        TERN_SCHEDULER_URL: "http://scheduler.tern.internal:9004",
      });
      expect(taskDefinition?.family).toBe(service);

      expect((await applyManifest(scheduler.url, serverManifest(server, 3))).status).toBe(200);
      await waitFor(async () => (await describeService()).desiredCount === 3, {
        timeoutMs: 20_000,
        description: `service ${service} with desired count 3\n${logs.join("\n")}`,
      });
      // A change of replicas alone registers no new revision (the agents are not rolled).
      expect((await describeService()).taskDefinition).toBe(created.taskDefinition);

      const deleted = await fetch(`${scheduler.url}/v1/servers/${server}`, {
        method: "DELETE",
        signal: AbortSignal.timeout(5000),
      });
      expect(deleted.status).toBe(200);
      await waitFor(
        async () => {
          const s = await describeService();
          return s.status === undefined || s.status === "INACTIVE" || s.status === "DRAINING";
        },
        { timeoutMs: 30_000, description: `service ${service} deleted\n${logs.join("\n")}` },
      );
      expect(logs.some((l) => l.includes(`deleted service ${service}`))).toBe(true);
    } finally {
      // Stopped here, not only in afterAll: a controller left running would act on the next test's Server.
      await controller.stop();
    }
  });

  it("applies each Server's deploymentStrategy as its service's deploymentConfiguration, follows a change of it without a new revision, and keeps the revision across a controller restart", async () => {
    const strategyManifest = (name: string, replicas: number, strategy: string) => `apiVersion: mlops.seldon.io/v1alpha1
kind: Server
metadata: {name: ${name}}
spec: {serverConfig: tern-onnx, replicas: ${replicas}${strategy === "" ? "" : `, deploymentStrategy: ${strategy}`}}
`;
    const recreate = `recreate-${suffix}`;
    const rolling = `rolling-${suffix}`;
    const plain = `plain-${suffix}`;
    const svc = (name: string) => `tern-${stage}-${name}`;
    const start = () => {
      const c = createEcsController({
        settings: settings(),
        client: createControlClient({ url: scheduler.url }),
        logger: { info: (m) => logs.push(m), warn: (m) => logs.push(m) },
        credentials,
        retryMs: 200,
      });
      c.start();
      return c;
    };
    const configOf = async (name: string) => {
      const { minimumHealthyPercent, maximumPercent } =
        (await describeService(svc(name))).deploymentConfiguration ?? {};
      return { minimumHealthyPercent, maximumPercent };
    };
    const waitConfig = (name: string, wanted: { minimumHealthyPercent: number; maximumPercent: number }) =>
      waitFor(async () => JSON.stringify(await configOf(name)) === JSON.stringify(wanted), {
        timeoutMs: 20_000,
        description: `service ${svc(name)} with deploymentConfiguration ${JSON.stringify(wanted)}\n${logs.join("\n")}`,
      });

    let first: EcsController | undefined = start();
    let second: EcsController | undefined;
    try {
      const applied = await applyManifest(
        scheduler.url,
        [
          strategyManifest(recreate, 2, "{type: Recreate}"),
          strategyManifest(rolling, 4, "{type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}"),
          strategyManifest(plain, 1, ""),
        ].join("---\n"),
      );
      expect(applied.status).toBe(200);
      // moto 5.2.5 keeps a deploymentConfiguration given to UpdateService but drops CreateService's: against it the
      // controller's next pass finds the configuration missing and sets it with an UpdateService (as it would on a
      // service made before its Server had a strategy). That CreateService carried it already, its log line says.
      await waitConfig(recreate, { minimumHealthyPercent: 0, maximumPercent: 100 });
      expect(logs).toContain(`ECS controller: created service ${svc(recreate)} (desired count 2, deployment 0-100%)`);
      // One task of four may be added (125% rounds down to 5 tasks), none may be missing.
      await waitConfig(rolling, { minimumHealthyPercent: 100, maximumPercent: 125 });
      await waitConfig(plain, { minimumHealthyPercent: 100, maximumPercent: 200 });
      expect((await describeService(svc(rolling))).desiredCount).toBe(4);
      const rollingRevision = (await describeService(svc(rolling))).taskDefinition;
      expect(rollingRevision).toBeDefined();

      // A change of the strategy alone reaches the service, and registers no new revision (nothing to roll).
      expect(
        (await applyManifest(scheduler.url, strategyManifest(rolling, 4, "{rollingUpdate: {maxUnavailable: 50%}}")))
          .status,
      ).toBe(200);
      await waitConfig(rolling, { minimumHealthyPercent: 50, maximumPercent: 125 });
      expect((await describeService(svc(rolling))).taskDefinition).toBe(rollingRevision);

      // A new controller (the control task replaced) scaling a Server moves its service to no new revision either.
      await first.stop();
      first = undefined;
      const plainRevision = (await describeService(svc(plain))).taskDefinition;
      second = start();
      expect((await applyManifest(scheduler.url, strategyManifest(plain, 2, ""))).status).toBe(200);
      await waitFor(async () => (await describeService(svc(plain))).desiredCount === 2, {
        timeoutMs: 20_000,
        description: `service ${svc(plain)} with desired count 2\n${logs.join("\n")}`,
      });
      expect((await describeService(svc(plain))).taskDefinition).toBe(plainRevision);
    } finally {
      await first?.stop();
      await second?.stop();
    }
  });

  it("reports a task definition ECS does not know, naming the variable, and keeps the Server's service absent", async () => {
    const other = `bad-${suffix}`;
    const bad = createEcsController({
      settings: settings({ taskDefinitions: { "tern-onnx": "no-such-family" } }),
      client: createControlClient({ url: scheduler.url }),
      logger: { info: () => undefined, warn: () => undefined },
      credentials,
      retryMs: 200,
    });
    try {
      bad.start();
      expect((await applyManifest(scheduler.url, serverManifest(other, 1))).status).toBe(200);
      const failed = await waitFor(() => bad.services().find((s) => s.server === other && s.state === "failed"), {
        timeoutMs: 20_000,
        description: "the failed service in the controller's status",
      });
      expect(failed.reason).toContain("TERN_ECS_TASK_DEFINITION_TERN_ONNX");
      expect(failed.reason).toContain("no-such-family");
      const out = await ecs.send(new DescribeServicesCommand({ cluster, services: [`tern-${stage}-${other}`] }));
      expect(out.services?.filter((s) => s.status === "ACTIVE") ?? []).toEqual([]);
    } finally {
      await bad.stop();
    }
  });

  it("refuses to start with a missing or bad variable, naming it", () => {
    expect(() => loadControlConfig({ TERN_CONTROLLER: "ecs" })).toThrow(/TERN_ECS_CLUSTER: required/);
    expect(() =>
      loadControlConfig({
        TERN_CONTROLLER: "ecs",
        TERN_ECS_CLUSTER: cluster,
        TERN_ECS_SUBNETS: "subnet-1",
        TERN_ECS_SECURITY_GROUPS: "sg-1",
      }),
    ).toThrow(/TERN_ECS_TASK_DEFINITION_TERN_ONNX: required/);
    expect(() => loadControlConfig({ TERN_CONTROLLER: "kubernetes" })).toThrow(/TERN_CONTROLLER/);
  });
});
