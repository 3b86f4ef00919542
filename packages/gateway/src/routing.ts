import type { ExperimentRoute, PipelineRoute, ReplicaEndpoint, RouteTable } from "@tern/core";
import { GatewayError } from "./errors.js";

/** What a request names, from its path or its `seldon-model` header. */
export type Target =
  | { kind: "model"; name: string; version?: number }
  | { kind: "pipeline"; name: string }
  | { kind: "experiment"; name: string };

/** Where one request goes: pure output of {@link resolveRoute}. */
export interface RouteDecision {
  /** The model that serves the request (a candidate when an experiment split it). */
  model: string;
  /** Set when the caller pinned a version in the path. */
  version?: number;
  endpoints: readonly ReplicaEndpoint[];
  /** Value of the `x-seldon-route` response header. */
  route: string;
  /** The experiment that chose `model`, if any. */
  experiment?: string;
  /** A model to send a fire-and-forget copy to. */
  mirror?: { model: string; endpoints: readonly ReplicaEndpoint[] };
}

export interface ResolveOptions {
  /** `infer` may be split and mirrored by experiments; `ready` and `metadata` go to the chosen model only. */
  op: "infer" | "ready" | "metadata";
  /** The `x-seldon-route` header the caller sent back, if any (sticky routing). */
  stickyRoute?: string;
  /** Uniform in [0, 1). */
  random: () => number;
}

/**
 * Parses a `seldon-model` header: `m` (model), `e.experiment`, `p.pipeline`. Names hold no dots, so the suffix after
 * the last dot decides. Undefined for an empty header.
 * @throws GatewayError `bad_request` for another suffix.
 */
export function parseSeldonModelHeader(value: string | undefined): Target | undefined {
  if (value === undefined) return undefined;
  const trimmed = value.trim();
  if (trimmed === "") return undefined;
  const dot = trimmed.lastIndexOf(".");
  if (dot < 0) return { kind: "model", name: trimmed };
  const name = trimmed.slice(0, dot);
  const suffix = trimmed.slice(dot + 1);
  if (name === "" || name.includes("."))
    throw new GatewayError(
      "bad_request",
      `seldon-model header ${JSON.stringify(value)} is not valid: use m, e.experiment or p.pipeline`,
    );
  if (suffix === "experiment") return { kind: "experiment", name };
  if (suffix === "pipeline") return { kind: "pipeline", name };
  throw new GatewayError(
    "bad_request",
    `seldon-model header ${JSON.stringify(value)} has an unknown suffix ".${suffix}": use m, e.experiment or p.pipeline`,
  );
}

/** `:model:` — the format of `x-seldon-route` (documented in docs/gateway.md). */
export function formatRoute(model: string): string {
  return `:${model}:`;
}

/** The names in an `x-seldon-route` value (`:a:` or `:a:b:`); tolerant of what a client sends back. */
export function parseRoute(value: string | undefined): string[] {
  if (!value) return [];
  return value.split(/[:,\s]+/).filter((s) => s.length > 0);
}

/** `:p.pipeline:` — the `x-seldon-route` of an answer a pipeline gave (the `seldon-model` header's spelling). */
export function formatPipelineRoute(pipeline: string): string {
  return `:${pipeline}.pipeline:`;
}

type DefaultIndex = Record<ExperimentRoute["resourceType"], Map<string, ExperimentRoute>>;
const defaultIndex = new WeakMap<RouteTable, DefaultIndex>();

/**
 * Active experiments by the model or pipeline whose endpoint they take over, per resource type (a model and a pipeline
 * may share a name); cached per table object.
 */
function experimentsByDefault(
  table: RouteTable,
  kind: ExperimentRoute["resourceType"] = "model",
): Map<string, ExperimentRoute> {
  let index = defaultIndex.get(table);
  if (!index) {
    index = { model: new Map(), pipeline: new Map() };
    for (const name of Object.keys(table.experiments).sort()) {
      const exp = table.experiments[name]!;
      const byDefault = index[exp.resourceType];
      if (exp.active && byDefault && exp.default && !byDefault.has(exp.default)) byDefault.set(exp.default, exp);
    }
    defaultIndex.set(table, index);
  }
  return index[kind];
}

/** Where a pipeline request goes: pure output of {@link resolvePipelineRoute}. */
export interface PipelineRouteDecision {
  /** The pipeline that serves the request (a candidate when an experiment split it). */
  pipeline: string;
  /** Value of the `x-seldon-route` response header. */
  route: string;
  /** The experiment that chose `pipeline`, if any. */
  experiment?: string;
  /** A pipeline to send a fire-and-forget copy to (infer only). */
  mirror?: string;
}

