import * as ec2 from "aws-cdk-lib/aws-ec2";
import type { StackContext } from "sst/constructs";
import { brokerPorts, configOf, PORTS } from "./config.js";

/**
 * The VPC and the security groups that allow only what flows between Tern's parts:
 *
 *   gateway Lambda ──▶ agents (REST), scheduler (wake a model), brokers
 *   control task   ──▶ agents (REST, gRPC), brokers; scheduler ◀── itself (extra dataflow workers)
 *   model gateway  ──▶ agents (REST, gRPC), scheduler, brokers
 *   agents         ──▶ scheduler
 *
 * Nothing accepts traffic from outside the VPC (the HTTPS endpoint is API Gateway's, outside it). Outbound HTTPS to
 * anywhere stays open for AWS APIs (ECR, CloudWatch, ECS, Secrets Manager) and http(s) model artifacts through the
 * NAT gateway; DynamoDB and S3 go through gateway endpoints instead (no NAT charge).
 */
export function Network({ stack, app }: StackContext) {
  const config = configOf(app);
  const vpc = new ec2.Vpc(stack, "Vpc", {
    maxAzs: config.TERN_AZS,
    natGateways: config.TERN_NAT_GATEWAYS,
    subnetConfiguration: [
      { name: "public", subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 },
      // Tasks, the Lambda's network interfaces and the MSK brokers all live here.
      { name: "private", subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 20 },
    ],
    gatewayEndpoints: {
      DynamoDb: { service: ec2.GatewayVpcEndpointAwsService.DYNAMODB },
      S3: { service: ec2.GatewayVpcEndpointAwsService.S3 },
    },
  });
  const privateSubnets = vpc.selectSubnets({ subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS });

  const group = (id: string, description: string) =>
    new ec2.SecurityGroup(stack, id, { vpc, description, allowAllOutbound: false });
  const lambda = group("GatewayLambdaSg", "Tern gateway Lambda: calls agents, the scheduler and the brokers");
  const control = group("ControlSg", "Tern control task (scheduler + dataflow workers) and extra dataflow workers");
  const modelGateway = group("ModelGatewaySg", "Tern model gateway tasks");
  const agents = group("AgentsSg", "Tern agent tasks (one ECS service per Server)");

  const agentRest = ec2.Port.tcp(PORTS.agentHttp);
  const agentBoth = ec2.Port.tcpRange(PORTS.agentHttp, PORTS.agentGrpc);
  const scheduler = ec2.Port.tcp(PORTS.scheduler);
  lambda.connections.allowTo(agents, agentRest, "model inference (REST)");
  lambda.connections.allowTo(control, scheduler, "wake a model scaled to zero");
  control.connections.allowTo(agents, agentBoth, "control plane and dataflow to agents");
  control.connections.allowTo(control, scheduler, "extra dataflow workers register with the scheduler");
  modelGateway.connections.allowTo(agents, agentBoth, "model requests from Kafka to agents");
  modelGateway.connections.allowTo(control, scheduler, "model gateway registers and watches routes");
  agents.connections.allowTo(control, scheduler, "agents register, heartbeat and watch");

  const https = ec2.Port.tcp(443);
  for (const sg of [lambda, control, modelGateway, agents]) {
    sg.addEgressRule(ec2.Peer.anyIpv4(), https, "AWS APIs and http(s) artifacts (DynamoDB and S3 via endpoints)");
  }

  const kafkaClients = [lambda, control, modelGateway];
  let brokers: ec2.SecurityGroup | undefined;
  if (config.KAFKA_BROKERS?.length) {
    // External brokers: their addresses are outside what the stack knows, so only their ports are opened.
    for (const port of brokerPorts(config.KAFKA_BROKERS)) {
      for (const sg of kafkaClients) sg.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(port), "external Kafka brokers");
    }
  } else {
    brokers = group("BrokersSg", "Tern MSK brokers: IAM-authenticated clients from inside the VPC");
    for (const sg of kafkaClients) sg.connections.allowTo(brokers, ec2.Port.tcp(PORTS.mskIam), "Kafka (SASL/IAM)");
  }

  return {
    vpc,
    privateSubnets,
    securityGroups: { lambda, control, modelGateway, agents, brokers },
  };
}
