import { describe, expect, it } from "vitest";
import { createModelTraffic } from "../../src/model-traffic.js";

describe("model traffic (the autoscaling figures an agent reports with its heartbeats)", () => {
  it("reports the time-weighted mean in flight as lag, answered requests per second and the idle time", () => {
    const clock = { t: 0 };
    const traffic = createModelTraffic(() => clock.t);
    traffic.loaded("iris");
    // Two requests in flight for the first half of a 1 s period, none in the second half.
    traffic.begin("iris");
    traffic.begin("iris");
    clock.t = 500;
    traffic.end("iris");
    traffic.end("iris");
    clock.t = 1_000;
    expect(traffic.report(["iris"])).toEqual([
      { model: "iris", inFlight: 0, lag: 1, requestsPerSecond: 2, idleMs: 1_000 },
    ]);
    // The next period starts fresh; a request still in flight makes the model not idle.
    traffic.begin("iris");
    clock.t = 2_000;
    expect(traffic.report(["iris"])).toEqual([{ model: "iris", inFlight: 1, lag: 1, requestsPerSecond: 0, idleMs: 0 }]);
  });

  it("counts idle time from the load for a model never asked, and forgets names it does not hold", () => {
    const clock = { t: 100 };
    const traffic = createModelTraffic(() => clock.t);
    traffic.loaded("iris");
    traffic.begin("typo");
    traffic.end("typo");
    clock.t = 3_100;
    expect(traffic.report(["iris"])).toEqual([
      { model: "iris", inFlight: 0, lag: 0, requestsPerSecond: 0, idleMs: 3_000 },
    ]);
    expect(traffic.report(["iris"]).map((r) => r.model)).toEqual(["iris"]);
  });
});
