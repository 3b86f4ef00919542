import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import {
  formatPipelineRef,
  type JoinType,
  type PipelineRef,
  type PipelineResource,
  parseManifestsOrThrow,
  parsePipelineRef,
} from "@tern/core";
import { repoRoot } from "./platform-process.js";

/**
 * What the sample pipelines should answer, computed in the test from the request: a reference implementation of each
 * sample model's math (float32, like the ONNX graphs) and a small interpreter of a pipeline's steps as docs/dataflow.md
 * describes them (default inputs, tensorMap, triggers, inner/any/outer joins, conditional routing, the output stage).
 * It shares no code with the dataflow worker but the manifest parser and the reference syntax, so a worker bug does
 * not become the expectation. It runs one request at a time to completion: windows, batches and cycles change when a
 * stage runs, not what it computes, and it refuses what it cannot decide (cycles, an `any` join with several sources
 * present — the first to arrive wins there).
 */

/** An FP32 tensor: shape and row-major values (already float32). */
export interface RefTensor {
  shape: number[];
  data: number[];
}
export type Tensors = Map<string, RefTensor>;

export interface ReferenceModel {
  /** Input tensor names, in order. */
  inputs: string[];
  /** The answer; an output may be missing (a branch not taken). Throws for a request the model refuses. */
  run(inputs: Tensors): Tensors;
}

const f = Math.fround;
const elementwise = (t: RefTensor, fn: (v: number) => number): RefTensor => ({
  shape: [...t.shape],
  data: t.data.map((v) => f(fn(v))),
});
function need(inputs: Tensors, model: string, name: string): RefTensor {
  const t = inputs.get(name);
  if (!t) throw new ReferenceModelError(`${model}: no input ${name} among [${[...inputs.keys()].join(", ")}]`);
  return t;
}

/** A model refused its request (a missing input): the pipeline answers with an error. */
export class ReferenceModelError extends Error {
  override name = "ReferenceModelError";
}

/** samples/README.md "Models", one entry per ONNX sample model the pipelines use. */
export const REFERENCE_MODELS: Readonly<Record<string, ReferenceModel>> = {
  add10: { inputs: ["x"], run: (i) => new Map([["y", elementwise(need(i, "add10", "x"), (v) => v + 10)]]) },
  mul10: { inputs: ["x"], run: (i) => new Map([["y", elementwise(need(i, "mul10", "x"), (v) => v * 10)]]) },
  "sum-diff": {
    inputs: ["a", "b"],
    run: (i) => {
      const a = need(i, "sum-diff", "a");
      const b = need(i, "sum-diff", "b");
      if (a.data.length !== b.data.length) throw new ReferenceModelError("sum-diff: a and b differ in size");
      return new Map([
        ["sum", { shape: [...a.shape], data: a.data.map((v, k) => f(v + b.data[k]!)) }],
        ["diff", { shape: [...a.shape], data: a.data.map((v, k) => f(v - b.data[k]!)) }],
      ]);
    },
  },
  // The branch not taken is an empty tensor that the agent drops (drop_empty_outputs): absent here.
  choose: {
    inputs: ["x"],
    run: (i) => {
      const x = need(i, "choose", "x");
      return new Map([[x.data.reduce((s, v) => f(s + v), 0) > 0 ? "positive" : "negative", x]]);
    },
  },
  negate: { inputs: ["y"], run: (i) => new Map([["z", elementwise(need(i, "negate", "y"), (v) => -v)]]) },
};

function referenceModel(name: string): ReferenceModel {
  const model = REFERENCE_MODELS[name];
  if (!model) {
    throw new Error(
      `no reference implementation for the sample model ${name}: add its math to REFERENCE_MODELS in test/helpers/pipeline-reference.ts`,
    );
  }
  return model;
}

/** Every Pipeline in samples/manifests/*.yaml, parsed by the project's manifest parser. */
export function samplePipelines(): PipelineResource[] {
  const dir = join(repoRoot, "samples/manifests");
  return readdirSync(dir)
    .filter((file) => file.endsWith(".yaml") || file.endsWith(".yml"))
    .sort()
    .flatMap((file) => parseManifestsOrThrow(readFileSync(join(dir, file), "utf8"), file))
    .filter((r): r is PipelineResource => r.kind === "Pipeline");
}

