import { beforeAll, describe, expect, it } from "vitest";
import { Agents } from "../Agents.js";
import { Control } from "../Control.js";
import { synthesize } from "./synth.js";

type Template = ReturnType<Awaited<ReturnType<typeof synthesize>>>;
/** A resource as the assertions library returns it (CloudFormation JSON). */
type Resource = ReturnType<Template["findResources"]>[string];

function only(template: Template, type: string, props: Record<string, unknown> = {}): [string, Resource] {
  const found = Object.entries(template.findResources(type, { Properties: props })) as [string, Resource][];
  expect(found, `${type} matching ${JSON.stringify(props)}`).toHaveLength(1);
  return found[0]!;
}

describe("Control stack", () => {
  let control: Template;
  let agents: Template;
  beforeAll(async () => {
    const templateOf = await synthesize({ TERN_DATAFLOW_WORKERS: "3" });
    control = templateOf(Control);
    agents = templateOf(Agents);
  }, 60_000);

  it("runs exactly one control task and starts the new one before stopping the old on deploy", () => {
    const [, service] = only(control, "AWS::ECS::Service", { ServiceName: "control" });
    expect(service.Properties.DesiredCount).toBe(1);
    expect(service.Properties.DeploymentConfiguration).toMatchObject({
      MinimumHealthyPercent: 100,
      MaximumPercent: 200,
    });
    expect(service.Properties.LaunchType).toBe("FARGATE");
    expect(service.Properties.NetworkConfiguration.AwsvpcConfiguration.AssignPublicIp).toBe("DISABLED");
    // Registered in Cloud Map as scheduler.tern.local, the URL every other part is given.
    expect(service.Properties.ServiceRegistries).toHaveLength(1);
    only(control, "AWS::ServiceDiscovery::Service", { Name: "scheduler" });
    only(control, "AWS::ServiceDiscovery::PrivateDnsNamespace", { Name: "tern.local" });
  });

  it("runs packages/control's entry with the workers, the agents' task definitions, subnets and security groups", () => {
    const [, task] = only(control, "AWS::ECS::TaskDefinition", { Family: "test-tern-control" });
    const container = task.Properties.ContainerDefinitions[0];
    const env = Object.fromEntries(
      container.Environment.map((e: { Name: string; Value: unknown }) => [e.Name, e.Value]),
    );
    expect(env.TERN_DATAFLOW_WORKERS).toBe("3");
    // The old and new task overlap on deploy: their workers claim ids rather than both being dataflow-0 … 2.
    expect(env.TERN_CONTROL_WORKER_IDS).toBe("auto");
    expect(env.TERN_SCHEDULER_HOST).toBe("0.0.0.0");
    for (const name of [
      "TERN_ECS_CLUSTER",
      "TERN_ECS_TASK_DEFINITION_TERN_ONNX",
      "TERN_ECS_TASK_DEFINITION_MLSERVER",
      "TERN_ECS_SUBNETS",
      "TERN_ECS_SECURITY_GROUPS",
      "TERN_TABLE",
      "KAFKA_BROKERS",
      "KAFKA_PARTITIONS",
    ]) {
      expect(env[name], name).toBeDefined();
    }
    expect(container.Secrets.map((s: { Name: string }) => s.Name)).toContain("TERN_SCHEDULER_TOKEN");
    // One task definition per server type, and no agent service: the controller creates those.
    only(agents, "AWS::ECS::TaskDefinition", { Family: "test-tern-agent-tern-onnx" });
    only(agents, "AWS::ECS::TaskDefinition", { Family: "test-tern-agent-mlserver" });
    expect(Object.keys(agents.findResources("AWS::ECS::Service"))).toHaveLength(0);
  });

  it("has agent tasks claim their replica number and advertise their own IP, with writes to lease items only", () => {
    for (const family of ["test-tern-agent-tern-onnx", "test-tern-agent-mlserver"]) {
      const [, task] = only(agents, "AWS::ECS::TaskDefinition", { Family: family });
      const env = Object.fromEntries(
        task.Properties.ContainerDefinitions[0].Environment.map((e: { Name: string; Value: unknown }) => [
          e.Name,
          e.Value,
        ]),
      );
      expect(env, family).toMatchObject({ TERN_AGENT_REPLICA: "auto", TERN_AGENT_ADVERTISE_HOST: "ecs" });
      expect(env.TERN_TABLE, family).toBeDefined();
    }
    const statements = Object.values(agents.findResources("AWS::IAM::Policy")).flatMap(
      (p) => p.Properties.PolicyDocument.Statement as { Action: string | string[]; Condition?: unknown }[],
    );
    const dynamo = statements.filter((s) => [s.Action].flat().some((a) => a.startsWith("dynamodb:")));
    expect(dynamo.map((s) => [s.Action].flat())).toEqual([["dynamodb:UpdateItem"]]);
    expect(dynamo[0]!.Condition).toEqual({ "ForAllValues:StringEquals": { "dynamodb:LeadingKeys": ["lease"] } });
  });

  it("lets the control task change ECS services of the agents' cluster only", () => {
    const statements = Object.values(control.findResources("AWS::IAM::Policy")).flatMap(
      (p) =>
        p.Properties.PolicyDocument.Statement as {
          Action: string | string[];
          Resource: unknown;
          Condition?: unknown;
        }[],
    );
    const actions = (s: { Action: string | string[] }) => [s.Action].flat().sort();
    const ecsStatements = statements.filter((s) => actions(s).some((a) => a.startsWith("ecs:")));
    // What the ECS controller calls (packages/control/src/ecs-controller.ts), and nothing else.
    expect(ecsStatements.flatMap(actions).sort()).toEqual([
      "ecs:CreateService",
      "ecs:DeleteService",
      "ecs:DescribeServices",
      "ecs:DescribeTaskDefinition",
      "ecs:ListServices",
      "ecs:RegisterTaskDefinition",
      "ecs:TagResource",
      "ecs:UpdateService",
    ]);
    const changing = ecsStatements.filter((s) =>
      actions(s).some((a) => /Service$/.test(a) && a !== "ecs:ListServices"),
    );
    for (const s of changing) {
      const resource = JSON.stringify(s.Resource);
      expect(resource).toContain(":service/");
      expect(resource).toContain("AgentsCluster");
    }
    const [list] = ecsStatements.filter((s) => actions(s).includes("ecs:ListServices"));
    expect(JSON.stringify(list!.Condition)).toContain("AgentsCluster");
    const [tag] = ecsStatements.filter((s) => actions(s).includes("ecs:TagResource"));
    expect(JSON.stringify(tag!.Resource)).toContain(":task-definition/tern-test-*");
    expect(JSON.stringify(tag!.Resource)).not.toContain('"*"');
  });
});
