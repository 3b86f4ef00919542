import {
  type BusBatchContext,
  type BusMessage,
  encodeModelInferRequest,
  encodeModelInferResponse,
  type OutgoingMessage,
  PIPELINE_HEADER,
  parseRecordKey,
  tensorsFromOip,
} from "@tern/core";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createPipelineRunner } from "../../src/runner.js";
import {
  add10,
  compile,
  fp32,
  type Harness,
  harnessPerTest,
  type Model,
  mul10,
  silent,
  startHarness,
  topics,
  values,
  waitFor,
} from "./runner-harness.js";

/**
 * At-least-once: a topic-partition's committed offset never passes the oldest record of a request that is not
 * finished, and after a handover the new owner replays what was not committed and answers each request once.
 */

const start = harnessPerTest();

const input = (inputs: Parameters<Model>[0], name: string) => values(inputs.find((t) => t.name === name));
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
const joinPlan = compile("join", {
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
const models = { left: add10, right: mul10, "sum-diff": sumDiff };
const request = (a: number, b: number) => [fp32("a", [a]), fp32("b", [b])];
const expected = (a: number, b: number) => {
  const l = Math.fround(a + 10);
  const r = Math.fround(b * 10);
  return { sum: [Math.fround(l + r)], diff: [Math.fround(l - r)] };
};
const named = (h: Harness, id: string) =>
  Object.fromEntries((h.answers(id)[0]?.outputs ?? []).map((t) => [t.name, values(t)]));

/** Every record below a committed offset belongs to a request that has its answer (or to another pipeline). */
function commitsBehindOpenRequests(h: Harness): string | undefined {
  for (const topic of h.plan.subscribe) {
    for (let k = 0; k < h.partitions; k++) {
      const committed = Number(h.bus.committed(h.groupId, topic, k) ?? 0);
      for (const record of h.bus.records(topic, k).slice(0, committed)) {
        if ((record.headers[PIPELINE_HEADER] ?? h.plan.pipeline) !== h.plan.pipeline) continue;
        const id = parseRecordKey(record.key)?.requestId;
        if (id !== undefined && h.answers(id).length === 0) {
          return `${topic}#${k} committed to ${committed}, past offset ${record.offset} of unanswered request ${id}`;
        }
      }
    }
  }
  return undefined;
}

async function committedToTheEnd(h: Harness): Promise<void> {
  for (const topic of h.plan.subscribe) {
    for (let k = 0; k < h.partitions; k++) {
      const end = h.bus.records(topic, k).length;
      if (end === 0) continue;
      await waitFor(
        () => h.bus.committed(h.groupId, topic, k) === String(end) || undefined,
        `${topic}#${k} committed to ${end} (is ${h.bus.committed(h.groupId, topic, k)})`,
      );
    }
  }
}

describe("pipeline runner: at-least-once commits", () => {
  it("never commits past an unfinished request, whatever order the model answers come in (property)", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({ partition: fc.nat(3), a: fc.integer({ min: -50, max: 50 }), b: fc.integer({ min: -5, max: 5 }) }),
          {
            minLength: 1,
            maxLength: 6,
          },
        ),
        fc.array(fc.oneof(fc.constant("send" as const), fc.nat(20)), { minLength: 1, maxLength: 40 }),
        async (requests, actions) => {
          const h = await startHarness(joinPlan, { models, maxBatchSize: 1 });
          try {
            h.pauseModels();
            let sent = 0;
            for (const action of actions) {
              if (action === "send") {
                if (sent < requests.length) {
                  const r = requests[sent]!;
                  await h.send(`q${sent}`, r.partition, request(r.a, r.b));
                  sent++;
                }
              } else if (h.heldCalls().length > 0) {
                await h.releaseCall(action % h.heldCalls().length);
              }
              await new Promise((resolve) => setImmediate(resolve));
              const broken = commitsBehindOpenRequests(h);
              if (broken !== undefined) throw new Error(broken);
            }
            for (; sent < requests.length; sent++) {
              const r = requests[sent]!;
              await h.send(`q${sent}`, r.partition, request(r.a, r.b));
            }
            // Then answer everything as it comes.
            h.releaseModels();
            const drain = setInterval(() => h.releaseModels(), 2);
            try {
              for (let i = 0; i < requests.length; i++) await h.answer(`q${i}`);
            } finally {
              clearInterval(drain);
            }
            for (let i = 0; i < requests.length; i++) {
              expect(h.answers(`q${i}`)).toHaveLength(1);
              expect(named(h, `q${i}`)).toEqual(expected(requests[i]!.a, requests[i]!.b));
            }
            await committedToTheEnd(h);
          } finally {
            await h.close();
          }
        },
      ),
      { numRuns: 25 },
    );
  });

  it("commits records of other pipelines at once, past nothing of its own", async () => {
    const h = await start(joinPlan, { models });
    h.pauseModels();
    await h.send("open", 1, request(1, 2));
    await waitFor(() => h.heldCalls().length === 2 || undefined, "the two model calls");
    const foreign = {
      topic: topics.modelOutputs("left"),
      partition: 1,
      key: "1.left.someone-else",
      value: new Uint8Array(0),
      headers: { [PIPELINE_HEADER]: "another-pipeline" },
    };
    await h.produce([foreign, foreign]);
    await waitFor(
      () => h.bus.committed(h.groupId, foreign.topic, 1) === "2" || undefined,
      "the foreign records committed",
    );
    expect(h.bus.committed(h.groupId, joinPlan.inputsTopic, 1)).toBeUndefined();
    expect(h.host.inFlight()).toBe(1);
  });
});

