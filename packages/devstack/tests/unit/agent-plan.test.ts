import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type DesiredServer, planAgents, type RunningAgent } from "../../src/local-controller.js";

const server = (name: string, replicas: number, extra: Partial<DesiredServer> = {}): DesiredServer => ({
  server: name,
  replicas,
  serverConfig: "tern-onnx",
  capabilities: ["onnx"],
  ...extra,
});
const up = (name: string, ...replicas: number[]): RunningAgent[] =>
  replicas.map((replica) => ({ server: name, replica, state: "running" }));

describe("planAgents", () => {
  it("starts replicas 0..n-1 of a new Server with its type and capabilities", () => {
    const plan = planAgents([server("mlserver", 3, { capabilities: ["onnx", "gpu"] })], []);
    expect(plan.stop).toEqual([]);
    expect(plan.start).toEqual(
      [0, 1, 2].map((replica) => ({
        server: "mlserver",
        replica,
        serverConfig: "tern-onnx",
        runtime: "tern-onnx",
        capabilities: ["onnx", "gpu"],
      })),
    );
  });

  it("scales up by starting only the missing indexes", () => {
    const plan = planAgents([server("s", 4)], up("s", 0, 1));
    expect(plan.start.map((a) => a.replica)).toEqual([2, 3]);
    expect(plan.stop).toEqual([]);
  });

  it("scales down by stopping the highest indexes first", () => {
    const plan = planAgents([server("s", 1)], up("s", 0, 1, 2, 3));
    expect(plan.start).toEqual([]);
    expect(plan.stop).toEqual([
      { server: "s", replica: 3 },
      { server: "s", replica: 2 },
      { server: "s", replica: 1 },
    ]);
  });

  it("stops every agent of a deleted Server and leaves the other Servers alone", () => {
    const plan = planAgents([server("b", 2)], [...up("a", 0, 1), ...up("b", 0, 1)]);
    expect(plan.start).toEqual([]);
    expect(plan.stop).toEqual([
      { server: "a", replica: 1 },
      { server: "a", replica: 0 },
    ]);
  });

  it("stops a Server scaled to 0 (or being deleted) entirely", () => {
    expect(planAgents([server("s", 0)], up("s", 0, 1)).stop).toEqual([
      { server: "s", replica: 1 },
      { server: "s", replica: 0 },
    ]);
  });

  it("restarts an agent that died once its restart delay is over, and not before", () => {
    const dead: RunningAgent[] = [...up("s", 0, 2), { server: "s", replica: 1, state: "exited" }];
    expect(planAgents([server("s", 3)], dead).start.map((a) => a.replica)).toEqual([1]);
    const waiting: RunningAgent[] = [...up("s", 0, 2), { server: "s", replica: 1, state: "backoff" }];
    expect(planAgents([server("s", 3)], waiting)).toEqual({ start: [], stop: [], waiting: [] });
  });

  it("does not restart an agent that failed too often", () => {
    const failed: RunningAgent[] = [...up("s", 0), { server: "s", replica: 1, state: "failed" }];
    expect(planAgents([server("s", 2)], failed)).toEqual({ start: [], stop: [], waiting: [] });
  });

  it("forgets a dead or failed agent whose index is no longer wanted", () => {
    const slots: RunningAgent[] = [
      ...up("s", 0),
      { server: "s", replica: 1, state: "failed" },
      { server: "s", replica: 2, state: "backoff" },
    ];
    expect(planAgents([server("s", 1)], slots).stop).toEqual([
      { server: "s", replica: 2 },
      { server: "s", replica: 1 },
    ]);
  });

  it("waits for a draining agent to exit before starting its index again", () => {
    const slots: RunningAgent[] = [...up("s", 0), { server: "s", replica: 1, state: "stopping" }];
    expect(planAgents([server("s", 2)], slots)).toEqual({ start: [], stop: [], waiting: [] });
    // ...and does not stop it twice when it is still unwanted.
    expect(planAgents([server("s", 1)], slots)).toEqual({ start: [], stop: [], waiting: [] });
  });

  it("starts no agents for a Server without capabilities (unknown serverConfig)", () => {
    const plan = planAgents([server("custom", 2, { serverConfig: "my-runtime", capabilities: [] })], up("custom", 0));
    expect(plan.start).toEqual([]);
    expect(plan.stop).toEqual([{ server: "custom", replica: 0 }]);
  });

  it("runs a custom serverConfig's agents on the built-in runtime with the Server's capability list", () => {
    const caps = ["onnx", "gpu"];
    const plan = planAgents([server("t", 1, { serverConfig: "my-onnx", capabilities: caps })], []);
    expect(plan.start).toEqual([
      { server: "t", replica: 0, serverConfig: "my-onnx", runtime: "tern-onnx", capabilities: caps },
    ]);
  });

  it("runs a serverConfig mlserver Server's agents on the MLServer runtime", () => {
    const caps = ["mlserver", "sklearn", "xgboost", "lightgbm"];
    const plan = planAgents([server("mlserver", 2, { serverConfig: "mlserver", capabilities: caps })], []);
    expect(plan.start.map((l) => [l.replica, l.runtime, l.capabilities])).toEqual([
      [0, "mlserver", caps],
      [1, "mlserver", caps],
    ]);
  });

  it("holds back the agents of a runtime that is not ready while the others start, and still stops unwanted ones", () => {
    const mlserver = server("mlserver", 2, { serverConfig: "mlserver", capabilities: ["mlserver", "sklearn"] });
    const notMlserver = (runtime: string) => runtime !== "mlserver";
    const plan = planAgents([mlserver, server("onnx", 1)], [...up("onnx", 0, 1)], notMlserver);
    expect(plan.start).toEqual([]);
    expect(plan.waiting.map((l) => `${l.server}/${l.replica}:${l.runtime}`)).toEqual([
      "mlserver/0:mlserver",
      "mlserver/1:mlserver",
    ]);
    expect(plan.stop).toEqual([{ server: "onnx", replica: 1 }]);
    // Once the runtime is ready the same agents start.
    const ready = planAgents([mlserver, server("onnx", 1)], up("onnx", 0), () => true);
    expect(ready.waiting).toEqual([]);
    expect(ready.start.map((l) => `${l.server}/${l.replica}`)).toEqual(["mlserver/0", "mlserver/1"]);
  });

  it("is a no-op when every Server has exactly its replicas", () => {
    expect(planAgents([server("a", 2), server("b", 1)], [...up("a", 0, 1), ...up("b", 0)])).toEqual({
      start: [],
      stop: [],
      waiting: [],
    });
  });

  it("converges: applying a plan to any state gives a state whose plan is empty", () => {
    const states = ["running", "stopping", "backoff", "failed", "exited"] as const;
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom("a", "b", "c"), fc.integer({ min: 0, max: 5 })), { maxLength: 3 }),
        fc.array(fc.tuple(fc.constantFrom("a", "b", "c"), fc.integer({ min: 0, max: 6 }), fc.constantFrom(...states)), {
          maxLength: 12,
        }),
        (wanted, slots) => {
          const desired = [...new Map(wanted).entries()].map(([name, n]) => server(name, n));
          const running = [
            ...new Map(slots.map(([s, r, state]) => [`${s}/${r}`, { server: s, replica: r, state }])).values(),
          ];
          const plan = planAgents(desired, running);
          // Effects: stopped slots end (a SIGTERMed agent eventually exits), started ones run; stopping ones exit.
          const stopped = new Set(plan.stop.map((s) => `${s.server}/${s.replica}`));
          const after: RunningAgent[] = running
            .filter((a) => !stopped.has(`${a.server}/${a.replica}`) && a.state !== "stopping" && a.state !== "exited")
            .map((a) => (a.state === "backoff" ? { ...a, state: "exited" } : a));
          const second = planAgents(desired, after);
          const third = planAgents(desired, [
            ...after.filter((a) => a.state !== "exited"),
            ...second.start.map((l) => ({ server: l.server, replica: l.replica, state: "running" as const })),
          ]);
          expect(third.start).toEqual([]);
          expect(third.stop).toEqual([]);
          // Never two slots for one index, and every wanted index has a live or failed agent.
          for (const d of desired) {
            for (let r = 0; r < d.replicas; r++) {
              const live = [
                ...after.filter((a) => a.state !== "exited"),
                ...second.start.map((l) => ({ ...l, state: "running" })),
              ].filter((a) => a.server === d.server && a.replica === r);
              expect(live).toHaveLength(1);
            }
          }
        },
      ),
    );
  });
});