function ref(pipeline: PipelineResource, text: string): PipelineRef {
  const parsed = parsePipelineRef(text, { pipelineName: pipeline.metadata.name });
  if (!parsed.ok) throw new Error(`pipeline ${pipeline.metadata.name}: ${parsed.message}`);
  return parsed.ref;
}

/** The source a reference reads (the reference without its tensor), e.g. `add10.outputs`. */
function sourceId(r: PipelineRef): string {
  const text = formatPipelineRef(r);
  return r.tensor === undefined ? text : text.slice(0, -(r.tensor.length + 1));
}

/** A step with no `inputs` reads the whole pipeline request. */
const stepInputs = (p: PipelineResource, i: number) => p.spec.steps[i]!.inputs ?? [`${p.metadata.name}.inputs`];

/**
 * The tensors a request to the pipeline must carry: those its stages name on `<p>.inputs.T`, and the model's inputs
 * for a stage that reads the whole request (renamed back through the stage's tensorMap).
 */
export function pipelineInputNames(pipeline: PipelineResource): string[] {
  const names = new Set<string>();
  pipeline.spec.steps.forEach((step, i) => {
    for (const text of [...stepInputs(pipeline, i), ...(step.triggers ?? [])]) {
      const r = ref(pipeline, text);
      if (r.kind !== "pipeline" || r.io !== "inputs") continue;
      if (r.tensor !== undefined) {
        names.add(r.tensor);
        continue;
      }
      const renamedFrom = new Map(Object.entries(step.tensorMap ?? {}).map(([from, to]) => [to, from]));
      for (const input of referenceModel(step.name).inputs) {
        const from = renamedFrom.get(input);
        names.add(from ? (ref(pipeline, from).tensor ?? input) : input);
      }
    }
  });
  return [...names];
}

/** One stage's join: which present sources it runs with, or undefined when it does not run (conditional routing). */
function joinStage(
  pipeline: PipelineResource,
  stage: string,
  refs: string[],
  joinType: JoinType,
  tensorMap: Record<string, string>,
  read: (r: PipelineRef) => Tensors | undefined,
): Tensors | undefined {
  const bySource = new Map<string, Tensors>();
  for (const text of refs) {
    const r = ref(pipeline, text);
    const id = sourceId(r);
    const got = read(r);
    const selected = bySource.get(id) ?? new Map<string, RefTensor>();
    bySource.set(id, selected);
    for (const [name, t] of got ?? []) {
      if (r.tensor === undefined || r.tensor === name) selected.set(name, t);
    }
  }
  const present = [...bySource].filter(([, t]) => t.size > 0);
  let taken: Array<[string, Tensors]>;
  if (joinType === "inner") taken = present.length === bySource.size ? present : [];
  else if (joinType === "any") {
    if (present.length > 1) {
      throw new Error(
        `pipeline ${pipeline.metadata.name}: ${stage}'s any join has ${present.length} sources present; which comes first is up to timing, choose other inputs`,
      );
    }
    taken = present;
  } else taken = present;
  if (taken.length === 0) return undefined;
  const out: Tensors = new Map();
  for (const [id, tensors] of taken) {
    for (const [name, t] of tensors) {
      const renamed = tensorMap[`${id}.${name}`] ?? name;
      // Two whole-message sources carrying one name: the source listed first wins.
      if (!out.has(renamed)) out.set(renamed, t);
    }
  }
  return out;
}

/** The answer the pipeline gives: its output tensors, or an error (a step refused, or no step produced an answer). */
export type ExpectedAnswer = { ok: true; outputs: Tensors } | { ok: false; reason: string };

