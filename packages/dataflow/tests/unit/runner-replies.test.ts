import {
  decodeModelInferResponse,
  type PipelineReplyItem,
  parseRecordKey,
  REPLY_TO_HEADER,
  responseOutputsToOip,
} from "@tern/core";
import { afterEach, describe, expect, it } from "vitest";
import { createMemoryReplyWriter } from "../../src/replies.js";
import { add10, compile, fp32, type Harness, mul10, startHarness, values, waitFor } from "./runner-harness.js";

// The Lambda gateway's rendezvous on the worker's side: a request with `tern-reply-to: dynamodb` is answered on the
// outputs topic as always AND put in the reply writer under its id; other requests only on Kafka.

const harnesses: Harness[] = [];
afterEach(async () => {
  await Promise.all(harnesses.splice(0).map((h) => h.close()));
});

const chain = compile("add-then-mul", {
  steps: [{ name: "add10" }, { name: "mul10", inputs: ["add10.outputs.y"], tensorMap: { "add10.outputs.y": "x" } }],
  output: { steps: ["mul10"] },
});
const reply = { [REPLY_TO_HEADER]: "dynamodb" };

describe("pipeline runner: the DynamoDB reply of a request that asks for it", () => {
  it("puts the same answer as the outputs record, stamped with expiresAt; a request without the header gets none", async () => {
    const replies = createMemoryReplyWriter({ ttlSeconds: 600 });
    const h = await startHarness(chain, { models: { add10, mul10 }, replies });
    harnesses.push(h);
    const before = Math.floor(Date.now() / 1000);
    await h.send("asks", 2, [fp32("x", [1, -2])], reply);
    await h.send("plain", 1, [fp32("x", [3])]);
    const answer = await h.answer("asks");
    await h.answer("plain");
    const item = await waitFor(() => replies.items.get("asks"), "the reply item of asks");
    expect(item.ok).toBe(true);
    if (!item.ok) return;
    expect(item.pipeline).toBe("add-then-mul");
    expect(Buffer.from(item.response)).toEqual(Buffer.from(answer.message.value));
    expect(values(responseOutputsToOip(decodeModelInferResponse(item.response))[0])).toEqual(
      [1, -2].map((v) => Math.fround((v + 10) * 10)),
    );
    expect(item.expiresAt).toBeGreaterThanOrEqual(before + 600);
    expect(item.expiresAt).toBeLessThanOrEqual(Math.ceil(Date.now() / 1000) + 600);
    expect(replies.items.has("plain")).toBe(false);
  });

  it("does not carry the header on: the model requests and the outputs record go without it", async () => {
    const replies = createMemoryReplyWriter();
    const h = await startHarness(chain, { models: { add10, mul10 }, replies });
    harnesses.push(h);
    await h.send("r", 0, [fp32("x", [5])], reply);
    const answer = await h.answer("r");
    expect(answer.message.headers[REPLY_TO_HEADER]).toBeUndefined();
    for (const model of ["add10", "mul10"]) {
      const call = h.modelCalls.get(model)!.find((m) => parseRecordKey(m.key)?.requestId === "r")!;
      expect(call.headers[REPLY_TO_HEADER]).toBeUndefined();
    }
  });

  it("puts a step's error with its status and message, as the error record says", async () => {
    const replies = createMemoryReplyWriter();
    const h = await startHarness(chain, { models: { add10, mul10: () => new Error("mul10 refused") }, replies });
    harnesses.push(h);
    await h.send("bad", 3, [fp32("x", [1])], reply);
    const answer = await h.answer("bad");
    const item: PipelineReplyItem = await waitFor(() => replies.items.get("bad"), "the reply item of bad");
    expect(item).toMatchObject({ ok: false, message: answer.error, status: answer.status });
    expect(answer.error).toContain("mul10 refused");
  });
});
