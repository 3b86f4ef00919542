import {
  formatPipelineRef,
  type JoinType,
  type PipelineBatch,
  type PipelineRef,
  type PipelineResource,
  parsePipelineRef,
  TernError,
  type TopicNames,
  validateResource,
} from "@tern/core";
import { pipelineInvalid } from "./errors.js";

/**
 * Compiles a Pipeline resource into a plan: for every stage (the optional input stage that chains other pipelines,
 * each step, the output stage) which topics it reads, which tensors it takes from each and under which names, how
 * it joins them, and where its result goes. Pure: no I/O, the same spec and topic names give the same plan.
 */

/** @default 60_000 — Seldon's default join window. */
export const DEFAULT_JOIN_WINDOW_MS = 60_000;

/** One tensor rename: a tensor called `from` in the source is passed on as `to`. */
export interface TensorRename {
  from: string;
  to: string;
}

/**
 * Where a stage's data comes from: the records of one topic that carry one `pipeline` header value. Several
 * references to the same step's outputs (`a.outputs.x`, `a.outputs.y`) share one source: they arrive in one record.
 */
export interface PlanSource {
  /** The canonical reference without a tensor: `add10.outputs`, `p.inputs`, `other.step.s.outputs`. Unique in a stage. */
  id: string;
  topic: string;
  /** The `pipeline` header value of the records that belong to this source (another pipeline's name for externals). */
  pipeline: string;
  /** The step of this pipeline that produces the records, when there is one (its error records fail the request). */
  step?: string;
  /**
   * True when the producing step lies on a cycle, so it may answer one request several times: a record of it without
   * the selected tensors is then not final (the next pass may carry them) and is ignored instead of counting as absent.
   */
  repeats: boolean;
  /** True when the whole message is taken (a bare `step`, `step.outputs`, `p.inputs`); else only `tensors`. */
  all: boolean;
  /** Tensors taken by name, in the order the spec first names them (empty when `all`). */
  tensors: string[];
  /** Renames from the stage's tensorMap that apply to this source. */
  renames: TensorRename[];
}

/** How one stage waits for its sources. */
export interface JoinPlan {
  inputs: PlanSource[];
  /** @default "inner" */
  inputsJoin: JoinType;
  /** Sources that gate the stage; their tensors are not passed on. */
  triggers: PlanSource[];
  /** @default "inner" */
  triggersJoin: JoinType;
  /** @default 60_000 */
  windowMs: number;
}

export interface BatchPlan {
  /** Requests per call to the model (at least 2; a size of 0 or 1 means no batching and no BatchPlan). */
  size: number;
  /** A partial batch is sent this long after its first request (rolling: after its latest one). */
  windowMs: number;
  rolling: boolean;
}

export interface StepPlan extends JoinPlan {
  name: string;
  /** The model the step calls (a step is named after its model). */
  model: string;
  /** Where the step's request goes: the model's inputs topic. */
  requestTopic: string;
  /** Where the model's answer (or error record) comes back. */
  answerTopic: string;
  batch?: BatchPlan;
  /** How many times one request may re-enter this step (0 unless the step is on a cycle of an allowCycles pipeline). */
  maxRevisits: number;
}

/** The input stage exists only when the pipeline reads other pipelines (`input.externalInputs`). */
export interface InputStagePlan extends JoinPlan {
  /** The joined request is written here, where the steps read it like any request sent to the pipeline. */
  topic: string;
}

export interface OutputStagePlan extends JoinPlan {
  /** The pipeline's answer (or error answer) goes here. */
  topic: string;
}

export interface PipelinePlan {
  pipeline: string;
  inputsTopic: string;
  outputsTopic: string;
  errorsTopic: string;
  input?: InputStagePlan;
  steps: StepPlan[];
  output: OutputStagePlan;
  allowCycles: boolean;
  /** Topics the pipeline's consumer subscribes to, sorted. Every step's answer topic is in it (the error path). */
  subscribe: string[];
  /** Topics the pipeline's workers produce to, sorted. */
  produce: string[];
}

