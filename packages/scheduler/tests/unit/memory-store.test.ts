import { describe, expect, it } from "vitest";
import { createMemoryStore } from "../../src/store/memory-store.js";
import { describeStateStore } from "./store-contract.js";

describeStateStore("memory", () => createMemoryStore());

describe("memory store", () => {
  it("hands out copies: changing a returned value does not change the stored one", async () => {
    const store = createMemoryStore();
    const key = { collection: "model", id: "iris" };
    const value = { tags: ["a"] };
    await store.write([{ type: "put", key, value }]);
    value.tags.push("mutated-input");
    const read = await store.get<{ tags: string[] }>(key);
    read?.value.tags.push("mutated-output");
    expect((await store.get(key))?.value).toEqual({ tags: ["a"] });
  });

  it("orders ids by their UTF-8 bytes, as DynamoDB does", async () => {
    const store = createMemoryStore();
    // U+FF5E sorts after U+1F99C in UTF-16 code units but before it in UTF-8 bytes.
    const ids = ["\u{1F99C}", "\uFF5E", "a", "B"];
    await store.write(ids.map((id) => ({ type: "put" as const, key: { collection: "c", id }, value: id })));
    expect((await store.list("c")).map((i) => i.id)).toEqual(["B", "a", "\uFF5E", "\u{1F99C}"]);
  });

  it("refuses every call after close with code unavailable", async () => {
    const store = createMemoryStore();
    await store.close();
    await expect(store.get({ collection: "c", id: "x" })).rejects.toMatchObject({ code: "unavailable" });
  });
});
