import type { DeploymentStrategy } from "@tern/core";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ecsDeploymentConfiguration, rollingUpdateBounds } from "../../src/deployment-strategy.js";

/** What ECS makes of a configuration on `desired` tasks (its documented rounding: the maximum down, the minimum up). */
function ecsTaskBounds(config: { minimumHealthyPercent: number; maximumPercent: number }, desired: number) {
  return {
    maxTasks: Math.floor((desired * config.maximumPercent) / 100),
    minHealthy: Math.ceil((desired * config.minimumHealthyPercent) / 100),
  };
}

describe("ecsDeploymentConfiguration", () => {
  it("keeps the controller's 100/200 (start new tasks before stopping old ones) for a Server with no strategy", () => {
    expect(ecsDeploymentConfiguration(undefined, 4)).toEqual({ minimumHealthyPercent: 100, maximumPercent: 200 });
  });

  it("maps Recreate to stopping every old task before starting new ones (0/100), whatever the replicas", () => {
    for (const replicas of [0, 1, 4, 250]) {
      expect(ecsDeploymentConfiguration({ type: "Recreate" }, replicas)).toEqual({
        minimumHealthyPercent: 0,
        maximumPercent: 100,
      });
    }
  });

  it("maps maxSurge 1 / maxUnavailable 0 on 4 replicas to one extra task and none missing (100/125)", () => {
    const strategy: DeploymentStrategy = { type: "RollingUpdate", rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } };
    expect(ecsDeploymentConfiguration(strategy, 4)).toEqual({ minimumHealthyPercent: 100, maximumPercent: 125 });
  });

  it("uses Kubernetes' 25%/25% for omitted bounds, with or without a type", () => {
    expect(ecsDeploymentConfiguration({}, 4)).toEqual({ minimumHealthyPercent: 75, maximumPercent: 125 });
    expect(ecsDeploymentConfiguration({ type: "RollingUpdate" }, 8)).toEqual({
      minimumHealthyPercent: 75,
      maximumPercent: 125,
    });
    // Only maxUnavailable given: maxSurge is still 25% (rounded up to 1 of 4).
    expect(ecsDeploymentConfiguration({ rollingUpdate: { maxUnavailable: 2 } }, 4)).toEqual({
      minimumHealthyPercent: 50,
      maximumPercent: 125,
    });
  });

  it("rounds a percentage maxSurge up and a percentage maxUnavailable down, as Kubernetes does", () => {
    // 25% of 3 is 0.75: one extra task, none missing.
    expect(rollingUpdateBounds({ maxSurge: "25%", maxUnavailable: "25%" }, 3)).toEqual({
      maxSurge: 1,
      maxUnavailable: 0,
    });
    expect(ecsDeploymentConfiguration({ rollingUpdate: { maxSurge: "25%", maxUnavailable: "25%" } }, 3)).toEqual({
      minimumHealthyPercent: 100,
      maximumPercent: 134,
    });
    // 50% of 5 is 2.5: three extra, two missing.
    expect(rollingUpdateBounds({ maxSurge: "50%", maxUnavailable: "50%" }, 5)).toEqual({
      maxSurge: 3,
      maxUnavailable: 2,
    });
  });

  it("lets one replica be unavailable when both bounds round to 0 (Kubernetes' rule, so a rollout can proceed)", () => {
    // maxSurge 0 (allowed with a non-zero maxUnavailable) and 10% of 4 rounds down to 0.
    expect(rollingUpdateBounds({ maxSurge: 0, maxUnavailable: "10%" }, 4)).toEqual({ maxSurge: 0, maxUnavailable: 1 });
    expect(ecsDeploymentConfiguration({ rollingUpdate: { maxSurge: 0, maxUnavailable: "10%" } }, 4)).toEqual({
      minimumHealthyPercent: 75,
      maximumPercent: 100,
    });
  });

  it("never keeps fewer than 0 tasks when maxUnavailable exceeds the replicas", () => {
    expect(ecsDeploymentConfiguration({ rollingUpdate: { maxUnavailable: 10, maxSurge: 0 } }, 4)).toEqual({
      minimumHealthyPercent: 0,
      maximumPercent: 100,
    });
  });

  it("resolves against one replica while the Server has none (nothing runs; a scale-up sends the real figures)", () => {
    expect(ecsDeploymentConfiguration({ rollingUpdate: { maxSurge: 2, maxUnavailable: 0 } }, 0)).toEqual(
      ecsDeploymentConfiguration({ rollingUpdate: { maxSurge: 2, maxUnavailable: 0 } }, 1),
    );
  });

  const bound = fc.oneof(
    fc.nat({ max: 150 }),
    fc.nat({ max: 300 }).map((n) => `${n}%`),
  );
  const rolling = fc
    .record({ maxSurge: bound, maxUnavailable: bound }, { requiredKeys: [] })
    // What validation refuses: both explicitly zero.
    .filter((r) => !(isZero(r.maxSurge) && isZero(r.maxUnavailable)));

  it("gives ECS percentages that it rounds back to exactly Kubernetes' task counts, up to 100 replicas", () => {
    fc.assert(
      fc.property(rolling, fc.integer({ min: 1, max: 100 }), (r, replicas) => {
        const { maxSurge, maxUnavailable } = rollingUpdateBounds(r, replicas);
        const config = ecsDeploymentConfiguration({ rollingUpdate: r }, replicas);
        expect(ecsTaskBounds(config, replicas)).toEqual({
          maxTasks: replicas + maxSurge,
          minHealthy: replicas - maxUnavailable,
        });
        expect(config.minimumHealthyPercent).toBeGreaterThanOrEqual(0);
        expect(config.minimumHealthyPercent).toBeLessThanOrEqual(100);
        expect(config.maximumPercent).toBeGreaterThanOrEqual(100);
        // A rollout can always move: a task may be stopped first or started first.
        expect(maxSurge + maxUnavailable).toBeGreaterThan(0);
      }),
    );
  });

  it("above 100 replicas, where a whole percentage cannot name every count, errs by under 1% towards a rollout that moves", () => {
    fc.assert(
      fc.property(rolling, fc.integer({ min: 101, max: 2000 }), (r, replicas) => {
        const { maxSurge, maxUnavailable } = rollingUpdateBounds(r, replicas);
        const tasks = ecsTaskBounds(ecsDeploymentConfiguration({ rollingUpdate: r }, replicas), replicas);
        expect(tasks.maxTasks).toBeGreaterThanOrEqual(replicas + maxSurge);
        expect(tasks.minHealthy).toBeLessThanOrEqual(replicas - maxUnavailable);
        // Whole percentages are 1% steps of the desired count: never further off than one step.
        expect(tasks.maxTasks - (replicas + maxSurge)).toBeLessThan(replicas / 100);
        expect(replicas - maxUnavailable - tasks.minHealthy).toBeLessThan(replicas / 100);
      }),
    );
  });
});

function isZero(value: number | string | undefined): boolean {
  return value === 0 || value === "0%";
}
