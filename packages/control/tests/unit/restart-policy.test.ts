import { describe, expect, it } from "vitest";
import { createRestartPolicy } from "../../src/restart-policy.js";

describe("restart policy", () => {
  it("restarts with a delay that doubles per crash within the window, up to the cap", () => {
    const policy = createRestartPolicy({ initialDelayMs: 500, maxDelayMs: 3_000, maxRestarts: 10, windowMs: 60_000 });
    const delays = [0, 1, 2, 3, 4, 5].map((i) => policy.crashed(1_000 + i * 100));
    expect(delays.map((d) => (d.action === "restart" ? d.delayMs : d.action))).toEqual([
      500, 1_000, 2_000, 3_000, 3_000, 3_000,
    ]);
  });

  it("gives up on the crash after maxRestarts within the window", () => {
    const policy = createRestartPolicy({ maxRestarts: 5, windowMs: 60_000 });
    const actions = [0, 1, 2, 3, 4, 5].map((i) => policy.crashed(i * 1_000).action);
    expect(actions).toEqual(["restart", "restart", "restart", "restart", "restart", "give-up"]);
    expect(policy.rule).toBe("gives up after 6 crashes within 60 s");
  });

  it("forgets crashes older than the window, so an occasional crash is always restarted after a short delay", () => {
    const policy = createRestartPolicy({ initialDelayMs: 500, maxRestarts: 2, windowMs: 60_000 });
    for (let i = 0; i < 10; i++) {
      expect(policy.crashed(i * 61_000)).toEqual({ action: "restart", delayMs: 500, crashesInWindow: 1 });
    }
    expect(policy.crashes).toBe(10);
  });

  it("counts a crash just inside the window but not one exactly a window old", () => {
    const policy = createRestartPolicy({ maxRestarts: 1, windowMs: 60_000 });
    expect(policy.crashed(0).action).toBe("restart");
    expect(policy.crashed(60_000).action).toBe("restart");
    expect(policy.crashed(119_999).action).toBe("give-up");
  });
});
