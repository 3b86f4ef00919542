import { hasCode } from "@tern/core";
import { afterEach, describe, expect, it, vi } from "vitest";
import { kafkaClientSecurity, kafkaSecurityFromConfig } from "../../src/security.js";

afterEach(() => {
  vi.unstubAllEnvs();
});

describe("kafkaSecurityFromConfig", () => {
  it("is PLAINTEXT without a mechanism, TLS when KAFKA_SSL says so", () => {
    expect(kafkaSecurityFromConfig({ KAFKA_SSL: false, AWS_REGION: "us-east-1" })).toEqual({ ssl: false });
    expect(kafkaSecurityFromConfig({ KAFKA_SSL: true, AWS_REGION: "us-east-1" })).toEqual({ ssl: true });
  });

  it("turns TLS on for aws-msk-iam (MSK's IAM listener is TLS only) and signs in AWS_REGION", () => {
    expect(
      kafkaSecurityFromConfig({ KAFKA_SASL_MECHANISM: "aws-msk-iam", KAFKA_SSL: false, AWS_REGION: "eu-west-1" }),
    ).toEqual({ ssl: true, sasl: { mechanism: "aws-msk-iam", region: "eu-west-1" } });
  });

  it("needs a user name and a password for plain and scram-sha-512, naming both variables", () => {
    const config = { KAFKA_SASL_MECHANISM: "scram-sha-512" as const, KAFKA_SSL: true, AWS_REGION: "us-east-1" };
    let error: unknown;
    try {
      kafkaSecurityFromConfig({ ...config, KAFKA_SASL_USERNAME: "tern" });
    } catch (err) {
      error = err;
    }
    expect(hasCode(error, "config.invalid")).toBe(true);
    expect((error as Error).message).toContain("KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD");
    expect(kafkaSecurityFromConfig({ ...config, KAFKA_SASL_USERNAME: "tern", KAFKA_SASL_PASSWORD: "pw" })).toEqual({
      ssl: true,
      sasl: { mechanism: "scram-sha-512", username: "tern", password: "pw" },
    });
  });
});

describe("kafkaClientSecurity", () => {
  it("passes plain and scram credentials to the client as they are", () => {
    expect(kafkaClientSecurity(undefined)).toEqual({});
    expect(kafkaClientSecurity({ ssl: true, sasl: { mechanism: "plain", username: "u", password: "p" } })).toEqual({
      ssl: true,
      sasl: { mechanism: "plain", username: "u", password: "p" },
    });
  });

  it("aws-msk-iam: OAUTHBEARER with a token from the real signer, a presigned kafka-cluster:Connect URL", async () => {
    // The signer takes the credentials from the default chain; the environment's come first and need no network.
    vi.stubEnv("AWS_ACCESS_KEY_ID", "AKIDTERNTEST");
    vi.stubEnv("AWS_SECRET_ACCESS_KEY", "secret");
    vi.stubEnv("AWS_SESSION_TOKEN", "");
    const options = kafkaClientSecurity({ ssl: false, sasl: { mechanism: "aws-msk-iam", region: "eu-west-1" } });
    expect(options.ssl).toBe(true);
    if (options.sasl?.mechanism !== "oauthbearer") throw new Error(`got ${options.sasl?.mechanism}`);
    const { value } = await options.sasl.oauthBearerProvider();
    const url = new URL(Buffer.from(value, "base64url").toString("utf8"));
    expect(url.host).toBe("kafka.eu-west-1.amazonaws.com");
    expect(url.searchParams.get("Action")).toBe("kafka-cluster:Connect");
    expect(url.searchParams.get("X-Amz-Credential")).toMatch(
      /^AKIDTERNTEST\/\d{8}\/eu-west-1\/kafka-cluster\/aws4_request$/,
    );
    expect(url.searchParams.get("X-Amz-Signature")).toMatch(/^[0-9a-f]{64}$/);
  });

  it("aws-msk-iam: reuses a token until a minute before it expires, then signs a new one", async () => {
    let clock = 1_000_000;
    let signed = 0;
    const sign = async () => ({ token: `t${++signed}`, expiryTime: clock + 15 * 60_000 });
    const options = kafkaClientSecurity(
      { ssl: true, sasl: { mechanism: "aws-msk-iam", region: "us-east-1" } },
      sign,
      () => clock,
    );
    if (options.sasl?.mechanism !== "oauthbearer") throw new Error(`got ${options.sasl?.mechanism}`);
    expect(await options.sasl.oauthBearerProvider()).toEqual({ value: "t1" });
    clock += 13 * 60_000;
    expect(await options.sasl.oauthBearerProvider()).toEqual({ value: "t1" });
    clock += 60_000;
    expect(await options.sasl.oauthBearerProvider()).toEqual({ value: "t2" });
  });
});
