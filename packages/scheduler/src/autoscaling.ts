import type { ModelSpec } from "@tern/core";
import { effectiveReplicas } from "@tern/core";

/**
 * Model autoscaling decisions (issue 14, docs/autoscaling.md): a pure function from a model's bounds, its current
 * desired replica count and the lag history the agents reported to the next desired count and a reason a person can
 * read. No clock, no I/O: the scheduler's autoscaler (`autoscaler.ts`) gathers the inputs and writes the outcome.
 *
 * Rules:
 * - up by ONE when the lag (mean requests in flight per serving replica) has stayed above the threshold for the whole
 *   scale-up window since the last change. One step, not a step proportional to the lag: on a CPU-bound agent the lag
 *   of N replicas does not predict what N+k would carry (they share the machine, the gateway's balancing lags behind),
 *   so a proportional step overshoots on a burst and then has to come back down; one step per window plus cool-down
 *   converges without overshoot, and the window is short enough (seconds) that a ramp is followed closely.
 * - down by one when a serving replica has gone the idle window without a request (with round-robin balancing that
 *   is when the model as a whole is idle), down to `minReplicas` — with `minReplicas: 0` the last replica goes too.
 * - nothing changes within the cool-down after a change (clamping to the bounds excepted).
 * - never outside [min, max], and never above the server's replicas: a scale-up the server cannot hold is not made;
 *   the decision says how many server replicas the model wants instead (server autoscaling acts on that) — or, when
 *   the Server is at its own `maxReplicas`, that the model stays there, naming both numbers.
 */

/** The knobs (TERN_AUTOSCALE_* in the scheduler's config). */
export interface AutoscalingPolicy {
  /** Mean requests in flight per serving replica above which the model is lagging. */
  lagThreshold: number;
  /** How long the lag must stay above the threshold (every sample since the start of the window) before a scale-up. */
  scaleUpWindowMs: number;
  /** How long a replica must go without a request before the model scales down by one. */
  idleWindowMs: number;
  /** Least time between two changes of a model's (or a Server's) desired replicas. */
  cooldownMs: number;
  /** How long a server replica must hold nothing before an autoscaled Server goes down by one. @default idleWindowMs */
  serverIdleWindowMs?: number;
}

/** One observation of a model's lag: the mean in flight per serving replica over the last report period. */
export interface LagSample {
  at: number;
  lag: number;
}

export interface ScalingInput {
  model: string;
  minReplicas: number;
  /** `Infinity` when the manifest sets none. */
  maxReplicas: number;
  /** The desired replica count now (the manifest's `replicas` until the first decision). */
  current: number;
  /**
   * The Server the model lives on, its replica count now and, for an autoscaled Server, its `maxReplicas` (absent: not
   * placed yet, no server bound applies).
   */
  server?: { name: string; replicas: number; maxReplicas?: number };
  /** Oldest first. Samples at or before `lastChangeAt` describe the old replica count and are ignored. */
  samples: readonly LagSample[];
  /** The longest any serving replica has gone without a request, in ms (absent: no report yet). */
  idleMs?: number;
  /** When the desired count last changed (absent: never). */
  lastChangeAt?: number;
  now: number;
}

export interface ScalingDecision {
  desired: number;
  change: "up" | "down" | "clamp" | "none";
  reason: string;
  /** The server replicas this model wants, when that is more than the server has (it asks for server scale-up). */
  wantsServerReplicas?: number;
}

/** The bounds autoscaling keeps a model in, or undefined when the model is not autoscaled (no min/max in the spec). */
export function scalingBounds(spec: ModelSpec): { min: number; max: number } | undefined {
  if (spec.minReplicas === undefined && spec.maxReplicas === undefined) return undefined;
  const max = spec.maxReplicas ?? Number.POSITIVE_INFINITY;
  const min = Math.min(spec.minReplicas ?? Math.min(1, effectiveReplicas(spec)), max);
  return { min, max };
}

