import type { Fence, LeaseState, StateStore } from "@tern/core";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createLeaderElector, type LeaderElector, type LeaderElectorOptions } from "../../src/lease.js";
import { createMemoryStore } from "../../src/store/memory-store.js";

type Event = { at: number; who: string; what: "elected" | "deposed"; token?: number; reason?: string };

/** Fake timers drive both the elector's clock (Date.now) and its timers, so time moves only when a test says so. */
describe("leader elector", () => {
  let events: Event[];
  let electors: LeaderElector[];

  beforeEach(() => {
    vi.useFakeTimers({ now: 1_800_000_000_000 });
    events = [];
    electors = [];
  });

  afterEach(async () => {
    for (const e of electors) await e.stop({ release: false });
    vi.useRealTimers();
  });

  function elector(store: StateStore, who: string, extra: Partial<LeaderElectorOptions> = {}): LeaderElector {
    const e = createLeaderElector({
      store,
      holder: who,
      onElected: (fence: Fence) => {
        events.push({ at: Date.now(), who, what: "elected", token: fence.token });
      },
      onDeposed: (reason: string) => {
        events.push({ at: Date.now(), who, what: "deposed", reason });
      },
      ...extra,
    });
    electors.push(e);
    return e;
  }

  const elected = (who?: string) => events.filter((e) => e.what === "elected" && (who === undefined || e.who === who));
  const deposed = (who?: string) => events.filter((e) => e.what === "deposed" && (who === undefined || e.who === who));

  it("elects a lone candidate at once with fence token 1", async () => {
    const store = createMemoryStore();
    const a = elector(store, "a");
    a.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(elected()).toEqual([expect.objectContaining({ who: "a", token: 1 })]);
    expect(a.state).toBe("leader");
    expect(a.fence()).toEqual({ lease: "scheduler", token: 1 });
    expect(a.isLeader()).toBe(true);
  });

  it("keeps exactly one leader among three candidates while the leader keeps renewing", async () => {
    const store = createMemoryStore();
    const all = ["a", "b", "c"].map((who) => elector(store, who));
    for (const e of all) e.start();
    await vi.advanceTimersByTimeAsync(120_000);
    expect(elected()).toHaveLength(1);
    expect(deposed()).toHaveLength(0);
    expect(all.filter((e) => e.isLeader())).toHaveLength(1);
    // The lease stayed alive: it expires in the future of the fake clock.
    expect((await store.readLease("scheduler"))?.expiresAt).toBeGreaterThan(Date.now());
  });

  it("with default timings, a standby takes over within 15 s of the leader dying, and never before the lease lapses", async () => {
    const store = createMemoryStore();
    const a = elector(store, "a");
    a.start();
    await vi.advanceTimersByTimeAsync(0);
    const b = elector(store, "b");
    b.start();
    await vi.advanceTimersByTimeAsync(30_000);
    const lastLease = (await store.readLease("scheduler")) as LeaseState;
    const diedAt = Date.now();
    await a.stop({ release: false }); // death: no more renewals, no release
    await vi.advanceTimersByTimeAsync(15_000);
    const takeover = elected("b")[0];
    expect(takeover?.token).toBe(2);
    expect(takeover?.at).toBeGreaterThanOrEqual(lastLease.expiresAt);
    expect((takeover?.at ?? Infinity) - diedAt).toBeLessThanOrEqual(15_000);
    expect(b.fence()).toEqual({ lease: "scheduler", token: 2 });
  });

  it("on stop() deposes the leader first, then releases, so a standby takes over before the lease would expire", async () => {
    const store = createMemoryStore();
    const a = elector(store, "a");
    a.start();
    await vi.advanceTimersByTimeAsync(0);
    elector(store, "b").start();
    await vi.advanceTimersByTimeAsync(5_000);
    const held = (await store.readLease("scheduler")) as LeaseState;
    await a.stop();
    expect(deposed("a")).toEqual([expect.objectContaining({ reason: "stopped" })]);
    expect(a.state).toBe("stopped");
    expect(a.fence()).toBeUndefined();
    await vi.advanceTimersByTimeAsync(2_000);
    const takeover = elected("b")[0];
    expect(takeover?.token).toBe(2);
    expect(takeover?.at).toBeLessThan(held.expiresAt);
  });

  it("steps down before its lease expires when the store stops answering, before anyone else can take it", async () => {
    const real = createMemoryStore();
    let outage = false;
    // The leader's view of the store: it hangs during the outage (the worst case: no error, no answer).
    const flaky: StateStore = {
      ...real,
      acquireLease: (...args) => (outage ? new Promise(() => {}) : real.acquireLease(...args)),
    };
    const a = elector(flaky, "a");
    a.start();
    await vi.advanceTimersByTimeAsync(0);
    elector(real, "b").start();
    await vi.advanceTimersByTimeAsync(10_000);
    outage = true;
    const lastLease = (await real.readLease("scheduler")) as LeaseState;
    await vi.advanceTimersByTimeAsync(20_000);
    const down = deposed("a")[0];
    const up = elected("b")[0];
    expect(down).toBeDefined();
    expect(down?.at).toBeLessThanOrEqual(lastLease.expiresAt - 2_000); // default margin ttl/5
    expect(up?.token).toBe(2);
    expect(up?.at).toBeGreaterThan(down?.at ?? Infinity);
    expect(a.isLeader()).toBe(false);
  });

  it("steps down when a renewal keeps failing with errors", async () => {
    const real = createMemoryStore();
    let failing = false;
    const flaky: StateStore = {
      ...real,
      acquireLease: async (...args) => {
        if (failing) throw Object.assign(new Error("throttled"), { code: "unavailable" });
        return real.acquireLease(...args);
      },
    };
    const a = elector(flaky, "a");
    a.start();
    await vi.advanceTimersByTimeAsync(0);
    failing = true;
    const lastLease = (await real.readLease("scheduler")) as LeaseState;
    await vi.advanceTimersByTimeAsync(12_000);
    expect(deposed("a")).toHaveLength(1);
    expect(deposed("a")[0]?.at).toBeLessThan(lastLease.expiresAt);
    // Once the store recovers, the same process competes again and starts a new term with a new token.
    failing = false;
    await vi.advanceTimersByTimeAsync(3_000);
    expect(elected("a").map((e) => e.token)).toEqual([1, 2]);
  });

  it("steps down as soon as a renewal is refused, and its old fence is then refused by the store", async () => {
    const store = createMemoryStore();
    const a = elector(store, "a");
    a.start();
    await vi.advanceTimersByTimeAsync(0);
    const oldFence = a.fence() as Fence;
    // An intruder whose clock runs far ahead takes the lease (the skew the safety margin cannot cover).
    await store.acquireLease("scheduler", "intruder", 60_000, Date.now() + 60_000);
    await vi.advanceTimersByTimeAsync(4_000);
    expect(deposed("a")).toEqual([expect.objectContaining({ reason: expect.stringContaining("refused") })]);
    expect(a.isLeader()).toBe(false);
    await expect(
      store.write([{ type: "put", key: { collection: "model", id: "m" }, value: 1 }], { fence: oldFence }),
    ).rejects.toMatchObject({ code: "lease.lost" });
  });

  it("stops claiming leadership as soon as its clock passes the deadline, even if its timers have not fired", async () => {
    const store = createMemoryStore();
    let skew = 0;
    const a = elector(store, "a", { clock: () => Date.now() + skew });
    a.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(a.isLeader()).toBe(true);
    skew = 9_000; // e.g. the process was suspended: wall time jumped past expiresAt - margin
    expect(a.fence()).toBeUndefined();
    expect(deposed("a")).toHaveLength(1);
  });

  it("keeps electing and deposing even when the callbacks throw", async () => {
    const store = createMemoryStore();
    const a = elector(store, "a", {
      onElected: () => {
        events.push({ at: Date.now(), who: "a", what: "elected" });
        throw new Error("boom");
      },
      onDeposed: async () => {
        events.push({ at: Date.now(), who: "a", what: "deposed" });
        throw new Error("boom");
      },
    });
    a.start();
    await vi.advanceTimersByTimeAsync(20_000);
    expect(a.isLeader()).toBe(true);
    await a.stop();
    expect(events.map((e) => e.what)).toEqual(["elected", "deposed"]);
    expect(await store.readLease("scheduler")).toBeUndefined();
  });

  it("rejects inconsistent timings, naming the option", () => {
    const store = createMemoryStore();
    const base = { store, holder: "a", onElected() {}, onDeposed() {} };
    expect(() => createLeaderElector({ ...base, ttlMs: 10_000, renewEveryMs: 9_000 })).toThrow(/renewEveryMs/);
    expect(() => createLeaderElector({ ...base, ttlMs: 1_000, safetyMarginMs: 1_000 })).toThrow(/safetyMarginMs/);
    expect(() => createLeaderElector({ ...base, ttlMs: -1 })).toThrow(/ttlMs/);
    expect(() => createLeaderElector({ ...base, holder: "" })).toThrow(/holder/);
    expect(() => createLeaderElector({ ...base, pollEveryMs: 0 })).toThrow(
      expect.objectContaining({ code: "config.invalid" }),
    );
  });

  it("refuses a second start() while running, but starts a new term after a finished stop()", async () => {
    const store = createMemoryStore();
    const e = elector(store, "a");
    e.start();
    expect(() => e.start()).toThrow(/already running/);
    await vi.advanceTimersByTimeAsync(0);
    await e.stop();
    e.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(e.isLeader()).toBe(true);
    expect(elected("a").map((x) => x.token)).toEqual([1, 2]);
    expect(deposed("a")).toHaveLength(1);
  });

  it("can stand itself down from inside onElected and compete again (stop, then start)", async () => {
    const store = createMemoryStore();
    let first = true;
    const e: LeaderElector = elector(store, "a", {
      onElected: async (fence) => {
        events.push({ at: Date.now(), who: "a", what: "elected", token: fence.token });
        if (first) {
          first = false;
          await e.stop();
          e.start();
        }
      },
    });
    e.start();
    await vi.advanceTimersByTimeAsync(5_000);
    expect(elected("a").map((x) => x.token)).toEqual([1, 2]);
    expect(e.fence()).toEqual({ lease: "scheduler", token: 2 });
  });
});
