import type { ModelStatus } from "@tern/core";
import { afterEach, describe, expect, it } from "vitest";
import type { ServerStatus } from "../../src/views.js";
import { createHarness, type Harness, model, server } from "./helpers.js";

let h: Harness;
afterEach(async () => {
  await h?.close();
});

const POLICY = { lagThreshold: 2, scaleUpWindowMs: 2_000, idleWindowMs: 10_000, cooldownMs: 1_000 };

function status(name: string): ModelStatus {
  return h.scheduler.get("Model", name) as ModelStatus;
}

/** Every agent of `server` that holds `name` reports `lag` and `idleMs` with a heartbeat. */
function report(srv: string, replicas: number, name: string, lag: number, idleMs = 0): void {
  for (let r = 0; r < replicas; r++) {
    h.scheduler.heartbeat(srv, r, {
      models: [{ model: name, inFlight: lag > 0 ? Math.ceil(lag) : 0, lag, requestsPerSecond: lag * 100, idleMs }],
    });
  }
}

/** Time passes in heartbeat-sized steps, each with a report and an autoscaling pass. */
async function run(ms: number, each: () => void): Promise<void> {
  for (let t = 0; t < ms; t += 500) {
    h.clock.now += 500;
    each();
    await h.scheduler.autoscale();
    await h.settle();
  }
}