/** The decision for one model. Pure: the same input always gives the same output. */
export function decideScaling(input: ScalingInput, policy: AutoscalingPolicy): ScalingDecision {
  const { current, minReplicas: min, maxReplicas: max, server, now } = input;
  if (current < min) return { desired: min, change: "clamp", reason: `raised to minReplicas ${min} (was ${current})` };
  if (current > max) return { desired: max, change: "clamp", reason: `lowered to maxReplicas ${max} (was ${current})` };

  const since = input.lastChangeAt ?? Number.NEGATIVE_INFINITY;
  const cooling = now - since < policy.cooldownMs;
  const highFor = lagHighFor(input.samples, since, now, policy.lagThreshold);
  if (highFor !== undefined && highFor >= policy.scaleUpWindowMs) {
    const target = current + 1;
    if (target > max) {
      return { desired: current, change: "none", reason: `lagging but already at maxReplicas ${max}` };
    }
    if (server !== undefined && target > server.replicas) {
      // At the Server's own maximum no more server replicas will come: say so, naming that maximum, rather than
      // "needs more server replicas" (the model stays where it is until the load drops or the Server's max rises).
      const atMax = server.maxReplicas !== undefined && server.replicas >= server.maxReplicas;
      return {
        desired: current,
        change: "none",
        reason: atMax
          ? `wants ${target} replicas but server ${server.name} is at its maxReplicas ${server.maxReplicas}: stays at ${current}`
          : `wants ${target} replicas but server ${server.name} has ${server.replicas}: needs more server replicas`,
        wantsServerReplicas: target,
      };
    }
    if (cooling) return { desired: current, change: "none", reason: "lagging, cooling down" };
    const lag = input.samples[input.samples.length - 1]!.lag;
    return {
      desired: target,
      change: "up",
      reason: `lag ${round(lag)} per replica above ${policy.lagThreshold} for ${seconds(highFor)}: ${current} → ${target}`,
    };
  }
  const idleMs = input.idleMs;
  if (idleMs !== undefined && idleMs >= policy.idleWindowMs && current > min) {
    if (cooling) return { desired: current, change: "none", reason: "idle, cooling down" };
    const target = current - 1;
    return {
      desired: target,
      change: "down",
      reason: `a replica served no request for ${seconds(idleMs)} (idle window ${seconds(policy.idleWindowMs)}): ${current} → ${target}`,
    };
  }
  return { desired: current, change: "none", reason: "steady" };
}

/**
 * How long the lag has been above the threshold without a break, counted from the first sample of the unbroken run
 * that ends with the newest sample (only samples after `since`). Undefined when the newest sample is not above it.
 */
function lagHighFor(samples: readonly LagSample[], since: number, now: number, threshold: number): number | undefined {
  let start: number | undefined;
  for (let i = samples.length - 1; i >= 0; i--) {
    const s = samples[i]!;
    if (s.at <= since || s.lag <= threshold) break;
    start = s.at;
  }
  return start === undefined ? undefined : now - start;
}

function round(n: number): string {
  return String(Math.round(n * 100) / 100);
}

function seconds(ms: number): string {
  return `${Math.round(ms / 100) / 10} s`;
}

// --- servers ----------------------------------------------------------------------------------------------------------

/**
 * Server autoscaling (`minReplicas`/`maxReplicas` on a Server): when a model cannot get the replicas it wants for lack
 * of server replicas, the Server's desired count rises to what it wants (up to `maxReplicas`) — at once, because the
 * model's own window already paced the request; a server replica that has held nothing for the idle window lets the
 * count go down by one (after the cool-down, never below `minReplicas`). The highest index is the one that leaves: it
 * is drained (its models placed elsewhere and serving) before it may stop.
 */
export interface ServerScalingInput {
  server: string;
  minReplicas: number;
  /** `Infinity` when the manifest sets none. */
  maxReplicas: number;
  current: number;
  /** The most server replicas one of its models wants (absent: none wants more than it has). */
  wanted?: { model: string; replicas: number };
  /** For each replica below `current` that holds no model: how long it has held nothing (ms). */
  emptyForMs: readonly number[];
  lastChangeAt?: number;
  now: number;
}

/** The bounds a Server is autoscaled in, or undefined when its manifest sets neither `minReplicas` nor `maxReplicas`. */
export function serverScalingBounds(spec: {
  replicas?: number;
  minReplicas?: number;
  maxReplicas?: number;
}): { min: number; max: number } | undefined {
  if (spec.minReplicas === undefined && spec.maxReplicas === undefined) return undefined;
  const max = spec.maxReplicas ?? Number.POSITIVE_INFINITY;
  return { min: Math.min(spec.minReplicas ?? Math.min(1, effectiveReplicas(spec)), max), max };
}

export function decideServerScaling(
  input: ServerScalingInput,
  policy: Pick<AutoscalingPolicy, "cooldownMs" | "idleWindowMs" | "serverIdleWindowMs">,
): ScalingDecision {
  const { current, minReplicas: min, maxReplicas: max, now } = input;
  if (current < min) return { desired: min, change: "clamp", reason: `raised to minReplicas ${min} (was ${current})` };
  if (current > max) return { desired: max, change: "clamp", reason: `lowered to maxReplicas ${max} (was ${current})` };
  const wanted = input.wanted;
  if (wanted !== undefined && wanted.replicas > current) {
    const target = Math.min(max, wanted.replicas);
    if (target === current) {
      return {
        desired: current,
        change: "none",
        reason: `model ${wanted.model} wants ${wanted.replicas} replicas but maxReplicas is ${max}`,
      };
    }
    return {
      desired: target,
      change: "up",
      reason: `model ${wanted.model} wants ${wanted.replicas} replicas: ${current} → ${target}`,
    };
  }
  const idle = Math.max(-1, ...input.emptyForMs);
  const cooling = input.lastChangeAt !== undefined && now - input.lastChangeAt < policy.cooldownMs;
  if (current > min && idle >= (policy.serverIdleWindowMs ?? policy.idleWindowMs) && !cooling) {
    return {
      desired: current - 1,
      change: "down",
      reason: `a replica held nothing for ${seconds(idle)}: ${current} → ${current - 1} (replica ${current - 1} drains and stops)`,
    };
  }
  return { desired: current, change: "none", reason: "steady" };
}
