import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type AutoscalingPolicy,
  decideScaling,
  decideServerScaling,
  type LagSample,
  type ScalingInput,
  scalingBounds,
} from "../../src/autoscaling.js";

// Fixed seed: the decision is a pure function of the generated inputs, so a fixed seed cannot flake.
const SEED = 14_2026;
const RUNS = 400;

const POLICY: AutoscalingPolicy = { lagThreshold: 2, scaleUpWindowMs: 3_000, idleWindowMs: 10_000, cooldownMs: 2_000 };

function input(over: Partial<ScalingInput>): ScalingInput {
  return { model: "iris", minReplicas: 1, maxReplicas: 4, current: 1, samples: [], now: 100_000, ...over };
}

/** One sample a second from `from` to `to` (inclusive), all with `lag`. */
function steady(from: number, to: number, lag: number): LagSample[] {
  const out: LagSample[] = [];
  for (let at = from; at <= to; at += 1_000) out.push({ at, lag });
  return out;
}

describe("decideScaling", () => {
  it("scales up by one once the lag stayed above the threshold for the whole window", () => {
    const d = decideScaling(input({ current: 2, samples: steady(96_000, 100_000, 5) }), POLICY);
    expect(d).toMatchObject({ desired: 3, change: "up" });
    expect(d.reason).toContain("2 → 3");
  });

  it("does not scale up when the lag dipped below the threshold within the window", () => {
    const samples = [...steady(95_000, 98_000, 5), { at: 98_500, lag: 1 }, ...steady(99_000, 100_000, 5)];
    expect(decideScaling(input({ samples }), POLICY)).toMatchObject({ desired: 1, change: "none" });
  });

  it("ignores samples taken before the last change (they measured the old replica count)", () => {
    const d = decideScaling(input({ current: 2, samples: steady(90_000, 100_000, 5), lastChangeAt: 98_500 }), POLICY);
    expect(d).toMatchObject({ desired: 2, change: "none" });
  });

  it("scales down by one when a replica has been idle for the window, down to minReplicas 0", () => {
    const idle = input({ minReplicas: 0, current: 1, idleMs: 10_000 });
    expect(decideScaling(idle, POLICY)).toMatchObject({ desired: 0, change: "down" });
    expect(decideScaling({ ...idle, minReplicas: 1 }, POLICY)).toMatchObject({ desired: 1, change: "none" });
  });

  it("changes nothing within the cool-down", () => {
    const d = decideScaling(input({ current: 3, idleMs: 60_000, lastChangeAt: 99_000 }), POLICY);
    expect(d).toMatchObject({ desired: 3, change: "none" });
  });

  it("stops at the server's replicas and says it wants more, naming both numbers", () => {
    const d = decideScaling(
      input({
        current: 2,
        maxReplicas: 6,
        server: { name: "mlserver", replicas: 2 },
        samples: steady(90_000, 100_000, 9),
      }),
      POLICY,
    );
    expect(d.desired).toBe(2);
    expect(d.wantsServerReplicas).toBe(3);
    expect(d.reason).toContain("wants 3 replicas but server mlserver has 2");
  });

  it("stops at a server that is at its maxReplicas and says so, naming the wanted count and that max", () => {
    const d = decideScaling(
      input({
        current: 2,
        maxReplicas: 4,
        server: { name: "capped", replicas: 2, maxReplicas: 2 },
        samples: steady(90_000, 100_000, 9),
      }),
      POLICY,
    );
    expect(d).toMatchObject({ desired: 2, change: "none", wantsServerReplicas: 3 });
    expect(d.reason).toBe("wants 3 replicas but server capped is at its maxReplicas 2: stays at 2");
    // Below its max the server can still grow: the model asks for it.
    const growing = decideScaling(
      input({
        current: 2,
        maxReplicas: 4,
        server: { name: "capped", replicas: 2, maxReplicas: 3 },
        samples: steady(90_000, 100_000, 9),
      }),
      POLICY,
    );
    expect(growing.reason).toBe("wants 3 replicas but server capped has 2: needs more server replicas");
  });

  it("clamps a count outside the bounds at once, whatever the cool-down", () => {
    expect(decideScaling(input({ current: 7, lastChangeAt: 99_999 }), POLICY)).toMatchObject({ desired: 4 });
    expect(decideScaling(input({ current: 0, minReplicas: 2 }), POLICY)).toMatchObject({ desired: 2 });
  });
});