/**
 * Decides which pipeline serves a request naming a pipeline (its path or `p.pipeline`) or a pipeline experiment
 * (`e.experiment`), with the rules of model experiments: an active experiment whose `default` is the pipeline takes
 * over its endpoint; candidates are drawn by weight unless `x-seldon-route` pins one; an inactive experiment serves its
 * default, or none (503); infer requests are mirrored by `mirror.percent`. Pure. Whether the chosen pipeline exists
 * and is served is the caller's check.
 * @throws GatewayError `not_found` (unknown experiment), `bad_request` (an experiment of models), `unavailable`.
 */
export function resolvePipelineRoute(
  table: RouteTable,
  target: Extract<Target, { kind: "pipeline" | "experiment" }>,
  options: ResolveOptions,
): PipelineRouteDecision {
  let exp: ExperimentRoute | undefined;
  if (target.kind === "experiment") {
    exp = table.experiments[target.name];
    if (!exp) throw new GatewayError("not_found", `experiment ${target.name} not found`);
    if (exp.resourceType !== "pipeline") {
      throw new GatewayError("bad_request", `experiment ${target.name} is an experiment of models, not of pipelines`);
    }
  } else {
    exp = experimentsByDefault(table, "pipeline").get(target.name);
    if (!exp) return { pipeline: target.name, route: formatPipelineRoute(target.name) };
  }
  if (!exp.active) {
    if (exp.default) return { pipeline: exp.default, route: formatPipelineRoute(exp.default) };
    throw new GatewayError("unavailable", `experiment ${exp.name} is not ready`, { retriable: true });
  }
  const pipeline = pickCandidate(exp, options);
  const decision: PipelineRouteDecision = { pipeline, route: formatPipelineRoute(pipeline), experiment: exp.name };
  if (options.op === "infer" && exp.mirror && exp.mirror.percent > 0) {
    // As for models: draw only when the percentage is partial.
    if (exp.mirror.percent >= 100 || options.random() * 100 < exp.mirror.percent) decision.mirror = exp.mirror.name;
  }
  return decision;
}

/** Pipeline states in which requests are served (Rebalancing: owners are changing, the pipeline still answers). */
const SERVED_PIPELINE_STATES: ReadonlySet<string> = new Set(["PipelineReady", "PipelineRebalancing"]);

/** True while the pipeline's requests are served: it is `PipelineReady` or `PipelineRebalancing`. */
export function isServedPipeline(route: PipelineRoute): boolean {
  return SERVED_PIPELINE_STATES.has(route.state);
}

/**
 * The pipeline's route when its requests may be served now.
 * @throws GatewayError `unavailable` naming the state of one that is not ready
 */
export function servedPipeline(route: PipelineRoute): PipelineRoute {
  if (!isServedPipeline(route)) {
    throw new GatewayError("unavailable", `pipeline ${route.name} is not ready (state ${route.state})`, {
      retriable: true,
    });
  }
  return route;
}

/**
 * The route of the pipeline a {@link resolvePipelineRoute} decision chose, whatever its state (REST and gRPC alike).
 * @throws GatewayError `not_found` naming the experiment that chose it, if any
 */
export function chosenPipeline(table: RouteTable, decision: PipelineRouteDecision): PipelineRoute {
  const route = table.pipelines[decision.pipeline];
  if (route) return route;
  const via = decision.experiment ? ` (experiment ${decision.experiment})` : "";
  throw new GatewayError("not_found", `pipeline ${decision.pipeline} not found${via}`);
}

/** True when the target names an experiment of pipelines in this table (it is then served by the pipeline front). */
export function isPipelineExperiment(
  table: RouteTable,
  target: Target,
): target is Extract<Target, { kind: "experiment" }> {
  return target.kind === "experiment" && table.experiments[target.name]?.resourceType === "pipeline";
}

/**
 * Decides where a request goes. Pure: the table, the target, the sticky header and the random source fix the answer.
 * @throws GatewayError `not_found` (unknown model, version, experiment or pipeline), `unavailable` (no replica, an
 * inactive experiment without default, pipelines).
 */
