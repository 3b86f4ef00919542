import { decodeModelInferRequest, parseRecordKey, requestInputsToOip } from "@tern/core";
import { describe, expect, it } from "vitest";
import { add10, compile, fp32, harnessPerTest, mul10, values, waitFor } from "./runner-harness.js";

const start = harnessPerTest();

describe("pipeline runner: a chain", () => {
  const plan = compile("add-then-mul", {
    steps: [{ name: "add10" }, { name: "mul10", inputs: ["add10.outputs.y"], tensorMap: { "add10.outputs.y": "x" } }],
    output: { steps: ["mul10"] },
  });

  it("answers (x + 10) * 10 on the request's partition, same key, the caller's headers carried on every hop", async () => {
    const h = await start(plan, { models: { add10, mul10 } });
    const requests = [
      { id: "r0", partition: 0, x: [1, 2, 3] },
      { id: "r1", partition: 1, x: [-5] },
      { id: "r3", partition: 3, x: [0.5, 100] },
    ];
    for (const r of requests)
      await h.send(r.id, r.partition, [fp32("x", r.x)], { "x-team": "ml", "x-request-id": `client-${r.id}` });
    for (const r of requests) {
      const answer = await h.answer(r.id);
      expect(answer.message.partition).toBe(r.partition);
      expect(answer.message.key).toBe(`${r.partition}.add-then-mul.${r.id}`);
      expect(answer.message.headers).toMatchObject({
        pipeline: "add-then-mul",
        "x-team": "ml",
        "x-request-id": `client-${r.id}`,
      });
      expect(answer.outputs?.map((t) => t.name)).toEqual(["y"]);
      expect(values(answer.outputs?.[0])).toEqual(r.x.map((v) => Math.fround((Math.fround(v) + 10) * 10)));
      expect(answer.outputs?.[0]?.shape).toEqual([1, r.x.length]);
      // The model hops: same partition, key <k>.<model>.<id>, the model name in the request, tensors renamed.
      for (const model of ["add10", "mul10"]) {
        const call = h.modelCalls.get(model)!.find((m) => parseRecordKey(m.key)?.requestId === r.id)!;
        expect(call.partition).toBe(r.partition);
        expect(call.key).toBe(`${r.partition}.${model}.${r.id}`);
        expect(call.headers).toMatchObject({
          pipeline: "add-then-mul",
          "x-team": "ml",
          "x-request-id": `client-${r.id}`,
        });
        const request = decodeModelInferRequest(call.value);
        expect(request.model_name).toBe(model);
        expect(request.id).toBe(r.id);
        expect(requestInputsToOip(request).map((t) => t.name)).toEqual(["x"]);
      }
    }
    expect(h.answers("r0")).toHaveLength(1);
  });

  it("passes typed contents on as typed contents (no raw) and answers them right", async () => {
    const h = await start(plan, { models: { add10, mul10 } });
    await h.send("typed", 2, [fp32("x", [7])], {}, false);
    const answer = await h.answer("typed");
    expect(values(answer.outputs?.[0])).toEqual([170]);
    const call = h.modelCalls.get("add10")![0]!;
    expect(decodeModelInferRequest(call.value).raw_input_contents).toBeUndefined();
  });

  it("commits every partition up to the end once its requests are answered", async () => {
    const h = await start(plan, { models: { add10, mul10 } });
    for (let i = 0; i < 8; i++) await h.send(`c${i}`, i % 4, [fp32("x", [i])]);
    for (let i = 0; i < 8; i++) await h.answer(`c${i}`);
    for (const topic of h.plan.subscribe) {
      for (let k = 0; k < 4; k++) {
        const end = String(h.bus.records(topic, k).length);
        if (end === "0") continue;
        await waitFor(
          () => h.bus.committed(h.groupId, topic, k) === end || undefined,
          `${topic}#${k} committed to ${end}`,
        );
      }
    }
    expect(h.host.inFlight()).toBe(0);
  });
});
