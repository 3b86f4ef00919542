import { describe, expect, it } from "vitest";
import { loadModelGatewayConfig } from "../../src/config.js";

describe("model gateway config", () => {
  it("defaults to replica modelgateway-0 with 64 records in flight per batch", () => {
    const config = loadModelGatewayConfig({});
    expect(config.TERN_MODELGATEWAY_ID).toBe("modelgateway-0");
    expect(config.TERN_MODELGATEWAY_CONCURRENCY).toBe(64);
  });

  it("refuses a replica beyond the partition count, naming both numbers", () => {
    expect(() => loadModelGatewayConfig({ TERN_MODELGATEWAY_ID: "modelgateway-4", KAFKA_PARTITIONS: "4" })).toThrow(
      /modelgateway-4 would be model-gateway replica 5, but KAFKA_PARTITIONS is 4/,
    );
    expect(
      loadModelGatewayConfig({ TERN_MODELGATEWAY_ID: "modelgateway-3", KAFKA_PARTITIONS: "4" }).KAFKA_PARTITIONS,
    ).toBe(4);
  });

  it("refuses an id that is not modelgateway-<index>, naming the variable", () => {
    expect(() => loadModelGatewayConfig({ TERN_MODELGATEWAY_ID: "mg-1" })).toThrow(
      /TERN_MODELGATEWAY_ID: must be modelgateway-<index>/,
    );
    expect(() => loadModelGatewayConfig({ TERN_MODELGATEWAY_ID: "modelgateway-01" })).toThrow(/TERN_MODELGATEWAY_ID/);
  });

  it("accepts auto, which claims an index below KAFKA_PARTITIONS at start instead", () => {
    const config = loadModelGatewayConfig({ TERN_MODELGATEWAY_ID: "auto", KAFKA_PARTITIONS: "6" });
    expect(config.TERN_MODELGATEWAY_ID).toBe("auto");
    expect(config.TERN_REPLICA_ID_TTL_MS).toBe(15_000);
  });
});
