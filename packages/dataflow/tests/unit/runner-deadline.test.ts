import { DEADLINE_HEADER } from "@tern/core";
import { describe, expect, it } from "vitest";
import { BATCH_HEADER } from "../../src/runner.js";
import {
  add10,
  compile,
  fp32,
  type Harness,
  harnessPerTest,
  mul10,
  topics,
  values,
  waitFor,
} from "./runner-harness.js";

/**
 * The caller's deadline (`tern-deadline`, epoch ms) on a pipeline request: carried to every record the request causes,
 * and past it the runner starts no more work for the request — it fails it at once, and commits its records.
 */

const start = harnessPerTest();

const chain = compile("chain", {
  steps: [{ name: "add10" }, { name: "mul10", inputs: ["add10.outputs.y"], tensorMap: { "add10.outputs.y": "x" } }],
});
const models = { add10, mul10 };
const deadlineIn = (ms: number) => ({ [DEADLINE_HEADER]: String(Date.now() + ms) });

/** Every record of the request's topics on `partition` committed: nothing of it is held back. */
async function committedAll(h: Harness, partition: number, topicNames: string[]): Promise<void> {
  for (const topic of topicNames) {
    const end = String(h.bus.records(topic, partition).length);
    await waitFor(() => h.bus.committed(h.groupId, topic, partition) === end || undefined, `${topic} committed`);
  }
}

describe("pipeline runner: the caller's deadline", () => {
  it("does not send the next step's request once the deadline passed during a step; fails the request naming it", async () => {
    const h = await start(chain, { models });
    h.pauseModels();
    const deadline = deadlineIn(150);
    await h.send("late", 1, [fp32("x", [1])], deadline);
    await waitFor(() => h.heldCalls().length === 1 || undefined, "add10 called");
    // The model answers after the caller gave up.
    await waitFor(() => Date.now() > Number(deadline[DEADLINE_HEADER]) || undefined, "the deadline passed");
    h.releaseModels();
    const answer = await h.answer("late");
    expect(answer.status).toBe("DEADLINE_EXCEEDED");
    expect(answer.error).toMatch(/^pipeline chain: request late: the caller's deadline passed \d+ ms ago; /);
    expect(answer.message.headers[DEADLINE_HEADER]).toBe(deadline[DEADLINE_HEADER]);
    expect(h.modelCalls.get("add10")).toHaveLength(1);
    expect(h.modelCalls.get("mul10")).toBeUndefined();
    await waitFor(() => h.host.inFlight() === 0 || undefined, "nothing in flight");
    await committedAll(h, 1, [chain.inputsTopic, topics.modelOutputs("add10")]);
  });

  it("calls no model for a request that arrives past its deadline", async () => {
    const h = await start(chain, { models });
    await h.send("dead-on-arrival", 2, [fp32("x", [1])], deadlineIn(-1_000));
    const answer = await h.answer("dead-on-arrival");
    expect(answer.status).toBe("DEADLINE_EXCEEDED");
    expect(answer.error).toMatch(/the caller's deadline passed \d+ ms ago/);
    expect(h.modelCalls.size).toBe(0);
    await waitFor(() => h.host.inFlight() === 0 || undefined, "nothing in flight");
    await committedAll(h, 2, [chain.inputsTopic]);
  });

  it("carries a deadline still ahead to every model request and to the answer", async () => {
    const h = await start(chain, { models });
    const deadline = deadlineIn(30_000);
    await h.send("ahead", 0, [fp32("x", [1])], deadline);
    const answer = await h.answer("ahead");
    expect(values(answer.outputs?.[0])).toEqual([110]);
    expect(answer.message.headers[DEADLINE_HEADER]).toBe(deadline[DEADLINE_HEADER]);
    for (const model of ["add10", "mul10"]) {
      expect(h.modelCalls.get(model)!.map((m) => m.headers[DEADLINE_HEADER])).toEqual([deadline[DEADLINE_HEADER]]);
    }
  });

  it("runs a request without the header (or with one that is not an epoch) as before", async () => {
    const h = await start(chain, { models });
    await h.send("plain", 3, [fp32("x", [2])]);
    await h.send("garbled", 3, [fp32("x", [3])], { [DEADLINE_HEADER]: "1e3" });
    expect(values((await h.answer("plain")).outputs?.[0])).toEqual([120]);
    expect(values((await h.answer("garbled")).outputs?.[0])).toEqual([130]);
    expect((await h.answer("plain")).message.headers[DEADLINE_HEADER]).toBeUndefined();
  });

  it("a batch carries its members' latest deadline, and none when a member has none", async () => {
    const batched = compile("batched", {
      steps: [
        { name: "add10", batch: { size: 2, windowMs: 1_000 } },
        { name: "mul10", inputs: ["add10.outputs.y"], tensorMap: { "add10.outputs.y": "x" } },
      ],
    });
    const h = await start(batched, { models });
    const early = deadlineIn(20_000);
    const later = deadlineIn(30_000);
    await h.send("b1", 1, [fp32("x", [1])], early);
    await h.send("b2", 1, [fp32("x", [2])], later);
    await h.send("b3", 2, [fp32("x", [3])], early);
    await h.send("b4", 2, [fp32("x", [4])]);
    for (const id of ["b1", "b2", "b3", "b4"]) expect((await h.answer(id)).outputs).toBeDefined();
    const batches = h.modelCalls.get("add10")!.filter((m) => m.headers[BATCH_HEADER] !== undefined);
    expect(batches.map((m) => [m.partition, m.headers[DEADLINE_HEADER]]).sort()).toEqual([
      [1, later[DEADLINE_HEADER]],
      [2, undefined],
    ]);
  });
});
