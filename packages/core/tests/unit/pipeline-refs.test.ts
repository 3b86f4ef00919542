import { describe, expect, it } from "vitest";
import {
  closestMatch,
  editDistance,
  findCycle,
  formatPipelineRef,
  type PipelineRef,
  parsePipelineRef,
  validatePipelineGraph,
} from "../../src/pipeline-refs.js";
import type { PipelineSpec } from "../../src/resources.js";

const internal = { pipelineName: "p" };
const external = { pipelineName: "p", scope: "external" as const };

describe("parsePipelineRef inside a pipeline", () => {
  it.each<[string, PipelineRef]>([
    ["step", { kind: "step", step: "step", io: "outputs", implicit: true }],
    ["step.outputs", { kind: "step", step: "step", io: "outputs", implicit: false }],
    ["step.outputs.OUT0", { kind: "step", step: "step", io: "outputs", tensor: "OUT0", implicit: false }],
    ["step.inputs", { kind: "step", step: "step", io: "inputs", implicit: false }],
    ["step.inputs.in_1", { kind: "step", step: "step", io: "inputs", tensor: "in_1", implicit: false }],
    ["s-1.outputs.a.b", { kind: "step", step: "s-1", io: "outputs", tensor: "a.b", implicit: false }],
    ["p.inputs", { kind: "pipeline", pipeline: "p", io: "inputs" }],
    ["p.inputs.amount", { kind: "pipeline", pipeline: "p", io: "inputs", tensor: "amount" }],
  ])("reads %s", (text, ref) => {
    expect(parsePipelineRef(text, internal)).toEqual({ ok: true, ref });
  });

  it.each([
    ["", "a reference must not be empty"],
    ["a b", '"a b": a reference must not contain spaces'],
    ["a..outputs", '"a..outputs": empty part between dots'],
    ["a.outputs.", '"a.outputs.": empty part between dots'],
    ["a/b.outputs", '"a/b.outputs": "a/b" is not a valid name (letters, digits, "-" and "_")'],
    ["a.output", '"a.output": expected "inputs" or "outputs" after the name, got "output" (did you mean "outputs"?)'],
    ["a.tensor", '"a.tensor": expected "inputs" or "outputs" after the name, got "tensor"'],
    ["p.outputs", '"p.outputs": a pipeline cannot read its own outputs; name the step that produces them'],
    [
      "q.step.s.outputs",
      '"q.step.s.outputs": steps of another pipeline can only be referenced from input.externalInputs',
    ],
  ])("rejects %j", (text, message) => {
    expect(parsePipelineRef(text, internal)).toEqual({ ok: false, message });
  });
});

describe("parsePipelineRef in externalInputs", () => {
  it.each<[string, PipelineRef]>([
    ["other.inputs", { kind: "pipeline", pipeline: "other", io: "inputs" }],
    ["other.inputs.x", { kind: "pipeline", pipeline: "other", io: "inputs", tensor: "x" }],
    ["other.outputs", { kind: "pipeline", pipeline: "other", io: "outputs" }],
    ["other.outputs.y", { kind: "pipeline", pipeline: "other", io: "outputs", tensor: "y" }],
    ["other.step.s1.outputs", { kind: "pipeline-step", pipeline: "other", step: "s1", io: "outputs" }],
    ["other.step.s1.inputs.t", { kind: "pipeline-step", pipeline: "other", step: "s1", io: "inputs", tensor: "t" }],
  ])("reads %s", (text, ref) => {
    expect(parsePipelineRef(text, external)).toEqual({ ok: true, ref });
  });

  it.each([
    ["other", '"other": expected <pipeline>.inputs|outputs[.TENSOR] or <pipeline>.step.<step>.inputs|outputs'],
    ["p.outputs", '"p.outputs": external inputs must come from another pipeline, not from "p" itself'],
    ["other.step", '"other.step": expected a step name after "other.step."'],
    ["other.step.s1", '"other.step.s1": expected "inputs" or "outputs" after "other.step.s1"'],
    [
      "other.step.s1.input",
      '"other.step.s1.input": expected "inputs" or "outputs" after the name, got "input" (did you mean "inputs"?)',
    ],
    ["other.result", '"other.result": expected "inputs" or "outputs" after the name, got "result"'],
  ])("rejects %j", (text, message) => {
    expect(parsePipelineRef(text, external)).toEqual({ ok: false, message });
  });
});

