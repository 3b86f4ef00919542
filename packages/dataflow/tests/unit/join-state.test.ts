import type { JoinType } from "@tern/core";
import { describe, expect, it } from "vitest";
import type { JoinPlan, PlanSource } from "../../src/compile.js";
import { createJoinState, type JoinDecision } from "../../src/join-state.js";

const source = (id: string, tensors: string[] = [], renames: [string, string][] = []): PlanSource => ({
  id,
  topic: `topic.${id}`,
  pipeline: "p",
  all: tensors.length === 0,
  tensors,
  renames: renames.map(([from, to]) => ({ from, to })),
  repeats: false,
});
const plan = (inputs: PlanSource[], inputsJoin: JoinType, more: Partial<JoinPlan> = {}): JoinPlan => ({
  inputs,
  inputsJoin,
  triggers: [],
  triggersJoin: "inner",
  windowMs: 100,
  ...more,
});
const tensors = (entries: Record<string, number>) => new Map(Object.entries(entries));
/** Fired requests as plain data: [requestId, [[name, value], ...]]. */
const fires = (ds: JoinDecision<number>[]) =>
  ds.flatMap((d) => (d.kind === "fire" ? d.requests.map((r) => [r.requestId, [...r.tensors]]) : []));

describe("join state: inner", () => {
  const p = plan([source("a.outputs", ["x"], [["x", "INPUT0"]]), source("b.outputs", ["y"])], "inner");

  it("fires once every source is present, with the tensors renamed and in plan order", () => {
    const join = createJoinState<number>(p, { stage: "step c" });
    expect(join.arrive("r1", "b.outputs", tensors({ y: 2, other: 9 }), 0)).toEqual([]);
    expect(join.open).toBe(1);
    const out = join.arrive("r1", "a.outputs", tensors({ x: 1 }), 5);
    expect(fires(out)).toEqual([
      [
        "r1",
        [
          ["INPUT0", 1],
          ["y", 2],
        ],
      ],
    ]);
    expect(join.open).toBe(0);
    // A replayed record of the same request changes nothing.
    expect(join.arrive("r1", "a.outputs", tensors({ x: 1 }), 6)).toEqual([]);
    expect(join.expire(1_000)).toEqual([]);
  });

  it("does not run when a source's selected tensors are absent (conditional routing)", () => {
    const join = createJoinState<number>(p, { stage: "step c" });
    expect(join.arrive("r1", "a.outputs", tensors({ x: 1 }), 0)).toEqual([]);
    expect(join.arrive("r1", "b.outputs", tensors({ z: 3 }), 1)).toEqual([
      { kind: "skip", requestId: "r1", reason: "step c: its selected inputs are absent" },
    ]);
    expect(join.open).toBe(0);
  });

  it("treats a source reported as not producing (null) like an absent one", () => {
    const join = createJoinState<number>(p, { stage: "step c" });
    expect(join.arrive("r1", "b.outputs", null, 0).map((d) => d.kind)).toEqual(["skip"]);
  });

  it("answers an error naming the input that never came when the window ends, not before", () => {
    const join = createJoinState<number>(p, { stage: "step c" });
    join.arrive("r1", "a.outputs", tensors({ x: 1 }), 10);
    expect(join.nextDeadline()).toBe(110);
    expect(join.expire(109)).toEqual([]);
    expect(join.expire(110)).toEqual([
      {
        kind: "error",
        requestId: "r1",
        code: "join.window_expired",
        message: "step c: b.outputs never came within 100 ms",
        missing: ["b.outputs"],
      },
    ]);
    expect(join.open).toBe(0);
    expect(join.nextDeadline()).toBeUndefined();
    // The late input does not start the request again.
    expect(join.arrive("r1", "b.outputs", tensors({ y: 2 }), 120)).toEqual([]);
  });

  it("keeps requests apart by id", () => {
    const join = createJoinState<number>(p, { stage: "s" });
    join.arrive("r1", "a.outputs", tensors({ x: 1 }), 0);
    join.arrive("r2", "b.outputs", tensors({ y: 20 }), 0);
    expect(fires(join.arrive("r2", "a.outputs", tensors({ x: 10 }), 1))).toEqual([
      [
        "r2",
        [
          ["INPUT0", 10],
          ["y", 20],
        ],
      ],
    ]);
    expect(join.open).toBe(1);
  });

  it("ignores records of sources the stage does not read", () => {
    const join = createJoinState<number>(p, { stage: "s" });
    expect(join.arrive("r1", "zzz.outputs", tensors({ x: 1 }), 0)).toEqual([]);
    expect(join.open).toBe(0);
  });
});

