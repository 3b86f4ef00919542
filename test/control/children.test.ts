import { createChildren } from "@tern/control";
import { isProcessAlive, waitFor } from "@tern/devstack";
import { describe, expect, it } from "vitest";

// The long-lived container's child keeper with real processes: a child that keeps crashing is given up on (the entry
// then exits so ECS replaces the task), and a stop reaches a child in its restart delay as well as a running one.

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };
const node = (code: string) => ({ command: process.execPath, args: ["-e", code] });

describe("createChildren", () => {
  it("restarts a crashing child with backoff, then gives up after maxRestarts and says which one", async () => {
    const gaveUp: string[] = [];
    const children = createChildren({
      logger: quiet,
      restart: { initialDelayMs: 50, maxRestarts: 2 },
      onGiveUp: (name) => gaveUp.push(name),
    });
    try {
      await children.run({ name: "crasher", ...node("process.exit(3)") });
      await waitFor(() => gaveUp.length > 0, { timeoutMs: 20_000, description: "give-up" });
      expect(gaveUp).toEqual(["crasher"]);
      // Started once and restarted twice: the third crash within the window gives up.
      expect(children.status()).toEqual([{ name: "crasher", state: "failed", crashes: 3 }]);
    } finally {
      await children.stopAll(2_000);
    }
  });

  it("stops a child that waits for its restart and a live one (SIGTERM), and reports both stopped", async () => {
    const children = createChildren({ logger: quiet, restart: { initialDelayMs: 60_000 } });
    try {
      await children.run({ name: "once", ...node("process.exit(1)") });
      await children.run({ name: "steady", ...node("setInterval(() => {}, 1000)") });
      await waitFor(() => children.status().find((c) => c.name === "once")?.state === "backoff", {
        timeoutMs: 10_000,
        description: "the crashed child waiting for its restart",
      });
      const steady = children.status().find((c) => c.name === "steady")?.pid;
      expect(steady).toBeGreaterThan(0);
      await children.stop(["once", "steady"], 5_000);
      expect(children.status().map((c) => [c.name, c.state])).toEqual([
        ["once", "stopped"],
        ["steady", "stopped"],
      ]);
      expect(isProcessAlive(steady!)).toBe(false);
    } finally {
      await children.stopAll(2_000);
    }
  });
});
