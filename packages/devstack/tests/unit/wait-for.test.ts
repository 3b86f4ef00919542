import { hasCode } from "@tern/core";
import { describe, expect, it } from "vitest";
import { waitFor } from "../../src/wait-for.js";

describe("waitFor", () => {
  it("resolves with the first value that is not false, null or undefined", async () => {
    const answers = [false, undefined, null, 0, 7];
    let calls = 0;
    const value = await waitFor(() => answers[calls++], { timeoutMs: 5_000, intervalMs: 1, description: "a number" });
    // 0 is a real value: only false, null and undefined mean "not yet".
    expect(value).toBe(0);
    expect(calls).toBe(4);
  });

  it("keeps polling through thrown errors", async () => {
    let calls = 0;
    const value = await waitFor(
      async () => {
        calls++;
        if (calls < 3) throw new Error("connection refused");
        return "up";
      },
      { timeoutMs: 5_000, intervalMs: 1, description: "a service" },
    );
    expect(value).toBe("up");
  });

  it("fails with a timeout error that names what it waited for and the last error", async () => {
    const error = await waitFor(
      () => {
        throw new Error("ECONNREFUSED 127.0.0.1:9092");
      },
      { timeoutMs: 30, intervalMs: 5, description: "Kafka broker at localhost:9092" },
    ).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(hasCode(error, "timeout")).toBe(true);
    expect((error as Error).message).toBe(
      "Kafka broker at localhost:9092 not ready after 30 ms: ECONNREFUSED 127.0.0.1:9092",
    );
  });

  it("stops at once when its signal is aborted", async () => {
    const controller = new AbortController();
    const waiting = waitFor(() => false, {
      timeoutMs: 60_000,
      intervalMs: 10,
      description: "never",
      signal: controller.signal,
    });
    controller.abort(new Error("the broker exited"));
    await expect(waiting).rejects.toThrow("the broker exited");
  });
});