export function resolveRoute(table: RouteTable, target: Target, options: ResolveOptions): RouteDecision {
  if (target.kind === "pipeline") return pipelineUnavailable(table, target.name);
  if (target.kind === "experiment") {
    const exp = table.experiments[target.name];
    if (!exp) throw new GatewayError("not_found", `experiment ${target.name} not found`);
    return viaExperiment(table, exp, options);
  }
  if (target.version === undefined) {
    const exp = experimentsByDefault(table).get(target.name);
    if (exp) return viaExperiment(table, exp, options);
  }
  return direct(table, target.name, target.version);
}

/**
 * A model's own route, never split by an experiment (the Kafka path: a model's topics belong to that model).
 * @throws GatewayError `not_found` (unknown model), `unavailable` (no replica).
 */
export function resolveModelDirect(table: RouteTable, model: string): RouteDecision {
  return direct(table, model);
}

function direct(table: RouteTable, model: string, version?: number, experiment?: string): RouteDecision {
  const route = table.models[model];
  if (!route) throw new GatewayError("not_found", `model ${model} not found`);
  let endpoints: readonly ReplicaEndpoint[];
  if (version !== undefined) {
    endpoints = route.endpoints.filter((e) => e.version === version);
    if (endpoints.length === 0) {
      throw new GatewayError("not_found", `model ${model} version ${version} is not available`);
    }
  } else {
    // Traffic goes to the route's version; older replicas listed during a rollout serve only if none of it can.
    const current = route.endpoints.filter((e) => e.version === route.version);
    endpoints = current.length > 0 ? current : route.endpoints;
  }
  if (endpoints.length === 0) {
    throw new GatewayError("unavailable", `model ${model} has no available replica (state ${route.state})`, {
      retriable: true,
    });
  }
  const decision: RouteDecision = { model, endpoints, route: formatRoute(model) };
  if (version !== undefined) decision.version = version;
  if (experiment !== undefined) decision.experiment = experiment;
  return decision;
}

function viaExperiment(table: RouteTable, exp: ExperimentRoute, options: ResolveOptions): RouteDecision {
  if (exp.resourceType === "pipeline") return pipelineUnavailable(table, exp.default ?? exp.name, exp.name);
  if (!exp.active) {
    if (exp.default) return direct(table, exp.default);
    throw new GatewayError("unavailable", `experiment ${exp.name} is not ready`, { retriable: true });
  }
  const model = pickCandidate(exp, options);
  const decision = direct(table, model, undefined, exp.name);
  if (options.op === "infer" && exp.mirror && exp.mirror.percent > 0) {
    // Draw only when the percentage is partial, so that a 100% mirror never consumes a random number.
    const mirrored = exp.mirror.percent >= 100 || options.random() * 100 < exp.mirror.percent;
    const mirrorRoute = mirrored ? table.models[exp.mirror.name] : undefined;
    if (mirrorRoute && mirrorRoute.endpoints.length > 0) {
      const current = mirrorRoute.endpoints.filter((e) => e.version === mirrorRoute.version);
      decision.mirror = { model: exp.mirror.name, endpoints: current.length > 0 ? current : mirrorRoute.endpoints };
    }
  }
  return decision;
}

function pickCandidate(exp: ExperimentRoute, options: ResolveOptions): string {
  const candidates = exp.candidates;
  if (candidates.length === 0) throw new GatewayError("unavailable", `experiment ${exp.name} has no candidates`);
  const pinned = parseRoute(options.stickyRoute);
  for (const entry of pinned) {
    // A pipeline's route is `:p.pipeline:`; the candidate is `p`.
    const name =
      exp.resourceType === "pipeline" && entry.endsWith(".pipeline") ? entry.slice(0, -".pipeline".length) : entry;
    if (candidates.some((c) => c.name === name)) return name;
  }
  const total = candidates.reduce((sum, c) => sum + Math.max(0, c.weight), 0);
  if (total <= 0) return candidates[Math.floor(options.random() * candidates.length)]!.name;
  let point = options.random() * total;
  for (const c of candidates) {
    point -= Math.max(0, c.weight);
    if (point < 0) return c.name;
  }
  return candidates[candidates.length - 1]!.name;
}

function pipelineUnavailable(table: RouteTable, pipeline: string, experiment?: string): never {
  const via = experiment ? ` (experiment ${experiment})` : "";
  const route = table.pipelines[pipeline];
  if (!route) throw new GatewayError("not_found", `pipeline ${pipeline} not found${via}`);
  throw new GatewayError(
    "unavailable",
    `pipeline ${pipeline} is not available${via}: pipelines are not served yet (state ${route.state})`,
  );
}
