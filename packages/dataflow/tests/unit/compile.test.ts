import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createTopicNames, hasCode, type PipelineResource, type PipelineSpec, parseManifests } from "@tern/core";
import { describe, expect, it } from "vitest";
import { compilePipeline, DEFAULT_JOIN_WINDOW_MS, recordTargets, stepErrorMessage } from "../../src/compile.js";

const topics = createTopicNames({ prefix: "seldon", namespace: "ns1" });
const pipeline = (name: string, spec: PipelineSpec): PipelineResource => ({
  apiVersion: "mlops.seldon.io/v1alpha1",
  kind: "Pipeline",
  metadata: { name },
  spec,
});
const compile = (name: string, spec: PipelineSpec) => compilePipeline(pipeline(name, spec), { topics });

/** The TernError message of a spec that must not compile. */
function refusal(name: string, spec: PipelineSpec): string {
  try {
    compile(name, spec);
  } catch (err) {
    expect(hasCode(err, "manifest.invalid")).toBe(true);
    return (err as Error).message;
  }
  throw new Error("compiled, but should have been refused");
}

const repoRoot = fileURLToPath(new URL("../../../../", import.meta.url));
function manifestPipelines(dir: string): PipelineResource[] {
  return readdirSync(join(repoRoot, dir))
    .filter((f) => /\.(ya?ml|json)$/.test(f))
    .flatMap((f) => parseManifests(readFileSync(join(repoRoot, dir, f), "utf8"), f).resources)
    .filter((r): r is PipelineResource => r.kind === "Pipeline");
}

