import { describe, expect, it } from "vitest";
import { createLatestWins } from "../../src/latest-wins.js";

interface Target {
  version: number;
}

/** A change that the test finishes by hand, so it controls what overlaps. */
function harness() {
  const log: string[] = [];
  const pending = new Map<string, () => void>();
  const aborted: string[] = [];
  const changes = createLatestWins<Target>({
    same: (a, b) => a?.version === b?.version,
    run: (key, target, superseded) => {
      const name = `${key}@${target?.version ?? "none"}`;
      log.push(`start ${name}`);
      superseded.addEventListener("abort", () => aborted.push(name));
      return new Promise<void>((resolve) => {
        pending.set(name, () => {
          log.push(`end ${name}`);
          pending.delete(name);
          resolve();
        });
      });
    },
  });
  const finish = async (name: string) => {
    await until(() => pending.has(name), name);
    pending.get(name)!();
  };
  return { log, pending, aborted, changes, finish };
}

async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what} never started`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

describe("per-pipeline changes, latest wins", () => {
  it("runs one change at a time per pipeline and skips the versions overtaken while one ran", async () => {
    const h = harness();
    h.changes.set("p", { version: 1 });
    h.changes.set("p", { version: 2 });
    h.changes.set("p", { version: 3 });
    h.changes.set("p", { version: 4 });
    await h.finish("p@1");
    await h.finish("p@4");
    await h.changes.idle();
    expect(h.log).toEqual(["start p@1", "end p@1", "start p@4", "end p@4"]);
    // The running change was told it is superseded (once is enough to cut a fetch short).
    expect(h.aborted).toContain("p@1");
  });

  it("keeps pipelines independent: one slow change does not hold up another", async () => {
    const h = harness();
    h.changes.set("slow", { version: 1 });
    h.changes.set("fast", { version: 1 });
    await h.finish("fast@1");
    await until(() => h.log.includes("end fast@1"), "fast's end");
    expect(h.pending.has("slow@1")).toBe(true);
    await h.finish("slow@1");
    await h.changes.idle();
  });

  it("ignores setting the target it already has, and does not abort the change for it", async () => {
    const h = harness();
    h.changes.set("p", { version: 1 });
    h.changes.set("p", { version: 1 });
    await h.finish("p@1");
    h.changes.set("p", { version: 1 });
    await h.changes.idle();
    expect(h.log).toEqual(["start p@1", "end p@1"]);
    expect(h.aborted).toEqual([]);
  });

  it("removes and brings back: a removal waits for the start in progress, a re-add after it runs again", async () => {
    const h = harness();
    h.changes.set("p", { version: 1 });
    h.changes.set("p", undefined);
    await h.finish("p@1");
    await h.finish("p@none");
    await h.changes.idle();
    expect(h.changes.targets().has("p")).toBe(false);
    h.changes.set("p", { version: 1 });
    await h.finish("p@1");
    await h.changes.idle();
    expect(h.log).toEqual(["start p@1", "end p@1", "start p@none", "end p@none", "start p@1", "end p@1"]);
  });

  it("a removal set and taken back while a change runs leaves the pipeline running (one pass that finds nothing to do)", async () => {
    const h = harness();
    h.changes.set("p", { version: 1 });
    h.changes.set("p", undefined);
    h.changes.set("p", { version: 1 });
    await h.finish("p@1");
    // The waiting slot holds version 1 again: the run brings p to what it already is (the worker sees no change).
    await h.finish("p@1");
    await h.changes.idle();
    expect(h.log.filter((l) => l.startsWith("start"))).toEqual(["start p@1", "start p@1"]);
  });

  it("a change that throws is reported and the next target still runs", async () => {
    const errors: string[] = [];
    let calls = 0;
    const changes = createLatestWins<Target>({
      same: (a, b) => a?.version === b?.version,
      run: async (_key, target) => {
        calls++;
        if (target?.version === 1) throw new Error("boom");
      },
      onError: (key, err) => errors.push(`${key}: ${(err as Error).message}`),
    });
    changes.set("p", { version: 1 });
    await changes.idle();
    changes.set("p", { version: 2 });
    await changes.idle();
    expect(errors).toEqual(["p: boom"]);
    expect(calls).toBe(2);
  });
});
