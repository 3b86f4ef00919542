import { hasCode } from "@tern/core";
import { describe, expect, it } from "vitest";
import { gatewayEnvSchema, loadGatewayConfig } from "../../src/config.js";
import { lambdaEnvSchema, loadLambdaConfig } from "../../src/lambda-config.js";

/** The variables whose Lambda value differs from the Node entry's on purpose: AWS's limits (docs/lambda.md). */
const LAMBDA_LIMITS = ["TERN_GATEWAY_DEADLINE_MS", "TERN_GATEWAY_BODY_LIMIT_BYTES"];

/** A value for every variable the Lambda entry reads, none of them a default, all valid for both entries. */
const SET: Record<string, string> = {
  KAFKA_BROKERS: "b1:9098, b2:9098",
  KAFKA_PARTITIONS: "12",
  KAFKA_SASL_MECHANISM: "scram-sha-512",
  KAFKA_SSL: "yes",
  KAFKA_SASL_USERNAME: "tern",
  KAFKA_SASL_PASSWORD: "secret",
  DYNAMODB_ENDPOINT: "http://localhost:8000",
  AWS_REGION: "eu-west-1",
  TERN_TABLE: "tern-prod",
  TERN_TOPIC_PREFIX: "acme",
  TERN_NAMESPACE: "prod_1",
  TERN_SCHEDULER_URL: "http://scheduler.tern.local:9004",
  TERN_SCHEDULER_TOKEN: "token",
  LOG_LEVEL: "debug",
  TERN_GATEWAY_DEADLINE_MS: "20000",
  TERN_GATEWAY_BODY_LIMIT_BYTES: "1000000",
  TERN_GATEWAY_VALIDATE_JSON: "1",
  TERN_GATEWAY_API_KEY_SHA256: `${"a".repeat(64)},${"B".repeat(64)}`,
  TERN_GATEWAY_PIPELINE_TIMEOUT_MS: "15000",
  TERN_GATEWAY_REPLY_POLL_INITIAL_MS: "7",
  TERN_GATEWAY_REPLY_POLL_MAX_MS: "70",
  TERN_GATEWAY_MAX_MIRRORS: "0",
  TERN_GATEWAY_ROUTE_CACHE_MS: "0",
  TERN_GATEWAY_ROUTE_STALE_MS: "5000",
  TERN_GATEWAY_ROUTE_READ_TIMEOUT_MS: "900",
};

function pick(config: Record<string, unknown>, keys: string[]) {
  return Object.fromEntries(keys.map((k) => [k, config[k]]));
}

function configError(load: () => unknown): string {
  try {
    load();
  } catch (err) {
    expect(hasCode(err, "config.invalid")).toBe(true);
    return (err as Error).message;
  }
  throw new Error("no error");
}

describe("the Lambda entry's configuration (zod/mini, kept out of classic zod for the bundle's size)", () => {
  const lambdaKeys = Object.keys(lambdaEnvSchema.shape);

  it("reads only variables the gateway's schema knows, and the test sets every one of them", () => {
    const nodeKeys = new Set(Object.keys(gatewayEnvSchema.shape));
    expect(lambdaKeys.filter((k) => !nodeKeys.has(k))).toEqual([]);
    expect(Object.keys(SET).sort()).toEqual([...lambdaKeys].sort());
  });

  it("has the Node entry's defaults, but the limits AWS sets", () => {
    const lambda = loadLambdaConfig({});
    const node = loadGatewayConfig({});
    const same = lambdaKeys.filter((k) => !LAMBDA_LIMITS.includes(k));
    expect(pick(lambda, same)).toEqual(pick(node, same));
    expect(pick(lambda, LAMBDA_LIMITS)).toEqual({
      TERN_GATEWAY_DEADLINE_MS: 25_000,
      TERN_GATEWAY_BODY_LIMIT_BYTES: 4 * 1024 * 1024,
    });
    expect(lambda.TERN_GATEWAY_PIPELINE_TIMEOUT_MS).toBeUndefined();
  });

  it("parses every set value as the Node entry does", () => {
    expect(loadLambdaConfig(SET)).toEqual(pick(loadGatewayConfig(SET), lambdaKeys));
    // Empty strings are unset, as in core's parseEnv.
    expect(loadLambdaConfig({ KAFKA_PARTITIONS: "" }).KAFKA_PARTITIONS).toBe(4);
  });

  it("refuses what the Node entry refuses, naming the variable and the value", () => {
    for (const [name, value] of [
      ["KAFKA_PARTITIONS", "0"],
      ["KAFKA_SASL_MECHANISM", "aws"],
      ["DYNAMODB_ENDPOINT", "localhost"],
      ["TERN_TOPIC_PREFIX", "a.b"],
      ["TERN_GATEWAY_API_KEY_SHA256", "abc"],
      ["TERN_GATEWAY_VALIDATE_JSON", "maybe"],
      ["TERN_GATEWAY_DEADLINE_MS", "soon"],
    ] as const) {
      expect(configError(() => loadGatewayConfig({ [name]: value }))).toContain(name);
      const message = configError(() => loadLambdaConfig({ [name]: value }));
      expect(message).toMatch(new RegExp(`\\n  ${name}(\\.\\d+)?: `));
      expect(message).toContain(JSON.stringify(value));
    }
  });

  it("refuses a deadline API Gateway would cut first, and a body limit above what an invocation carries", () => {
    expect(configError(() => loadLambdaConfig({ TERN_GATEWAY_DEADLINE_MS: "30000" }))).toContain(
      "TERN_GATEWAY_DEADLINE_MS: at most 29000 on Lambda (API Gateway's HTTP API gives up after 30000 ms)",
    );
    expect(configError(() => loadLambdaConfig({ TERN_GATEWAY_PIPELINE_TIMEOUT_MS: "60000" }))).toContain(
      "TERN_GATEWAY_PIPELINE_TIMEOUT_MS: at most 29000 on Lambda",
    );
    expect(configError(() => loadLambdaConfig({ TERN_GATEWAY_BODY_LIMIT_BYTES: "7000000" }))).toContain(
      "TERN_GATEWAY_BODY_LIMIT_BYTES: at most 6291456 on Lambda (a synchronous invocation carries at most 6 MB)",
    );
    expect(loadLambdaConfig({ TERN_GATEWAY_DEADLINE_MS: "29000" }).TERN_GATEWAY_DEADLINE_MS).toBe(29_000);
  });
});
