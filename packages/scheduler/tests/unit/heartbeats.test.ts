import { afterEach, describe, expect, it } from "vitest";
import { createHarness, type Harness, server } from "./helpers.js";

let h: Harness;
afterEach(async () => {
  await h?.close();
});

const event = { model: "iris", version: 1, state: "Available" } as const;

describe("heartbeat bookkeeping", () => {
  it("keeps nothing for agents that are not registered, however many report", async () => {
    h = await createHarness();
    await h.apply(server("onnx", 1));
    for (let replica = 0; replica < 500; replica++) {
      await expect(h.scheduler.reportEvent("ghost", replica, event)).rejects.toMatchObject({ code: "not_found" });
      expect(h.scheduler.heartbeat("ghost", replica)).toBe(false);
    }
    expect(h.scheduler.trackedHeartbeats()).toBe(0);
  });

  it("tracks a registered agent until it leaves or misses its deadline", async () => {
    h = await createHarness();
    await h.apply(server("onnx", 2));
    await h.agent("onnx", 0);
    await h.agent("onnx", 1);
    expect(h.scheduler.trackedHeartbeats()).toBe(2);
    await h.scheduler.removeAgent("onnx", 0);
    // An event that arrives after the agent left must not bring its entry back.
    await expect(h.scheduler.reportEvent("onnx", 0, event)).rejects.toMatchObject({ code: "not_found" });
    expect(h.scheduler.trackedHeartbeats()).toBe(1);
    h.clock.now += 7000;
    await h.scheduler.checkHeartbeats();
    expect(h.scheduler.agentView("onnx", 1)).toBeUndefined();
    expect(h.scheduler.trackedHeartbeats()).toBe(0);
  });
});
