import { describe, expect, it } from "vitest";
import { brokerPorts, loadStackConfig } from "../config.js";

const key = "b".repeat(64);

function errorOf(env: Record<string, string>): string {
  try {
    loadStackConfig(env);
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error("expected the configuration to be refused");
}

describe("stack configuration", () => {
  it("has defaults that deploy: MSK provisioned, 4 partitions, a 25 s deadline and a 4 MiB body limit", () => {
    const config = loadStackConfig({ TERN_GATEWAY_API_KEY_SHA256: key });
    expect(config.TERN_MSK_MODE).toBe("provisioned");
    expect(config.KAFKA_PARTITIONS).toBe(4);
    expect(config.TERN_GATEWAY_DEADLINE_MS).toBe(25_000);
    expect(config.TERN_GATEWAY_BODY_LIMIT_BYTES).toBe(4 * 1024 * 1024);
    expect(config.TERN_AUTH).toBe("api-key");
  });

  it("refuses the default api-key auth without a key digest, naming the variable", () => {
    expect(errorOf({})).toMatch(/TERN_GATEWAY_API_KEY_SHA256: TERN_AUTH=api-key/);
  });

  it("refuses a deadline API Gateway would cut first and a body Lambda's payload cannot carry", () => {
    expect(errorOf({ TERN_AUTH: "none", TERN_GATEWAY_DEADLINE_MS: "30000" })).toMatch(
      /TERN_GATEWAY_DEADLINE_MS: .*30 s/,
    );
    expect(errorOf({ TERN_AUTH: "none", TERN_GATEWAY_BODY_LIMIT_BYTES: "6000000" })).toMatch(
      /TERN_GATEWAY_BODY_LIMIT_BYTES: .*6 MB/,
    );
  });

  it("refuses more minimum model-gateway tasks than partitions", () => {
    expect(errorOf({ TERN_AUTH: "none", KAFKA_PARTITIONS: "2", TERN_MODELGATEWAY_MIN_TASKS: "3" })).toMatch(
      /TERN_MODELGATEWAY_MIN_TASKS: 3 .*KAFKA_PARTITIONS 2/,
    );
  });

  it("refuses provisioned concurrency above the reserved cap or starting from zero", () => {
    expect(
      errorOf({
        TERN_AUTH: "none",
        TERN_LAMBDA_RESERVED_CONCURRENCY: "10",
        TERN_LAMBDA_PROVISIONED_MIN: "1",
        TERN_LAMBDA_PROVISIONED_MAX: "20",
      }),
    ).toMatch(/TERN_LAMBDA_PROVISIONED_MAX: 20 .*TERN_LAMBDA_RESERVED_CONCURRENCY 10/);
    expect(errorOf({ TERN_AUTH: "none", TERN_LAMBDA_PROVISIONED_MAX: "5" })).toMatch(
      /TERN_LAMBDA_PROVISIONED_MIN: must be at least 1/,
    );
  });

  it("refuses partial SASL settings and SASL without external brokers", () => {
    expect(errorOf({ TERN_AUTH: "none", KAFKA_BROKERS: "b:9096", KAFKA_SASL_MECHANISM: "scram-sha-512" })).toMatch(
      /KAFKA_SASL_MECHANISM: SASL needs/,
    );
    expect(
      errorOf({
        TERN_AUTH: "none",
        KAFKA_SASL_MECHANISM: "plain",
        KAFKA_SASL_USERNAME: "u",
        KAFKA_SASL_PASSWORD_SECRET: "s",
      }),
    ).toMatch(/set KAFKA_BROKERS/);
    expect(errorOf({ TERN_AUTH: "none", KAFKA_BROKERS: "no-port" })).toMatch(
      /KAFKA_BROKERS: "no-port" is not host:port/,
    );
    expect(errorOf({ TERN_AUTH: "none", KAFKA_BROKERS: "localhost:9092" })).toMatch(/KAFKA_BROKERS: .* loopback/);
  });

  it("lists each external broker port once", () => {
    expect(brokerPorts(["a:9096", "b:9096", "c:9092"])).toEqual([9092, 9096]);
  });
});
