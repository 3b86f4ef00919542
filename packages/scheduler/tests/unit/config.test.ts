import { describe, expect, it } from "vitest";
import { loadSchedulerConfig } from "../../src/config.js";

describe("scheduler config: the Kafka data plane", () => {
  it("defaults to 16 model-gateway buckets and keeps topics when a model is deleted", () => {
    const config = loadSchedulerConfig({});
    expect(config.TERN_MODELGATEWAY_BUCKETS).toBe(16);
    expect(config.TERN_DATAFLOW_CLEAN_TOPICS_ON_DELETE).toBe(false);
    expect(
      loadSchedulerConfig({ TERN_DATAFLOW_CLEAN_TOPICS_ON_DELETE: "true" }).TERN_DATAFLOW_CLEAN_TOPICS_ON_DELETE,
    ).toBe(true);
  });

  it("refuses more model-gateway replicas than partitions, naming both numbers", () => {
    expect(() => loadSchedulerConfig({ KAFKA_PARTITIONS: "2", TERN_MODELGATEWAY_REPLICAS: "3" })).toThrow(
      /TERN_MODELGATEWAY_REPLICAS: 3 model-gateway replicas exceed KAFKA_PARTITIONS 2/,
    );
    expect(
      loadSchedulerConfig({ KAFKA_PARTITIONS: "2", TERN_MODELGATEWAY_REPLICAS: "2" }).TERN_MODELGATEWAY_REPLICAS,
    ).toBe(2);
  });

  it("refuses zero buckets, naming the variable", () => {
    expect(() => loadSchedulerConfig({ TERN_MODELGATEWAY_BUCKETS: "0" })).toThrow(/TERN_MODELGATEWAY_BUCKETS/);
  });
});