/** What the pipeline answers to a request with these tensors on its inputs topic. */
export function expectedAnswer(pipeline: PipelineResource, request: Tensors): ExpectedAnswer {
  if (pipeline.spec.allowCycles) throw new Error(`pipeline ${pipeline.metadata.name}: the reference has no cycles`);
  const name = pipeline.metadata.name;
  const steps = pipeline.spec.steps;
  // Per step: undefined = not decided yet, null = did not run, else what it was given and what it answered.
  const done = new Map<string, { inputs: Tensors; outputs: Tensors } | null>();
  const read = (r: PipelineRef): Tensors | undefined => {
    if (r.kind === "pipeline") return request;
    if (r.kind !== "step") throw new Error(`pipeline ${name}: the reference reads no ${formatPipelineRef(r)}`);
    const s = done.get(r.step);
    return s ? s[r.io] : undefined;
  };
  const dependsOn = (text: string) => {
    const r = ref(pipeline, text);
    return r.kind === "step" ? [r.step] : [];
  };
  while (done.size < steps.length) {
    const before = done.size;
    for (const [i, step] of steps.entries()) {
      if (done.has(step.name)) continue;
      const refs = stepInputs(pipeline, i);
      const triggers = step.triggers ?? [];
      if (![...refs, ...triggers].flatMap(dependsOn).every((d) => done.has(d))) continue;
      const gated =
        triggers.length > 0 &&
        joinStage(pipeline, `step ${step.name}`, triggers, step.triggersJoinType ?? "inner", {}, read) === undefined;
      const inputs = gated
        ? undefined
        : joinStage(pipeline, `step ${step.name}`, refs, step.inputsJoinType ?? "inner", step.tensorMap ?? {}, read);
      if (!inputs) {
        done.set(step.name, null);
        continue;
      }
      try {
        done.set(step.name, { inputs, outputs: referenceModel(step.name).run(inputs) });
      } catch (err) {
        if (err instanceof ReferenceModelError)
          return { ok: false, reason: `step ${step.name} failed: ${err.message}` };
        throw err;
      }
    }
    if (done.size === before) throw new Error(`pipeline ${name}: steps wait on each other (a cycle?)`);
  }
  const output = pipeline.spec.output ?? {};
  const outputs = joinStage(
    pipeline,
    "the output",
    output.steps ?? [steps[steps.length - 1]!.name],
    output.stepsJoin ?? "inner",
    output.tensorMap ?? {},
    read,
  );
  return outputs ? { ok: true, outputs } : { ok: false, reason: "no step produced an answer" };
}

/**
 * What a pipeline with `input.externalInputs` puts on its own inputs topic when `upstream` answers with these
 * tensors (its input stage), or undefined when that answer does not feed it.
 */
export function chainedRequest(pipeline: PipelineResource, upstream: string, answer: Tensors): Tensors | undefined {
  const input = pipeline.spec.input;
  const external = input?.externalInputs ?? [];
  if ((input?.externalTriggers ?? []).length > 0) {
    throw new Error(`pipeline ${pipeline.metadata.name}: the reference has no external triggers`);
  }
  const refs = external.map((text) => {
    const parsed = parsePipelineRef(text, { pipelineName: pipeline.metadata.name, scope: "external" });
    if (!parsed.ok) throw new Error(`pipeline ${pipeline.metadata.name}: ${parsed.message}`);
    return parsed.ref;
  });
  if (!refs.some((r) => r.kind === "pipeline" && r.pipeline === upstream)) return undefined;
  if (refs.some((r) => r.kind !== "pipeline" || r.io !== "outputs" || r.pipeline !== upstream)) {
    throw new Error(`pipeline ${pipeline.metadata.name}: the reference reads only one upstream pipeline's outputs`);
  }
  const out: Tensors = new Map();
  for (const r of refs) {
    for (const [name, t] of answer) {
      if (r.tensor !== undefined && r.tensor !== name) continue;
      out.set(input?.tensorMap?.[`${sourceId(r)}.${name}`] ?? name, t);
    }
  }
  return out.size > 0 ? out : undefined;
}

/** The upstream pipelines a pipeline reads through `input.externalInputs`. */
export function upstreamPipelines(pipeline: PipelineResource): string[] {
  return [
    ...new Set(
      (pipeline.spec.input?.externalInputs ?? []).map((text) => {
        const parsed = parsePipelineRef(text, { pipelineName: pipeline.metadata.name, scope: "external" });
        if (!parsed.ok) throw new Error(`pipeline ${pipeline.metadata.name}: ${parsed.message}`);
        return (parsed.ref as { pipeline: string }).pipeline;
      }),
    ),
  ];
}
