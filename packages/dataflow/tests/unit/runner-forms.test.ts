import {
  decodeModelInferRequest,
  encodeModelInferResponse,
  type OipTensor,
  parseRecordKey,
  requestInputsToOip,
  tensorsFromOip,
} from "@tern/core";
import { describe, expect, it } from "vitest";
import { BATCH_HEADER } from "../../src/runner.js";
import {
  add10,
  compile,
  fp32,
  type Harness,
  harnessPerTest,
  type Model,
  mul10,
  topics,
  values,
  waitFor,
} from "./runner-harness.js";

/**
 * Every pipeline form of issue 10 run by the runner on the in-memory bus; the test plays the models and computes each
 * expected answer from the request.
 */

const start = harnessPerTest();

const f = Math.fround;
const named = (outputs: OipTensor[] | undefined) => Object.fromEntries((outputs ?? []).map((t) => [t.name, values(t)]));
const input = (inputs: OipTensor[], name: string) => values(inputs.find((t) => t.name === name));
const callsFor = (h: Harness, model: string, id: string) =>
  (h.modelCalls.get(model) ?? []).filter((m) => parseRecordKey(m.key)?.requestId === id);
const calledNames = (h: Harness, model: string, id: string) =>
  requestInputsToOip(decodeModelInferRequest(callsFor(h, model, id)[0]!.value)).map((t) => t.name);

