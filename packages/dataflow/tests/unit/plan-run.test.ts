import { createTopicNames, type PipelineResource, type PipelineSpec } from "@tern/core";
import { describe, expect, it } from "vitest";
import {
  compilePipeline,
  type PipelinePlan,
  recordTargets,
  stepAnswering,
  stepErrorMessage,
} from "../../src/compile.js";
import { createJoinState, type JoinState } from "../../src/join-state.js";

/**
 * Runs a compiled plan in memory the way a worker will (without Kafka): each record goes to the stages
 * `recordTargets` names; a fired step calls a model function and its answer is a record on the step's answer topic;
 * a skipped step tells its readers it will not produce (a null record), which is how conditional routing ends.
 */
type Tensors = Map<string, number>;
/** A model answers tensors, or an Error (the model gateway's error record). */
type Model = (inputs: Tensors) => Tensors | Error;
type Answer = { tensors: [string, number][] } | { error: string } | { skipped: true };

function runPlan(plan: PipelinePlan, models: Record<string, Model>, request: Tensors) {
  const now = 0;
  const states = new Map<string, JoinState<number>>();
  for (const step of plan.steps) {
    states.set(step.name, createJoinState<number>(step, { stage: `step ${step.name}`, maxRevisits: step.maxRevisits }));
  }
  states.set("output", createJoinState<number>(plan.output, { stage: "output" }));
  const ran: string[] = [];
  let answer: Answer | undefined;
  const finish = (a: Answer) => {
    answer ??= a;
    for (const state of states.values()) state.drop("req-1", now);
  };
  const queue: { topic: string; tensors: Tensors | null | Error }[] = [{ topic: plan.inputsTopic, tensors: request }];
  while (queue.length > 0) {
    const record = queue.shift()!;
    if (record.tensors instanceof Error) {
      finish({ error: stepErrorMessage(plan, stepAnswering(plan, record.topic)!.name, record.tensors.message) });
      continue;
    }
    for (const target of recordTargets(plan, record.topic, plan.pipeline)) {
      for (const d of states.get(target.stage)!.arrive("req-1", target.sourceId, record.tensors, now)) {
        if (d.kind === "error") finish({ error: d.message });
        else if (target.stage === "output")
          finish(d.kind === "fire" ? { tensors: [...d.requests[0]!.tensors] } : { skipped: true });
        else {
          const step = plan.steps.find((s) => s.name === target.stage)!;
          if (d.kind === "fire") {
            ran.push(step.name);
            queue.push({ topic: step.answerTopic, tensors: models[step.model]!(d.requests[0]!.tensors) });
          } else queue.push({ topic: step.answerTopic, tensors: null });
        }
      }
    }
  }
  return { ran, answer };
}

const topics = createTopicNames();
const compile = (name: string, spec: PipelineSpec) =>
  compilePipeline(
    { apiVersion: "mlops.seldon.io/v1alpha1", kind: "Pipeline", metadata: { name }, spec } as PipelineResource,
    {
      topics,
    },
  );
const one = (name: string, value: number): Tensors => new Map([[name, value]]);
const add10 = (t: Tensors) => one("y", t.get("x")! + 10);
const mul10 = (t: Tensors) => one("y", t.get("x")! * 10);
const choose: Model = (t) => one(t.get("x")! >= 0 ? "positive" : "negative", t.get("x")!);
const sumDiff: Model = (t) =>
  new Map([
    ["sum", t.get("a")! + t.get("b")!],
    ["diff", t.get("a")! - t.get("b")!],
  ]);