describe("join state: outer and any", () => {
  it("outer emits what came at the end of the window", () => {
    const join = createJoinState<number>(plan([source("a.outputs"), source("b.outputs")], "outer"), { stage: "s" });
    join.arrive("r1", "b.outputs", tensors({ y: 2 }), 0);
    expect(join.expire(99)).toEqual([]);
    expect(fires(join.expire(100))).toEqual([["r1", [["y", 2]]]]);
  });

  it("outer fires early once every source has arrived, skipping absent ones", () => {
    const join = createJoinState<number>(plan([source("a.outputs", ["x"]), source("b.outputs")], "outer"), {
      stage: "s",
    });
    join.arrive("r1", "a.outputs", tensors({ q: 1 }), 0);
    expect(fires(join.arrive("r1", "b.outputs", tensors({ y: 2 }), 1))).toEqual([["r1", [["y", 2]]]]);
  });

  it("any fires on the first present source and never again for that request", () => {
    const join = createJoinState<number>(plan([source("add10.outputs"), source("mul10.outputs")], "any"), {
      stage: "output",
    });
    expect(fires(join.arrive("r1", "mul10.outputs", tensors({ y: 70 }), 0))).toEqual([["r1", [["y", 70]]]]);
    expect(join.arrive("r1", "add10.outputs", tensors({ y: 17 }), 1)).toEqual([]);
  });

  it("any waits past an absent source and skips when every source is absent", () => {
    const join = createJoinState<number>(plan([source("a.outputs", ["pos"]), source("b.outputs", ["neg"])], "any"), {
      stage: "s",
    });
    expect(join.arrive("r1", "a.outputs", tensors({ neg: 1 }), 0)).toEqual([]);
    expect(join.arrive("r1", "b.outputs", null, 1).map((d) => d.kind)).toEqual(["skip"]);
    expect(join.arrive("r2", "a.outputs", tensors({ neg: 1 }), 0)).toEqual([]);
    expect(fires(join.arrive("r2", "b.outputs", tensors({ neg: 5 }), 1))).toEqual([["r2", [["neg", 5]]]]);
  });
});

describe("join state: triggers", () => {
  const p = plan([source("p.inputs")], "inner", { triggers: [source("check.outputs", ["ok"])], triggersJoin: "inner" });

  it("waits for the trigger and does not pass its tensors on", () => {
    const join = createJoinState<number>(p, { stage: "step work" });
    expect(join.arrive("r1", "p.inputs", tensors({ x: 1 }), 0)).toEqual([]);
    expect(fires(join.arrive("r1", "check.outputs", tensors({ ok: 1, note: 4 }), 1))).toEqual([["r1", [["x", 1]]]]);
  });

  it("does not run when the trigger tensor is absent", () => {
    const join = createJoinState<number>(p, { stage: "step work" });
    join.arrive("r1", "p.inputs", tensors({ x: 1 }), 0);
    expect(join.arrive("r1", "check.outputs", tensors({ note: 4 }), 1)).toEqual([
      { kind: "skip", requestId: "r1", reason: "step work: its selected triggers are absent" },
    ]);
  });

  it("names a trigger that never came", () => {
    const join = createJoinState<number>(p, { stage: "step work" });
    join.arrive("r1", "p.inputs", tensors({ x: 1 }), 0);
    expect(join.expire(100)).toMatchObject([{ kind: "error", missing: ["check.outputs"] }]);
  });

  it("feeds one record to inputs and triggers when the stage reads the same source both ways", () => {
    const both = plan([source("a.outputs", ["x"])], "inner", { triggers: [source("a.outputs", ["go"])] });
    const join = createJoinState<number>(both, { stage: "s" });
    expect(fires(join.arrive("r1", "a.outputs", tensors({ x: 1, go: 1 }), 0))).toEqual([["r1", [["x", 1]]]]);
  });
});