describe("pipeline runner: references and joins", () => {
  it("step.inputs.T: a step reads what another step was sent, joined with that step's answer", async () => {
    const plan = compile("inputs-ref", {
      steps: [{ name: "add10" }, { name: "sum", inputs: ["add10.inputs.x", "add10.outputs.y"] }],
    });
    const sum: Model = (inputs) => {
      const x = input(inputs, "x");
      const y = input(inputs, "y");
      return [
        fp32(
          "z",
          x.map((v, i) => v + y[i]!),
        ),
      ];
    };
    const h = await start(plan, { models: { add10, sum } });
    await h.send("r", 2, [fp32("x", [1, 4])]);
    const answer = await h.answer("r");
    expect(named(answer.outputs)).toEqual({ z: [1, 4].map((x) => x + (x + 10)) });
    expect(calledNames(h, "sum", "r")).toEqual(["x", "y"]);
  });

  it("inner join of two steps (tfsimple-shaped): waits for both, tensors renamed by tensorMap", async () => {
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
    const sumDiff: Model = (inputs) => {
      const a = input(inputs, "a");
      const b = input(inputs, "b");
      return [
        fp32(
          "sum",
          a.map((v, i) => v + b[i]!),
        ),
        fp32(
          "diff",
          a.map((v, i) => v - b[i]!),
        ),
      ];
    };
    const h = await start(plan, { models: { left: add10, right: mul10, "sum-diff": sumDiff } });
    await h.send("r", 1, [fp32("a", [2]), fp32("b", [5])]);
    const answer = await h.answer("r");
    const a = 2 + 10;
    const b = 5 * 10;
    expect(named(answer.outputs)).toEqual({ sum: [a + b], diff: [a - b] });
    expect(calledNames(h, "left", "r")).toEqual(["x"]);
  });

  it("inner join with one input missing: after the window, an error answer naming the input that never came", async () => {
    const plan = compile("join", {
      steps: [
        { name: "left", inputs: ["join.inputs.a"], tensorMap: { "join.inputs.a": "x" } },
        { name: "right", inputs: ["join.inputs.b"], tensorMap: { "join.inputs.b": "x" } },
        { name: "sum", inputs: ["left", "right"], joinWindowMs: 100 },
      ],
    });
    const never: Model = () => null;
    const h = await start(plan, { models: { left: add10, right: never, sum: add10 } });
    await h.send("r", 0, [fp32("a", [2]), fp32("b", [5])]);
    const answer = await h.answer("r");
    expect(answer.error).toBe("pipeline join: step sum: right.outputs never came within 100 ms");
    expect(answer.status).toBe("DEADLINE_EXCEEDED");
    expect(h.modelCalls.get("sum")).toBeUndefined();
  });

  it("outer join: answers with what came once the window ends", async () => {
    const plan = compile("outer", {
      steps: [{ name: "add10" }, { name: "slow" }],
      output: {
        steps: ["add10.outputs.y", "slow.outputs.y"],
        stepsJoin: "outer",
        joinWindowMs: 100,
        tensorMap: { "add10.outputs.y": "a", "slow.outputs.y": "b" },
      },
    });
    const h = await start(plan, { models: { add10, slow: () => null } });
    await h.send("r", 3, [fp32("x", [1.5])]);
    const answer = await h.answer("r");
    expect(named(answer.outputs)).toEqual({ a: [1.5 + 10] });
  });

  it("any join: the first answer is the pipeline's, a later one is dropped", async () => {
    const plan = compile("either", {
      steps: [{ name: "add10" }, { name: "mul10" }],
      output: {
        steps: ["add10.outputs.y", "mul10.outputs.y"],
        stepsJoin: "any",
        tensorMap: { "add10.outputs.y": "a", "mul10.outputs.y": "b" },
      },
    });
    const h = await start(plan, { models: { add10, mul10 } });
    h.pauseModels();
    await h.send("r", 1, [fp32("x", [3])]);
    await waitFor(() => h.heldCalls().length === 2 || undefined, "both model calls");
    await h.releaseCall(h.heldCalls().findIndex((m) => m.topic === topics.modelInputs("mul10")));
    const answer = await h.answer("r");
    expect(named(answer.outputs)).toEqual({ b: [30] });
    await h.releaseCall(0);
    await waitFor(() => h.bus.records(topics.modelOutputs("add10"), 1).length === 1 || undefined, "add10's answer");
    await waitFor(() => h.host.inFlight() === 0 || undefined, "nothing in flight");
    expect(h.answers("r")).toHaveLength(1);
  });

  it("triggers gate a step and are not passed on; an absent trigger means no answer, said as an error", async () => {
    const plan = compile("trig", {
      steps: [{ name: "gate" }, { name: "mul10", triggers: ["gate.outputs.ok"] }],
    });
    const gate: Model = (inputs) => {
      const x = input(inputs, "x");
      return [fp32(x[0]! > 0 ? "ok" : "no", [1])];
    };
    const h = await start(plan, { models: { gate, mul10 } });
    await h.send("pos", 0, [fp32("x", [3])]);
    await h.send("neg", 0, [fp32("x", [-3])]);
    expect(named((await h.answer("pos")).outputs)).toEqual({ y: [30] });
    expect(calledNames(h, "mul10", "pos")).toEqual(["x"]);
    const neg = await h.answer("neg");
    expect(neg.error).toMatch(/^pipeline trig: no answer: output: its selected inputs are absent/);
    expect(neg.status).toBe("FAILED_PRECONDITION");
    expect(callsFor(h, "mul10", "neg")).toEqual([]);
  });

  it.each([-2, 7])(
    "choose-route: only the branch whose tensor came runs, the any output takes it (x = %d)",
    async (x) => {
      const plan = compile("choose-route", {
        steps: [
          { name: "choose" },
          { name: "add10", inputs: ["choose.outputs.positive"], tensorMap: { "choose.outputs.positive": "x" } },
          { name: "mul10", inputs: ["choose.outputs.negative"], tensorMap: { "choose.outputs.negative": "x" } },
        ],
        output: { steps: ["add10", "mul10"], stepsJoin: "any" },
      });
      const choose: Model = (inputs) => {
        const v = input(inputs, "x");
        return [fp32(v[0]! >= 0 ? "positive" : "negative", v)];
      };
      const h = await start(plan, { models: { choose, add10, mul10 } });
      await h.send("r", 2, [fp32("x", [x])]);
      const answer = await h.answer("r");
      expect(named(answer.outputs)).toEqual({ y: [x >= 0 ? x + 10 : x * 10] });
      expect(callsFor(h, x >= 0 ? "mul10" : "add10", "r")).toEqual([]);
      await waitFor(() => h.host.inFlight() === 0 || undefined, "nothing in flight");
    },
  );
});

