import { TernError } from "@tern/core";

/** How a client authenticates to the brokers. Locally: none (the dev broker is PLAINTEXT). */
export type KafkaSaslMechanism = "aws-msk-iam" | "plain" | "scram-sha-512";
export const KAFKA_SASL_MECHANISMS: readonly KafkaSaslMechanism[] = ["aws-msk-iam", "plain", "scram-sha-512"];

/** TLS and SASL of the connections to the brokers. */
export interface KafkaSecurity {
  /** TLS to the brokers. MSK's IAM listener (port 9098) is TLS only, so `aws-msk-iam` turns it on whatever this says. */
  ssl: boolean;
  sasl?:
    | { mechanism: "aws-msk-iam"; region: string }
    | { mechanism: "plain" | "scram-sha-512"; username: string; password: string };
}

/** The shared environment variables that describe {@link KafkaSecurity} (core's sharedEnvSchema parses them). */
export interface KafkaSecurityConfig {
  KAFKA_SASL_MECHANISM?: KafkaSaslMechanism | undefined;
  KAFKA_SSL: boolean;
  KAFKA_SASL_USERNAME?: string | undefined;
  KAFKA_SASL_PASSWORD?: string | undefined;
  AWS_REGION: string;
}

/**
 * The {@link KafkaSecurity} a component's config describes. `plain` and `scram-sha-512` need a user name and a
 * password; `aws-msk-iam` signs with the AWS credentials of the process (the Lambda's or the task's role) in `AWS_REGION`.
 * @throws TernError `config.invalid` naming the missing variable
 */
export function kafkaSecurityFromConfig(config: KafkaSecurityConfig): KafkaSecurity {
  const mechanism = config.KAFKA_SASL_MECHANISM;
  if (mechanism === undefined) return { ssl: config.KAFKA_SSL };
  if (mechanism === "aws-msk-iam") return { ssl: true, sasl: { mechanism, region: config.AWS_REGION } };
  const { KAFKA_SASL_USERNAME: username, KAFKA_SASL_PASSWORD: password } = config;
  if (!username || !password) {
    throw new TernError(
      "config.invalid",
      `invalid configuration:\n  KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD: both are required with KAFKA_SASL_MECHANISM=${mechanism}`,
    );
  }
  return { ssl: config.KAFKA_SSL, sasl: { mechanism, username, password } };
}

/** An MSK IAM token, kept until shortly before it expires (the signer's tokens live 15 minutes). */
interface CachedToken {
  value: string;
  refreshAt: number;
}

/** The signer's answer; a separate type so the signer's module is loaded only when a token is first needed. */
export type MskTokenSource = (region: string) => Promise<{ token: string; expiryTime: number }>;

const loadSigner: MskTokenSource = async (region) => {
  // Loaded on the first connection, not at import: the Lambda's cold start does not pay for the STS client the
  // signer brings along until a pipeline request actually connects to the brokers.
  const { generateAuthToken } = await import("aws-msk-iam-sasl-signer-js");
  return generateAuthToken({ region });
};

/**
 * The client options (kafkajs's `ssl` and `sasl` fields) for a {@link KafkaSecurity}. For `aws-msk-iam` the client
 * authenticates with SASL/OAUTHBEARER, each token signed by `aws-msk-iam-sasl-signer-js`; a token is reused until a
 * minute before it expires.
 */
export function kafkaClientSecurity(
  security: KafkaSecurity | undefined,
  sign: MskTokenSource = loadSigner,
  now: () => number = Date.now,
): { ssl?: boolean; sasl?: KafkaClientSasl } {
  if (!security) return {};
  const ssl = security.ssl ? { ssl: true } : {};
  const sasl = security.sasl;
  if (!sasl) return ssl;
  if (sasl.mechanism !== "aws-msk-iam") {
    const { username, password } = sasl;
    return {
      ...ssl,
      sasl:
        sasl.mechanism === "plain"
          ? { mechanism: "plain", username, password }
          : { mechanism: "scram-sha-512", username, password },
    };
  }
  const { region } = sasl;
  let cached: CachedToken | undefined;
  return {
    ssl: true,
    sasl: {
      mechanism: "oauthbearer",
      oauthBearerProvider: async () => {
        if (cached === undefined || now() >= cached.refreshAt) {
          const { token, expiryTime } = await sign(region);
          cached = { value: token, refreshAt: expiryTime - 60_000 };
        }
        return { value: cached.value };
      },
    },
  };
}

/** The SASL options the Kafka client takes (the subset Tern uses), without importing the client here. */
export type KafkaClientSasl =
  | { mechanism: "plain"; username: string; password: string }
  | { mechanism: "scram-sha-512"; username: string; password: string }
  | { mechanism: "oauthbearer"; oauthBearerProvider: () => Promise<{ value: string }> };
