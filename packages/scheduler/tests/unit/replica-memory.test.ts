import { describe, expect, it } from "vitest";
import { PROCESS_BYTES_STEP, placementCapacity, processBytesChanged } from "../../src/replica-memory.js";
import { createHarness, type Harness, model, server } from "./helpers.js";

const MiB = 1024 * 1024;

describe("replica memory for placement", () => {
  it("takes the runtime process's memory off the capacity with over-commit, never below 0", () => {
    expect(placementCapacity({ memoryBytes: 1024 * MiB })).toBe(1024 * MiB);
    expect(placementCapacity({ memoryBytes: 1024 * MiB, processBytes: 200 * MiB })).toBe(824 * MiB);
    // Over-commit stretches what models may declare, not the process's real memory.
    expect(placementCapacity({ memoryBytes: 1000 * MiB, overcommitPercent: 50, processBytes: 200 * MiB })).toBe(
      1300 * MiB,
    );
    expect(placementCapacity({ memoryBytes: 100 * MiB, processBytes: 300 * MiB })).toBe(0);
  });

  it("stores a heartbeat's figure only when it moved by a step or more", () => {
    expect(processBytesChanged(undefined, PROCESS_BYTES_STEP - 1)).toBe(false);
    expect(processBytesChanged(undefined, PROCESS_BYTES_STEP)).toBe(true);
    expect(processBytesChanged(200 * MiB, 200 * MiB + 4096)).toBe(false);
    expect(processBytesChanged(200 * MiB, 200 * MiB - PROCESS_BYTES_STEP)).toBe(true);
  });
});

describe("the scheduler with a replica's process memory", () => {
  let h: Harness;

  it("places by what is left after the process, and again when a heartbeat says it shrank", async () => {
    h = await createHarness();
    try {
      await h.apply(server("mlserver", 1));
      await h.agent("mlserver", 0, { memoryBytes: 1024 * MiB });
      await h.scheduler.reportProcessMemory("mlserver", 0, 900 * MiB);
      expect(h.scheduler.agentView("mlserver", 0)?.processBytes).toBe(900 * MiB);

      await h.apply(model("big", "", 1).replace("memory: 100Ki", "memory: 200Mi"));
      await h.settle();
      const failed = h.scheduler.get("Model", "big") as { state: string; reason?: string };
      expect(failed.state).toBe("ScheduleFailed");
      expect(failed.reason).toMatch(/200/);

      await h.scheduler.reportProcessMemory("mlserver", 0, 300 * MiB);
      await h.settle();
      expect((h.scheduler.get("Model", "big") as { state: string }).state).toBe("ModelAvailable");
      const srv = h.scheduler.get("Server", "mlserver") as { replicaStatus: Array<{ processBytes: number }> };
      expect(srv.replicaStatus[0]?.processBytes).toBe(300 * MiB);
    } finally {
      await h.close();
    }
  });
});
