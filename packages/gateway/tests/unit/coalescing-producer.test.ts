import type { BusProducer, OutgoingMessage } from "@tern/core";
import { describe, expect, it } from "vitest";
import { createCoalescingProducer } from "../../src/coalescing-producer.js";

/** A producer whose sends stay open until the test settles them, recording what each carried. */
function manualProducer() {
  const sends: Array<{ keys: string[]; settle(err?: Error): void }> = [];
  const producer: BusProducer = {
    send(messages: OutgoingMessage[]) {
      return new Promise<void>((resolve, reject) => {
        sends.push({ keys: messages.map((m) => m.key), settle: (err) => (err ? reject(err) : resolve()) });
      });
    },
    close: async () => undefined,
  };
  return { producer, sends };
}

const record = (topic: string, key: string, bytes = 0): OutgoingMessage => ({
  topic,
  partition: 0,
  key,
  value: new Uint8Array(bytes),
});
const tick = () => new Promise((r) => setImmediate(r));

describe("createCoalescingProducer", () => {
  it("sends a lone record at once, and the records asked for while it is in flight as ONE send after it", async () => {
    const { producer, sends } = manualProducer();
    const coalescing = createCoalescingProducer(producer);
    const first = coalescing.send([record("t", "a")]);
    await tick();
    expect(sends.map((s) => s.keys)).toEqual([["a"]]);
    const rest = ["b", "c", "d"].map((k) => coalescing.send([record("t", k)]));
    await tick();
    expect(sends.length).toBe(1);
    sends[0]!.settle();
    await first;
    await tick();
    expect(sends.map((s) => s.keys)).toEqual([["a"], ["b", "c", "d"]]);
    sends[1]!.settle();
    await Promise.all(rest);
  });

  it("rejects every caller of a failed send, and only them", async () => {
    const { producer, sends } = manualProducer();
    const coalescing = createCoalescingProducer(producer);
    const first = coalescing.send([record("t", "a")]);
    await tick();
    const second = coalescing.send([record("t", "b")]);
    const third = coalescing.send([record("t", "c")]);
    sends[0]!.settle(new Error("broker down"));
    await expect(first).rejects.toThrow("broker down");
    await tick();
    expect(sends.map((s) => s.keys)).toEqual([["a"], ["b", "c"]]);
    sends[1]!.settle();
    await expect(Promise.all([second, third])).resolves.toEqual([undefined, undefined]);
  });

  it("never puts two topics in one send, so a missing topic fails only its own records", async () => {
    const { producer, sends } = manualProducer();
    const coalescing = createCoalescingProducer(producer);
    const a = coalescing.send([record("t1", "a")]);
    const b = coalescing.send([record("t2", "b")]);
    await tick();
    expect(sends.map((s) => s.keys).sort()).toEqual([["a"], ["b"]]);
    sends.find((s) => s.keys[0] === "b")!.settle(new Error("topic t2 does not exist"));
    sends.find((s) => s.keys[0] === "a")!.settle();
    await expect(a).resolves.toBeUndefined();
    await expect(b).rejects.toThrow("t2");
  });

  it("splits what waited into sends of at most maxBatchBytes of values (a larger record goes alone)", async () => {
    const { producer, sends } = manualProducer();
    const coalescing = createCoalescingProducer(producer, { maxBatchBytes: 10 });
    const first = coalescing.send([record("t", "a", 1)]);
    const rest = [record("t", "b", 4), record("t", "c", 4), record("t", "d", 4), record("t", "e", 30)].map((m) =>
      coalescing.send([m]),
    );
    for (let i = 0; i < 4; i++) {
      await tick();
      sends[i]!.settle();
    }
    await Promise.all([first, ...rest]);
    expect(sends.map((s) => s.keys)).toEqual([["a"], ["b", "c"], ["d"], ["e"]]);
  });
});
