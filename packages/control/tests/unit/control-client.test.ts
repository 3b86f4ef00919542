import { describe, expect, it } from "vitest";
import { toWatchEvent } from "../../src/control-client.js";

describe("toWatchEvent", () => {
  it("reads a change event with the kinds it touched", () => {
    const data =
      '{"revision":42,"changes":[{"kind":"server","name":"s","type":"put"},{"kind":"routes","name":"current","type":"put"}]}';
    expect(toWatchEvent({ event: "change", id: "42", data })).toEqual({
      event: "change",
      id: "42",
      kinds: ["server", "routes"],
    });
  });

  it("reads a reset event", () => {
    expect(toWatchEvent({ event: "reset", id: "7", data: '{"revision":7,"reason":"restarted"}' })).toEqual({
      event: "reset",
      id: "7",
      kinds: [],
    });
  });

  it("keeps an event whose data is not JSON, with no kinds (the controller re-lists on it)", () => {
    expect(toWatchEvent({ event: "change", data: "{oops" })).toEqual({ event: "change", kinds: [] });
  });
});