export interface CompileOptions {
  /** The installation's topic names (`createTopicNames(config)`). */
  topics: TopicNames;
}

/** A stage that consumes a record: `input`, `output`, or a step's name. */
export interface RecordTarget {
  stage: string;
  sourceId: string;
  /** True when the source gates the stage as a trigger (the same record may feed inputs and triggers). */
  trigger: boolean;
}

/**
 * Compiles a pipeline. Runs the manifest validation first, so a plan only exists for a valid pipeline.
 * @throws TernError `manifest.invalid` naming the field: every problem `tern validate` reports, and what only
 * compilation sees (a tensorMap key that names no input of its stage or no tensor, two tensors given one name).
 */
export function compilePipeline(pipeline: PipelineResource, options: CompileOptions): PipelinePlan {
  const checked = validateResource(pipeline);
  const name = pipeline.metadata?.name ?? "";
  if (!checked.ok) {
    const lines = checked.problems.map((p) => (p.path === "" ? p.message : `${p.path}: ${p.message}`));
    throw new TernError("manifest.invalid", `pipeline ${name}: ${lines.join("; ")}`);
  }
  const spec = (checked.resource as PipelineResource).spec;
  const { topics } = options;
  const inputsTopic = topics.pipelineInputs(name);
  const outputsTopic = topics.pipelineOutputs(name);

  const onCycle = spec.allowCycles === true ? stepsOnCycles(spec.steps, name) : new Set<string>();
  const sourceOf = (ref: PipelineRef): Omit<PlanSource, "all" | "tensors" | "renames"> => {
    const noTensor = formatPipelineRef({ ...ref, tensor: undefined });
    switch (ref.kind) {
      case "step":
        return {
          id: noTensor,
          topic: ref.io === "outputs" ? topics.modelOutputs(ref.step) : topics.modelInputs(ref.step),
          pipeline: name,
          step: ref.step,
          repeats: onCycle.has(ref.step),
        };
      case "pipeline":
        return {
          id: noTensor,
          topic: ref.io === "outputs" ? topics.pipelineOutputs(ref.pipeline) : topics.pipelineInputs(ref.pipeline),
          pipeline: ref.pipeline,
          repeats: false,
        };
      case "pipeline-step":
        return {
          id: noTensor,
          topic: ref.io === "outputs" ? topics.modelOutputs(ref.step) : topics.modelInputs(ref.step),
          pipeline: ref.pipeline,
          repeats: false,
        };
    }
  };

  const buildJoin = (
    at: PropertyKey[],
    fields: { inputs: string; triggers: string },
    scope: "internal" | "external",
    inputRefs: readonly string[],
    triggerRefs: readonly string[],
    tensorMap: Readonly<Record<string, string>> | undefined,
    join: { inputs?: JoinType; triggers?: JoinType; windowMs?: number },
  ): JoinPlan => {
    const context = { pipelineName: name, scope };
    const collect = (refs: readonly string[], field: string): PlanSource[] => {
      const byId = new Map<string, PlanSource>();
      refs.forEach((text, i) => {
        const parsed = parsePipelineRef(text, context);
        if (!parsed.ok) throw pipelineInvalid(name, [...at, field, i], parsed.message);
        const base = sourceOf(parsed.ref);
        const source = byId.get(base.id) ?? { ...base, all: false, tensors: [], renames: [] };
        byId.set(base.id, source);
        if (parsed.ref.tensor === undefined) source.all = true;
        else if (!source.tensors.includes(parsed.ref.tensor)) source.tensors.push(parsed.ref.tensor);
      });
      for (const s of byId.values()) if (s.all) s.tensors = [];
      return [...byId.values()];
    };
    const inputs = collect(inputRefs, fields.inputs);
    const triggers = collect(triggerRefs, fields.triggers);

    const targets = new Map<string, string>();
    for (const [key, to] of Object.entries(tensorMap ?? {})) {
      const path = [...at, "tensorMap", key];
      const parsed = parsePipelineRef(key, context);
      if (!parsed.ok) throw pipelineInvalid(name, path, parsed.message);
      if (parsed.ref.tensor === undefined) {
        throw pipelineInvalid(name, path, `a tensorMap key must name one tensor (e.g. ${key}.TENSOR)`);
      }
      if (to === "") throw pipelineInvalid(name, path, "the new tensor name must not be empty");
      const id = formatPipelineRef({ ...parsed.ref, tensor: undefined });
      const source = inputs.find((s) => s.id === id);
      if (source === undefined || (!source.all && !source.tensors.includes(parsed.ref.tensor))) {
        throw pipelineInvalid(name, path, `${JSON.stringify(key)} is not among this stage's ${fields.inputs}`);
      }
      const clash = targets.get(to);
      if (clash !== undefined) {
        throw pipelineInvalid(name, path, `renames to ${JSON.stringify(to)}, as ${JSON.stringify(clash)} already does`);
      }
      targets.set(to, key);
      source.renames.push({ from: parsed.ref.tensor, to });
    }
    // Names known now must stay distinct after renaming, so that no tensor silently replaces another.
    const finalNames = new Map<string, string>();
    for (const source of inputs) {
      for (const tensor of source.tensors) {
        const to = source.renames.find((r) => r.from === tensor)?.to ?? tensor;
        const other = finalNames.get(to);
        const mine = `${source.id}.${tensor}`;
        if (other !== undefined) {
          throw pipelineInvalid(
            name,
            [...at, fields.inputs],
            `${mine} and ${other} would both be passed on as ${JSON.stringify(to)}; rename one with tensorMap`,
          );
        }
        finalNames.set(to, mine);
      }
    }
    return {
      inputs,
      inputsJoin: join.inputs ?? "inner",
      triggers,
      triggersJoin: join.triggers ?? "inner",
      windowMs: join.windowMs ?? DEFAULT_JOIN_WINDOW_MS,
    };
  };

  const external = spec.input?.externalInputs ?? [];
  let input: InputStagePlan | undefined;
  if (external.length > 0) {
    const join = buildJoin(
      ["spec", "input"],
      { inputs: "externalInputs", triggers: "externalTriggers" },
      "external",
      external,
      spec.input?.externalTriggers ?? [],
      spec.input?.tensorMap,
      { inputs: spec.input?.joinType, triggers: spec.input?.triggersJoinType, windowMs: spec.input?.joinWindowMs },
    );
    input = { ...join, topic: inputsTopic };
  } else if ((spec.input?.externalTriggers ?? []).length > 0) {
    throw pipelineInvalid(
      name,
      ["spec", "input", "externalTriggers"],
      "external triggers gate external inputs: set input.externalInputs too",
    );
  }

  const steps = spec.steps.map((step, i): StepPlan => {
    const join = buildJoin(
      ["spec", "steps", i],
      { inputs: "inputs", triggers: "triggers" },
      "internal",
      step.inputs === undefined || step.inputs.length === 0 ? [`${name}.inputs`] : step.inputs,
      step.triggers ?? [],
      step.tensorMap,
      { inputs: step.inputsJoinType, triggers: step.triggersJoinType, windowMs: step.joinWindowMs },
    );
    const batch = batchPlan(step.batch, join.windowMs);
    return {
      name: step.name,
      model: step.name,
      requestTopic: topics.modelInputs(step.name),
      answerTopic: topics.modelOutputs(step.name),
      ...join,
      ...(batch === undefined ? {} : { batch }),
      maxRevisits: onCycle.has(step.name) ? (spec.maxStepRevisits ?? 0) : 0,
    };
  });

  // Without output.steps the pipeline answers with its last step's outputs.
  const outputRefs = spec.output?.steps ?? [];
  const output: OutputStagePlan = {
    ...buildJoin(
      ["spec", "output"],
      { inputs: "steps", triggers: "triggers" },
      "internal",
      outputRefs.length > 0 ? outputRefs : [spec.steps[spec.steps.length - 1]!.name],
      [],
      spec.output?.tensorMap,
      { inputs: spec.output?.stepsJoin, windowMs: spec.output?.joinWindowMs },
    ),
    topic: outputsTopic,
  };

  const subscribe = new Set<string>([inputsTopic]);
  for (const stage of [...(input === undefined ? [] : [input]), ...steps, output]) {
    for (const s of [...stage.inputs, ...stage.triggers]) subscribe.add(s.topic);
  }
  for (const step of steps) subscribe.add(step.answerTopic);
  const produce = new Set<string>([outputsTopic, topics.errors(), ...steps.map((s) => s.requestTopic)]);
  if (input !== undefined) produce.add(inputsTopic);

  return {
    pipeline: name,
    inputsTopic,
    outputsTopic,
    errorsTopic: topics.errors(),
    ...(input === undefined ? {} : { input }),
    steps,
    output,
    allowCycles: spec.allowCycles === true,
    subscribe: [...subscribe].sort(),
    produce: [...produce].sort(),
  };
}

