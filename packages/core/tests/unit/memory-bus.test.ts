import { describe, expect, it } from "vitest";
import { createMemoryBus } from "../../src/memory-bus.js";
import { describeMessageBusContract } from "../contract/message-bus-contract.js";

describeMessageBusContract("in-memory", { createBus: () => createMemoryBus(), timeoutMs: 2_000 });

describe("in-memory bus", () => {
  it("shares its topics with the in-memory topic admin it was given", async () => {
    const bus = createMemoryBus();
    await bus.admin().ensureTopics(["t"], 2);
    await bus.producer().send([{ topic: "t", partition: 1, key: "k", value: new Uint8Array([1]) }]);
    expect(bus.records("t", 1).map((m) => m.key)).toEqual(["k"]);
    expect(bus.admin().topics.get("t")).toBe(2);
  });

  it("fails sends as a down broker would when its admin is set down", async () => {
    const bus = createMemoryBus();
    await bus.admin().ensureTopics(["t"], 1);
    bus.admin().setDown(true);
    await expect(
      bus.producer().send([{ topic: "t", partition: 0, key: "k", value: new Uint8Array() }]),
    ).rejects.toThrow(/unreachable/);
    expect(bus.records("t", 0)).toEqual([]);
  });

  it("commits in manual mode only what was marked, and never moves a committed offset back", async () => {
    const bus = createMemoryBus();
    await bus.admin().ensureTopics(["t"], 1);
    const marks: Array<(offset: string) => void> = [];
    const consumer = bus.consumer({
      groupId: "g",
      topics: ["t"],
      commit: "manual",
      fromBeginning: true,
      async onBatch(_messages, context) {
        marks.push((offset) => context.commit("t", 0, offset));
      },
    });
    await consumer.start();
    await bus
      .producer()
      .send(["a", "b", "c"].map((key) => ({ topic: "t", partition: 0, key, value: new Uint8Array() })));
    const deadline = Date.now() + 2_000;
    while (marks.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(bus.committed("g", "t", 0)).toBeUndefined();
    marks[0]!("1");
    expect(bus.committed("g", "t", 0)).toBe("2");
    marks[0]!("0");
    expect(bus.committed("g", "t", 0)).toBe("2");
    await consumer.stop();
    // After stop the member holds nothing, so a late mark is the next holder's business.
    marks[0]!("2");
    expect(bus.committed("g", "t", 0)).toBe("2");
  });
});
