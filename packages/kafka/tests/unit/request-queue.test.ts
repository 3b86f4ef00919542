// The adapter corrects kafkajs 2.2.4's request queue on import; this test reaches into kafkajs on purpose to check it.
import RequestQueue from "kafkajs/src/network/requestQueue/index.js";
import { afterEach, describe, expect, it } from "vitest";
import "../../src/kafkajs-bus.js";

const quiet = { debug() {}, warn() {}, error() {} };
const queues: RequestQueue[] = [];
function queue(): RequestQueue {
  const q = new RequestQueue({
    maxInFlightRequests: null,
    requestTimeout: 10_000,
    enforceRequestTimeout: false,
    clientId: "test",
    broker: "localhost:9092",
    logger: quiet,
  });
  queues.push(q);
  return q;
}

afterEach(() => {
  for (const q of queues.splice(0)) {
    if (q.throttleCheckTimeoutId) clearTimeout(q.throttleCheckTimeoutId);
  }
});

describe("kafkajs's request queue, as the adapter leaves it", () => {
  it("schedules no check when nothing is pending and nothing throttles (kafkajs 2.2.4 re-armed a 1 ms timer forever)", () => {
    const q = queue();
    // What kafkajs runs after every response it receives.
    q.checkPendingRequests();
    expect(q.throttleCheckTimeoutId).toBeNull();
  });

  it("still checks again later when a request waits", () => {
    const q = queue();
    q.pending.push({});
    q.scheduleCheckPendingRequests();
    expect(q.throttleCheckTimeoutId).not.toBeNull();
  });

  it("still checks again when the broker's throttle ends, so a request queued meanwhile goes out", () => {
    const q = queue();
    q.throttledUntil = Date.now() + 50;
    q.scheduleCheckPendingRequests();
    expect(q.throttleCheckTimeoutId).not.toBeNull();
  });
});