describe("pipeline runner: handover", () => {
  it("a stopped owner leaves its open request uncommitted; the next owner replays it and answers once", async () => {
    const h = await start(joinPlan, { models });
    h.pauseModels();
    const ids = ["h0", "h1", "h2", "h3"];
    for (const [i, id] of ids.entries()) await h.send(id, i, request(i, 10 * i));
    await waitFor(() => h.heldCalls().length === 8 || undefined, "every left and right call");
    // The left halves of the joins arrive before the handover: the first of the join's two inputs.
    for (let i = 3; i >= 0; i--) {
      if (h.heldCalls()[i * 2]?.topic === topics.modelInputs("left")) await h.releaseCall(i * 2);
      else await h.releaseCall(i * 2 + 1);
    }
    await waitFor(() => h.host.inFlight() === 4 || undefined, "four open requests");
    await h.host.stop();
    expect(h.bus.committed(h.groupId, joinPlan.inputsTopic, 0)).toBeUndefined();
    expect(commitsBehindOpenRequests(h)).toBeUndefined();

    const next = await h.addHost();
    // The next owner replays the inputs and calls left and right again; the old calls' answers come too.
    await waitFor(() => h.heldCalls().length === 4 + 8 || undefined, "the replayed model calls");
    h.releaseModels();
    for (const [i, id] of ids.entries()) {
      await h.answer(id);
      expect(named(h, id)).toEqual(expected(i, 10 * i));
    }
    await waitFor(() => next.inFlight() === 0 || undefined, "nothing in flight");
    for (const id of ids) expect(h.answers(id)).toHaveLength(1);
    await committedToTheEnd(h);
  });

  it("a second owner joining takes half the partitions; requests there are replayed by it and answered once", async () => {
    const h = await start(joinPlan, { models });
    h.pauseModels();
    const ids = ["m0", "m1", "m2", "m3"];
    for (const [i, id] of ids.entries()) await h.send(id, i, request(2 * i, i));
    await waitFor(() => h.heldCalls().length === 8 || undefined, "every left and right call");
    const second = await h.addHost();
    const held = (host: { assignment(): Record<string, number[]> }) => host.assignment()[joinPlan.inputsTopic] ?? [];
    expect([...held(h.host), ...held(second)].sort()).toEqual([0, 1, 2, 3]);
    expect(held(second).length).toBe(2);
    // The first owner dropped the requests of the partitions it lost.
    expect(h.host.inFlight()).toBe(2);
    await waitFor(() => second.inFlight() === 2 || undefined, "the second owner replaying its two");
    const release = setInterval(() => h.releaseModels(), 2);
    try {
      for (const [i, id] of ids.entries()) {
        await h.answer(id);
        expect(named(h, id)).toEqual(expected(2 * i, i));
      }
      await waitFor(() => (h.host.inFlight() === 0 && second.inFlight() === 0) || undefined, "nothing in flight");
    } finally {
      clearInterval(release);
    }
    for (const id of ids) expect(h.answers(id)).toHaveLength(1);
    // The partitions the first owner kept were read again from their committed offsets and are committed to the end.
    await committedToTheEnd(h);
  });
});

