import { describe, expect, it } from "vitest";
import { createSseParser, readSseStream, type SseMessage } from "../../src/sse.js";

function parseAll(pieces: string[]): { messages: SseMessage[]; comments: string[] } {
  const messages: SseMessage[] = [];
  const comments: string[] = [];
  const parser = createSseParser({ message: (m) => messages.push(m), comment: (c) => comments.push(c) });
  for (const p of pieces) parser.push(p);
  parser.end();
  return { messages, comments };
}

/** Every way of cutting `text` in two, three pieces at a time would be slow: two cuts at all positions is plenty. */
function everySplit(text: string): string[][] {
  const out: string[][] = [];
  for (let i = 0; i <= text.length; i++) {
    for (let j = i; j <= text.length; j += 3) out.push([text.slice(0, i), text.slice(i, j), text.slice(j)]);
  }
  return out;
}

const STREAM =
  ": connected\n\n" +
  'event: assignments\nid: 7\ndata: {"revision":7,\ndata: "models":[]}\n\n' +
  ": heartbeat\n\n" +
  "data:no-space\r\n\r\n" +
  "event: other\rdata: a\r\r";

describe("server-sent events reader", () => {
  it("parses events with names, ids, multi-line data, comments and every line ending", () => {
    const { messages, comments } = parseAll([STREAM]);
    expect(comments).toEqual(["connected", "heartbeat"]);
    expect(messages).toEqual([
      { event: "assignments", id: "7", data: '{"revision":7,\n"models":[]}' },
      { event: "message", id: "7", data: "no-space" },
      { event: "other", id: "7", data: "a" },
    ]);
    expect(JSON.parse(messages[0]!.data)).toEqual({ revision: 7, models: [] });
  });

  it("gives the same events however the stream is cut into chunks (CRLF split included)", () => {
    const whole = parseAll([STREAM]);
    for (const pieces of everySplit(STREAM)) expect(parseAll(pieces)).toEqual(whole);
  });

  it("feeds one character at a time", () => {
    expect(parseAll([...STREAM])).toEqual(parseAll([STREAM]));
  });

  it("drops an event that never got its blank line and ignores events without data", () => {
    const { messages } = parseAll(["event: empty\n\n", "data: complete\n\n", "data: cut off"]);
    expect(messages).toEqual([{ event: "message", data: "complete" }]);
  });

  it("keeps a single leading space out of values but keeps the rest, and ignores unknown fields and retry", () => {
    const { messages } = parseAll(["retry: 10\nfoo: bar\ndata:  two spaces\ndata\n\n"]);
    expect(messages).toEqual([{ event: "message", data: " two spaces\n" }]);
  });

  it("strips a byte-order mark at the start only", () => {
    const { messages } = parseAll(["\uFEFFdata: x\n\n", "data: \uFEFFy\n\n"]);
    expect(messages.map((m) => m.data)).toEqual(["x", "\uFEFFy"]);
  });

  it("reads a byte stream, decoding UTF-8 split across chunks, and reports every chunk", async () => {
    const bytes = new TextEncoder().encode('event: assignments\ndata: {"name":"réseau-✓"}\n\n: ping\n\n');
    // Cut inside the multi-byte characters.
    const cuts = [5, 33, 34, 38, 39, 40, bytes.length];
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        let at = 0;
        for (const cut of cuts) {
          controller.enqueue(bytes.slice(at, cut));
          at = cut;
        }
        controller.close();
      },
    });
    const messages: SseMessage[] = [];
    const comments: string[] = [];
    let chunks = 0;
    await readSseStream(stream, {
      message: (m) => messages.push(m),
      comment: (c) => comments.push(c),
      onChunk: () => chunks++,
    });
    expect(messages).toEqual([{ event: "assignments", data: '{"name":"réseau-✓"}' }]);
    expect(comments).toEqual(["ping"]);
    expect(chunks).toBe(cuts.length);
  });

  it("rejects when the byte stream errors", async () => {
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode("data: a\n\n"));
        controller.error(new Error("connection reset"));
      },
    });
    await expect(readSseStream(stream, { message: () => undefined })).rejects.toThrow("connection reset");
  });
});
