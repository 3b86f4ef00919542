import type { RouteTable } from "@tern/core";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { createControlApp } from "../../../scheduler/src/app.js";
import { createHarness, type Harness, model, server } from "../../../scheduler/tests/unit/helpers.js";
import { createRefusingWaker, createSchedulerWaker, isAsleep } from "../../src/model-waker.js";
import type { RouteSource } from "../../src/route-source.js";

const logger = pino({ level: "silent" });
let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

/** A real scheduler (in memory) behind its real control API, called in-process; counts the activate calls. */
async function scheduler() {
  const harness = await createHarness({
    autoscaling: { lagThreshold: 2, scaleUpWindowMs: 1_000, idleWindowMs: 1_000, cooldownMs: 0 },
  });
  h = harness;
  const app = createControlApp({ active: () => harness.scheduler, store: harness.store, leaseName: "s", logger });
  const calls: string[] = [];
  const fetch = (async (input: string | URL | Request, init?: RequestInit) => {
    calls.push(String(input));
    return app.request(String(input), init);
  }) as typeof globalThis.fetch;
  const routes: RouteSource = { table: () => harness.scheduler.routes(), close: async () => {} };
  return { harness, fetch, calls, routes };
}

describe("waking a model scaled to zero", () => {
  it("lists a model scaled to zero without endpoints, and 50 concurrent first requests make one call and one load", async () => {
    const { harness, fetch, calls, routes } = await scheduler();
    await harness.apply(server("onnx", 1));
    const agent = await harness.agent("onnx", 0);
    await harness.apply(model("iris", "  minReplicas: 0\n  maxReplicas: 2\n", 0));
    await harness.settle();
    expect(isAsleep(harness.scheduler.routes(), "iris")).toBe(true);
    expect(harness.scheduler.routes().models.iris).toMatchObject({ state: "ModelScaledDown", endpoints: [] });

    const waker = createSchedulerWaker({ url: "http://scheduler", logger, fetch, pollMs: 5 });
    const deadline = Date.now() + 10_000;
    const tables: RouteTable[] = await Promise.all(
      Array.from({ length: 50 }, () => waker.wake("iris", routes, deadline)),
    );
    for (const table of tables) expect(table.models.iris?.endpoints).toHaveLength(1);
    expect(calls).toEqual(["http://scheduler/v1/models/iris/activate"]);
    expect(agent.loads.filter((l) => l.startsWith("iris"))).toHaveLength(1);
  });

  it("answers 503-style unavailable naming the reason when the scheduler refuses, and times out at the deadline", async () => {
    const { harness, fetch, routes } = await scheduler();
    await harness.apply(server("onnx", 1));
    await harness.apply(model("plain", "", 0));
    const waker = createSchedulerWaker({ url: "http://scheduler", logger, fetch, pollMs: 5 });
    await expect(waker.wake("plain", routes, Date.now() + 5_000)).rejects.toMatchObject({
      code: "unavailable",
      message: expect.stringMatching(/could not be woken: .*not autoscaled/),
    });
    // An agent that never finishes loading: the replica never comes, so the wait ends at the deadline.
    await harness.agent("onnx", 0, { auto: false });
    await harness.apply(model("iris", "  minReplicas: 0\n  maxReplicas: 2\n", 0));
    await expect(waker.wake("iris", routes, Date.now() + 200)).rejects.toMatchObject({
      code: "timeout",
      message: expect.stringContaining("(it is ModelProgressing)"),
    });
  });

  it("stops waiting at the deadline when a read of the route table hangs (a slow DynamoDB read on Lambda)", async () => {
    const { harness, fetch } = await scheduler();
    await harness.apply(server("onnx", 1));
    await harness.agent("onnx", 0);
    await harness.apply(model("iris", "  minReplicas: 0\n  maxReplicas: 2\n", 0));
    await harness.settle();
    // Every read of the route table never answers: the wait must still end at the deadline.
    const hanging: RouteSource = { table: () => new Promise<RouteTable>(() => {}), close: async () => {} };
    const waker = createSchedulerWaker({ url: "http://scheduler", logger, fetch, pollMs: 5 });
    await expect(waker.wake("iris", hanging, Date.now() + 300)).rejects.toMatchObject({ code: "timeout" });
  });
});

describe("a gateway that cannot wake models (Lambda without TERN_SCHEDULER_URL)", () => {
  it("refuses at once with a message naming the model and why, and lets a replica miss stand", async () => {
    const waker = createRefusingWaker("TERN_SCHEDULER_URL unset");
    const routes: RouteSource = { table: () => undefined, close: async () => {} };
    await expect(waker.wake("iris", routes, Date.now() + 5_000)).rejects.toMatchObject({
      code: "unavailable",
      message: "model iris is scaled to zero and this gateway cannot wake it (TERN_SCHEDULER_URL unset)",
    });
    expect(await waker.afterMiss("iris", undefined, routes, Date.now() + 5_000)).toBeUndefined();
  });
});
