import { Match } from "aws-cdk-lib/assertions";
import { beforeAll, describe, expect, it } from "vitest";
import { Data } from "../Data.js";
import { Gateway } from "../Gateway.js";
import { synthesize } from "./synth.js";

type Template = ReturnType<Awaited<ReturnType<typeof synthesize>>>;
type Resource = { Type: string; Properties: Record<string, unknown> };

function only(template: Template, type: string, props: Record<string, unknown> = {}): [string, Resource] {
  const found = Object.entries(template.findResources(type, { Properties: props })) as [string, Resource][];
  expect(found, `${type} matching ${JSON.stringify(props)}`).toHaveLength(1);
  return found[0]!;
}

describe("Gateway stack", () => {
  let gateway: Template;
  let data: Template;
  beforeAll(async () => {
    const templateOf = await synthesize({
      TERN_LAMBDA_RESERVED_CONCURRENCY: "40",
      TERN_LAMBDA_PROVISIONED_MIN: "2",
      TERN_LAMBDA_PROVISIONED_MAX: "30",
      TERN_LAMBDA_PROVISIONED_UTILIZATION: "0.6",
    });
    gateway = templateOf(Gateway);
    data = templateOf(Data);
  }, 60_000);

  function gatewayFunction(): [string, Resource] {
    return only(gateway, "AWS::Lambda::Function", { Runtime: "nodejs22.x", VpcConfig: Match.anyValue() });
  }

  it("routes /v2 and /v2/{proxy+} of the HTTP API to the live alias, not the bare function", () => {
    const [aliasId] = only(gateway, "AWS::Lambda::Alias", { Name: "live" });
    const [integrationId, integration] = only(gateway, "AWS::ApiGatewayV2::Integration");
    expect(integration.Properties.IntegrationType).toBe("AWS_PROXY");
    expect(integration.Properties.IntegrationUri).toEqual({ Ref: aliasId });
    for (const routeKey of ["ANY /v2/{proxy+}", "ANY /v2"]) {
      const [, route] = only(gateway, "AWS::ApiGatewayV2::Route", { RouteKey: routeKey });
      expect(JSON.stringify(route.Properties.Target)).toContain(integrationId);
    }
    expect(Object.keys(gateway.findOutputs("ApiEndpoint"))).toHaveLength(1);
  });

  it("caps the function with reserved concurrency and runs it on nodejs22.x in the VPC", () => {
    const [, fn] = gatewayFunction();
    expect(fn.Properties.ReservedConcurrentExecutions).toBe(40);
    expect(fn.Properties.Timeout).toBeLessThan(30);
  });

  it("autoscales provisioned concurrency of the alias by target tracking on its utilisation", () => {
    const [, alias] = only(gateway, "AWS::Lambda::Alias", { Name: "live" });
    expect(alias.Properties.ProvisionedConcurrencyConfig).toEqual({ ProvisionedConcurrentExecutions: 2 });
    const [targetId, target] = only(gateway, "AWS::ApplicationAutoScaling::ScalableTarget", {
      ScalableDimension: "lambda:function:ProvisionedConcurrency",
    });
    expect(target.Properties).toMatchObject({ ServiceNamespace: "lambda", MinCapacity: 2, MaxCapacity: 30 });
    expect(JSON.stringify(target.Properties.ResourceId)).toContain(":live");
    const [, policy] = only(gateway, "AWS::ApplicationAutoScaling::ScalingPolicy");
    expect(policy.Properties.ScalingTargetId).toEqual({ Ref: targetId });
    expect(policy.Properties.PolicyType).toBe("TargetTrackingScaling");
    expect(policy.Properties.TargetTrackingScalingPolicyConfiguration).toMatchObject({
      PredefinedMetricSpecification: { PredefinedMetricType: "LambdaProvisionedConcurrencyUtilization" },
      TargetValue: 0.6,
    });
  });

  it("gives the Lambda a deadline below API Gateway's 30 s and a body limit below Lambda's 6 MB", () => {
    const [, fn] = gatewayFunction();
    const env = (fn.Properties.Environment as { Variables: Record<string, unknown> }).Variables;
    expect(env.TERN_GATEWAY_DEADLINE_MS).toBe("25000");
    expect(env.TERN_GATEWAY_BODY_LIMIT_BYTES).toBe(String(4 * 1024 * 1024));
    expect(env.TERN_SCHEDULER_URL).toBe("http://scheduler.tern.local:9004");
  });

  it("lets the Lambda role read only route and reply items, and write nothing in the table", () => {
    const [, fn] = gatewayFunction();
    const roleId = (fn.Properties.Role as { "Fn::GetAtt": [string, string] })["Fn::GetAtt"][0];
    const [, role] = only(gateway, "AWS::IAM::Role", { Description: Match.stringLikeRegexp("gateway Lambda") });
    expect(gateway.findResources("AWS::IAM::Role")[roleId]).toEqual(role);
    // Every statement of every policy attached to the role, inline or separate.
    const statements: { Action: string | string[]; Condition?: unknown; Resource: unknown }[] = [];
    for (const policy of (role.Properties.Policies as { PolicyDocument: { Statement: never[] } }[] | undefined) ?? []) {
      statements.push(...policy.PolicyDocument.Statement);
    }
    for (const policy of Object.values(gateway.findResources("AWS::IAM::Policy"))) {
      if (JSON.stringify(policy.Properties.Roles).includes(roleId))
        statements.push(...policy.Properties.PolicyDocument.Statement);
    }
    const dynamo = statements.filter((s) => [s.Action].flat().some((a) => a.startsWith("dynamodb:") || a === "*"));
    expect(dynamo.length).toBeGreaterThan(0);
    for (const statement of dynamo) {
      expect([statement.Action].flat().sort()).toEqual(["dynamodb:GetItem", "dynamodb:Query"]);
      expect(statement.Condition).toEqual({
        "ForAllValues:StringLike": { "dynamodb:LeadingKeys": ["routes", "reply#*"] },
      });
    }
    // The managed policy is the VPC-access one (network interfaces and logs), which grants no DynamoDB.
    expect(JSON.stringify(role.Properties.ManagedPolicyArns)).toContain("service-role/AWSLambdaVPCAccessExecutionRole");
    expect((role.Properties.ManagedPolicyArns as unknown[]).length).toBe(1);
    // The table is the state table itself (the one the scheduler writes).
    expect(Object.keys(data.findResources("AWS::DynamoDB::GlobalTable"))).toHaveLength(1);
  });
});
