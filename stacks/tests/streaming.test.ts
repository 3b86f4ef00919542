import { Match } from "aws-cdk-lib/assertions";
import { beforeAll, describe, expect, it } from "vitest";
import { Control } from "../Control.js";
import { Gateway } from "../Gateway.js";
import { Network } from "../Network.js";
import { Streaming } from "../Streaming.js";
import { synthesize } from "./synth.js";

type Template = ReturnType<Awaited<ReturnType<typeof synthesize>>>;

function controlContainer(control: Template) {
  const tasks = Object.values(
    control.findResources("AWS::ECS::TaskDefinition", { Properties: { Family: "test-tern-control" } }),
  );
  expect(tasks).toHaveLength(1);
  return tasks[0]!.Properties.ContainerDefinitions[0];
}

describe("Streaming", () => {
  let serverless: Template;
  let external: { streaming: Template; network: Template; control: Template; gateway: Template };
  beforeAll(async () => {
    serverless = (await synthesize({ TERN_MSK_MODE: "serverless" }))(Streaming);
    const templateOf = await synthesize({
      KAFKA_BROKERS: "b-1.example.com:9096,b-2.example.com:9096",
      KAFKA_SASL_MECHANISM: "scram-sha-512",
      KAFKA_SASL_USERNAME: "tern",
      KAFKA_SASL_PASSWORD_SECRET: "tern/kafka",
    });
    external = {
      streaming: templateOf(Streaming),
      network: templateOf(Network),
      control: templateOf(Control),
      gateway: templateOf(Gateway),
    };
  }, 60_000);

  it("makes an IAM-authenticated MSK Serverless cluster and reads its brokers from the Kafka API", () => {
    const clusters = Object.values(serverless.findResources("AWS::MSK::ServerlessCluster"));
    expect(clusters).toHaveLength(1);
    expect(clusters[0]!.Properties.ClientAuthentication).toEqual({ Sasl: { Iam: { Enabled: true } } });
    expect(Object.keys(serverless.findResources("AWS::MSK::Cluster"))).toHaveLength(0);
    const lookups = Object.values(serverless.findResources("Custom::AWS"));
    expect(lookups).toHaveLength(1);
    const create = JSON.stringify(lookups[0]!.Properties.Create ?? lookups[0]!.Properties.Update);
    expect(create).toContain("getBootstrapBrokers");
  });

  it("uses external brokers with SASL instead of MSK, opening only their port outbound", () => {
    expect(Object.keys(external.streaming.findResources("AWS::MSK::Cluster"))).toHaveLength(0);
    expect(Object.keys(external.streaming.findResources("AWS::MSK::ServerlessCluster"))).toHaveLength(0);
    const container = controlContainer(external.control);
    const env = Object.fromEntries(
      container.Environment.map((e: { Name: string; Value: unknown }) => [e.Name, e.Value]),
    );
    expect(env).toMatchObject({
      KAFKA_BROKERS: "b-1.example.com:9096,b-2.example.com:9096",
      KAFKA_SASL_MECHANISM: "scram-sha-512",
      KAFKA_SASL_USERNAME: "tern",
      KAFKA_SSL: "true",
      KAFKA_PARTITIONS: "4",
    });
    expect(container.Secrets.map((s: { Name: string }) => s.Name)).toContain("KAFKA_SASL_PASSWORD");
    const brokerEgress = Object.values(external.network.findResources("AWS::EC2::SecurityGroup")).flatMap((sg) =>
      (sg.Properties.SecurityGroupEgress ?? []).filter((r: { FromPort: number }) => r.FromPort === 9096),
    );
    // The Lambda, the control task and the model gateway; not the agents.
    expect(brokerEgress).toHaveLength(3);
    const lambda = Object.values(
      external.gateway.findResources("AWS::Lambda::Function", {
        Properties: { Runtime: "nodejs22.x", VpcConfig: Match.anyValue() },
      }),
    );
    expect(lambda).toHaveLength(1);
    expect(JSON.stringify(lambda[0]!.Properties.Environment.Variables.KAFKA_SASL_PASSWORD)).toContain(
      "resolve:secretsmanager",
    );
  });
});
