import { beforeAll, describe, expect, it } from "vitest";
import { ModelGateway } from "../ModelGateway.js";
import { synthesize } from "./synth.js";

/** A resource as the assertions library returns it (CloudFormation JSON). */
type Resource = ReturnType<Template["findResources"]>[string];
type Template = ReturnType<Awaited<ReturnType<typeof synthesize>>>;

async function scalingOf(partitions: string) {
  const template = (await synthesize({ KAFKA_PARTITIONS: partitions }))(ModelGateway);
  const targets = Object.entries(
    template.findResources("AWS::ApplicationAutoScaling::ScalableTarget", {
      Properties: { ScalableDimension: "ecs:service:DesiredCount" },
    }),
  ) as [string, Resource][];
  expect(targets).toHaveLength(1);
  const policies = Object.values(template.findResources("AWS::ApplicationAutoScaling::ScalingPolicy")) as Resource[];
  const [taskDefinition] = Object.values(template.findResources("AWS::ECS::TaskDefinition")) as Resource[];
  const container = (
    taskDefinition!.Properties.ContainerDefinitions as { Environment: { Name: string; Value: unknown }[] }[]
  )[0]!;
  const env = Object.fromEntries(container.Environment.map((e) => [e.Name, e.Value]));
  return {
    targetId: targets[0]![0],
    target: targets[0]![1].Properties,
    policies: policies.map((p) => p.Properties),
    env,
  };
}

describe("ModelGateway stack", () => {
  let four: Awaited<ReturnType<typeof scalingOf>>;
  let six: Awaited<ReturnType<typeof scalingOf>>;
  // The same app synthesised twice, with only the partition count changed.
  beforeAll(async () => {
    four = await scalingOf("4");
    six = await scalingOf("6");
  }, 60_000);

  it("caps the model gateway at KAFKA_PARTITIONS tasks and follows the partition count", () => {
    expect(four.target).toMatchObject({ MinCapacity: 1, MaxCapacity: 4 });
    expect(six.target).toMatchObject({ MinCapacity: 1, MaxCapacity: 6 });
  });

  it("scales on the lag the model gateway publishes (namespace Tern, metric ModelGatewayLag, dimension Stage)", () => {
    const { targetId, policies } = four;
    expect(policies).toHaveLength(1);
    expect(policies[0]!.ScalingTargetId).toEqual({ Ref: targetId });
    expect(policies[0]!.TargetTrackingScalingPolicyConfiguration).toMatchObject({
      CustomizedMetricSpecification: {
        Namespace: "Tern",
        MetricName: "ModelGatewayLag",
        Dimensions: [{ Name: "Stage", Value: "test" }],
        Statistic: "Average",
      },
      TargetValue: 100,
    });
    // …which the model gateway publishes only when told to, under the stage the policy names.
    expect(four.env).toMatchObject({ TERN_MODELGATEWAY_LAG_METRIC: "cloudwatch", TERN_STAGE: "test" });
    // Tasks of an autoscaled service are identical: each claims its modelgateway-<i> (i < KAFKA_PARTITIONS).
    expect(four.env.TERN_MODELGATEWAY_ID).toBe("auto");
  });
});