describe("pipeline runner: batch", () => {
  const plan = compile("batched", {
    steps: [
      { name: "add10", batch: { size: 3, windowMs: 100 } },
      { name: "mul10", inputs: ["add10.outputs.y"], tensorMap: { "add10.outputs.y": "x" } },
    ],
  });

  it("sends a full batch as one model request, rows concatenated, and splits the answer back per request", async () => {
    const h = await start(plan, { models: { add10, mul10 } });
    const requests = [
      { id: "b1", rows: [[1, 2]] },
      {
        id: "b2",
        rows: [
          [3, 4],
          [5, 6],
        ],
      },
      { id: "b3", rows: [[7, 8]] },
    ];
    for (const r of requests) await h.send(r.id, 1, [fp32("x", r.rows.flat(), [r.rows.length, 2])], { "x-who": r.id });
    for (const r of requests) {
      const answer = await h.answer(r.id);
      expect(answer.outputs?.[0]?.shape).toEqual([r.rows.length, 2]);
      expect(values(answer.outputs?.[0])).toEqual(r.rows.flat().map((v) => (v + 10) * 10));
      expect(answer.message.headers["x-who"]).toBe(r.id);
      expect(answer.message.key).toBe(`1.batched.${r.id}`);
      // After the batch each request continues on its own.
      expect(callsFor(h, "mul10", r.id)).toHaveLength(1);
    }
    const calls = h.modelCalls.get("add10")!;
    expect(calls).toHaveLength(1);
    const batch = calls[0]!;
    expect(batch.partition).toBe(1);
    expect(JSON.parse(batch.headers[BATCH_HEADER]!)).toEqual(requests.map((r) => [r.id, r.rows.length]));
    const sent = requestInputsToOip(decodeModelInferRequest(batch.value));
    expect(sent[0]?.shape).toEqual([4, 2]);
    expect(values(sent[0])).toEqual(requests.flatMap((r) => r.rows.flat()));
  });

  it("a partial batch goes when its window ends; a lone request goes as a plain request", async () => {
    const h = await start(plan, { models: { add10, mul10 } });
    await h.send("p1", 0, [fp32("x", [1])]);
    await h.send("p2", 0, [fp32("x", [2])]);
    await h.send("lone", 3, [fp32("x", [3])]);
    expect(values((await h.answer("p1")).outputs?.[0])).toEqual([110]);
    expect(values((await h.answer("p2")).outputs?.[0])).toEqual([120]);
    expect(values((await h.answer("lone")).outputs?.[0])).toEqual([130]);
    const lone = callsFor(h, "add10", "lone");
    expect(lone).toHaveLength(1);
    expect(lone[0]!.headers[BATCH_HEADER]).toBeUndefined();
    expect(h.modelCalls.get("add10")).toHaveLength(2);
  });

  it("a batch whose model answers the wrong number of rows fails each of its requests, naming the step", async () => {
    const short: Model = (inputs) => [fp32("y", [input(inputs, "x")[0]!], [1, 1])];
    const h = await start(plan, { models: { add10: short, mul10 } });
    for (const id of ["w1", "w2", "w3"]) await h.send(id, 2, [fp32("x", [1], [1, 1])]);
    for (const id of ["w1", "w2", "w3"]) {
      const answer = await h.answer(id);
      expect(answer.error).toMatch(
        /^pipeline batched: a record on seldon\.default\.model\.add10\.outputs: output "y" has shape \[1,1\], but the batch has 3 rows/,
      );
      expect(answer.status).toBe("INVALID_ARGUMENT");
    }
  });
});