describe("a compiled plan driven through join states", () => {
  it.each([-3, 0, 4.5])("add-then-mul answers (x + 10) * 10 for x = %d", (x) => {
    const plan = compile("add-then-mul", {
      steps: [{ name: "add10" }, { name: "mul10", inputs: ["add10.outputs.y"], tensorMap: { "add10.outputs.y": "x" } }],
      output: { steps: ["mul10"] },
    });
    const { ran, answer } = runPlan(plan, { add10, mul10 }, one("x", x));
    expect(ran).toEqual(["add10", "mul10"]);
    expect(answer).toEqual({ tensors: [["y", (x + 10) * 10]] });
  });

  it.each([-2, 7])("choose-route runs only the branch whose tensor came (x = %d)", (x) => {
    const plan = compile("choose-route", {
      steps: [
        { name: "choose" },
        { name: "add10", inputs: ["choose.outputs.positive"], tensorMap: { "choose.outputs.positive": "x" } },
        { name: "mul10", inputs: ["choose.outputs.negative"], tensorMap: { "choose.outputs.negative": "x" } },
      ],
      output: { steps: ["add10", "mul10"], stepsJoin: "any" },
    });
    const { ran, answer } = runPlan(plan, { choose, add10, mul10 }, one("x", x));
    const branch = x >= 0 ? "add10" : "mul10";
    expect(ran).toEqual(["choose", branch]);
    const expected = x >= 0 ? x + 10 : x * 10;
    expect(answer).toEqual({ tensors: [["y", expected]] });
  });

  it("a join of two steps fed by one request waits for both (tfsimple-shaped)", () => {
    const plan = compile("join", {
      steps: [
        { name: "left", inputs: ["join.inputs.a"], tensorMap: { "join.inputs.a": "x" } },
        { name: "right", inputs: ["join.inputs.b"], tensorMap: { "join.inputs.b": "x" } },
        {
          name: "sum-diff",
          inputs: ["left.outputs.y", "right.outputs.y"],
          tensorMap: { "left.outputs.y": "a", "right.outputs.y": "b" },
        },
      ],
    });
    const request = new Map([
      ["a", 2],
      ["b", 5],
    ]);
    const { ran, answer } = runPlan(plan, { left: add10, right: mul10, "sum-diff": sumDiff }, request);
    expect(ran).toEqual(["left", "right", "sum-diff"]);
    const a = 2 + 10;
    const b = 5 * 10;
    expect(answer).toEqual({
      tensors: [
        ["sum", a + b],
        ["diff", a - b],
      ],
    });
  });

  it("when the only output step is skipped, the output stage skips too (the worker answers that no step produced)", () => {
    const plan = compile("gated", {
      steps: [
        { name: "choose" },
        { name: "add10", inputs: ["choose.outputs.positive"], tensorMap: { "choose.outputs.positive": "x" } },
      ],
    });
    const { ran, answer } = runPlan(plan, { choose, add10 }, one("x", -1));
    expect(ran).toEqual(["choose"]);
    expect(answer).toEqual({ skipped: true });
  });

  it("a step's error record becomes the pipeline's error answer, naming the step, and nothing runs after it", () => {
    const plan = compile("add-then-mul", {
      steps: [{ name: "add10" }, { name: "mul10", inputs: ["add10.outputs.y"], tensorMap: { "add10.outputs.y": "x" } }],
    });
    const broken = () => new Error("model add10 has no available replica");
    const { ran, answer } = runPlan(plan, { add10: broken, mul10 }, one("x", 1));
    expect(ran).toEqual(["add10"]);
    expect(answer).toEqual({ error: "pipeline add-then-mul: step add10 failed: model add10 has no available replica" });
  });

  describe("a cycle (allowCycles): refine adds 10 until check sees at least 30", () => {
    const loop = (maxStepRevisits: number) =>
      compile("loop", {
        allowCycles: true,
        maxStepRevisits,
        steps: [
          {
            name: "refine",
            inputs: ["loop.inputs", "check.outputs.again"],
            inputsJoinType: "any",
            tensorMap: { "check.outputs.again": "x" },
          },
          { name: "check", inputs: ["refine"] },
        ],
        output: { steps: ["check.outputs.done"] },
      });
    const check = (t: Tensors) => one(t.get("y")! >= 30 ? "done" : "again", t.get("y")!);
    const passes = (x: number) => Math.max(1, Math.ceil((30 - x) / 10));

    it.each([5, 29, 40])("answers the first x + 10k at least 30 (x = %d), passing refine that many times", (x) => {
      const { ran, answer } = runPlan(loop(5), { refine: add10, check }, one("x", x));
      expect(ran.filter((s) => s === "refine")).toHaveLength(passes(x));
      expect(answer).toEqual({ tensors: [["done", x + 10 * passes(x)]] });
    });

    it("fails the request naming the step once it needs more revisits than maxStepRevisits", () => {
      const x = -100;
      expect(passes(x) - 1).toBeGreaterThan(3);
      const { ran, answer } = runPlan(loop(3), { refine: add10, check }, one("x", x));
      expect(ran.filter((s) => s === "refine")).toHaveLength(4);
      expect(answer).toEqual({ error: "step refine: revisited more than 3 times (maxStepRevisits)" });
    });
  });

  it("chains pipelines: the input stage joins the other pipeline's answer, renames it, and the steps run on it", () => {
    const plan = compile("downstream", {
      input: { externalInputs: ["upstream.outputs.y"], tensorMap: { "upstream.outputs.y": "x" } },
      steps: [{ name: "mul10" }],
    });
    const input = createJoinState<number>(plan.input!, { stage: "input" });
    const upstreamAnswer = new Map([
      ["y", 4],
      ["ignored", 1],
    ]);
    const [target] = recordTargets(plan, topics.pipelineOutputs("upstream"), "upstream");
    expect(target).toEqual({ stage: "input", sourceId: "upstream.outputs", trigger: false });
    const [joined] = input.arrive("req-1", target!.sourceId, upstreamAnswer, 0);
    if (joined?.kind !== "fire") throw new Error(`expected the input stage to fire, got ${JSON.stringify(joined)}`);
    expect(plan.input!.topic).toBe(plan.inputsTopic);
    const { answer } = runPlan(plan, { mul10 }, joined.requests[0]!.tensors);
    expect(answer).toEqual({ tensors: [["y", 4 * 10]] });
  });
});