describe("decideServerScaling", () => {
  const server = { server: "onnx", minReplicas: 1, maxReplicas: 4, current: 2, emptyForMs: [], now: 100_000 };
  const policy = { cooldownMs: 2_000, idleWindowMs: 10_000, serverIdleWindowMs: 5_000 };

  it("rises to what a model wants, up to maxReplicas, saying which model and both numbers", () => {
    expect(decideServerScaling({ ...server, wanted: { model: "iris", replicas: 3 } }, policy)).toMatchObject({
      desired: 3,
      change: "up",
      reason: "model iris wants 3 replicas: 2 → 3",
    });
    const capped = decideServerScaling({ ...server, current: 4, wanted: { model: "iris", replicas: 5 } }, policy);
    expect(capped).toMatchObject({
      desired: 4,
      change: "none",
      reason: "model iris wants 5 replicas but maxReplicas is 4",
    });
  });

  it("goes down by one when a replica held nothing for the window, never below minReplicas, not within the cool-down", () => {
    expect(decideServerScaling({ ...server, emptyForMs: [6_000] }, policy)).toMatchObject({
      desired: 1,
      change: "down",
    });
    expect(decideServerScaling({ ...server, emptyForMs: [4_000] }, policy).desired).toBe(2);
    expect(decideServerScaling({ ...server, current: 1, emptyForMs: [60_000] }, policy).desired).toBe(1);
    expect(decideServerScaling({ ...server, emptyForMs: [6_000], lastChangeAt: 99_000 }, policy).desired).toBe(2);
  });
});

describe("scalingBounds", () => {
  it("autoscales only models with minReplicas or maxReplicas", () => {
    expect(scalingBounds({ storageUri: "file:///m", replicas: 2 })).toBeUndefined();
    expect(scalingBounds({ storageUri: "file:///m", minReplicas: 0, maxReplicas: 3 })).toEqual({ min: 0, max: 3 });
    expect(scalingBounds({ storageUri: "file:///m", maxReplicas: 3 })).toEqual({ min: 1, max: 3 });
  });
});

// --- properties ---------------------------------------------------------------------------------------------------

const policyArb: fc.Arbitrary<AutoscalingPolicy> = fc.record({
  lagThreshold: fc.integer({ min: 1, max: 8 }),
  scaleUpWindowMs: fc.integer({ min: 0, max: 8 }).map((n) => n * 500),
  idleWindowMs: fc.integer({ min: 1, max: 20 }).map((n) => n * 1_000),
  cooldownMs: fc.integer({ min: 0, max: 8 }).map((n) => n * 500),
});

const NOW = 100_000;

/** An input and a second lag series over the same times whose every value is at least the first's. */
const inputPairArb = fc
  .record({
    min: fc.integer({ min: 0, max: 4 }),
    span: fc.integer({ min: 0, max: 6 }),
    current: fc.integer({ min: 0, max: 12 }),
    serverReplicas: fc.option(fc.integer({ min: 0, max: 10 }), { nil: undefined }),
    lags: fc.array(fc.tuple(fc.integer({ min: 0, max: 12 }), fc.integer({ min: 0, max: 6 })), { maxLength: 12 }),
    idleMs: fc.option(fc.integer({ min: 0, max: 30_000 }), { nil: undefined }),
    lastChangeAgo: fc.option(fc.integer({ min: 0, max: 15_000 }), { nil: undefined }),
  })
  .map((g) => {
    const times = g.lags.map((_, i) => NOW - (g.lags.length - 1 - i) * 700);
    const low: ScalingInput = {
      model: "m",
      minReplicas: g.min,
      maxReplicas: g.min + g.span,
      current: g.current,
      samples: g.lags.map(([lag], i) => ({ at: times[i]!, lag })),
      now: NOW,
    };
    if (g.serverReplicas !== undefined) low.server = { name: "s", replicas: g.serverReplicas };
    if (g.idleMs !== undefined) low.idleMs = g.idleMs;
    if (g.lastChangeAgo !== undefined) low.lastChangeAt = NOW - g.lastChangeAgo;
    const high: ScalingInput = {
      ...low,
      samples: g.lags.map(([lag, extra], i) => ({ at: times[i]!, lag: lag + extra })),
    };
    return { low, high };
  });

