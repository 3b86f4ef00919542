import type { DeploymentStrategy } from "@tern/core";

/**
 * A Server's `spec.deploymentStrategy` (a Kubernetes Deployment strategy, as Seldon accepts it) as the deployment
 * configuration of its ECS service: how many agent tasks ECS may start above, or stop below, the desired count while
 * it replaces them with a new task definition revision. Pure, so every case is a unit test; the ECS controller sends
 * the result on CreateService and UpdateService.
 *
 * Kubernetes counts replicas; ECS takes whole percentages of the service's desired count, rounding the maximum down
 * and the minimum up. So the bounds are first resolved to replica counts the way Kubernetes does, against the replicas
 * the Server wants now (its status `replicas`, the spec's or what autoscaling set — the service's desired count, which
 * is what ECS applies the percentages to), and then turned into the percentages ECS rounds back to those counts.
 */

/** The part of ECS's `deploymentConfiguration` the controller sets. */
export interface EcsDeploymentConfiguration {
  /** Tasks that must stay RUNNING during a deployment, in % of the desired count (ECS rounds up). */
  minimumHealthyPercent: number;
  /** Tasks allowed RUNNING or PENDING during a deployment, in % of the desired count (ECS rounds down). */
  maximumPercent: number;
}

/** A Server without a strategy: every new task starts before an old one stops (ECS's default maximum, no task missing). */
export const DEFAULT_DEPLOYMENT_CONFIGURATION: Readonly<EcsDeploymentConfiguration> = {
  minimumHealthyPercent: 100,
  maximumPercent: 200,
};

/** Kubernetes' value for an omitted `maxSurge` or `maxUnavailable` of a RollingUpdate. */
const KUBERNETES_DEFAULT_BOUND = "25%";

/**
 * A RollingUpdate's bounds as replica counts, as Kubernetes resolves them: a percentage of `replicas`, `maxSurge`
 * rounded up and `maxUnavailable` rounded down; an omitted bound is 25%; when both come to 0, one replica may be
 * unavailable (so the rollout can proceed); `maxUnavailable` is at most `replicas`. Validation has refused both being
 * explicitly 0, and anything that is not a non-negative integer or an `N%` string.
 */
export function rollingUpdateBounds(
  rollingUpdate: NonNullable<DeploymentStrategy["rollingUpdate"]>,
  replicas: number,
): { maxSurge: number; maxUnavailable: number } {
  const maxSurge = toCount(rollingUpdate.maxSurge ?? KUBERNETES_DEFAULT_BOUND, replicas, Math.ceil);
  let maxUnavailable = toCount(rollingUpdate.maxUnavailable ?? KUBERNETES_DEFAULT_BOUND, replicas, Math.floor);
  if (maxSurge === 0 && maxUnavailable === 0) maxUnavailable = 1;
  return { maxSurge, maxUnavailable: Math.min(maxUnavailable, replicas) };
}

/**
 * The deployment configuration of a Server's service on `replicas` desired tasks:
 *
 * - no strategy: {@link DEFAULT_DEPLOYMENT_CONFIGURATION} (100/200), what the controller always sent before;
 * - `Recreate`: minimum 0, maximum 100 — every old task stops before new ones start;
 * - `RollingUpdate` (Kubernetes' default type): maximum 100 + surge %, minimum 100 − unavailable %, from the counts of
 *   {@link rollingUpdateBounds}. Up to 100 replicas ECS rounds these back to exactly Kubernetes' counts; above, a whole
 *   percentage is a step of more than one task, and the figures err by less than 1% of the replicas towards more
 *   surge and more unavailability (the side on which a rollout still moves).
 *
 * With 0 replicas nothing runs, so nothing is replaced: the bounds are resolved against 1 replica, and the update that
 * scales the service up carries the figures for its new count.
 */
export function ecsDeploymentConfiguration(
  strategy: DeploymentStrategy | undefined,
  replicas: number,
): EcsDeploymentConfiguration {
  if (strategy === undefined) return { ...DEFAULT_DEPLOYMENT_CONFIGURATION };
  if (strategy.type === "Recreate") return { minimumHealthyPercent: 0, maximumPercent: 100 };
  const desired = Math.max(1, replicas);
  const { maxSurge, maxUnavailable } = rollingUpdateBounds(strategy.rollingUpdate ?? {}, desired);
  return {
    // The largest whole percentage ECS rounds up to no more than desired − unavailable tasks...
    minimumHealthyPercent: Math.floor((100 * (desired - maxUnavailable)) / desired),
    // ...and the smallest it rounds down to no fewer than desired + surge.
    maximumPercent: Math.ceil((100 * (desired + maxSurge)) / desired),
  };
}

/** A bound as a replica count: an integer is one already; `N%` is N% of `replicas`, rounded by `round`. */
function toCount(bound: number | string, replicas: number, round: (x: number) => number): number {
  if (typeof bound === "number") return bound;
  return round((Number(bound.slice(0, -1)) * replicas) / 100);
}
