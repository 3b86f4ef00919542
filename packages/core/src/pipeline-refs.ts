import type { PipelineSpec } from "./resources.js";

/**
 * The reference grammar of pipeline manifests, and the checks on a pipeline's step graph.
 *
 * Inside a pipeline (step `inputs`, `triggers`, `tensorMap` keys, `output.steps`):
 * - `step` (its outputs), `step.outputs`, `step.outputs.TENSOR`, `step.inputs`, `step.inputs.TENSOR`
 * - `<this pipeline>.inputs`, `<this pipeline>.inputs.TENSOR` (the request sent to the pipeline)
 *
 * In `input.externalInputs` / `input.externalTriggers` (chaining other pipelines):
 * - `pipeline.inputs[.TENSOR]`, `pipeline.outputs[.TENSOR]`
 * - `pipeline.step.STEP.inputs[.TENSOR]`, `pipeline.step.STEP.outputs[.TENSOR]`
 *
 * A tensor name is everything after the `inputs`/`outputs` part, so it may itself contain dots.
 */

export type PipelineRefIo = "inputs" | "outputs";

/** A parsed reference. `tensor` is absent when the whole message (every tensor) is meant. */
export type PipelineRef =
  /** A step of the same pipeline. `implicit` is true for a bare `step`, which means `step.outputs`. */
  | { kind: "step"; step: string; io: PipelineRefIo; tensor?: string; implicit: boolean }
  /** A pipeline's own request or response: `p.inputs`, `p.outputs` (the latter only from externalInputs). */
  | { kind: "pipeline"; pipeline: string; io: PipelineRefIo; tensor?: string }
  /** A step of another pipeline: `p.step.s.outputs`. */
  | { kind: "pipeline-step"; pipeline: string; step: string; io: PipelineRefIo; tensor?: string };

/** Where a reference appears, which decides what it may point at. */
export interface PipelineRefContext {
  /** The name of the pipeline the reference is written in. */
  pipelineName: string;
  /** `internal` (steps, triggers, tensorMap, output) or `external` (`input.externalInputs`/`externalTriggers`). @default "internal" */
  scope?: "internal" | "external";
}

export type PipelineRefResult = { ok: true; ref: PipelineRef } | { ok: false; message: string };

/** A problem found in a pipeline spec; `path` is relative to the resource (starts with `spec`). */
export interface PipelineSpecProblem {
  path: (string | number)[];
  message: string;
}

/** Resource and step names: letters, digits, `-`, `_` (no dots, which separate reference parts). */
export const RESOURCE_NAME_RE = /^[A-Za-z0-9_-]+$/;

function ioOf(word: string | undefined): PipelineRefIo | undefined {
  return word === "inputs" || word === "outputs" ? word : undefined;
}

function ioProblem(word: string, ref: string): string {
  const hint = word === "input" || word === "output" ? ` (did you mean "${word}s"?)` : "";
  return `${JSON.stringify(ref)}: expected "inputs" or "outputs" after the name, got "${word}"${hint}`;
}

function withTensor<T extends object>(base: T, tensorParts: string[]): T & { tensor?: string } {
  return tensorParts.length === 0 ? base : { ...base, tensor: tensorParts.join(".") };
}

/**
 * Parses one pipeline reference. Never throws: bad syntax comes back as `{ ok: false, message }` with a message
 * that quotes the reference. Whether a named step exists is not checked here (see {@link validatePipelineGraph}).
 */
