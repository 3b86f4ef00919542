import net from "node:net";
import { REPLY_TO_HEADER } from "@tern/core";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { createDynamoDbReplyWriter } from "../../src/dynamodb-replies.js";
import { compile, elementwise, fp32, type Harness, startHarness, values, waitFor } from "./runner-harness.js";

// The reply put must never hold back or break the Kafka answer: here the DynamoDB client (the real SDK client) points
// at a port nobody listens on, so every put fails.

const harnesses: Harness[] = [];
afterEach(async () => {
  await Promise.all(harnesses.splice(0).map((h) => h.close()));
});

/** A loopback port that was free a moment ago and has no listener now. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe("the DynamoDB reply writer when DynamoDB cannot be reached", () => {
  it("the Kafka answer still goes out; the failed put is logged, not thrown", async () => {
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino(
      { level: "warn" },
      {
        write(line: string) {
          lines.push(JSON.parse(line) as Record<string, unknown>);
        },
      },
    );
    const replies = createDynamoDbReplyWriter({
      tableName: "tern-unreachable",
      region: "us-east-1",
      endpoint: `http://127.0.0.1:${await closedPort()}`,
      putTimeoutMs: 1_000,
      logger,
    });
    const plan = compile("add10-only", { steps: [{ name: "add10" }], output: { steps: ["add10"] } });
    const h = await startHarness(plan, { models: { add10: elementwise((v) => v + 10) }, replies });
    harnesses.push(h);
    await h.send("r", 1, [fp32("x", [1, 2])], { [REPLY_TO_HEADER]: "dynamodb" });
    const answer = await h.answer("r");
    expect(values(answer.outputs?.[0])).toEqual([11, 12]);
    const warned = await waitFor(
      () => lines.find((l) => l.requestId === "r" && String(l.msg).includes("could not be put")),
      "the failed put's warning",
      10_000,
    );
    expect(warned.pipeline).toBe("add10-only");
    expect(replies.inFlight()).toBe(0);
    await replies.close(1_000);
  });
});
