import { join } from "node:path";
import { hasCode } from "@tern/core";
import { describe, expect, it } from "vitest";
import { loadDevStackConfig, repoRoot } from "../../src/config.js";

function configError(env: Record<string, string>): Error {
  try {
    loadDevStackConfig(env);
  } catch (err) {
    expect(hasCode(err, "config.invalid")).toBe(true);
    return err as Error;
  }
  throw new Error("expected the configuration to be rejected");
}

describe("loadDevStackConfig", () => {
  it("defaults to a local broker on 9092/9093, DynamoDB Local on 8000, 4 partitions and .tern at the repo root", () => {
    const config = loadDevStackConfig({});
    expect(config).toMatchObject({
      KAFKA_PORT: 9092,
      KAFKA_CONTROLLER_PORT: 9093,
      DYNAMODB_PORT: 8000,
      KAFKA_PARTITIONS: 4,
      KAFKA_HEAP: "512m",
      TERN_DEV_DIR: join(repoRoot, ".tern"),
    });
    expect(config.KAFKA_BROKERS).toBeUndefined();
    expect(config.DYNAMODB_ENDPOINT).toBeUndefined();
  });

  it("reads existing services from KAFKA_BROKERS and DYNAMODB_ENDPOINT", () => {
    const config = loadDevStackConfig({
      KAFKA_BROKERS: "b1:9092, b2:9092,",
      DYNAMODB_ENDPOINT: "http://ddb.internal:8000",
    });
    expect(config.KAFKA_BROKERS).toEqual(["b1:9092", "b2:9092"]);
    expect(config.DYNAMODB_ENDPOINT).toBe("http://ddb.internal:8000");
  });

  it("keeps an absolute TERN_DEV_DIR and resolves a relative one against the repo root", () => {
    expect(loadDevStackConfig({ TERN_DEV_DIR: "/var/tmp/tern" }).TERN_DEV_DIR).toBe("/var/tmp/tern");
    expect(loadDevStackConfig({ TERN_DEV_DIR: "tmp/dev" }).TERN_DEV_DIR).toBe(join(repoRoot, "tmp/dev"));
  });

  it("treats an empty variable as unset", () => {
    expect(loadDevStackConfig({ KAFKA_PORT: "" }).KAFKA_PORT).toBe(9092);
  });

  it("names the variable when a port is not a port", () => {
    expect(configError({ KAFKA_PORT: "70000" }).message).toMatch(/KAFKA_PORT: .*\(got "70000"\)/);
    expect(configError({ DYNAMODB_PORT: "eight" }).message).toContain("DYNAMODB_PORT");
  });

  it("rejects two services on one port, naming both variables", () => {
    const message = configError({ DYNAMODB_PORT: "9093" }).message;
    expect(message).toContain("DYNAMODB_PORT: must differ from KAFKA_CONTROLLER_PORT (both are 9093)");
  });

  it("rejects a heap size the JVM would not understand", () => {
    expect(configError({ KAFKA_HEAP: "half a gig" }).message).toContain("KAFKA_HEAP: must be a JVM heap size");
  });

  it("rejects a partition count below 1", () => {
    expect(configError({ KAFKA_PARTITIONS: "0" }).message).toContain("KAFKA_PARTITIONS");
  });

  it("starts the scheduler on 9004 and the gateway on 9000/9001, and applies samples/manifests by default", () => {
    const config = loadDevStackConfig({});
    expect(config).toMatchObject({
      TERN_SCHEDULER_PORT: 9004,
      TERN_GATEWAY_PORT: 9000,
      TERN_GATEWAY_GRPC_PORT: 9001,
      TERN_SAMPLES: true,
      TERN_SAMPLES_DIR: join(repoRoot, "samples/manifests"),
    });
    expect(loadDevStackConfig({ TERN_SAMPLES: "false" }).TERN_SAMPLES).toBe(false);
  });

  it("refuses port 0 for the scheduler and the gateway, whose addresses the stack hands to its children", () => {
    expect(configError({ TERN_SCHEDULER_PORT: "0" }).message).toContain("TERN_SCHEDULER_PORT: must be a fixed port");
    expect(configError({ TERN_GATEWAY_PORT: "9004" }).message).toContain(
      "TERN_GATEWAY_PORT: must differ from TERN_SCHEDULER_PORT (both are 9004)",
    );
  });
});
