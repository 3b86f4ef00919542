import { hasCode, type StateStore, type StoredItem, type WriteOp } from "@tern/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

/**
 * The behaviour every StateStore adapter must share. Run by the unit tests against the in-memory adapter and by the
 * integration tests against DynamoDB Local, so the memory adapter cannot drift from the real one.
 *
 * All tests share one store: each uses its own collection and lease names, so the suite also runs against a single
 * DynamoDB table.
 */
export function describeStateStore(name: string, makeStore: () => Promise<StateStore> | StateStore): void {
  describe(`StateStore contract: ${name}`, () => {
    let store: StateStore;
    let n = 0;
    /** A collection (or lease) name no other test uses. */
    const unique = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${++n}`;

    beforeAll(async () => {
      store = await makeStore();
    });
    afterAll(async () => {
      await store?.close();
    });

    async function expectCode(promise: Promise<unknown>, code: string): Promise<Error> {
      const err = await promise.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err, `expected an error with code ${code}`).toBeDefined();
      expect((err as { code?: string }).code).toBe(code);
      return err as Error;
    }

    describe("items", () => {
      it("returns undefined for an item that does not exist", async () => {
        expect(await store.get({ collection: unique("c"), id: "nope" })).toBeUndefined();
      });

      it("creates an item at version 1 when it must not exist yet, and reads it back", async () => {
        const key = { collection: unique("c"), id: "iris" };
        const [written] = await store.write([{ type: "put", key, value: { replicas: 3 }, expectedVersion: 0 }]);
        expect(written).toEqual({ ...key, version: 1, value: { replicas: 3 } });
        expect(await store.get(key)).toEqual({ ...key, version: 1, value: { replicas: 3 } });
      });

      it("refuses to create an item that already exists, leaving it unchanged", async () => {
        const key = { collection: unique("c"), id: "iris" };
        await store.write([{ type: "put", key, value: "first", expectedVersion: 0 }]);
        const err = await expectCode(
          store.write([{ type: "put", key, value: "second", expectedVersion: 0 }]),
          "conflict",
        );
        expect(err.message).toContain(key.id);
        expect((await store.get(key))?.value).toBe("first");
      });

      it("updates at the expected version and bumps it by one; a stale version is a conflict", async () => {
        const key = { collection: unique("c"), id: "m" };
        await store.write([{ type: "put", key, value: 1, expectedVersion: 0 }]);
        const [v2] = await store.write([{ type: "put", key, value: 2, expectedVersion: 1 }]);
        expect(v2?.version).toBe(2);
        await expectCode(store.write([{ type: "put", key, value: 3, expectedVersion: 1 }]), "conflict");
        expect(await store.get(key)).toMatchObject({ version: 2, value: 2 });
      });

      it("treats a positive expected version on a missing item as a conflict", async () => {
        const key = { collection: unique("c"), id: "ghost" };
        await expectCode(store.write([{ type: "put", key, value: 1, expectedVersion: 4 }]), "conflict");
        expect(await store.get(key)).toBeUndefined();
      });

      it("writes unconditionally when no version is expected, still counting versions exactly", async () => {
        const key = { collection: unique("c"), id: "u" };
        expect((await store.write([{ type: "put", key, value: "a" }]))[0]?.version).toBe(1);
        expect((await store.write([{ type: "put", key, value: "b" }]))[0]?.version).toBe(2);
        expect(await store.get(key)).toMatchObject({ version: 2, value: "b" });
      });

      it("deletes at the expected version, refuses a stale delete, and ignores an unconditional delete of nothing", async () => {
        const key = { collection: unique("c"), id: "d" };
        await store.write([{ type: "put", key, value: 1, expectedVersion: 0 }]);
        await store.write([{ type: "put", key, value: 2, expectedVersion: 1 }]);
        await expectCode(store.write([{ type: "delete", key, expectedVersion: 1 }]), "conflict");
        expect(await store.write([{ type: "delete", key, expectedVersion: 2 }])).toEqual([]);
        expect(await store.get(key)).toBeUndefined();
        expect(await store.write([{ type: "delete", key }])).toEqual([]);
        // After a delete the id can be created again from scratch.
        expect((await store.write([{ type: "put", key, value: 3, expectedVersion: 0 }]))[0]?.version).toBe(1);
      });

      it("applies several ops atomically and returns the written items in op order, deletes omitted", async () => {
        const collection = unique("c");
        await store.write([{ type: "put", key: { collection, id: "old" }, value: "x", expectedVersion: 0 }]);
        const written = await store.write([
          { type: "put", key: { collection, id: "b" }, value: { n: 2 }, expectedVersion: 0 },
          { type: "delete", key: { collection, id: "old" }, expectedVersion: 1 },
          { type: "put", key: { collection, id: "a" }, value: { n: 1 } },
        ]);
        expect(written.map((i) => [i.id, i.version, i.value])).toEqual([
          ["b", 1, { n: 2 }],
          ["a", 1, { n: 1 }],
        ]);
        expect((await store.list(collection)).map((i) => i.id)).toEqual(["a", "b"]);
      });

      it("applies nothing when any op's condition fails", async () => {
        const collection = unique("c");
        await store.write([{ type: "put", key: { collection, id: "taken" }, value: 1, expectedVersion: 0 }]);
        await expectCode(
          store.write([
            { type: "put", key: { collection, id: "fresh" }, value: 1, expectedVersion: 0 },
            { type: "put", key: { collection, id: "other" }, value: 1 },
            { type: "put", key: { collection, id: "taken" }, value: 2, expectedVersion: 0 },
          ]),
          "conflict",
        );
        expect((await store.list(collection)).map((i) => [i.id, i.value])).toEqual([["taken", 1]]);
      });

      it("does nothing for an empty write", async () => {
        expect(await store.write([])).toEqual([]);
      });

      it("round-trips values through JSON: nested shapes, empty strings, unicode; undefined properties dropped", async () => {
        const key = { collection: unique("c"), id: "shape" };
        const value = {
          name: "",
          tags: ["a", "", "ü🦜"],
          nested: { deep: { deeper: [1, 2.5, -3, { x: null }] } },
          big: 2 ** 53 + 2,
          flag: false,
          gone: undefined,
        };
        await store.write([{ type: "put", key, value, expectedVersion: 0 }]);
        const { gone: _gone, ...expected } = value;
        expect((await store.get(key))?.value).toEqual(expected);
        expect(Object.keys((await store.get<object>(key))?.value ?? {})).not.toContain("gone");
      });

      it("stores expiresAt (epoch seconds) with an item and clears it when a put omits it", async () => {
        const key = { collection: unique("reply"), id: "r1" };
        const expiresAt = Math.floor(Date.now() / 1000) + 600;
        const [written] = await store.write([{ type: "put", key, value: "ok", expectedVersion: 0, expiresAt }]);
        expect(written?.expiresAt).toBe(expiresAt);
        expect((await store.get(key))?.expiresAt).toBe(expiresAt);
        await store.write([{ type: "put", key, value: "again", expectedVersion: 1 }]);
        expect((await store.get(key))?.expiresAt).toBeUndefined();
      });

      it("lists only the given collection, ordered by id, with versions", async () => {
        const collection = unique("c");
        const other = unique("c");
        await store.write([
          { type: "put", key: { collection, id: "b" }, value: 2 },
          { type: "put", key: { collection, id: "a" }, value: 1 },
          { type: "put", key: { collection, id: "c" }, value: 3 },
          { type: "put", key: { collection: other, id: "z" }, value: 26 },
        ]);
        await store.write([{ type: "put", key: { collection, id: "c" }, value: 33, expectedVersion: 1 }]);
        const items = await store.list<number>(collection);
        expect(items.map((i) => [i.collection, i.id, i.version, i.value])).toEqual([
          [collection, "a", 1, 1],
          [collection, "b", 1, 2],
          [collection, "c", 2, 33],
        ]);
        expect(await store.list(unique("empty"))).toEqual([]);
      });

      it("lists a collection larger than one DynamoDB page (1 MB) completely", async () => {
        const collection = unique("big");
        const blob = "x".repeat(60_000);
        const count = 24; // ~1.4 MB in total
        for (let start = 0; start < count; start += 8) {
          const ops: WriteOp[] = [];
          for (let i = start; i < Math.min(count, start + 8); i++) {
            ops.push({
              type: "put",
              key: { collection, id: `item-${String(i).padStart(3, "0")}` },
              value: { i, blob },
            });
          }
          await store.write(ops);
        }
        const items = await store.list<{ i: number }>(collection);
        expect(items.map((i) => i.value.i)).toEqual(Array.from({ length: count }, (_, i) => i));
      });

      it("accepts 100 ops in one write", async () => {
        const collection = unique("many");
        const ops: WriteOp[] = Array.from({ length: 100 }, (_, i) => ({
          type: "put",
          key: { collection, id: String(i).padStart(3, "0") },
          value: i,
          expectedVersion: 0,
        }));
        expect(await store.write(ops)).toHaveLength(100);
        expect(await store.list(collection)).toHaveLength(100);
      });

      it("loses no update when 20 writers increment one counter concurrently with read-modify-write", async () => {
        const key = { collection: unique("counter"), id: "n" };
        await store.write([{ type: "put", key, value: 0, expectedVersion: 0 }]);
        const increment = async (): Promise<number> => {
          for (let attempt = 0; ; attempt++) {
            const current = (await store.get<number>(key)) as StoredItem<number>;
            try {
              await store.write([{ type: "put", key, value: current.value + 1, expectedVersion: current.version }]);
              return attempt;
            } catch (err) {
              if (!hasCode(err, "conflict") || attempt > 200) throw err;
            }
          }
        };
        await Promise.all(Array.from({ length: 20 }, increment));
        expect(await store.get(key)).toMatchObject({ value: 20, version: 21 });
      });

      it("loses no update when 20 writers put unconditionally at once: the version counts every write", async () => {
        const key = { collection: unique("blind"), id: "n" };
        await Promise.all(Array.from({ length: 20 }, (_, i) => store.write([{ type: "put", key, value: i }])));
        expect((await store.get(key))?.version).toBe(20);
      });
    });

    describe("input validation", () => {
      it("refuses more than 100 ops, naming the limit", async () => {
        const collection = unique("c");
        const ops: WriteOp[] = Array.from({ length: 101 }, (_, i) => ({
          type: "put",
          key: { collection, id: `${i}` },
          value: i,
        }));
        const err = await expectCode(store.write(ops), "bad_request");
        expect(err.message).toMatch(/100/);
        expect(await store.list(collection)).toEqual([]);
      });

      it("refuses two ops on the same item in one write", async () => {
        const key = { collection: unique("c"), id: "dup" };
        const err = await expectCode(
          store.write([
            { type: "put", key, value: 1 },
            { type: "delete", key },
          ]),
          "bad_request",
        );
        expect(err.message).toContain("ops[1].key");
      });

      it("refuses empty key parts and names the field", async () => {
        const err = await expectCode(
          store.write([{ type: "put", key: { collection: "c", id: "" }, value: 1 }]),
          "bad_request",
        );
        expect(err.message).toContain("ops[0].key.id");
        await expectCode(store.get({ collection: "", id: "x" }), "bad_request");
        await expectCode(store.list(""), "bad_request");
      });

      it("reserves the lease collection for leases", async () => {
        await expectCode(
          store.write([{ type: "put", key: { collection: "lease", id: "x" }, value: 1 }]),
          "bad_request",
        );
        await expectCode(store.get({ collection: "lease", id: "x" }), "bad_request");
        await expectCode(store.list("lease"), "bad_request");
      });

      it("refuses values that are missing, not JSON or too large", async () => {
        const key = { collection: unique("c"), id: "v" };
        await expectCode(store.write([{ type: "put", key, value: undefined }]), "bad_request");
        await expectCode(store.write([{ type: "put", key, value: { n: 1n } }]), "bad_request");
        const err = await expectCode(store.write([{ type: "put", key, value: "x".repeat(400_000) }]), "bad_request");
        expect(err.message).toContain("ops[0].value");
        expect(await store.get(key)).toBeUndefined();
      });

      it("refuses bad op types, versions and expiry times", async () => {
        const key = { collection: unique("c"), id: "v" };
        await expectCode(store.write([{ type: "upsert", key, value: 1 } as unknown as WriteOp]), "bad_request");
        await expectCode(store.write([{ type: "put", key, value: 1, expectedVersion: -1 }]), "bad_request");
        await expectCode(store.write([{ type: "put", key, value: 1, expectedVersion: 1.5 }]), "bad_request");
        const err = await expectCode(
          store.write([{ type: "put", key, value: 1, expiresAt: Date.now() }]),
          "bad_request",
        );
        expect(err.message).toMatch(/seconds/i);
      });
    });

    describe("leases", () => {
      const ttl = 10_000;
      const t0 = 1_800_000_000_000;

      it("grants a free lease with token 1 and shows it to readers", async () => {
        const name = unique("lease");
        expect(await store.readLease(name)).toBeUndefined();
        const lease = await store.acquireLease(name, "a", ttl, t0);
        expect(lease).toEqual({ name, holder: "a", token: 1, expiresAt: t0 + ttl });
        expect(await store.readLease(name)).toEqual(lease);
      });

      it("refuses a lease another holder holds, and renews it for its holder keeping the token", async () => {
        const name = unique("lease");
        await store.acquireLease(name, "a", ttl, t0);
        expect(await store.acquireLease(name, "b", ttl, t0 + ttl - 1)).toBeUndefined();
        expect(await store.acquireLease(name, "a", ttl, t0 + 5000)).toEqual({
          name,
          holder: "a",
          token: 1,
          expiresAt: t0 + 5000 + ttl,
        });
        expect(await store.acquireLease(name, "b", ttl, t0 + ttl + 1)).toBeUndefined();
      });

      it("lets another holder take an expired lease with the next token", async () => {
        const name = unique("lease");
        await store.acquireLease(name, "a", ttl, t0);
        const taken = await store.acquireLease(name, "b", ttl, t0 + ttl);
        expect(taken).toEqual({ name, holder: "b", token: 2, expiresAt: t0 + 2 * ttl });
        expect(await store.acquireLease(name, "a", ttl, t0 + ttl + 1)).toBeUndefined();
      });

      it("gives a holder whose lease lapsed a new term (new token), not a renewal", async () => {
        const name = unique("lease");
        await store.acquireLease(name, "a", ttl, t0);
        expect((await store.acquireLease(name, "a", ttl, t0 + ttl + 1))?.token).toBe(2);
      });

      it("releases only for the current holder and token; the next holder gets a larger token", async () => {
        const name = unique("lease");
        const a = await store.acquireLease(name, "a", ttl, t0);
        await store.releaseLease(name, "b", 1); // not the holder: no effect
        await store.releaseLease(name, "a", 7); // wrong token: no effect
        expect(await store.readLease(name)).toEqual(a);
        await store.releaseLease(name, "a", 1);
        expect(await store.readLease(name)).toBeUndefined();
        expect(await store.acquireLease(name, "b", ttl, t0 + 1)).toMatchObject({ holder: "b", token: 2 });
      });

      it("accepts fenced writes with the current token and refuses them after a takeover or a release", async () => {
        const name = unique("lease");
        const collection = unique("fenced");
        const key = { collection, id: "x" };
        const now = Date.now();
        const a = await store.acquireLease(name, "a", ttl, now);
        const fenceA = { lease: name, token: a?.token as number };
        await store.write([{ type: "put", key, value: "a1", expectedVersion: 0 }], { fence: fenceA });

        const b = await store.acquireLease(name, "b", ttl, now + ttl + 1);
        const err = await expectCode(
          store.write([{ type: "put", key, value: "a2", expectedVersion: 1 }], { fence: fenceA }),
          "lease.lost",
        );
        expect(err.message).toContain(name);
        expect(await store.get(key)).toMatchObject({ version: 1, value: "a1" });

        const fenceB = { lease: name, token: b?.token as number };
        await store.write([{ type: "put", key, value: "b1", expectedVersion: 1 }], { fence: fenceB });
        await store.releaseLease(name, "b", fenceB.token);
        await expectCode(store.write([{ type: "put", key, value: "b2" }], { fence: fenceB }), "lease.lost");
        expect(await store.get(key)).toMatchObject({ version: 2, value: "b1" });
      });

      it("reports lease.lost over a version conflict, and conflict when only the version is stale", async () => {
        const name = unique("lease");
        const key = { collection: unique("fenced"), id: "x" };
        const a = await store.acquireLease(name, "a", ttl, Date.now());
        const fence = { lease: name, token: a?.token as number };
        await store.write([{ type: "put", key, value: 1, expectedVersion: 0 }], { fence });
        await expectCode(store.write([{ type: "put", key, value: 2, expectedVersion: 0 }], { fence }), "conflict");
        await expectCode(
          store.write([{ type: "put", key, value: 2, expectedVersion: 0 }], {
            fence: { ...fence, token: fence.token + 1 },
          }),
          "lease.lost",
        );
      });

      it("refuses fenced writes for a lease that never existed", async () => {
        await expectCode(
          store.write([{ type: "put", key: { collection: unique("c"), id: "x" }, value: 1 }], {
            fence: { lease: unique("nolease"), token: 1 },
          }),
          "lease.lost",
        );
      });

      it("allows at most 99 ops with a fence (the fence check takes a transaction slot)", async () => {
        const name = unique("lease");
        const collection = unique("many");
        const a = await store.acquireLease(name, "a", ttl, Date.now());
        const fence = { lease: name, token: a?.token as number };
        const ops = (count: number): WriteOp[] =>
          Array.from({ length: count }, (_, i) => ({ type: "put", key: { collection, id: `${i}` }, value: i }));
        await expectCode(store.write(ops(100), { fence }), "bad_request");
        expect(await store.write(ops(99), { fence })).toHaveLength(99);
      });

      it("refuses bad lease arguments", async () => {
        await expectCode(store.acquireLease("", "a", ttl, t0), "bad_request");
        await expectCode(store.acquireLease(unique("lease"), "", ttl, t0), "bad_request");
        await expectCode(store.acquireLease(unique("lease"), "a", 0, t0), "bad_request");
        await expectCode(store.write([], { fence: { lease: "x", token: 0 } }), "bad_request");
      });
    });
  });
}
