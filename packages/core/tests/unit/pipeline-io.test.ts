import { describe, expect, it } from "vitest";
import { pipelineIo } from "../../src/pipeline-io.js";
import type { PipelineSpec } from "../../src/resources.js";

describe("pipelineIo: a pipeline's inputs and outputs from its spec", () => {
  it("a chain: the first step (no inputs) takes every pipeline input; the output step answers all its outputs", () => {
    const spec: PipelineSpec = {
      steps: [{ name: "add10" }, { name: "mul10", inputs: ["add10.outputs.y"], tensorMap: { "add10.outputs.y": "x" } }],
      output: { steps: ["mul10"] },
    };
    expect(pipelineIo("add-then-mul", spec)).toEqual({
      inputs: [{ model: "add10", side: "inputs" }],
      outputs: [{ model: "mul10", side: "outputs" }],
    });
  });

  it("without output.steps the last step answers", () => {
    expect(pipelineIo("p", { steps: [{ name: "a" }, { name: "b", inputs: ["a"] }] }).outputs).toEqual([
      { model: "b", side: "outputs" },
    ]);
  });

  it("named pipeline tensors, renamed for the model by the step's tensorMap; a trigger is a name only", () => {
    const spec: PipelineSpec = {
      steps: [
        {
          name: "add10",
          inputs: ["p.inputs.x", "p.inputs.extra"],
          tensorMap: { "p.inputs.extra": "bias" },
          triggers: ["p.inputs.ok"],
        },
      ],
    };
    expect(pipelineIo("p", spec).inputs).toEqual([
      { model: "add10", side: "inputs", tensor: "x", name: "x" },
      { model: "add10", side: "inputs", tensor: "bias", name: "extra" },
      { name: "ok" },
    ]);
  });

  it("a whole-input step with a tensorMap reads the model's names back to the pipeline's", () => {
    const spec: PipelineSpec = { steps: [{ name: "m", inputs: ["p.inputs"], tensorMap: { "p.inputs.raw": "x" } }] };
    expect(pipelineIo("p", spec).inputs).toEqual([{ model: "m", side: "inputs", renames: { x: "raw" } }]);
  });

  it("steps that read other steps only add no pipeline input; output.tensorMap renames outputs, whole or one tensor", () => {
    const spec: PipelineSpec = {
      steps: [
        { name: "choose" },
        { name: "add10", inputs: ["choose.outputs.positive"] },
        { name: "mul10", inputs: ["choose.outputs.negative"] },
      ],
      output: {
        steps: ["add10", "mul10.outputs.y", "choose.inputs"],
        tensorMap: { "add10.outputs.y": "plus", "mul10.outputs.y": "times" },
      },
    };
    expect(pipelineIo("p", spec)).toEqual({
      inputs: [{ model: "choose", side: "inputs" }],
      outputs: [
        { model: "add10", side: "outputs", renames: { y: "plus" } },
        { model: "mul10", side: "outputs", tensor: "y", name: "times" },
        { model: "choose", side: "inputs" },
      ],
    });
  });
});
