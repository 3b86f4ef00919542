import { describe, expect, it } from "vitest";
import { parseSseBlock } from "../../src/control-client.js";

describe("parseSseBlock", () => {
  it("reads a change event with the kinds it touched", () => {
    const block =
      'event: change\nid: 42\ndata: {"revision":42,"changes":[{"kind":"server","name":"s","type":"put"},{"kind":"routes","name":"current","type":"put"}]}';
    expect(parseSseBlock(block)).toEqual({ event: "change", id: "42", kinds: ["server", "routes"] });
  });

  it("reads a reset event", () => {
    expect(parseSseBlock('event: reset\nid: 7\ndata: {"revision":7,"reason":"restarted"}')).toEqual({
      event: "reset",
      id: "7",
      kinds: [],
    });
  });

  it("ignores heartbeat comments", () => {
    expect(parseSseBlock(": heartbeat")).toBeUndefined();
  });

  it("keeps an event whose data is not JSON, with no kinds (the controller re-lists on it)", () => {
    expect(parseSseBlock("event: change\ndata: {oops")).toEqual({ event: "change", kinds: [] });
  });
});