function batchPlan(batch: PipelineBatch | undefined, windowMs: number): BatchPlan | undefined {
  if (batch?.size === undefined || batch.size <= 1) return undefined;
  return { size: batch.size, windowMs: batch.windowMs ?? windowMs, rolling: batch.rolling === true };
}

/** The steps that lie on some cycle of the step graph (edges from inputs and triggers). */
function stepsOnCycles(
  steps: readonly { name: string; inputs?: string[]; triggers?: string[] }[],
  pipelineName: string,
) {
  const deps = new Map<string, Set<string>>();
  for (const step of steps) {
    const set = new Set<string>();
    for (const text of [...(step.inputs ?? []), ...(step.triggers ?? [])]) {
      const parsed = parsePipelineRef(text, { pipelineName });
      if (parsed.ok && parsed.ref.kind === "step") set.add(parsed.ref.step);
    }
    deps.set(step.name, set);
  }
  return new Set([...deps.keys()].filter((step) => reaches(deps, step, step)));
}

function reaches(deps: ReadonlyMap<string, ReadonlySet<string>>, from: string, to: string): boolean {
  const seen = new Set<string>();
  const stack = [...(deps.get(from) ?? [])];
  while (stack.length > 0) {
    const next = stack.pop()!;
    if (next === to) return true;
    if (seen.has(next)) continue;
    seen.add(next);
    stack.push(...(deps.get(next) ?? []));
  }
  return false;
}

