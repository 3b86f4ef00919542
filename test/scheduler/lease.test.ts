import type { Fence, LeaseState, StateStore } from "@tern/core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createLeaderElector, type LeaderElector } from "../../packages/scheduler/src/lease.js";
import { createDynamoDbStore, ensureTable } from "../../packages/scheduler/src/store/dynamodb-store.js";
import { dynamodbEndpoint } from "../helpers/services.js";

// Short timings keep the test quick; the ratios match the defaults (renew ttl/4, margin ttl/5, poll ttl/10).
const TTL = 2_000;
const TIMINGS = { ttlMs: TTL, renewEveryMs: 500, pollEveryMs: 200, safetyMarginMs: 400 };

async function waitFor<T>(
  what: string,
  probe: () => T | undefined | Promise<T | undefined>,
  timeoutMs: number,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe("leader election on DynamoDB Local", () => {
  const table = `tern-lease-${Date.now().toString(36)}-${process.pid}`;
  let store: StateStore;
  let electors: LeaderElector[] = [];
  let n = 0;

  beforeAll(async () => {
    const options = { endpoint: dynamodbEndpoint(), region: "us-east-1", table };
    await ensureTable(options);
    store = createDynamoDbStore(options);
  });
  afterEach(async () => {
    await Promise.all(electors.map((e) => e.stop({ release: false })));
    electors = [];
  });
  afterAll(async () => {
    await store?.close();
  });

  interface Candidate {
    elector: LeaderElector;
    fences: Fence[];
    electedAt: number[];
    deposedAt: number[];
    /** Latest expiry of any lease this candidate was granted, including answers that arrive after it stopped. */
    grantedUntil: () => number;
  }

  function candidate(name: string, holder: string): Candidate {
    let grantedUntil = 0;
    const recording: StateStore = {
      ...store,
      acquireLease: async (...args) => {
        const lease: LeaseState | undefined = await store.acquireLease(...args);
        if (lease?.holder === holder) grantedUntil = Math.max(grantedUntil, lease.expiresAt);
        return lease;
      },
    };
    const c: Candidate = {
      fences: [],
      electedAt: [],
      deposedAt: [],
      grantedUntil: () => grantedUntil,
      elector: createLeaderElector({
        store: recording,
        name,
        holder,
        ...TIMINGS,
        onElected: (fence) => {
          c.fences.push(fence);
          c.electedAt.push(Date.now());
        },
        onDeposed: () => {
          c.deposedAt.push(Date.now());
        },
      }),
    };
    electors.push(c.elector);
    return c;
  }

  it("elects exactly one of two candidates and keeps it through several renewals", async () => {
    const name = `scheduler-${++n}`;
    const a = candidate(name, "a");
    const b = candidate(name, "b");
    a.elector.start();
    b.elector.start();
    const first = await waitFor("a leader", () => (a.fences.length + b.fences.length > 0 ? true : undefined), 10_000);
    expect(first).toBe(true);
    const leader = a.fences.length > 0 ? a : b;
    const standby = leader === a ? b : a;
    // Observe the lease being renewed three times by the same holder with the same token.
    const initial = (await store.readLease(name)) as LeaseState;
    let renewals = 0;
    let lastExpiry = initial.expiresAt;
    await waitFor(
      "three renewals",
      async () => {
        const lease = (await store.readLease(name)) as LeaseState;
        expect(lease.token).toBe(initial.token);
        expect(lease.holder).toBe(initial.holder);
        if (lease.expiresAt > lastExpiry) {
          renewals++;
          lastExpiry = lease.expiresAt;
        }
        return renewals >= 3 ? true : undefined;
      },
      10_000,
    );
    expect(leader.fences).toEqual([{ lease: name, token: 1 }]);
    expect(standby.fences).toEqual([]);
    expect(leader.deposedAt).toEqual([]);
    expect(leader.elector.isLeader()).toBe(true);
    expect(standby.elector.isLeader()).toBe(false);
  });

  it("hands over to the standby after the leader dies, and refuses the dead leader's fenced writes", async () => {
    const name = `scheduler-${++n}`;
    const key = { collection: `work-${name}`, id: "counter" };
    const a = candidate(name, "a");
    a.elector.start();
    await waitFor("a elected", () => a.fences[0], 10_000);
    const b = candidate(name, "b");
    b.elector.start();
    const fenceA = a.fences[0] as Fence;
    await store.write([{ type: "put", key, value: 1, expectedVersion: 0 }], { fence: fenceA });

    await a.elector.stop({ release: false }); // dies: no more renewals and no release
    const fenceB = await waitFor("b elected", () => b.fences[0], TTL + TIMINGS.pollEveryMs * 1.2 + 5_000);
    expect(fenceB.token).toBe(fenceA.token + 1);
    // Safety: b only took over once every lease a was ever granted had expired.
    expect(b.electedAt[0]).toBeGreaterThanOrEqual(a.grantedUntil());

    const late = await store
      .write([{ type: "put", key, value: 99, expectedVersion: 1 }], { fence: fenceA })
      .catch((err: unknown) => err);
    expect(late).toMatchObject({ code: "lease.lost" });
    await store.write([{ type: "put", key, value: 2, expectedVersion: 1 }], { fence: fenceB });
    expect(await store.get(key)).toMatchObject({ version: 2, value: 2 });
  });

  it("hands over at once when the leader stops cleanly (before its lease would have expired)", async () => {
    const name = `scheduler-${++n}`;
    const a = candidate(name, "a");
    a.elector.start();
    await waitFor("a elected", () => a.fences[0], 10_000);
    const b = candidate(name, "b");
    b.elector.start();
    await a.elector.stop();
    expect(a.deposedAt).toHaveLength(1);
    const fenceB = await waitFor("b elected", () => b.fences[0], TTL + 5_000);
    expect(fenceB.token).toBe(2);
    // The release is what let b in: a's last granted lease had not expired yet when b was elected.
    expect(b.electedAt[0]).toBeLessThan(a.grantedUntil());
    expect(b.electedAt[0]).toBeGreaterThanOrEqual(a.deposedAt[0] as number);
  });
});
