import { Stack } from "aws-cdk-lib";
import * as ecs from "aws-cdk-lib/aws-ecs";
import * as iam from "aws-cdk-lib/aws-iam";
import * as msk from "aws-cdk-lib/aws-msk";
import * as secretsmanager from "aws-cdk-lib/aws-secretsmanager";
import * as cr from "aws-cdk-lib/custom-resources";
import { type StackContext, use } from "sst/constructs";
import { configOf } from "./config.js";
import { Network } from "./Network.js";

/** What a Kafka client needs: which topics it touches and whether it manages them. */
export interface KafkaAccess {
  /** Topic name patterns (`*` wildcards) it reads and writes. */
  topics: string[];
  /** Consumer group name patterns it joins; none for a producer. */
  groups: string[];
  /** May create, alter and delete topics (the scheduler owns topic lifecycle). */
  admin?: boolean;
  /** Only produces (the gateway Lambda): no reads. */
  writeOnly?: boolean;
}

/**
 * Kafka for Tern: an MSK cluster (provisioned or serverless, IAM authentication, TLS) in the private subnets, or the
 * external brokers of KAFKA_BROKERS with their SASL settings. Every client gets the same variables (`kafkaEnv`), and
 * KAFKA_PARTITIONS is the one partition count everything uses.
 */
export function Streaming({ stack, app }: StackContext) {
  const config = configOf(app);
  const { vpc, privateSubnets, securityGroups } = use(Network);
  const common = { KAFKA_PARTITIONS: String(config.KAFKA_PARTITIONS) };

  if (config.KAFKA_BROKERS?.length) {
    const password = config.KAFKA_SASL_PASSWORD_SECRET
      ? secretsmanager.Secret.fromSecretNameV2(stack, "KafkaSaslPassword", config.KAFKA_SASL_PASSWORD_SECRET)
      : undefined;
    const kafkaEnv: Record<string, string> = {
      ...common,
      KAFKA_BROKERS: config.KAFKA_BROKERS.join(","),
      KAFKA_SSL: String(config.KAFKA_SSL ?? config.KAFKA_SASL_MECHANISM !== undefined),
      ...(config.KAFKA_SASL_MECHANISM
        ? { KAFKA_SASL_MECHANISM: config.KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME: config.KAFKA_SASL_USERNAME! }
        : {}),
    };
    stack.addOutputs({ KafkaBrokers: kafkaEnv.KAFKA_BROKERS! });
    return {
      kafkaEnv,
      /** The SASL password as an ECS secret (containers see KAFKA_SASL_PASSWORD). */
      kafkaSecrets: password ? { KAFKA_SASL_PASSWORD: ecs.Secret.fromSecretsManager(password) } : {},
      /** The Lambda gets the password resolved into its environment by CloudFormation (docs/deploy.md). */
      lambdaKafkaEnv: password ? { KAFKA_SASL_PASSWORD: password.secretValue.unsafeUnwrap() } : {},
      grantKafka: (_role: iam.IGrantable, _access: KafkaAccess) => {
        // External brokers authorise with their own ACLs, outside IAM.
      },
    };
  }

  const clusterName = `${app.stage}-${app.name}`.slice(0, 64);
  const brokersSg = securityGroups.brokers!;
  const subnetIds = privateSubnets.subnetIds;
  let clusterArn: string;
  if (config.TERN_MSK_MODE === "serverless") {
    const cluster = new msk.CfnServerlessCluster(stack, "Kafka", {
      clusterName,
      clientAuthentication: { sasl: { iam: { enabled: true } } },
      vpcConfigs: [{ subnetIds, securityGroups: [brokersSg.securityGroupId] }],
    });
    clusterArn = cluster.attrArn;
  } else {
    const cluster = new msk.CfnCluster(stack, "Kafka", {
      clusterName,
      kafkaVersion: config.TERN_MSK_KAFKA_VERSION,
      numberOfBrokerNodes: config.TERN_MSK_BROKERS_PER_AZ * vpc.availabilityZones.length,
      brokerNodeGroupInfo: {
        clientSubnets: subnetIds,
        instanceType: config.TERN_MSK_INSTANCE_TYPE,
        securityGroups: [brokersSg.securityGroupId],
        storageInfo: { ebsStorageInfo: { volumeSize: config.TERN_MSK_VOLUME_GB } },
      },
      clientAuthentication: { sasl: { iam: { enabled: true } } },
      encryptionInfo: { encryptionInTransit: { clientBroker: "TLS", inCluster: true } },
    });
    clusterArn = cluster.attrArn;
  }

  // MSK has no CloudFormation attribute for the bootstrap brokers: ask the Kafka API once the cluster exists.
  const bootstrap = new cr.AwsCustomResource(stack, "KafkaBootstrapBrokers", {
    onUpdate: {
      service: "Kafka",
      action: "getBootstrapBrokers",
      parameters: { ClusterArn: clusterArn },
      physicalResourceId: cr.PhysicalResourceId.of(clusterArn),
    },
    policy: cr.AwsCustomResourcePolicy.fromSdkCalls({ resources: [clusterArn] }),
    installLatestAwsSdk: false,
  });
  const brokers = bootstrap.getResponseField("BootstrapBrokerStringSaslIam");
  stack.addOutputs({ KafkaBrokers: brokers, KafkaClusterArn: clusterArn });

  const { region, account } = Stack.of(stack);
  const arn = (kind: string, name: string) => `arn:aws:kafka:${region}:${account}:${kind}/${clusterName}/*/${name}`;
  return {
    kafkaEnv: {
      ...common,
      KAFKA_BROKERS: brokers,
      KAFKA_SSL: "true",
      // MSK's IAM mechanism (SASL OAUTHBEARER with a SigV4 token, aws-msk-iam-sasl-signer-js); the task's role signs.
      KAFKA_SASL_MECHANISM: "aws-msk-iam",
    } as Record<string, string>,
    kafkaSecrets: {} as Record<string, ecs.Secret>,
    lambdaKafkaEnv: {} as Record<string, string>,
    /** Grants a role the IAM actions of its topics and groups on this cluster, and nothing else. */
    grantKafka: (role: iam.IGrantable, access: KafkaAccess) => {
      const grant = (actions: string[], resources: string[]) =>
        role.grantPrincipal.addToPrincipalPolicy(new iam.PolicyStatement({ actions, resources }));
      grant(
        ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster"],
        [`arn:aws:kafka:${region}:${account}:cluster/${clusterName}/*`],
      );
      const topics = access.topics.map((t) => arn("topic", t));
      const topicActions = ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"];
      if (!access.writeOnly)
        topicActions.push("kafka-cluster:ReadData", "kafka-cluster:DescribeTopicDynamicConfiguration");
      if (access.admin)
        topicActions.push("kafka-cluster:CreateTopic", "kafka-cluster:AlterTopic", "kafka-cluster:DeleteTopic");
      grant(topicActions, topics);
      if (access.groups.length > 0) {
        grant(
          ["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"],
          access.groups.map((g) => arn("group", g)),
        );
      }
    },
  };
}
