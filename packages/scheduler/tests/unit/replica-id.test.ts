import { hasCode, type ReplicaIndexClaim, replicaIndexLeaseName, type StateStore } from "@tern/core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createReplicaIdProcess, type ResolveReplicaIdOptions, resolveReplicaId } from "../../src/replica-id.js";
import { createMemoryStore } from "../../src/store/memory-store.js";

const timing = { TERN_REPLICA_ID_TTL_MS: 60_000, TERN_REPLICA_ID_WAIT_MS: 0 };

describe("resolveReplicaId", () => {
  let store: StateStore;
  const claims: ReplicaIndexClaim[] = [];

  beforeEach(() => {
    store = createMemoryStore();
  });
  afterEach(async () => {
    await Promise.all(claims.splice(0).map((c) => c.release()));
  });

  function worker(configured: string): ResolveReplicaIdOptions<string> {
    return {
      store,
      onLost: () => {},
      configured,
      fromIndex: (index) => `worker-${index}`,
      kind: "worker",
      cap: 2,
      capReason: "TERN_WORKER_MAX (2) caps the workers",
      label: "test worker",
      timing,
    };
  }

  async function resolveWorker(configured: string): Promise<string> {
    const resolved = await resolveReplicaId(worker(configured));
    if (resolved.claim) claims.push(resolved.claim);
    return resolved.id;
  }

  it("passes a fixed id through without touching the table", async () => {
    // A closed store refuses every call: resolving at all shows none was made.
    await store.close();
    expect(await resolveReplicaId(worker("worker-7"))).toEqual({ id: "worker-7" });
    expect(await resolveReplicaId({ ...worker("x"), configured: 3, fromIndex: (i) => i })).toEqual({ id: 3 });
  });

  it("turns auto into the lowest free index below the cap, held in the table under its kind", async () => {
    expect(await resolveWorker("auto")).toBe("worker-0");
    expect(await resolveWorker("auto")).toBe("worker-1");
    const held = await store.readLease(replicaIndexLeaseName("worker", 1));
    expect(held?.holder).toBeDefined();
    // Another kind numbers its own replicas from 0.
    const agent = await resolveReplicaId({
      ...worker("auto"),
      kind: "agent:a",
      configured: "auto",
      fromIndex: (i) => i,
    });
    if (agent.claim) claims.push(agent.claim);
    expect(agent.id).toBe(0);
  });

  it("fails naming the cap and why once every index below it is taken", async () => {
    await resolveWorker("auto");
    await resolveWorker("auto");
    const err = await resolveWorker("auto").catch((e: unknown) => e);
    expect(hasCode(err, "unavailable")).toBe(true);
    expect((err as Error).message).toMatch(/all 2 test worker ids are taken.*TERN_WORKER_MAX \(2\) caps the workers/);
  });
});

describe("createReplicaIdProcess", () => {
  const config = { AWS_REGION: "us-east-1", TERN_TABLE: "unused" };
  const logger = { fatal() {}, child: () => ({ info() {}, warn() {} }) };

  it("releases the claimed index, then closes the store, on close()", async () => {
    const store = createMemoryStore();
    const closed: string[] = [];
    const ids = createReplicaIdProcess({
      config,
      logger,
      restarts: "the test worker",
      // The real store, with close() recorded rather than done, so the lease can still be read afterwards.
      store: { ...store, close: async () => void closed.push("closed") },
    });
    const { id, claim } = await ids.resolve((deps) =>
      resolveReplicaId({
        ...deps,
        configured: "auto",
        fromIndex: String,
        kind: "w",
        cap: 1,
        capReason: "",
        label: "w",
        timing,
      }),
    );
    expect(id).toBe("0");
    expect(await store.readLease(replicaIndexLeaseName("w", 0))).toBeDefined();
    await ids.close();
    expect(await store.readLease(replicaIndexLeaseName("w", 0))).toBeUndefined();
    expect(closed).toEqual(["closed"]);
    expect(claim?.lost).toBe(false);
    await store.close();
  });

  it("closes the store when nothing was claimed (a fixed id, or a failed start)", async () => {
    const store = createMemoryStore();
    const ids = createReplicaIdProcess({ config, logger, restarts: "the test worker", store });
    await ids.close();
    await expect(store.readLease("anything")).rejects.toThrow(/closed/);
  });
});
