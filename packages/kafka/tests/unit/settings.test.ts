import { hasCode } from "@tern/core";
import { describe, expect, it } from "vitest";
import { DEFAULT_KAFKA_SETTINGS, resolveKafkaSettings } from "../../src/index.js";

function configError(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    expect(hasCode(err, "config.invalid")).toBe(true);
    return err as Error;
  }
  throw new Error("expected a config.invalid error");
}

describe("kafka settings", () => {
  it("sets every consumer and producer knob explicitly, tuned for latency", () => {
    const settings = resolveKafkaSettings();
    expect(settings).toEqual(DEFAULT_KAFKA_SETTINGS);
    expect(settings.consumer).toMatchObject({
      sessionTimeoutMs: 10_000,
      heartbeatIntervalMs: 3_000,
      maxWaitTimeInMs: 500,
      minBytes: 1,
      partitionsConsumedConcurrently: 4,
      commitIntervalMs: 100,
    });
    expect(settings.producer).toEqual({ acks: -1, idempotent: false, ackTimeoutMs: 10_000 });
  });

  it("overrides one nested field without losing the others", () => {
    const settings = resolveKafkaSettings({ consumer: { sessionTimeoutMs: 6_000, heartbeatIntervalMs: 1_000 } });
    expect(settings.consumer.sessionTimeoutMs).toBe(6_000);
    expect(settings.consumer.maxWaitTimeInMs).toBe(500);
  });

  it("refuses a session timeout under the broker's 6 s floor", () => {
    expect(
      configError(() => resolveKafkaSettings({ consumer: { sessionTimeoutMs: 5_000, heartbeatIntervalMs: 1_000 } }))
        .message,
    ).toMatch(/sessionTimeoutMs must be at least 6000/);
  });

  it("refuses a heartbeat interval above a third of the session timeout", () => {
    expect(configError(() => resolveKafkaSettings({ consumer: { heartbeatIntervalMs: 4_000 } })).message).toMatch(
      /heartbeatIntervalMs \(4000\)/,
    );
  });

  it("refuses non-positive and fractional values, naming the field", () => {
    expect(configError(() => resolveKafkaSettings({ consumer: { minBytes: 0 } })).message).toMatch(/consumer.minBytes/);
    expect(configError(() => resolveKafkaSettings({ requestTimeoutMs: 1.5 })).message).toMatch(/requestTimeoutMs/);
    expect(configError(() => resolveKafkaSettings({ retries: -1 })).message).toMatch(/retries/);
  });

  it("refuses an idempotent producer without acks from all replicas", () => {
    expect(configError(() => resolveKafkaSettings({ producer: { idempotent: true, acks: 1 } })).message).toMatch(
      /idempotent/,
    );
  });
});
