/**
 * A reader of `text/event-stream` (server-sent events), as the scheduler's control API sends them: the agents'
 * assignments, the gateway's and the local controller's watch of changes. Web-standard streams only, no platform code.
 */

/** One dispatched server-sent event. */
export interface SseMessage {
  /** The `event:` field; `"message"` when the event named none (as in the HTML spec). */
  event: string;
  /** Every `data:` line of the event joined with `\n`. */
  data: string;
  /** The last `id:` seen on the stream so far (it persists across events, as in the spec). */
  id?: string;
}

export interface SseHandlers {
  message(message: SseMessage): void;
  /** A `:` comment line (servers send them as keep-alives). */
  comment?(text: string): void;
}

/** An incremental parser: feed it decoded text in arbitrary pieces, it dispatches whole events. */
export interface SseParser {
  push(text: string): void;
  /** The stream ended: a trailing event without its blank line is dropped, as the spec says. */
  end(): void;
}

/**
 * Parses the `text/event-stream` format incrementally. Lines end with LF, CRLF or CR (a CR at the very end of a piece
 * waits for the next piece, which may start with its LF); an event is dispatched at a blank line when it has data.
 */
export function createSseParser(handlers: SseHandlers): SseParser {
  let buffer = "";
  let first = true;
  let data: string[] = [];
  let eventName = "";
  let lastId: string | undefined;

  function line(text: string): void {
    if (text === "") {
      if (data.length > 0) {
        handlers.message({
          event: eventName === "" ? "message" : eventName,
          data: data.join("\n"),
          ...(lastId === undefined ? {} : { id: lastId }),
        });
      }
      data = [];
      eventName = "";
      return;
    }
    if (text.startsWith(":")) {
      handlers.comment?.(text.slice(1).replace(/^ /, ""));
      return;
    }
    const colon = text.indexOf(":");
    const field = colon < 0 ? text : text.slice(0, colon);
    const value = colon < 0 ? "" : text.slice(colon + 1).replace(/^ /, "");
    switch (field) {
      case "data":
        data.push(value);
        break;
      case "event":
        eventName = value;
        break;
      case "id":
        if (!value.includes("\u0000")) lastId = value;
        break;
      default:
        // `retry` and unknown fields: nothing to do for us (we choose our own reconnect delay).
        break;
    }
  }

  return {
    push(text) {
      buffer += text;
      if (first && buffer.length > 0) {
        if (buffer.charCodeAt(0) === 0xfeff) buffer = buffer.slice(1);
        first = false;
      }
      let start = 0;
      for (let i = 0; i < buffer.length; i++) {
        const ch = buffer.charCodeAt(i);
        if (ch !== 10 && ch !== 13) continue;
        if (ch === 13 && i === buffer.length - 1) break; // maybe CRLF split across pieces: decide on the next one
        line(buffer.slice(start, i));
        if (ch === 13 && buffer.charCodeAt(i + 1) === 10) i++;
        start = i + 1;
      }
      buffer = buffer.slice(start);
    },
    end() {
      // A lone CR left at the end still ends its line; an unterminated event is discarded.
      if (buffer.endsWith("\r")) line(buffer.slice(0, -1));
      buffer = "";
      data = [];
      eventName = "";
    },
  };
}

/**
 * Reads a `text/event-stream` body until it ends, decoding UTF-8 across chunk boundaries. Rejects when the stream
 * errors (e.g. its request was aborted). `onChunk` runs for every chunk received, comments included (idle detection).
 */
export async function readSseStream(
  body: ReadableStream<Uint8Array>,
  handlers: SseHandlers & { onChunk?: () => void },
): Promise<void> {
  const parser = createSseParser(handlers);
  const decoder = new TextDecoder();
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      handlers.onChunk?.();
      parser.push(decoder.decode(value, { stream: true }));
    }
    parser.push(decoder.decode());
    parser.end();
  } finally {
    reader.releaseLock();
  }
}