describe("compilePipeline", () => {
  it("compiles a chain: a step without inputs reads the pipeline's request, tensorMap renames on the way", () => {
    const plan = compile("add-then-mul", {
      steps: [{ name: "add10" }, { name: "mul10", inputs: ["add10.outputs.y"], tensorMap: { "add10.outputs.y": "x" } }],
      output: { steps: ["mul10"] },
    });
    const [add, mul] = plan.steps;
    expect(add).toMatchObject({
      name: "add10",
      model: "add10",
      requestTopic: topics.modelInputs("add10"),
      answerTopic: topics.modelOutputs("add10"),
      inputsJoin: "inner",
      windowMs: DEFAULT_JOIN_WINDOW_MS,
      maxRevisits: 0,
    });
    expect(add!.inputs).toEqual([
      {
        id: "add-then-mul.inputs",
        topic: topics.pipelineInputs("add-then-mul"),
        pipeline: "add-then-mul",
        all: true,
        tensors: [],
        renames: [],
        repeats: false,
      },
    ]);
    expect(mul!.inputs).toEqual([
      {
        id: "add10.outputs",
        topic: topics.modelOutputs("add10"),
        pipeline: "add-then-mul",
        step: "add10",
        repeats: false,
        all: false,
        tensors: ["y"],
        renames: [{ from: "y", to: "x" }],
      },
    ]);
    expect(plan.output.inputs.map((s) => [s.id, s.topic, s.all])).toEqual([
      ["mul10.outputs", topics.modelOutputs("mul10"), true],
    ]);
    expect(plan.output.topic).toBe(topics.pipelineOutputs("add-then-mul"));
    expect(plan.subscribe).toEqual(
      [topics.pipelineInputs("add-then-mul"), topics.modelOutputs("add10"), topics.modelOutputs("mul10")].sort(),
    );
    expect(plan.produce).toEqual(
      [
        topics.modelInputs("add10"),
        topics.modelInputs("mul10"),
        topics.pipelineOutputs("add-then-mul"),
        topics.errors(),
      ].sort(),
    );
    expect(plan.input).toBeUndefined();
  });

  it("answers with the last step's outputs when output.steps is not given", () => {
    const plan = compile("p", { steps: [{ name: "a" }, { name: "b", inputs: ["a"] }] });
    expect(plan.output.inputs.map((s) => s.id)).toEqual(["b.outputs"]);
  });

  it("compiles a join like Seldon's tfsimple example: two sources, one tensor each, renamed", () => {
    const plan = compile("join", {
      steps: [
        { name: "tfsimple1" },
        { name: "tfsimple2" },
        {
          name: "tfsimple3",
          inputs: ["tfsimple1.outputs.OUTPUT0", "tfsimple2.outputs.OUTPUT1"],
          tensorMap: { "tfsimple1.outputs.OUTPUT0": "INPUT0", "tfsimple2.outputs.OUTPUT1": "INPUT1" },
          inputsJoinType: "outer",
          joinWindowMs: 250,
        },
      ],
      output: { steps: ["tfsimple3"] },
    });
    const step = plan.steps[2]!;
    expect(step.inputsJoin).toBe("outer");
    expect(step.windowMs).toBe(250);
    expect(step.inputs.map((s) => [s.id, s.tensors, s.renames])).toEqual([
      ["tfsimple1.outputs", ["OUTPUT0"], [{ from: "OUTPUT0", to: "INPUT0" }]],
      ["tfsimple2.outputs", ["OUTPUT1"], [{ from: "OUTPUT1", to: "INPUT1" }]],
    ]);
  });

  it("merges several tensors of one source into one source, and a whole-message reference takes them all", () => {
    const plan = compile("p", {
      steps: [
        { name: "a" },
        { name: "b", inputs: ["a.outputs.x", "a.outputs.y", "p.inputs.z"] },
        { name: "c", inputs: ["a.outputs.x", "a"] },
      ],
    });
    expect(plan.steps[1]!.inputs.map((s) => [s.id, s.all, s.tensors])).toEqual([
      ["a.outputs", false, ["x", "y"]],
      ["p.inputs", false, ["z"]],
    ]);
    expect(plan.steps[2]!.inputs.map((s) => [s.id, s.all, s.tensors])).toEqual([["a.outputs", true, []]]);
  });

  it("reads a step's inputs from the model's inputs topic (step.inputs.T)", () => {
    const plan = compile("p", { steps: [{ name: "a" }, { name: "b", inputs: ["a.inputs.x", "a.outputs.y"] }] });
    expect(plan.steps[1]!.inputs.map((s) => s.topic)).toEqual([topics.modelInputs("a"), topics.modelOutputs("a")]);
    expect(plan.subscribe).toContain(topics.modelInputs("a"));
  });

  it("keeps triggers apart from inputs, with their own join type", () => {
    const plan = compile("gate", {
      steps: [
        { name: "check" },
        { name: "work", inputs: ["gate.inputs"], triggers: ["check.outputs.ok"], triggersJoinType: "any" },
      ],
    });
    const work = plan.steps[1]!;
    expect(work.inputs.map((s) => s.id)).toEqual(["gate.inputs"]);
    expect(work.triggers.map((s) => [s.id, s.tensors])).toEqual([["check.outputs", ["ok"]]]);
    expect(work.triggersJoin).toBe("any");
    expect(recordTargets(plan, topics.modelOutputs("check"), "gate")).toEqual([
      { stage: "work", sourceId: "check.outputs", trigger: true },
    ]);
  });

  it("compiles conditional routing: each branch selects one tensor, the output takes any", () => {
    const plan = compile("choose-route", {
      steps: [
        { name: "choose" },
        { name: "add10", inputs: ["choose.outputs.positive"], tensorMap: { "choose.outputs.positive": "x" } },
        { name: "mul10", inputs: ["choose.outputs.negative"], tensorMap: { "choose.outputs.negative": "x" } },
      ],
      output: { steps: ["add10", "mul10"], stepsJoin: "any" },
    });
    expect(plan.output.inputsJoin).toBe("any");
    expect(plan.output.inputs.map((s) => s.id)).toEqual(["add10.outputs", "mul10.outputs"]);
    // One record of choose feeds both branches; each selects its own tensor.
    expect(recordTargets(plan, topics.modelOutputs("choose"), "choose-route")).toEqual([
      { stage: "add10", sourceId: "choose.outputs", trigger: false },
      { stage: "mul10", sourceId: "choose.outputs", trigger: false },
    ]);
  });

  it("chains pipelines: external inputs and triggers become an input stage writing the pipeline's inputs topic", () => {
    const plan = compile("downstream", {
      input: {
        externalInputs: ["upstream.outputs.y", "other.step.s.outputs"],
        externalTriggers: ["upstream.inputs.flag"],
        joinType: "outer",
        tensorMap: { "upstream.outputs.y": "x" },
      },
      steps: [{ name: "m" }],
    });
    const input = plan.input!;
    expect(input.topic).toBe(topics.pipelineInputs("downstream"));
    expect(input.inputsJoin).toBe("outer");
    expect(input.inputs.map((s) => [s.id, s.topic, s.pipeline, s.step])).toEqual([
      ["upstream.outputs", topics.pipelineOutputs("upstream"), "upstream", undefined],
      ["other.step.s.outputs", topics.modelOutputs("s"), "other", undefined],
    ]);
    expect(input.inputs[0]!.renames).toEqual([{ from: "y", to: "x" }]);
    expect(input.triggers.map((s) => [s.id, s.topic])).toEqual([
      ["upstream.inputs", topics.pipelineInputs("upstream")],
    ]);
    expect(plan.subscribe).toEqual(
      expect.arrayContaining([
        topics.pipelineOutputs("upstream"),
        topics.modelOutputs("s"),
        topics.pipelineInputs("upstream"),
      ]),
    );
    expect(plan.produce).toContain(topics.pipelineInputs("downstream"));
    // A record of model s belongs to this source only when it carries pipeline "other".
    expect(recordTargets(plan, topics.modelOutputs("s"), "other")).toEqual([
      { stage: "input", sourceId: "other.step.s.outputs", trigger: false },
    ]);
    expect(recordTargets(plan, topics.modelOutputs("s"), "downstream")).toEqual([]);
  });

  it("turns batch.size into a batch plan, with the join window as the default batch window", () => {
    const plan = compile("p", {
      steps: [
        { name: "a", batch: { size: 4 } },
        { name: "b", inputs: ["a"], batch: { size: 1 } },
        { name: "c", inputs: ["a"], batch: { size: 8, windowMs: 20, rolling: true } },
      ],
    });
    expect(plan.steps.map((s) => s.batch)).toEqual([
      { size: 4, windowMs: DEFAULT_JOIN_WINDOW_MS, rolling: false },
      undefined,
      { size: 8, windowMs: 20, rolling: true },
    ]);
  });

  it("gives revisits only to the steps on a cycle, and only when allowCycles is set", () => {
    const spec: PipelineSpec = {
      allowCycles: true,
      maxStepRevisits: 3,
      steps: [
        { name: "start" },
        { name: "refine", inputs: ["start", "check.outputs.again"], inputsJoinType: "any" },
        { name: "check", inputs: ["refine"] },
        { name: "after", inputs: ["check.outputs.done"] },
      ],
    };
    const plan = compile("loop", spec);
    expect(plan.allowCycles).toBe(true);
    expect(plan.steps.map((s) => [s.name, s.maxRevisits])).toEqual([
      ["start", 0],
      ["refine", 3],
      ["check", 3],
      ["after", 0],
    ]);
    expect(refusal("loop", { ...spec, allowCycles: undefined })).toContain(
      "spec.steps[1].inputs: steps form a cycle: refine -> check -> refine",
    );
  });

  it("refuses what manifest validation refuses, naming the field", () => {
    expect(refusal("p", { steps: [{ name: "a", inputs: ["nope"] }] })).toContain(
      'spec.steps[0].inputs[0]: unknown step "nope"',
    );
    expect(refusal("p", { steps: [] })).toContain("spec.steps");
  });

  it("refuses a tensorMap key that names no input of its stage, or no tensor", () => {
    expect(
      refusal("p", {
        steps: [{ name: "a" }, { name: "b", inputs: ["a.outputs.x"], tensorMap: { "a.outputs.y": "z" } }],
      }),
    ).toContain('spec.steps[1].tensorMap["a.outputs.y"]: "a.outputs.y" is not among this stage\'s inputs');
    expect(
      refusal("p", { steps: [{ name: "a" }, { name: "b", inputs: ["a"], tensorMap: { "a.outputs": "z" } }] }),
    ).toContain('spec.steps[1].tensorMap["a.outputs"]: a tensorMap key must name one tensor');
    expect(
      refusal("p", { steps: [{ name: "a" }], output: { steps: ["a"], tensorMap: { "b.outputs.x": "y" } } }),
    ).toContain('spec.output.tensorMap["b.outputs.x"]');
  });

  it("refuses two tensors given one name, by tensorMap or by selection", () => {
    expect(
      refusal("p", {
        steps: [{ name: "a" }, { name: "b", inputs: ["a"], tensorMap: { "a.outputs.x": "t", "a.outputs.y": "t" } }],
      }),
    ).toContain('spec.steps[1].tensorMap["a.outputs.y"]: renames to "t", as "a.outputs.x" already does');
    expect(
      refusal("p", { steps: [{ name: "a" }, { name: "b" }, { name: "c", inputs: ["a.outputs.x", "b.outputs.x"] }] }),
    ).toContain('spec.steps[2].inputs: b.outputs.x and a.outputs.x would both be passed on as "x"');
  });

  it("refuses external triggers without external inputs", () => {
    expect(refusal("p", { input: { externalTriggers: ["q.outputs.ok"] }, steps: [{ name: "a" }] })).toContain(
      "spec.input.externalTriggers: external triggers gate external inputs",
    );
  });

  it("names the step in the error answer built from its error record", () => {
    const plan = compile("p", { steps: [{ name: "a" }, { name: "b", inputs: ["a"] }] });
    expect(stepErrorMessage(plan, "b", "model b is not available")).toBe(
      "pipeline p: step b failed: model b is not available",
    );
  });

  const samples = [
    ...manifestPipelines("samples/manifests"),
    ...manifestPipelines("packages/core/tests/fixtures/valid"),
  ];
  it.each(samples.map((p) => ({ name: p.metadata.name, p })))(
    "compiles the sample pipeline $name, subscribing to every topic a stage reads",
    ({ p }) => {
      const plan = compilePipeline(p, { topics });
      const read = [plan.input, ...plan.steps, plan.output].flatMap((s) =>
        s === undefined ? [] : [...s.inputs, ...s.triggers].map((x) => x.topic),
      );
      for (const topic of read) expect(plan.subscribe).toContain(topic);
      expect(plan.steps.map((s) => s.name)).toEqual(p.spec.steps.map((s) => s.name));
    },
  );
  it("found the samples", () => {
    expect(samples.map((p) => p.metadata.name)).toEqual(
      expect.arrayContaining(["add-then-mul", "choose-route", "sum-diff-pipeline", "fraud-checks", "refine-loop"]),
    );
  });
});
