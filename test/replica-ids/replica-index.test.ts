import type { LeaseState, StateStore } from "@tern/core";
import { claimReplicaIndex, hasCode, type ReplicaIndexClaim } from "@tern/core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createDynamoDbStore, ensureTable } from "../../packages/scheduler/src/store/dynamodb-store.js";
import { dynamodbEndpoint } from "../helpers/services.js";

async function waitFor<T>(what: string, probe: () => T | undefined, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The real store, except that while frozen every lease call hangs until thawed: a process paused (or cut off) mid-run. */
function freezable(store: StateStore) {
  let thaw: (() => void) | undefined;
  let frozen: Promise<void> = Promise.resolve();
  const wrapped: StateStore = {
    ...store,
    acquireLease: async (...args): Promise<LeaseState | undefined> => {
      await frozen;
      return store.acquireLease(...args);
    },
  };
  return {
    store: wrapped,
    freeze() {
      frozen = new Promise((resolve) => {
        thaw = resolve;
      });
    },
    thaw: () => thaw?.(),
  };
}

describe("replica index claims on DynamoDB Local", () => {
  const table = `tern-replica-ids-${Date.now().toString(36)}-${process.pid}`;
  let store: StateStore;
  let claims: ReplicaIndexClaim[] = [];
  let kinds = 0;
  const kind = () => `test-${++kinds}`;

  beforeAll(async () => {
    const options = { endpoint: dynamodbEndpoint(), region: "us-east-1", table };
    await ensureTable(options);
    store = createDynamoDbStore(options);
  });
  afterEach(async () => {
    await Promise.all(claims.map((c) => c.release()));
    claims = [];
  });
  afterAll(async () => {
    await store?.close();
  });

  async function claim(options: Partial<Parameters<typeof claimReplicaIndex>[0]> & { kind: string }) {
    const c = await claimReplicaIndex({ store, max: 4, ttlMs: 3000, onLost: () => {}, ...options });
    claims.push(c);
    return c;
  }

  it("gives two claimers of one kind different indexes, the lowest free ones", async () => {
    const k = kind();
    const [a, b] = await Promise.all([claim({ kind: k }), claim({ kind: k })]);
    expect([a.index, b.index].sort()).toEqual([0, 1]);
    const c = await claim({ kind: k });
    expect(c.index).toBe(2);
  });

  it("keeps a claim past its ttl while heartbeats renew it", async () => {
    const k = kind();
    const a = await claim({ kind: k, ttlMs: 900 });
    await new Promise((resolve) => setTimeout(resolve, 2000)); // two ttls: only renewals keep the item ours
    const b = await claim({ kind: k, ttlMs: 900 });
    expect(a.index).toBe(0);
    expect(b.index).toBe(1);
  });

  it("frees the index on release, so the next claimer takes it", async () => {
    const k = kind();
    const a = await claim({ kind: k });
    await claim({ kind: k });
    await a.release();
    const c = await claim({ kind: k });
    expect(c.index).toBe(a.index);
  });

  it("fails with an error naming the cap when every index is taken", async () => {
    const k = kind();
    await claim({ kind: k, max: 2 });
    await claim({ kind: k, max: 2 });
    const err = await claim({
      kind: k,
      max: 2,
      label: "model-gateway",
      capReason: "KAFKA_PARTITIONS caps the model gateway",
      waitMs: 300,
    }).catch((e: unknown) => e);
    expect(hasCode(err, "unavailable")).toBe(true);
    expect((err as Error).message).toContain("all 2 model-gateway ids are taken");
    expect((err as Error).message).toContain("KAFKA_PARTITIONS caps the model gateway");
  });

  it("waits (within its deadline) for a lapsed claim, and the frozen old holder notices it lost the index", async () => {
    const k = kind();
    const old = freezable(store);
    const lost: string[] = [];
    const a = await claimReplicaIndex({
      store: old.store,
      kind: k,
      max: 1,
      ttlMs: 900,
      onLost: (reason) => lost.push(reason),
    });
    claims.push(a);
    expect(a.index).toBe(0);
    old.freeze(); // heartbeats stop reaching the table
    const b = await claim({ kind: k, max: 1, ttlMs: 900, waitMs: 5000 });
    expect(b.index).toBe(0);
    old.thaw();
    const reason = await waitFor("the old holder to notice", () => lost[0], 5000);
    expect(reason).toMatch(/lost replica index 0/);
    expect(a.lost).toBe(true);
    // The newcomer still holds it: the old holder's release must not free it.
    await a.release();
    const err = await claim({ kind: k, max: 1, waitMs: 200 }).catch((e: unknown) => e);
    expect(hasCode(err, "unavailable")).toBe(true);
  });
});