describe("model autoscaling in the scheduler", () => {
  it("adds a replica under sustained lag and removes it once idle, never rewriting the manifest's replicas", async () => {
    h = await createHarness({ autoscaling: POLICY });
    await h.apply(server("onnx", 3));
    for (let r = 0; r < 3; r++) await h.agent("onnx", r);
    await h.apply(model("iris", "  minReplicas: 1\n  maxReplicas: 3\n"));
    await h.settle();
    expect(status("iris")).toMatchObject({ replicas: 1, desiredReplicas: 1, availableReplicas: 1 });

    await run(3_000, () => report("onnx", 3, "iris", 8));
    expect(status("iris")).toMatchObject({ replicas: 1, state: "ModelAvailable" });
    expect(status("iris").desiredReplicas).toBeGreaterThanOrEqual(2);
    expect(status("iris").autoscaling?.lastDecision?.reason).toMatch(/lag 8 per replica above 2/);
    expect(status("iris").availableReplicas).toBe(status("iris").desiredReplicas);
    expect(h.scheduler.snapshot().models.get("iris")!.resource.spec.replicas).toBe(1);

    await run(30_000, () => report("onnx", 3, "iris", 0, 20_000));
    expect(status("iris")).toMatchObject({ desiredReplicas: 1, availableReplicas: 1, state: "ModelAvailable" });
    expect(status("iris").autoscaling?.lastDecision?.reason).toMatch(/served no request/);
  });

  it("stops at the server's replicas and says it wants more, naming both numbers", async () => {
    h = await createHarness({ autoscaling: POLICY });
    await h.apply(server("onnx", 2));
    for (let r = 0; r < 2; r++) await h.agent("onnx", r);
    await h.apply(model("iris", "  minReplicas: 1\n  maxReplicas: 4\n"));
    await h.settle();
    await run(12_000, () => report("onnx", 2, "iris", 9));
    expect(status("iris").desiredReplicas).toBe(2);
    expect(status("iris").autoscaling).toMatchObject({ minReplicas: 1, maxReplicas: 4, wantsServerReplicas: 3 });
    expect(status("iris").autoscaling?.lastDecision?.reason).toContain("wants 3 replicas but server onnx has 2");
  });

  it("unloads an idle model with minReplicas 0 everywhere, and one activation (however many calls) wakes it", async () => {
    h = await createHarness({ autoscaling: POLICY });
    await h.apply(server("onnx", 1));
    const a0 = await h.agent("onnx", 0);
    await h.apply(model("iris", "  minReplicas: 0\n  maxReplicas: 2\n"));
    await h.settle();
    expect(status("iris").state).toBe("ModelAvailable");
    await run(12_000, () => report("onnx", 1, "iris", 0, 11_000));
    expect(status("iris")).toMatchObject({ state: "ModelScaledDown", desiredReplicas: 0, availableReplicas: 0 });
    expect(h.scheduler.routes().models.iris).toMatchObject({ state: "ModelScaledDown", endpoints: [] });
    const loadsBefore = a0.loads.length;

    const results = await Promise.all(Array.from({ length: 20 }, () => h.scheduler.activateModel("iris")));
    await h.settle();
    expect(results.filter((r) => r.activated)).toHaveLength(1);
    expect(status("iris")).toMatchObject({ state: "ModelAvailable", desiredReplicas: 1 });
    expect(a0.loads.length - loadsBefore).toBe(1);
    expect(status("iris").autoscaling?.lastDecision?.reason).toContain("a request arrived while scaled to zero");
  });

  it("raises an autoscaled Server for a model that wants more, then shrinks it highest index first once idle", async () => {
    h = await createHarness({ autoscaling: { ...POLICY, serverIdleWindowMs: 3_000 } });
    await h.apply(
      "apiVersion: mlops.seldon.io/v1alpha1\nkind: Server\nmetadata: {name: onnx}\nspec: {serverConfig: tern-onnx, replicas: 1, minReplicas: 1, maxReplicas: 3}\n",
    );
    await h.agent("onnx", 0);
    await h.apply(model("iris", "  minReplicas: 1\n  maxReplicas: 4\n"));
    await h.settle();
    const serverStatus = () => h.scheduler.get("Server", "onnx") as ServerStatus;

    // Lagging on one replica: the model wants 2, the server has 1, so the server goes to 2 (its agent is started by
    // the controller — here the test) and the model follows.
    await run(3_000, () => report("onnx", 1, "iris", 8));
    expect(serverStatus()).toMatchObject({ replicas: 2, specReplicas: 1 });
    expect(serverStatus().autoscaling?.reason).toBe("model iris wants 2 replicas: 1 → 2");
    await h.agent("onnx", 1);
    await run(3_000, () => report("onnx", 2, "iris", 8));
    expect(status("iris").availableReplicas).toBeGreaterThanOrEqual(2);
    expect(serverStatus().replicas).toBe(3);
    expect(serverStatus().autoscaling?.maxReplicas).toBe(3);
    await h.agent("onnx", 2);
    await run(3_000, () => report("onnx", 3, "iris", 8));
    // At the server's max: the model stops at 3 and says so, naming both numbers.
    expect(status("iris").desiredReplicas).toBe(3);
    expect(serverStatus().autoscaling?.reason).toBe("model iris wants 4 replicas but maxReplicas is 3");
    expect(status("iris").autoscaling?.lastDecision?.reason).toBe(
      "wants 4 replicas but server onnx is at its maxReplicas 3: stays at 3",
    );

    // Idle: the model goes back to 1, the emptied replicas let the server shrink to 1, the highest leaving first.
    await run(40_000, () => report("onnx", 3, "iris", 0, 20_000));
    expect(status("iris")).toMatchObject({ desiredReplicas: 1, availableReplicas: 1 });
    expect(serverStatus()).toMatchObject({ replicas: 1, specReplicas: 1 });
    const leaving = serverStatus()
      .replicaStatus.filter((r) => r.leaving)
      .map((r) => r.replica);
    expect(leaving).toEqual([1, 2]);
    expect(
      serverStatus()
        .replicaStatus.filter((r) => r.mayStop)
        .map((r) => r.replica),
    ).toEqual([1, 2]);
  });

  it("refuses to wake a model that asks for 0 replicas without autoscaling", async () => {
    h = await createHarness({ autoscaling: POLICY });
    await h.apply(server("onnx", 1));
    await h.agent("onnx", 0);
    await h.apply(model("iris", "", 0));
    await expect(h.scheduler.activateModel("iris")).rejects.toMatchObject({ code: "conflict" });
    await expect(h.scheduler.activateModel("nope")).rejects.toMatchObject({ code: "not_found" });
  });
});
