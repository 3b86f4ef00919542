import { describe, expect, it } from "vitest";
import { loadSchedulerConfig } from "../../src/config.js";

function configError(env: Record<string, string>): { code?: unknown; message: string } | undefined {
  try {
    loadSchedulerConfig(env);
    return undefined;
  } catch (err) {
    return err as { code?: unknown; message: string };
  }
}

describe("scheduler configuration", () => {
  it.each([["0.0.0.0"], ["::"], ["10.1.2.3"], ["scheduler.internal"]])(
    "refuses to listen on %s without a token, naming both variables",
    (host) => {
      const err = configError({ TERN_SCHEDULER_HOST: host });
      expect(err?.code).toBe("config.invalid");
      expect(err?.message).toMatch(/TERN_SCHEDULER_HOST: listening on .* set TERN_SCHEDULER_TOKEN/);
    },
  );

  it("treats an empty token as none", () => {
    expect(configError({ TERN_SCHEDULER_HOST: "0.0.0.0", TERN_SCHEDULER_TOKEN: "" })?.code).toBe("config.invalid");
  });

  it("listens beyond loopback when a token is set", () => {
    const config = loadSchedulerConfig({ TERN_SCHEDULER_HOST: "0.0.0.0", TERN_SCHEDULER_TOKEN: "s3cret" });
    expect(config).toMatchObject({ TERN_SCHEDULER_HOST: "0.0.0.0", TERN_SCHEDULER_TOKEN: "s3cret" });
  });

  it.each([["127.0.0.1"], ["127.1.2.3"], ["localhost"], ["::1"]])("listens on loopback %s without a token", (host) => {
    expect(loadSchedulerConfig({ TERN_SCHEDULER_HOST: host }).TERN_SCHEDULER_HOST).toBe(host);
  });
});

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

  it("owns each pipeline by 2 dataflow workers by default, and refuses 0 or more owners than partitions", () => {
    expect(loadSchedulerConfig({}).TERN_DATAFLOW_REPLICATION).toBe(2);
    expect(loadSchedulerConfig({ TERN_DATAFLOW_REPLICATION: "3" }).TERN_DATAFLOW_REPLICATION).toBe(3);
    expect(() => loadSchedulerConfig({ TERN_DATAFLOW_REPLICATION: "0" })).toThrow(/TERN_DATAFLOW_REPLICATION/);
    expect(() => loadSchedulerConfig({ KAFKA_PARTITIONS: "2", TERN_DATAFLOW_REPLICATION: "3" })).toThrow(
      /TERN_DATAFLOW_REPLICATION: 3 owners per pipeline exceed KAFKA_PARTITIONS 2/,
    );
  });

  it("keeps a terminated pipeline visible for 24 h by default, and refuses a negative retention", () => {
    expect(loadSchedulerConfig({}).TERN_PIPELINE_TERMINATED_RETENTION_MS).toBe(86_400_000);
    expect(
      loadSchedulerConfig({ TERN_PIPELINE_TERMINATED_RETENTION_MS: "0" }).TERN_PIPELINE_TERMINATED_RETENTION_MS,
    ).toBe(0);
    expect(() => loadSchedulerConfig({ TERN_PIPELINE_TERMINATED_RETENTION_MS: "-1" })).toThrow(
      /TERN_PIPELINE_TERMINATED_RETENTION_MS/,
    );
  });

  it("refuses zero buckets, naming the variable", () => {
    expect(() => loadSchedulerConfig({ TERN_MODELGATEWAY_BUCKETS: "0" })).toThrow(/TERN_MODELGATEWAY_BUCKETS/);
  });
});