describe("pipeline runner: pipelines, cycles, failures", () => {
  it("external inputs: another pipeline's answer starts a request, renamed, on the same partition", async () => {
    const plan = compile("downstream", {
      input: { externalInputs: ["upstream.outputs.y"], tensorMap: { "upstream.outputs.y": "x" } },
      steps: [{ name: "mul10" }],
    });
    const h = await start(plan, { models: { mul10 } });
    const upstreamAnswer = (id: string, partition: number, pipeline: string, y: number) => {
      const { tensors, raw } = tensorsFromOip([fp32("y", [y]), fp32("other", [0])], true);
      return {
        topic: topics.pipelineOutputs("upstream"),
        partition,
        key: `${partition}.upstream.${id}`,
        value: encodeModelInferResponse({ model_name: "upstream", id, outputs: tensors, raw_output_contents: raw! }),
        headers: { pipeline, "x-request-id": id, "x-team": "ml" },
      };
    };
    await h.produce([upstreamAnswer("e1", 2, "upstream", 4), upstreamAnswer("e2", 2, "not-upstream", 5)]);
    const answer = await h.answer("e1");
    expect(answer.message.key).toBe("2.downstream.e1");
    expect(answer.message.partition).toBe(2);
    expect(answer.message.headers).toMatchObject({ pipeline: "downstream", "x-team": "ml" });
    expect(named(answer.outputs)).toEqual({ y: [40] });
    const own = h.bus.records(plan.inputsTopic, 2);
    expect(own.map((m) => m.key)).toEqual(["2.downstream.e1"]);
    expect(calledNames(h, "mul10", "e1")).toEqual(["x"]);
    await waitFor(() => h.host.inFlight() === 0 || undefined, "nothing in flight");
    expect(h.answers("e2")).toEqual([]);
    // The other pipeline's error answer fails the request here too, with its message and status.
    await h.produce([
      {
        topic: topics.pipelineOutputs("upstream"),
        partition: 1,
        key: "1.upstream.e3",
        value: new Uint8Array(0),
        headers: {
          pipeline: "upstream",
          "seldon-pipeline-errors": "upstream",
          "tern-error": "pipeline upstream: step s failed: boom",
          "tern-error-status": "UNAVAILABLE",
        },
      },
    ]);
    const failed = await h.answer("e3");
    expect(failed.error).toBe("pipeline downstream: upstream.outputs failed: pipeline upstream: step s failed: boom");
    expect(failed.status).toBe("UNAVAILABLE");
    expect(failed.message.key).toBe("1.downstream.e3");
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
          { name: "check", inputs: ["refine"], tensorMap: {} },
        ],
        output: { steps: ["check.outputs.done"] },
      });
    const check: Model = (inputs) => {
      const y = input(inputs, "y");
      return [fp32(y[0]! >= 30 ? "done" : "again", y)];
    };
    const passes = (x: number) => Math.max(1, Math.ceil((30 - x) / 10));

    it.each([5, 29, 40])("answers the first x + 10k ≥ 30 (x = %d), refine called that many times", async (x) => {
      const h = await start(loop(5), { models: { refine: add10, check } });
      await h.send("r", 1, [fp32("x", [x])]);
      const answer = await h.answer("r");
      expect(named(answer.outputs)).toEqual({ done: [x + 10 * passes(x)] });
      expect(callsFor(h, "refine", "r")).toHaveLength(passes(x));
    });

    it("fails the request once it needs more revisits than maxStepRevisits", async () => {
      const h = await start(loop(3), { models: { refine: add10, check } });
      await h.send("r", 1, [fp32("x", [-100])]);
      const answer = await h.answer("r");
      expect(answer.error).toBe("pipeline loop: step refine: revisited more than 3 times (maxStepRevisits)");
      expect(answer.status).toBe("ABORTED");
      expect(callsFor(h, "refine", "r")).toHaveLength(4);
    });
  });

  it("a step's error record becomes the pipeline's error answer naming the step, also on the errors topic", async () => {
    const plan = compile("add-then-mul", {
      steps: [{ name: "add10" }, { name: "mul10", inputs: ["add10.outputs.y"], tensorMap: { "add10.outputs.y": "x" } }],
    });
    const broken: Model = () => new Error("model add10 has no available replica");
    const h = await start(plan, { models: { add10: broken, mul10 } });
    await h.send("r", 3, [fp32("x", [1])], { "x-team": "ml" });
    const answer = await h.answer("r");
    const message = "pipeline add-then-mul: step add10 failed: model add10 has no available replica";
    expect(answer.error).toBe(message);
    expect(answer.status).toBe("INVALID_ARGUMENT");
    expect(answer.message.headers).toMatchObject({ "seldon-pipeline-errors": "add-then-mul", "x-team": "ml" });
    expect(answer.message.key).toBe("3.add-then-mul.r");
    const errors = h.bus.records(topics.errors(), 3);
    expect(errors.map((m) => [m.key, new TextDecoder().decode(m.value)])).toEqual([["3.add-then-mul.r", message]]);
    expect(h.modelCalls.get("mul10")).toBeUndefined();
  });

  it("a request not finished within the request timeout fails, naming what it still waited for", async () => {
    const plan = compile("add-then-mul", {
      steps: [{ name: "add10" }, { name: "mul10", inputs: ["add10.outputs.y"], tensorMap: { "add10.outputs.y": "x" } }],
    });
    const h = await start(plan, { models: { add10, mul10: () => null }, requestTimeoutMs: 150 });
    await h.send("r", 0, [fp32("x", [1])]);
    const answer = await h.answer("r");
    expect(answer.error).toBe(
      "pipeline add-then-mul: request r not finished within 150 ms; still waiting for the answer of model mul10 (step mul10)",
    );
    expect(answer.status).toBe("DEADLINE_EXCEEDED");
    expect(h.host.inFlight()).toBe(0);
  });

  it("beyond maxOpen a new request is refused at once with RESOURCE_EXHAUSTED; the open ones are answered", async () => {
    const plan = compile("chain", { steps: [{ name: "add10" }] });
    const h = await start(plan, { models: { add10 }, maxOpen: 2 });
    h.pauseModels();
    for (const [i, id] of ["o1", "o2", "o3"].entries()) await h.send(id, i, [fp32("x", [i])]);
    const refused = await h.answer("o3");
    expect(refused.error).toBe("pipeline chain: 2 requests are already open; refused");
    expect(refused.status).toBe("RESOURCE_EXHAUSTED");
    h.releaseModels();
    expect(values((await h.answer("o1")).outputs?.[0])).toEqual([10]);
    expect(values((await h.answer("o2")).outputs?.[0])).toEqual([11]);
    expect(callsFor(h, "add10", "o3")).toEqual([]);
  });

  it("a request whose value is not OIP protobuf fails with INVALID_ARGUMENT and the runner goes on", async () => {
    const plan = compile("add-then-mul", {
      steps: [{ name: "add10" }, { name: "mul10", inputs: ["add10.outputs.y"], tensorMap: { "add10.outputs.y": "x" } }],
    });
    const h = await start(plan, { models: { add10, mul10 } });
    await h.produce([
      {
        topic: plan.inputsTopic,
        partition: 0,
        key: "0.add-then-mul.bad",
        value: Uint8Array.of(0xff, 0xff),
        headers: {},
      },
    ]);
    await h.send("good", 0, [fp32("x", [f(0.1)])]);
    const bad = await h.answer("bad");
    expect(bad.error).toMatch(/^pipeline add-then-mul: a record on seldon\.default\.pipeline\.add-then-mul\.inputs: /);
    expect(bad.status).toBe("INVALID_ARGUMENT");
    expect(values((await h.answer("good")).outputs?.[0])).toEqual([f((f(0.1) + 10) * 10)]);
  });
});
