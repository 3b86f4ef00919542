import { describe, expect, it } from "vitest";
import {
  DYNAMODB_ITEM_LIMIT_BYTES,
  fitReplyItem,
  MAX_REPLY_MESSAGE_BYTES,
  type PipelineReplyItem,
  replyItemAttributes,
  replyItemBytes,
  replyItemFromAttributes,
  replyItemKey,
} from "../../src/pipeline-replies.js";

const answer = (bytes: number): PipelineReplyItem => ({
  requestId: "0b7e2f7c-1111-4222-8333-944445555666",
  pipeline: "add-then-mul",
  expiresAt: 1_800_000_000,
  ok: true,
  response: new Uint8Array(bytes).fill(7),
});

describe("pipeline reply items", () => {
  it("keys each request's reply on its own partition key", () => {
    expect(replyItemKey("a")).toEqual({ pk: "reply#a", sk: "reply" });
    expect(replyItemKey("a").pk).not.toBe(replyItemKey("b").pk);
  });

  it("round-trips an answer and an error through the item's attributes", () => {
    const ok = answer(10);
    expect(replyItemFromAttributes(replyItemAttributes(ok))).toEqual(ok);
    const error: PipelineReplyItem = { ...answer(0), ok: false, message: "step x failed", status: "INVALID_ARGUMENT" };
    delete (error as { response?: unknown }).response;
    expect(replyItemFromAttributes(replyItemAttributes(error))).toEqual(error);
    expect(replyItemAttributes(ok).expiresAt).toEqual({ N: "1800000000" });
  });

  it("counts an item as DynamoDB does: names and values, the number at its largest", () => {
    const item = answer(1000);
    const names = "pk".length + "sk".length + "expiresAt".length + "pipeline".length + "response".length;
    const values = `reply#${item.requestId}`.length + "reply".length + 21 + "add-then-mul".length + 1000;
    expect(replyItemBytes(item)).toBe(names + values);
  });

  it("keeps an answer that fits the item limit", () => {
    const fits = answer(DYNAMODB_ITEM_LIMIT_BYTES - 200);
    expect(replyItemBytes(fits)).toBeLessThanOrEqual(DYNAMODB_ITEM_LIMIT_BYTES);
    expect(fitReplyItem(fits)).toBe(fits);
  });

  it("turns an answer above the item limit into a RESOURCE_EXHAUSTED error naming the limit and its size", () => {
    const big = answer(DYNAMODB_ITEM_LIMIT_BYTES);
    const fitted = fitReplyItem(big);
    expect(fitted.ok).toBe(false);
    if (fitted.ok) return;
    expect(fitted.status).toBe("RESOURCE_EXHAUSTED");
    expect(fitted.message).toContain(`is ${replyItemBytes(big)} bytes`);
    expect(fitted.message).toContain(`item limit of ${DYNAMODB_ITEM_LIMIT_BYTES} bytes (400 KB)`);
    expect(fitted.message).toContain(big.requestId);
    expect(replyItemBytes(fitted)).toBeLessThan(DYNAMODB_ITEM_LIMIT_BYTES);
  });

  it("cuts a very long error message without splitting a character", () => {
    const long: PipelineReplyItem = {
      ...answer(0),
      ok: false,
      message: "é".repeat(MAX_REPLY_MESSAGE_BYTES),
      status: "UNKNOWN",
    };
    const fitted = fitReplyItem(long);
    if (fitted.ok) throw new Error("not an error item");
    expect(new TextEncoder().encode(fitted.message).byteLength).toBeLessThanOrEqual(MAX_REPLY_MESSAGE_BYTES);
    expect(fitted.message.endsWith("é...")).toBe(true);
  });

  it("reads nothing from an absent item or one that is not a reply", () => {
    expect(replyItemFromAttributes(undefined)).toBeUndefined();
    expect(replyItemFromAttributes({ pk: { S: "routes" }, sk: { S: "current" } })).toBeUndefined();
  });
});