describe("pipeline runner: drain", () => {
  const chain = compile("chain", { steps: [{ name: "add10" }] });

  it("finishes what is open, takes nothing new, and leaves the new request for the next version", async () => {
    const h = await start(chain, { models: { add10 } });
    h.pauseModels();
    await h.send("old", 2, [fp32("x", [1])]);
    await waitFor(() => h.heldCalls().length === 1 || undefined, "the open request's model call");
    const drained = h.host.drain(5_000);
    await h.send("new", 2, [fp32("x", [2])]);
    await waitFor(
      () => h.bus.committed(h.groupId, chain.inputsTopic, 2) === undefined || undefined,
      "nothing committed",
    );
    h.releaseModels();
    expect(await drained).toEqual({ unfinished: 0 });
    expect(values((await h.answer("old")).outputs?.[0])).toEqual([11]);
    expect(h.modelCalls.get("add10")).toHaveLength(1);
    // The old request is committed; the new one is not.
    await waitFor(
      () => h.bus.committed(h.groupId, chain.inputsTopic, 2) === "1" || undefined,
      "the old request committed",
    );
    await h.host.stop();
    expect(h.bus.committed(h.groupId, chain.inputsTopic, 2)).toBe("1");
    await h.addHost();
    h.releaseModels();
    const release = setInterval(() => h.releaseModels(), 2);
    try {
      expect(values((await h.answer("new")).outputs?.[0])).toEqual([12]);
    } finally {
      clearInterval(release);
    }
    expect(h.answers("old")).toHaveLength(1);
  });

  it("resolves at its deadline with what is still unfinished", async () => {
    const h = await start(chain, { models: { add10: () => null } });
    await h.send("stuck", 0, [fp32("x", [1])]);
    await waitFor(() => h.host.inFlight() === 1 || undefined, "the request open");
    expect(await h.host.drain(50)).toEqual({ unfinished: 1 });
  });
});

describe("pipeline runner: a request whose answer is not acked yet", () => {
  it("holds its records read again after a rebalance until the answer is acked", async () => {
    const plan = compile("chain", { steps: [{ name: "add10" }] });
    const gates: Array<() => void> = [];
    const sent: OutgoingMessage[][] = [];
    const producer = {
      send: (messages: OutgoingMessage[]) =>
        new Promise<void>((resolve) => {
          sent.push(messages);
          gates.push(resolve);
        }),
      close: async () => undefined,
    };
    const runner = createPipelineRunner({
      plan,
      producer,
      partitions: 1,
      errorsTopic: topics.errors(),
      logger: silent,
    });
    const commits: string[] = [];
    const context: BusBatchContext = {
      commit: (topic, partition, offset) => commits.push(`${topic}#${partition}@${offset}`),
      isRunning: () => true,
    };
    const { tensors, raw } = tensorsFromOip([fp32("x", [1])], true);
    const input: BusMessage = {
      topic: plan.inputsTopic,
      partition: 0,
      offset: "0",
      key: "0.chain.r",
      value: encodeModelInferRequest({ model_name: "chain", inputs: tensors, raw_input_contents: raw! }),
      headers: { pipeline: "chain" },
    };
    const assignment = { [plan.inputsTopic]: [0], [topics.modelOutputs("add10")]: [0] };
    runner.onAssignment(assignment);
    await runner.onBatch([input], context);
    gates.shift()!(); // the model request is acked
    const y = tensorsFromOip([fp32("y", [11])], true);
    const answer: BusMessage = {
      topic: topics.modelOutputs("add10"),
      partition: 0,
      offset: "0",
      key: "0.add10.r",
      value: encodeModelInferResponse({ model_name: "add10", outputs: y.tensors, raw_output_contents: y.raw! }),
      headers: { pipeline: "chain" },
    };
    await runner.onBatch([answer], context);
    expect(sent.at(-1)!.map((m) => m.topic)).toEqual([plan.outputsTopic]);
    // A rebalance while the answer is in flight: the consumer reads the request's input again.
    runner.onAssignment(assignment);
    await runner.onBatch([input], context);
    expect(commits).toEqual([]);
    gates.shift()!(); // the answer is acked
    await waitFor(() => commits.length > 0 || undefined, "a commit once the answer is acked");
    // (The answer's record was read before the rebalance: only what was read again since is this consumer's to commit.)
    expect(commits).toEqual([`${plan.inputsTopic}#0@0`]);
    expect(runner.inFlight()).toBe(0);
    await runner.close();
  });
});