/**
 * Which stages a record feeds, from its topic and its `pipeline` header. A worker calls this for every record it
 * reads and hands the record to each target's join state.
 */
export function recordTargets(plan: PipelinePlan, topic: string, pipelineHeader: string): RecordTarget[] {
  const out: RecordTarget[] = [];
  const stages: [string, JoinPlan][] = [
    ...(plan.input === undefined ? [] : [["input", plan.input] as [string, JoinPlan]]),
    ...plan.steps.map((s) => [s.name, s] as [string, JoinPlan]),
    ["output", plan.output],
  ];
  for (const [stage, join] of stages) {
    for (const [list, trigger] of [
      [join.inputs, false],
      [join.triggers, true],
    ] as const) {
      for (const s of list) {
        if (s.topic === topic && s.pipeline === pipelineHeader) out.push({ stage, sourceId: s.id, trigger });
      }
    }
  }
  return out;
}

/** The step whose answer topic this is (for the error path: an error record there fails the request). */
export function stepAnswering(plan: PipelinePlan, topic: string): StepPlan | undefined {
  return plan.steps.find((s) => s.answerTopic === topic);
}

/** The pipeline's error answer for a step's error record: names the step (and its model) and keeps the reason. */
export function stepErrorMessage(plan: PipelinePlan, step: string, reason: string): string {
  const s = plan.steps.find((x) => x.name === step);
  const model = s === undefined || s.model === step ? "" : ` (model ${s.model})`;
  return `pipeline ${plan.pipeline}: step ${step}${model} failed: ${reason}`;
}
