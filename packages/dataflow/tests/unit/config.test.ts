import { describe, expect, it } from "vitest";
import { heartbeatIntervalFor, loadDataflowConfig } from "../../src/config.js";

describe("dataflow worker config", () => {
  it("defaults to worker dataflow-0 with a 15 s drain and a 10 s Kafka session", () => {
    const config = loadDataflowConfig({});
    expect(config.TERN_DATAFLOW_ID).toBe("dataflow-0");
    expect(config.TERN_DATAFLOW_DRAIN_MS).toBe(15_000);
    expect(config.TERN_DATAFLOW_SESSION_TIMEOUT_MS).toBe(10_000);
    expect(config.TERN_TOPIC_PREFIX).toBe("seldon");
  });

  it("refuses an id that is not dataflow-<index>, naming the variable", () => {
    expect(() => loadDataflowConfig({ TERN_DATAFLOW_ID: "df-1" })).toThrow(
      /TERN_DATAFLOW_ID: must be dataflow-<index>/,
    );
    expect(() => loadDataflowConfig({ TERN_DATAFLOW_ID: "dataflow-01" })).toThrow(/TERN_DATAFLOW_ID/);
    expect(loadDataflowConfig({ TERN_DATAFLOW_ID: "dataflow-12" }).TERN_DATAFLOW_ID).toBe("dataflow-12");
  });

  it("refuses a session timeout below the broker's 6 s floor and a drain below 1 s", () => {
    expect(() => loadDataflowConfig({ TERN_DATAFLOW_SESSION_TIMEOUT_MS: "5000" })).toThrow(
      /TERN_DATAFLOW_SESSION_TIMEOUT_MS/,
    );
    expect(() => loadDataflowConfig({ TERN_DATAFLOW_DRAIN_MS: "500" })).toThrow(/TERN_DATAFLOW_DRAIN_MS/);
    expect(() => loadDataflowConfig({ TERN_DATAFLOW_DRAIN_MS: "soon" })).toThrow(/TERN_DATAFLOW_DRAIN_MS/);
  });

  it("heartbeats the consumer group at most every 3 s and at least three times per session", () => {
    expect(heartbeatIntervalFor(10_000)).toBe(3000);
    expect(heartbeatIntervalFor(6000)).toBe(2000);
    for (const session of [6000, 7000, 9001, 30_000])
      expect(heartbeatIntervalFor(session) * 3).toBeLessThanOrEqual(session);
  });
});
