import type { ExperimentRoute, RouteTable } from "@tern/core";
import { describe, expect, it } from "vitest";
import { formatPipelineRoute, resolvePipelineRoute, resolveRoute } from "../../src/routing.js";

// The routing choice for pipelines and experiments of pipelines: pure, so the random source is a list of draws and a
// draw that should not happen throws.

function table(experiments: ExperimentRoute[]): RouteTable {
  const pipeline = (name: string) => ({ name, state: "PipelineReady" as const });
  return {
    revision: 1,
    models: {
      left: {
        name: "left",
        version: 1,
        state: "ModelAvailable",
        endpoints: [{ server: "s", replica: 0, version: 1, http: "http://m" }],
      },
    },
    pipelines: { left: pipeline("left"), right: pipeline("right"), shadow: pipeline("shadow") },
    experiments: Object.fromEntries(experiments.map((e) => [e.name, e])),
  };
}

const lr = (over: Partial<ExperimentRoute> = {}): ExperimentRoute => ({
  name: "lr",
  resourceType: "pipeline",
  default: "left",
  candidates: [
    { name: "left", weight: 30 },
    { name: "right", weight: 70 },
  ],
  active: true,
  ...over,
});

/** A random source that returns these draws in order, and fails the test on one draw too many. */
function draws(...values: number[]): () => number {
  return () => {
    const v = values.shift();
    if (v === undefined) throw new Error("an unexpected random draw");
    return v;
  };
}

const infer = (random: () => number, stickyRoute?: string) => ({
  op: "infer" as const,
  random,
  ...(stickyRoute === undefined ? {} : { stickyRoute }),
});

describe("resolvePipelineRoute", () => {
  it("a pipeline no experiment takes over is served by itself, without a draw", () => {
    expect(resolvePipelineRoute(table([]), { kind: "pipeline", name: "right" }, infer(draws()))).toEqual({
      pipeline: "right",
      route: ":right.pipeline:",
    });
  });

  it.each([
    [0, "left"],
    [0.2999, "left"],
    [0.3, "right"],
    [0.9999, "right"],
  ])("an active experiment takes over its default's endpoint: draw %f of weights 30/70 picks %s", (draw, picked) => {
    const decision = resolvePipelineRoute(table([lr()]), { kind: "pipeline", name: "left" }, infer(draws(draw)));
    expect(decision).toEqual({ pipeline: picked, route: formatPipelineRoute(picked), experiment: "lr" });
  });

  it("splits by weight over many draws (a fixed pseudo-random sequence)", () => {
    let seed = 12345;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const t = table([lr()]);
    let right = 0;
    for (let i = 0; i < 10_000; i++) {
      if (resolvePipelineRoute(t, { kind: "experiment", name: "lr" }, infer(random)).pipeline === "right") right++;
    }
    expect(right / 10_000).toBeGreaterThan(0.67);
    expect(right / 10_000).toBeLessThan(0.73);
  });

  it.each([":right.pipeline:", ":right:", "right"])(
    "x-seldon-route %s pins its candidate, without a draw",
    (sticky) => {
      const decision = resolvePipelineRoute(table([lr()]), { kind: "pipeline", name: "left" }, infer(draws(), sticky));
      expect(decision.pipeline).toBe("right");
    },
  );

  it("a pinned name that is no candidate draws as usual", () => {
    const decision = resolvePipelineRoute(
      table([lr()]),
      { kind: "pipeline", name: "left" },
      infer(draws(0.1), ":shadow.pipeline:"),
    );
    expect(decision.pipeline).toBe("left");
  });

  it("an inactive experiment serves its default; without a default it is 503", () => {
    const inactive = table([lr({ active: false })]);
    expect(resolvePipelineRoute(inactive, { kind: "experiment", name: "lr" }, infer(draws()))).toEqual({
      pipeline: "left",
      route: ":left.pipeline:",
    });
    // Taking over the default's endpoint needs an active experiment.
    expect(
      resolvePipelineRoute(inactive, { kind: "pipeline", name: "left" }, infer(draws())).experiment,
    ).toBeUndefined();
    const { default: _, ...noDefault } = lr({ active: false });
    expect(() => resolvePipelineRoute(table([noDefault]), { kind: "experiment", name: "lr" }, infer(draws()))).toThrow(
      expect.objectContaining({ code: "unavailable", message: "experiment lr is not ready" }),
    );
  });

  it("mirrors infer requests by percent (100 without a draw); ready and metadata are never mirrored", () => {
    const all = table([lr({ mirror: { name: "shadow", percent: 100 } })]);
    expect(resolvePipelineRoute(all, { kind: "experiment", name: "lr" }, infer(draws(0.5))).mirror).toBe("shadow");
    const quarter = table([lr({ mirror: { name: "shadow", percent: 25 } })]);
    expect(resolvePipelineRoute(quarter, { kind: "experiment", name: "lr" }, infer(draws(0.5, 0.2))).mirror).toBe(
      "shadow",
    );
    expect(
      resolvePipelineRoute(quarter, { kind: "experiment", name: "lr" }, infer(draws(0.5, 0.3))).mirror,
    ).toBeUndefined();
    const ready = resolvePipelineRoute(all, { kind: "experiment", name: "lr" }, { op: "ready", random: draws(0.5) });
    expect(ready).toEqual({ pipeline: "right", route: ":right.pipeline:", experiment: "lr" });
  });

  it("404 for an unknown experiment, 400 for an experiment of models", () => {
    const models = table([
      { name: "m", resourceType: "model", candidates: [{ name: "left", weight: 1 }], active: true },
    ]);
    expect(() => resolvePipelineRoute(models, { kind: "experiment", name: "nope" }, infer(draws()))).toThrow(
      expect.objectContaining({ code: "not_found" }),
    );
    expect(() => resolvePipelineRoute(models, { kind: "experiment", name: "m" }, infer(draws()))).toThrow(
      expect.objectContaining({ code: "bad_request" }),
    );
  });

  it("experiments of models and of pipelines never take over each other's endpoints, though names are shared", () => {
    const t = table([lr()]);
    // The model `left` is not taken over by the pipeline experiment whose default is the pipeline `left`.
    expect(resolveRoute(t, { kind: "model", name: "left" }, infer(draws())).experiment).toBeUndefined();
    const modelExp: ExperimentRoute = {
      name: "m",
      resourceType: "model",
      default: "left",
      candidates: [{ name: "left", weight: 1 }],
      active: true,
    };
    const onlyModelExp = table([modelExp]);
    expect(resolvePipelineRoute(onlyModelExp, { kind: "pipeline", name: "left" }, infer(draws()))).toEqual({
      pipeline: "left",
      route: ":left.pipeline:",
    });
  });
});
