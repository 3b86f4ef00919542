import { beforeAll, describe, expect, it } from "vitest";
import { Agents } from "../Agents.js";
import { Control } from "../Control.js";
import { Data } from "../Data.js";
import { Gateway } from "../Gateway.js";
import { ModelGateway } from "../ModelGateway.js";
import { Network } from "../Network.js";
import { Streaming } from "../Streaming.js";
import { synthesize } from "./synth.js";

type Template = ReturnType<Awaited<ReturnType<typeof synthesize>>>;
type Rule = { CidrIp?: string; CidrIpv6?: string; FromPort?: number; ToPort?: number; IpProtocol: string };

const STACKS = [Network, Data, Streaming, Agents, Control, ModelGateway, Gateway];

/** Every ingress and egress rule in a template: inline in security groups and as separate resources. */
function rules(template: Template): { ingress: Rule[]; egress: Rule[] } {
  const ingress: Rule[] = [];
  const egress: Rule[] = [];
  for (const sg of Object.values(template.findResources("AWS::EC2::SecurityGroup"))) {
    ingress.push(...(sg.Properties.SecurityGroupIngress ?? []));
    egress.push(...(sg.Properties.SecurityGroupEgress ?? []));
  }
  for (const r of Object.values(template.findResources("AWS::EC2::SecurityGroupIngress"))) ingress.push(r.Properties);
  for (const r of Object.values(template.findResources("AWS::EC2::SecurityGroupEgress"))) egress.push(r.Properties);
  return { ingress, egress };
}

const open = (r: Rule) => r.CidrIp === "0.0.0.0/0" || r.CidrIpv6 === "::/0";

describe("Network", () => {
  let templates: Template[];
  let network: Template;
  beforeAll(async () => {
    const templateOf = await synthesize();
    templates = STACKS.map((s) => templateOf(s as never));
    network = templateOf(Network);
  }, 60_000);

  it("opens no security group to 0.0.0.0/0 (the only public entry is API Gateway's endpoint, outside the VPC)", () => {
    const all = templates.map(rules);
    const ingress = all.flatMap((r) => r.ingress);
    expect(ingress.length).toBeGreaterThan(0);
    expect(ingress.filter(open)).toEqual([]);
    // Outbound to anywhere only for HTTPS (AWS APIs through NAT, http(s) artifacts); no all-traffic egress.
    const egress = all.flatMap((r) => r.egress);
    for (const rule of egress.filter(open)) {
      expect(rule).toMatchObject({ IpProtocol: "tcp", FromPort: 443, ToPort: 443 });
    }
  });

  it("lets the Lambda, the control task and the model gateway reach the MSK brokers, and no one else", () => {
    const sgs = network.findResources("AWS::EC2::SecurityGroup");
    const idOf = (description: string) =>
      Object.entries(sgs).find(([, sg]) => String(sg.Properties.GroupDescription).startsWith(description))![0];
    const brokers = idOf("Tern MSK brokers");
    const sources = Object.values(network.findResources("AWS::EC2::SecurityGroupIngress"))
      .filter((r) => JSON.stringify(r.Properties.GroupId).includes(brokers))
      .map((r) => {
        expect(r.Properties).toMatchObject({ FromPort: 9098, ToPort: 9098 });
        return JSON.stringify(r.Properties.SourceSecurityGroupId);
      });
    expect(sources.sort()).toEqual(
      [idOf("Tern gateway Lambda"), idOf("Tern control task"), idOf("Tern model gateway")]
        .map((id) => JSON.stringify({ "Fn::GetAtt": [id, "GroupId"] }))
        .sort(),
    );
  });

  it("makes an IAM-authenticated, TLS-only MSK cluster with brokers in every zone by default", () => {
    const streaming = templates[STACKS.indexOf(Streaming)]!;
    const clusters = Object.values(streaming.findResources("AWS::MSK::Cluster"));
    expect(clusters).toHaveLength(1);
    expect(clusters[0]!.Properties).toMatchObject({
      NumberOfBrokerNodes: 2,
      ClientAuthentication: { Sasl: { Iam: { Enabled: true } } },
      EncryptionInfo: { EncryptionInTransit: { ClientBroker: "TLS", InCluster: true } },
    });
  });

  it("routes DynamoDB and S3 through gateway endpoints", () => {
    const endpoints = Object.values(network.findResources("AWS::EC2::VPCEndpoint"));
    expect(endpoints.map((e) => e.Properties.VpcEndpointType ?? "Gateway")).toEqual(["Gateway", "Gateway"]);
    const services = endpoints.map((e) => JSON.stringify(e.Properties.ServiceName));
    expect(services.some((s) => s.includes(".dynamodb"))).toBe(true);
    expect(services.some((s) => s.includes(".s3"))).toBe(true);
  });
});