export function parsePipelineRef(ref: string, context: PipelineRefContext): PipelineRefResult {
  const fail = (message: string): PipelineRefResult => ({ ok: false, message });
  if (typeof ref !== "string" || ref.trim() === "") return fail("a reference must not be empty");
  if (/\s/.test(ref)) return fail(`${JSON.stringify(ref)}: a reference must not contain spaces`);
  const parts = ref.split(".");
  if (parts.some((p) => p === "")) return fail(`${JSON.stringify(ref)}: empty part between dots`);
  const [first, second, ...rest] = parts as [string, ...string[]];
  if (!RESOURCE_NAME_RE.test(first)) {
    return fail(`${JSON.stringify(ref)}: "${first}" is not a valid name (letters, digits, "-" and "_")`);
  }
  const scope = context.scope ?? "internal";

  if (scope === "external") {
    if (second === undefined) {
      return fail(
        `${JSON.stringify(ref)}: expected <pipeline>.inputs|outputs[.TENSOR] or <pipeline>.step.<step>.inputs|outputs`,
      );
    }
    if (first === context.pipelineName) {
      return fail(
        `${JSON.stringify(ref)}: external inputs must come from another pipeline, not from "${first}" itself`,
      );
    }
    if (second === "step") {
      const [step, io, ...tensor] = rest;
      if (step === undefined || !RESOURCE_NAME_RE.test(step)) {
        return fail(`${JSON.stringify(ref)}: expected a step name after "${first}.step."`);
      }
      const parsedIo = ioOf(io);
      if (parsedIo === undefined) {
        return io === undefined
          ? fail(`${JSON.stringify(ref)}: expected "inputs" or "outputs" after "${first}.step.${step}"`)
          : fail(ioProblem(io, ref));
      }
      return { ok: true, ref: withTensor({ kind: "pipeline-step", pipeline: first, step, io: parsedIo }, tensor) };
    }
    const io = ioOf(second);
    if (io === undefined) return fail(ioProblem(second, ref));
    return { ok: true, ref: withTensor({ kind: "pipeline", pipeline: first, io }, rest) };
  }

  if (second === undefined) return { ok: true, ref: { kind: "step", step: first, io: "outputs", implicit: true } };
  const io = ioOf(second);
  if (io === undefined) {
    if (second === "step") {
      return fail(`${JSON.stringify(ref)}: steps of another pipeline can only be referenced from input.externalInputs`);
    }
    return fail(ioProblem(second, ref));
  }
  if (first === context.pipelineName) {
    if (io === "outputs") {
      return fail(`${JSON.stringify(ref)}: a pipeline cannot read its own outputs; name the step that produces them`);
    }
    return { ok: true, ref: withTensor({ kind: "pipeline", pipeline: first, io }, rest) };
  }
  return { ok: true, ref: withTensor({ kind: "step", step: first, io, implicit: false }, rest) };
}

/** Formats a parsed reference back to its canonical text (a bare step becomes `step.outputs`). */
export function formatPipelineRef(ref: PipelineRef): string {
  const tensor = ref.tensor === undefined ? "" : `.${ref.tensor}`;
  switch (ref.kind) {
    case "step":
      return `${ref.step}.${ref.io}${tensor}`;
    case "pipeline":
      return `${ref.pipeline}.${ref.io}${tensor}`;
    case "pipeline-step":
      return `${ref.pipeline}.step.${ref.step}.${ref.io}${tensor}`;
  }
}

/** Edit distance counting insertions, deletions, substitutions and swaps of neighbours (`Modle` → `Model` is 1). */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        best = Math.min(best, d[i - 2]![j - 2]! + 1);
      d[i]![j] = best;
    }
  }
  return d[a.length]![b.length]!;
}

/**
 * The closest candidate to `word` when it is close enough to be an obvious typo (a case difference; one edit for
 * words of 3–5 characters; two for longer ones), else undefined. Very short words get no guess: any one-letter
 * name is one edit from any other.
 */
export function closestMatch(word: string, candidates: Iterable<string>): string | undefined {
  const limit = word.length <= 2 ? 0 : word.length <= 5 ? 1 : 2;
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const c of candidates) {
    if (c.toLowerCase() === word.toLowerCase()) return c;
    const distance = editDistance(word, c);
    if (distance < bestDistance) {
      best = c;
      bestDistance = distance;
    }
  }
  return bestDistance <= limit ? best : undefined;
}

function didYouMean(word: string, candidates: Iterable<string>): string {
  const close = closestMatch(word, candidates);
  return close === undefined ? "" : ` (did you mean "${close}"?)`;
}

/**
 * Checks a pipeline's steps as a graph: at least one step, unique step names, no step named like the pipeline,
 * valid references to existing steps, triggers that differ from inputs, existing output steps, and no cycles unless
 * `spec.allowCycles` is true.
 * Field types (join types, windows, batch sizes) are the zod schema's job; this assumes they already passed.
 */