describe("formatPipelineRef", () => {
  it("gives the canonical form, so a bare step equals step.outputs", () => {
    for (const [text, canonical, context] of [
      ["a", "a.outputs", internal],
      ["a.inputs.t", "a.inputs.t", internal],
      ["p.inputs", "p.inputs", internal],
      ["q.step.s.outputs.x", "q.step.s.outputs.x", external],
    ] as const) {
      const parsed = parsePipelineRef(text, context);
      expect(parsed.ok && formatPipelineRef(parsed.ref)).toBe(canonical);
    }
  });
});

describe("hints", () => {
  it("counts a swap of neighbours as one edit", () => {
    expect(editDistance("Modle", "Model")).toBe(1);
    expect(editDistance("replica", "replicas")).toBe(1);
    expect(editDistance("", "abc")).toBe(3);
  });

  it("suggests only obvious typos", () => {
    expect(closestMatch("replica", ["replicas", "minReplicas"])).toBe("replicas");
    expect(closestMatch("storageURI", ["storageUri"])).toBe("storageUri");
    expect(closestMatch("c", ["a", "b"])).toBeUndefined();
    expect(closestMatch("totally", ["replicas"])).toBeUndefined();
  });
});

describe("findCycle", () => {
  it("returns undefined for a chain and a diamond", () => {
    const diamond = new Map([
      ["a", new Set<string>()],
      ["b", new Set(["a"])],
      ["c", new Set(["a"])],
      ["d", new Set(["b", "c"])],
    ]);
    expect(findCycle(diamond)).toBeUndefined();
  });

  it("names a cycle in data-flow order", () => {
    // b reads a, c reads b, a reads c: data flows a -> b -> c -> a.
    const edges = new Map([
      ["a", new Set(["c"])],
      ["b", new Set(["a"])],
      ["c", new Set(["b"])],
    ]);
    expect(findCycle(edges)).toEqual(["a", "b", "c", "a"]);
  });
});

function spec(steps: PipelineSpec["steps"], rest: Partial<PipelineSpec> = {}): PipelineSpec {
  return { steps, ...rest };
}

describe("validatePipelineGraph", () => {
  it("accepts a chain with joins, triggers and an output", () => {
    const problems = validatePipelineGraph(
      "p",
      spec(
        [
          { name: "a" },
          { name: "b", inputs: ["a", "p.inputs.x"] },
          { name: "c", inputs: ["a.outputs.t", "b.outputs"], triggers: ["b.outputs.flag"] },
        ],
        { output: { steps: ["c"] } },
      ),
    );
    expect(problems).toEqual([]);
  });

  it("reports a self-reference as a cycle of one step", () => {
    expect(validatePipelineGraph("p", spec([{ name: "a", inputs: ["a.outputs"] }]))).toEqual([
      {
        path: ["spec", "steps", 0, "inputs"],
        message: "steps form a cycle: a -> a (set spec.allowCycles: true to allow it)",
      },
    ]);
  });

  it("treats trigger edges as dependencies too", () => {
    const problems = validatePipelineGraph(
      "p",
      spec([
        { name: "a", triggers: ["b"] },
        { name: "b", inputs: ["a"] },
      ]),
    );
    expect(problems).toEqual([
      {
        path: ["spec", "steps", 0, "inputs"],
        message: "steps form a cycle: a -> b -> a (set spec.allowCycles: true to allow it)",
      },
    ]);
  });

  it("does not count the same references in another order as different from the inputs", () => {
    const problems = validatePipelineGraph(
      "p",
      spec([{ name: "a" }, { name: "b" }, { name: "c", inputs: ["a", "b.outputs"], triggers: ["b", "a.outputs"] }]),
    );
    expect(problems.map((p) => p.path.join("."))).toEqual(["spec.steps.2.triggers"]);
  });

  it("checks references in tensorMap keys and external inputs", () => {
    const problems = validatePipelineGraph(
      "p",
      spec([{ name: "a", tensorMap: { "zz.outputs.t": "x" } }], {
        input: { externalInputs: ["p.outputs"] },
        output: { tensorMap: { "a.outputs.t": "y" } },
      }),
    );
    expect(problems).toEqual([
      { path: ["spec", "steps", 0, "tensorMap", "zz.outputs.t"], message: 'unknown step "zz"' },
      {
        path: ["spec", "input", "externalInputs", 0],
        message: '"p.outputs": external inputs must come from another pipeline, not from "p" itself',
      },
    ]);
  });
});