describe("join state: batches, the cap, revisits, drops", () => {
  it("batches fired requests up to batch.size, and sends a partial batch when its window ends", () => {
    const join = createJoinState<number>(plan([source("p.inputs")], "inner"), {
      stage: "s",
      batch: { size: 3, windowMs: 50, rolling: false },
    });
    expect(join.arrive("r1", "p.inputs", tensors({ x: 1 }), 0)).toEqual([]);
    expect(join.arrive("r2", "p.inputs", tensors({ x: 2 }), 10)).toEqual([]);
    const full = join.arrive("r3", "p.inputs", tensors({ x: 3 }), 20);
    expect(full).toHaveLength(1);
    expect(fires(full).map(([id]) => id)).toEqual(["r1", "r2", "r3"]);
    join.arrive("r4", "p.inputs", tensors({ x: 4 }), 30);
    expect(join.nextDeadline()).toBe(80);
    expect(join.expire(79)).toEqual([]);
    expect(fires(join.expire(80))).toEqual([["r4", [["x", 4]]]]);
  });

  it("a rolling batch window restarts at each request", () => {
    const join = createJoinState<number>(plan([source("p.inputs")], "inner"), {
      stage: "s",
      batch: { size: 3, windowMs: 50, rolling: true },
    });
    join.arrive("r1", "p.inputs", tensors({ x: 1 }), 0);
    join.arrive("r2", "p.inputs", tensors({ x: 2 }), 40);
    expect(join.expire(50)).toEqual([]);
    expect(fires(join.expire(90)).map(([id]) => id)).toEqual(["r1", "r2"]);
  });

  it("refuses a new request at the cap of open requests and keeps the waiting ones", () => {
    const join = createJoinState<number>(plan([source("a.outputs"), source("b.outputs")], "inner"), {
      stage: "step c",
      maxOpen: 2,
    });
    join.arrive("r1", "a.outputs", tensors({ x: 1 }), 0);
    join.arrive("r2", "a.outputs", tensors({ x: 2 }), 0);
    expect(join.arrive("r3", "a.outputs", tensors({ x: 3 }), 0)).toEqual([
      {
        kind: "error",
        requestId: "r3",
        code: "join.capacity",
        message: "step c: 2 requests are already waiting; refused",
        missing: [],
      },
    ]);
    expect(join.arrive("r3", "b.outputs", tensors({ y: 3 }), 1)).toEqual([]);
    expect(join.open).toBe(2);
    expect(fires(join.arrive("r1", "b.outputs", tensors({ y: 1 }), 1)).map(([id]) => id)).toEqual(["r1"]);
  });

  it("lets a step on a cycle run again for the same request up to maxRevisits, then fails the request", () => {
    const join = createJoinState<number>(plan([source("p.inputs"), source("check.outputs", ["again"])], "any"), {
      stage: "step refine",
      maxRevisits: 2,
    });
    const visits = [0, 1, 2].map((i) => {
      const [d] = join.arrive("r1", i === 0 ? "p.inputs" : "check.outputs", tensors({ again: i, x: i }), i);
      return d?.kind === "fire" ? d.requests[0]!.visit : undefined;
    });
    expect(visits).toEqual([0, 1, 2]);
    expect(join.arrive("r1", "check.outputs", tensors({ again: 3 }), 3)).toMatchObject([
      { kind: "error", code: "join.revisits", requestId: "r1" },
    ]);
    expect(join.arrive("r1", "check.outputs", tensors({ again: 4 }), 4)).toEqual([]);
  });

  it("drops later records of a request ended elsewhere (a step's error record)", () => {
    const join = createJoinState<number>(plan([source("a.outputs"), source("b.outputs")], "inner"), { stage: "s" });
    join.arrive("r1", "a.outputs", tensors({ x: 1 }), 0);
    join.drop("r1", 1);
    expect(join.open).toBe(0);
    expect(join.arrive("r1", "b.outputs", tensors({ y: 1 }), 2)).toEqual([]);
    expect(join.expire(1_000)).toEqual([]);
  });

  it("takes a request dropped while its batch fills out of that batch", () => {
    const join = createJoinState<number>(plan([source("p.inputs")], "inner"), {
      stage: "s",
      batch: { size: 2, windowMs: 50, rolling: false },
    });
    join.arrive("r1", "p.inputs", tensors({ x: 1 }), 0);
    join.drop("r1", 1);
    expect(join.nextDeadline()).toBeUndefined();
    join.arrive("r2", "p.inputs", tensors({ x: 2 }), 2);
    expect(fires(join.expire(52))).toEqual([["r2", [["x", 2]]]]);
  });

  it("never lets its clock go back: a smaller now counts as the latest seen", () => {
    const join = createJoinState<number>(plan([source("a.outputs"), source("b.outputs")], "inner"), { stage: "s" });
    join.arrive("r1", "a.outputs", tensors({ x: 1 }), 100);
    join.arrive("r2", "a.outputs", tensors({ x: 2 }), 40);
    expect(join.nextDeadline()).toBe(200);
    expect(join.expire(150)).toEqual([]);
    expect(join.expire(200).map((d) => d.kind === "error" && d.requestId)).toEqual(["r1", "r2"]);
  });

  it("remembers at most 4 × maxOpen decided requests: past that the oldest record is taken as new", () => {
    const join = createJoinState<number>(plan([source("p.inputs")], "any"), { stage: "s", maxOpen: 1 });
    const ids = ["r1", "r2", "r3", "r4", "r5"];
    for (const id of ids) expect(fires(join.arrive(id, "p.inputs", tensors({ x: 1 }), 0))).toHaveLength(1);
    // r2…r5 are still remembered; r1 was forgotten to keep the bound.
    for (const id of ids.slice(1)) expect(join.arrive(id, "p.inputs", tensors({ x: 2 }), 1)).toEqual([]);
    expect(fires(join.arrive("r1", "p.inputs", tensors({ x: 2 }), 1))).toEqual([["r1", [["x", 2]]]]);
  });
});