describe("decideScaling properties", () => {
  it("never leaves [minReplicas, maxReplicas] and never scales up past the server's replicas", () => {
    fc.assert(
      fc.property(inputPairArb, policyArb, ({ low }, policy) => {
        const d = decideScaling(low, policy);
        expect(d.desired).toBeGreaterThanOrEqual(low.minReplicas);
        expect(d.desired).toBeLessThanOrEqual(low.maxReplicas);
        if (d.change === "up") expect(d.desired).toBeLessThanOrEqual(low.server?.replicas ?? Number.POSITIVE_INFINITY);
        if (d.change === "up" || d.change === "down") expect(Math.abs(d.desired - low.current)).toBe(1);
        if (d.wantsServerReplicas !== undefined) {
          expect(d.wantsServerReplicas).toBeGreaterThan(low.server!.replicas);
          expect(d.reason).toContain(`server s has ${low.server!.replicas}`);
        }
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it("is monotone in lag: more lag never gives fewer replicas", () => {
    fc.assert(
      fc.property(inputPairArb, policyArb, ({ low, high }, policy) => {
        expect(decideScaling(high, policy).desired).toBeGreaterThanOrEqual(decideScaling(low, policy).desired);
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it("changes nothing within the cool-down unless the count is outside the bounds", () => {
    fc.assert(
      fc.property(inputPairArb, policyArb, ({ low }, policy) => {
        const d = decideScaling(low, policy);
        const cooling = low.lastChangeAt !== undefined && low.now - low.lastChangeAt < policy.cooldownMs;
        const inBounds = low.current >= low.minReplicas && low.current <= low.maxReplicas;
        if (cooling && inBounds) expect(d.desired).toBe(low.current);
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  /**
   * A closed loop: a constant offered load split evenly over the replicas (lag per replica = load / replicas), the
   * model never idle while the load is above zero, idle from the start when it is zero. The desired count must move
   * in one direction only — up to what the load needs (or the bounds), or down to the minimum — never back and forth.
   */
  it("does not flap under constant load", () => {
    const caseArb = fc.record({
      policy: policyArb,
      load: fc.integer({ min: 0, max: 40 }),
      min: fc.integer({ min: 0, max: 3 }),
      span: fc.integer({ min: 0, max: 5 }),
      start: fc.integer({ min: 0, max: 8 }),
      serverReplicas: fc.integer({ min: 1, max: 8 }),
    });
    fc.assert(
      fc.property(caseArb, ({ policy, load, min, span, start, serverReplicas }) => {
        let current = start;
        let lastChangeAt: number | undefined;
        const samples: LagSample[] = [];
        const seen: number[] = [current];
        for (let now = 1_000; now <= 120_000; now += 1_000) {
          const lag = current === 0 ? load : load / current;
          samples.push({ at: now, lag });
          const d = decideScaling(
            {
              model: "m",
              minReplicas: min,
              maxReplicas: min + span,
              current,
              server: { name: "s", replicas: serverReplicas },
              samples,
              idleMs: load > 0 ? 0 : now,
              ...(lastChangeAt === undefined ? {} : { lastChangeAt }),
              now,
            },
            policy,
          );
          if (d.desired !== current) {
            current = d.desired;
            lastChangeAt = now;
            seen.push(current);
          }
        }
        const ups = seen.slice(1).some((v, i) => v > seen[i]!);
        const downs = seen.slice(1).some((v, i) => v < seen[i]!);
        // Clamping into the bounds first may move the other way once; after that, one direction only.
        const afterClamp = seen.slice(seen.findIndex((v) => v >= min && v <= min + span));
        const flaps = afterClamp
          .slice(1)
          .filter((v, i) => Math.sign(v - afterClamp[i]!) !== Math.sign(afterClamp[1]! - afterClamp[0]!));
        expect(flaps).toEqual([]);
        if (load === 0) expect(ups && downs).toBe(false);
      }),
      { seed: SEED, numRuns: 200 },
    );
  });
});