export function validatePipelineGraph(pipelineName: string, spec: PipelineSpec): PipelineSpecProblem[] {
  const problems: PipelineSpecProblem[] = [];
  const steps = spec.steps ?? [];
  if (steps.length === 0) {
    problems.push({ path: ["spec", "steps"], message: "a pipeline needs at least one step" });
    return problems;
  }

  const firstIndex = new Map<string, number>();
  steps.forEach((step, i) => {
    const seen = firstIndex.get(step.name);
    if (seen !== undefined) {
      problems.push({
        path: ["spec", "steps", i, "name"],
        message: `duplicate step name "${step.name}" (also spec.steps[${seen}])`,
      });
    } else {
      firstIndex.set(step.name, i);
    }
    if (step.name === pipelineName) {
      problems.push({
        path: ["spec", "steps", i, "name"],
        message: `a step must not be named like its pipeline ("${pipelineName}")`,
      });
    }
  });
  const stepNames = new Set(firstIndex.keys());
  const internal: PipelineRefContext = { pipelineName, scope: "internal" };

  // Parses a reference list; reports syntax errors and unknown steps; returns the steps it depends on.
  // A list's items are addressed by index (`inputs[0]`), a tensorMap's by key (`tensorMap["a.outputs.x"]`).
  const checkRefs = (refs: readonly string[] | undefined, path: (string | number)[], byKey = false): Set<string> => {
    const deps = new Set<string>();
    (refs ?? []).forEach((text, j) => {
      const at = [...path, byKey ? text : j];
      const result = parsePipelineRef(text, internal);
      if (!result.ok) {
        problems.push({ path: at, message: result.message });
        return;
      }
      if (result.ref.kind !== "step") return;
      if (!stepNames.has(result.ref.step)) {
        problems.push({
          path: at,
          message: `unknown step "${result.ref.step}"${didYouMean(result.ref.step, stepNames)}`,
        });
        return;
      }
      deps.add(result.ref.step);
    });
    return deps;
  };

  const edges = new Map<string, Set<string>>();
  steps.forEach((step, i) => {
    const base = ["spec", "steps", i];
    const deps = checkRefs(step.inputs, [...base, "inputs"]);
    for (const d of checkRefs(step.triggers, [...base, "triggers"])) deps.add(d);
    checkRefs(Object.keys(step.tensorMap ?? {}), [...base, "tensorMap"], true);
    if (step.triggers !== undefined && step.triggers.length > 0 && step.inputs !== undefined) {
      const canon = (refs: readonly string[]) =>
        refs
          .map((r) => {
            const p = parsePipelineRef(r, internal);
            return p.ok ? formatPipelineRef(p.ref) : r;
          })
          .sort()
          .join("\n");
      if (canon(step.inputs) === canon(step.triggers)) {
        problems.push({
          path: [...base, "triggers"],
          message: "triggers must not be the same references as inputs (trigger data is not passed on)",
        });
      }
    }
    if (!edges.has(step.name)) edges.set(step.name, deps);
  });

  checkRefs(spec.output?.steps, ["spec", "output", "steps"]);
  checkRefs(Object.keys(spec.output?.tensorMap ?? {}), ["spec", "output", "tensorMap"], true);
  const external: PipelineRefContext = { pipelineName, scope: "external" };
  for (const field of ["externalInputs", "externalTriggers"] as const) {
    (spec.input?.[field] ?? []).forEach((text, j) => {
      const result = parsePipelineRef(text, external);
      if (!result.ok) problems.push({ path: ["spec", "input", field, j], message: result.message });
    });
  }

  const cycle = spec.allowCycles === true ? undefined : findCycle(edges);
  if (cycle !== undefined) {
    const at = firstIndex.get(cycle[0]!)!;
    problems.push({
      path: ["spec", "steps", at, "inputs"],
      message: `steps form a cycle: ${cycle.join(" -> ")} (set spec.allowCycles: true to allow it)`,
    });
  }
  return problems;
}

/**
 * Finds one cycle in a dependency graph (`step → steps it reads from`) and returns it in data-flow order, first
 * node repeated at the end (`a -> b -> a` means a feeds b and b feeds a), starting at the node that comes first in
 * `edges`; undefined when the graph is acyclic.
 */
export function findCycle(edges: ReadonlyMap<string, ReadonlySet<string>>): string[] | undefined {
  const state = new Map<string, "visiting" | "done">();
  const stack: string[] = [];
  const order = [...edges.keys()];
  const visit = (node: string): string[] | undefined => {
    state.set(node, "visiting");
    stack.push(node);
    for (const dep of [...(edges.get(node) ?? [])].sort()) {
      const s = state.get(dep);
      if (s === "visiting") {
        // stack holds readers before what they read; reverse it so the cycle reads in data-flow order.
        const loop = stack.slice(stack.indexOf(dep)).reverse();
        // Start at the node declared first, so the message does not depend on where the search happened to begin.
        const start = loop.indexOf(order.find((n) => loop.includes(n))!);
        const rotated = [...loop.slice(start), ...loop.slice(0, start)];
        return [...rotated, rotated[0]!];
      }
      if (s === undefined && edges.has(dep)) {
        const found = visit(dep);
        if (found !== undefined) return found;
      }
    }
    stack.pop();
    state.set(node, "done");
    return undefined;
  };
  for (const node of edges.keys()) {
    if (state.get(node) === undefined) {
      const found = visit(node);
      if (found !== undefined) return found;
    }
  }
  return undefined;
}
