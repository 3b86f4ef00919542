import { describe, expect, it } from "vitest";
import { renameAnswer } from "../../src/runtime/mlserver-runtime.js";

const encode = (text: string) => new TextEncoder().encode(text);
const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

describe("MLServer's answer under the caller's model name", () => {
  it("splices the name and version into MLServer's own bytes, leaving the rest as it was", () => {
    const rest = `"id":"a1","parameters":{},"outputs":[{"name":"predict","shape":[1,1],"datatype":"INT64","parameters":{"content_type":"np"},"data":[0]}]}`;
    const out = renameAnswer(encode(`{"model_name":"iris-v1",${rest}`), "iris-v1", "iris", "1");
    expect(decode(out)).toBe(`{"model_name":"iris","model_version":"1",${rest}`);
  });

  it("parses any other shape of answer and sets both fields", () => {
    const versioned = `{"model_name":"iris-v1","model_version":"v0.1.0","outputs":[]}`;
    expect(JSON.parse(decode(renameAnswer(encode(versioned), "iris-v1", "iris", "3")))).toEqual({
      model_name: "iris",
      model_version: "3",
      outputs: [],
    });
    const spaced = `{ "outputs": [], "model_name": "iris-v1" }`;
    expect(JSON.parse(decode(renameAnswer(encode(spaced), "iris-v1", 'say "hi"', "2")))).toEqual({
      outputs: [],
      model_name: 'say "hi"',
      model_version: "2",
    });
  });

  it("refuses an answer that is not JSON with a code, not a crash", () => {
    expect(() => renameAnswer(encode("Internal Server Error"), "iris-v1", "iris", "1")).toThrow(
      expect.objectContaining({ code: "internal" }),
    );
  });
});
