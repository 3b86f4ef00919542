import { createTopicNames, hasCode, type JoinType, type PipelineResource } from "@tern/core";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compilePipeline, type JoinPlan, type PlanSource } from "../../src/compile.js";
import { createJoinState, type JoinDecision } from "../../src/join-state.js";

const NAMES = ["x", "y", "z", "w"] as const;
const WINDOW = 100;

/** A stage of 1–4 sources, each taking the whole message or some named tensors, with a join type. */
const stageArb = fc
  .record({
    sources: fc.array(fc.option(fc.uniqueArray(fc.constantFrom(...NAMES), { minLength: 1 }), { nil: undefined }), {
      minLength: 1,
      maxLength: 4,
    }),
    join: fc.constantFrom<JoinType>("inner", "outer", "any"),
  })
  .map(
    ({ sources, join }): JoinPlan => ({
      inputs: sources.map(
        (tensors, i): PlanSource => ({
          id: `s${i}.outputs`,
          topic: `t${i}`,
          pipeline: "p",
          all: tensors === undefined,
          tensors: tensors ?? [],
          renames: [],
          repeats: false,
        }),
      ),
      inputsJoin: join,
      triggers: [],
      triggersJoin: "inner",
      windowMs: WINDOW,
    }),
  );

interface Arrival {
  requestId: string;
  source: number;
  /** null: the source reports it will not produce for this request. */
  tensors: [string, number][] | null;
  at: number;
}
const arrivalArb = (sourceCount: number) =>
  fc.record({
    requestId: fc.constantFrom("r0", "r1", "r2"),
    source: fc.integer({ min: 0, max: sourceCount - 1 }),
    tensors: fc.option(fc.uniqueArray(fc.tuple(fc.constantFrom(...NAMES), fc.integer()), { selector: (t) => t[0] }), {
      nil: null,
    }),
    at: fc.integer({ min: 0, max: WINDOW - 1 }),
  });
const scenarioArb = stageArb.chain((plan) =>
  fc.record({ plan: fc.constant(plan), arrivals: fc.array(arrivalArb(plan.inputs.length), { maxLength: 20 }) }),
);

/** Feeds arrivals in time order, then lets every window end; returns every decision. */
function run(plan: JoinPlan, arrivals: readonly Arrival[]) {
  const join = createJoinState<number>(plan, { stage: "s" });
  const decisions: JoinDecision<number>[] = [];
  const sorted = [...arrivals].sort((a, b) => a.at - b.at);
  for (const a of sorted) {
    decisions.push(...join.expire(a.at));
    const data = a.tensors === null ? null : new Map(a.tensors);
    decisions.push(...join.arrive(a.requestId, plan.inputs[a.source]!.id, data, a.at));
  }
  decisions.push(...join.expire(WINDOW * 2));
  return { join, decisions };
}
const decidedIds = (ds: JoinDecision<number>[]) =>
  ds.flatMap((d) => (d.kind === "fire" ? d.requests.map((r) => r.requestId) : [d.requestId]));

