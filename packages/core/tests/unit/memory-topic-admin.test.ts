import { describe, expect, it } from "vitest";
import { createMemoryTopicAdmin, hasCode } from "../../src/index.js";

describe("in-memory topic admin", () => {
  it("creates missing topics with the partition count and reports those that existed", async () => {
    const admin = createMemoryTopicAdmin();
    expect(await admin.ensureTopics(["a", "b"], 4)).toEqual({ created: ["a", "b"], existing: [] });
    expect(await admin.ensureTopics(["b", "c"], 4)).toEqual({ created: ["c"], existing: ["b"] });
    expect(await admin.describeTopics(["a", "c", "missing"])).toEqual({ a: 4, c: 4 });
  });

  it("refuses a topic found with another partition count, naming it, and creates nothing", async () => {
    const admin = createMemoryTopicAdmin();
    admin.createExternally("odd", 2);
    const err = await admin.ensureTopics(["new", "odd"], 4).catch((e: unknown) => e);
    expect(hasCode(err, "kafka.partition_mismatch")).toBe(true);
    expect((err as Error).message).toContain("odd has 2 partitions");
    expect(admin.topics.has("new")).toBe(false);
  });

  it("fails every call while set down, and deletes idempotently once up", async () => {
    const admin = createMemoryTopicAdmin();
    await admin.ensureTopics(["a"], 1);
    admin.setDown(true);
    await expect(admin.ensureTopics(["b"], 1)).rejects.toThrow(/unreachable/);
    admin.setDown(false);
    await admin.deleteTopics(["a", "never"]);
    expect([...admin.topics.keys()]).toEqual([]);
  });
});