describe("join state properties", () => {
  it("decides each request exactly once — never two emissions for one request id — and every window expires", () => {
    fc.assert(
      fc.property(scenarioArb, ({ plan, arrivals }) => {
        const { join, decisions } = run(plan, arrivals);
        const ids = decidedIds(decisions);
        expect([...ids].sort()).toEqual([...new Set(arrivals.map((a) => a.requestId))].sort());
        expect(join.open).toBe(0);
        expect(join.nextDeadline()).toBeUndefined();
      }),
      { numRuns: 500 },
    );
  });

  it("a fired request carries exactly the selected tensors that came, each under its name", () => {
    fc.assert(
      fc.property(scenarioArb, ({ plan, arrivals }) => {
        const { decisions } = run(plan, arrivals);
        for (const d of decisions) {
          if (d.kind !== "fire") continue;
          for (const r of d.requests) {
            const mine = arrivals.filter((a) => a.requestId === r.requestId && a.tensors !== null);
            for (const [name, value] of r.tensors) {
              // Some record of this request from a source that selects `name` carried that value.
              const from = mine.filter((a) => {
                const s = plan.inputs[a.source]!;
                return (s.all || s.tensors.includes(name)) && a.tensors!.some(([n, v]) => n === name && v === value);
              });
              expect(from.length).toBeGreaterThan(0);
            }
            expect(r.tensors.size).toBeGreaterThan(0);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it("with maxRevisits m, a request fires at most 1 + m times and every visit is decided once", () => {
    fc.assert(
      fc.property(scenarioArb, fc.integer({ min: 0, max: 3 }), ({ plan, arrivals }, maxRevisits) => {
        const join = createJoinState<number>(plan, { stage: "s", maxRevisits });
        const decisions: JoinDecision<number>[] = [];
        for (const a of [...arrivals].sort((x, y) => x.at - y.at)) {
          decisions.push(...join.expire(a.at));
          const data = a.tensors === null ? null : new Map(a.tensors);
          decisions.push(...join.arrive(a.requestId, plan.inputs[a.source]!.id, data, a.at));
        }
        decisions.push(...join.expire(WINDOW * 2));
        for (const id of new Set(arrivals.map((a) => a.requestId))) {
          const visits = decisions.flatMap((d) =>
            d.kind === "fire" ? d.requests.filter((r) => r.requestId === id).map((r) => r.visit) : [],
          );
          expect(visits.length).toBeLessThanOrEqual(1 + maxRevisits);
          expect(visits).toEqual([...new Set(visits)].sort((x, y) => x - y));
        }
        expect(join.open).toBe(0);
      }),
      { numRuns: 300 },
    );
  });

  it("an inner or outer join emits the same tensors whatever the order its inputs arrive in", () => {
    const onePerSource = stageArb
      .filter((p) => p.inputsJoin !== "any")
      .chain((plan) =>
        fc.record({
          plan: fc.constant(plan),
          records: fc.array(
            fc.uniqueArray(fc.tuple(fc.constantFrom(...NAMES), fc.integer()), { selector: (t) => t[0], minLength: 1 }),
            { minLength: plan.inputs.length, maxLength: plan.inputs.length },
          ),
          order: fc.shuffledSubarray(
            plan.inputs.map((_, i) => i),
            { minLength: plan.inputs.length },
          ),
        }),
      );
    fc.assert(
      fc.property(onePerSource, ({ plan, records, order }) => {
        const arrivalsIn = (sequence: number[]): Arrival[] =>
          sequence.map((source, i) => ({ requestId: "r", source, tensors: records[source]!, at: i }));
        const inPlanOrder = run(plan, arrivalsIn(plan.inputs.map((_, i) => i))).decisions;
        const shuffled = run(plan, arrivalsIn(order)).decisions;
        const view = (ds: JoinDecision<number>[]) =>
          ds.map((d) => (d.kind === "fire" ? d.requests.map((r) => [...r.tensors]) : d.kind));
        expect(view(shuffled)).toEqual(view(inPlanOrder));
      }),
      { numRuns: 300 },
    );
  });
});

describe("tensorMap properties", () => {
  const topics = createTopicNames();
  const mapArb = fc.record({
    selected: fc.uniqueArray(fc.constantFrom("a", "b", "c", "d", "e"), { minLength: 1 }),
    targets: fc.array(fc.option(fc.constantFrom("a", "b", "c", "P", "Q", "R"), { nil: undefined }), {
      minLength: 5,
      maxLength: 5,
    }),
  });

  it("compiles only maps that keep names distinct, and then renaming is a bijection on the names it maps", () => {
    fc.assert(
      fc.property(mapArb, ({ selected, targets }) => {
        const tensorMap: Record<string, string> = {};
        selected.forEach((t, i) => {
          const to = targets[i];
          if (to !== undefined) tensorMap[`up.outputs.${t}`] = to;
        });
        const pipeline: PipelineResource = {
          apiVersion: "mlops.seldon.io/v1alpha1",
          kind: "Pipeline",
          metadata: { name: "p" },
          spec: {
            steps: [{ name: "up" }, { name: "down", inputs: selected.map((t) => `up.outputs.${t}`), tensorMap }],
          },
        };
        const finalName = (t: string) => tensorMap[`up.outputs.${t}`] ?? t;
        const injective = new Set(selected.map(finalName)).size === selected.length;
        let plan: ReturnType<typeof compilePipeline>;
        try {
          plan = compilePipeline(pipeline, { topics });
        } catch (err) {
          expect(hasCode(err, "manifest.invalid")).toBe(true);
          expect(injective).toBe(false);
          return;
        }
        expect(injective).toBe(true);
        const step = plan.steps[1]!;
        const join = createJoinState<number>(step, { stage: "down" });
        const sent = new Map(selected.map((t, i) => [t, i]));
        const [fire] = join.arrive("r", "up.outputs", sent, 0);
        if (fire?.kind !== "fire") throw new Error("expected the step to fire");
        const got = fire.requests[0]!.tensors;
        expect(got.size).toBe(selected.length);
        // The inverse of the rename recovers every original tensor.
        const inverse = new Map(selected.map((t) => [finalName(t), t]));
        for (const [name, value] of got) expect(sent.get(inverse.get(name)!)).toBe(value);
      }),
      { numRuns: 500 },
    );
  });
});
