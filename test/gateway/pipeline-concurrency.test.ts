import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DataflowStack, pipelineNames, sampleManifest, startDataflowStack } from "../dataflow/dataflow-stack.js";

// Issue 11: 1,000 concurrent requests to one pipeline through the Node gateway process (KAFKA_BROKERS set), in front
// of a real dataflow worker, model gateway and agent on the real broker. Each request carries distinct inputs and a
// caller x-request-id of its own, so an answer that reached the wrong caller shows as a wrong result or a wrong echoed
// id. Expectations are computed from the inputs, in float32 like the models.

const f = Math.fround;
const REQUESTS = 1_000;
const PIPELINE_TIMEOUT_MS = 90_000;

let stack: DataflowStack;

beforeAll(async () => {
  stack = await startDataflowStack({
    name: "pconc",
    workers: 1,
    replication: 1,
    gatewayEnv: { TERN_GATEWAY_PIPELINE_TIMEOUT_MS: String(PIPELINE_TIMEOUT_MS) },
  });
  const addThenMul = sampleManifest("pipelines.yaml")
    .split(/^---\s*$/m)
    .filter((doc) => pipelineNames(doc)[0] === "add-then-mul")
    .join("\n");
  await stack.applyPipelines(addThenMul);
}, 180_000);

afterAll(async () => {
  await stack?.close();
});

interface Outcome {
  status: number;
  callerId: string | null;
  ternId: string | null;
  body: { id?: string; outputs?: Array<{ name: string; shape: number[]; data: number[] }>; error?: string };
}

/** One request; a transport failure or the client's own deadline is an outcome too (status 0), so counts stay whole. */
async function send(i: number, x: number[]): Promise<Outcome> {
  try {
    const res = await fetch(`${stack.e2e.gateway.url}/v2/pipelines/add-then-mul/infer`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-request-id": `caller-${i}` },
      body: JSON.stringify({ inputs: [{ name: "x", datatype: "FP32", shape: [1, x.length], data: x }] }),
      signal: AbortSignal.timeout(PIPELINE_TIMEOUT_MS + 10_000),
    });
    return {
      status: res.status,
      callerId: res.headers.get("x-request-id"),
      ternId: res.headers.get("x-tern-request-id"),
      body: (await res.json()) as Outcome["body"],
    };
  } catch (err) {
    return { status: 0, callerId: null, ternId: null, body: { error: `no answer: ${(err as Error).message}` } };
  }
}

describe("1,000 concurrent requests to one pipeline through the Node gateway", () => {
  it(
    "every caller gets the answer computed from its own inputs; none gets another's",
    async () => {
      // Distinct per request: i itself, a fraction that differs per i, and i's sign flipped.
      const inputs = Array.from({ length: REQUESTS }, (_, i) => [i, f(i / 7), -i]);
      const expected = inputs.map((x) => x.map((v) => f(f(v + 10) * 10)));
      const started = performance.now();
      const outcomes = await Promise.all(inputs.map((x, i) => send(i, x)));
      const seconds = (performance.now() - started) / 1000;

      const byStatus = new Map<number, number>();
      for (const o of outcomes) byStatus.set(o.status, (byStatus.get(o.status) ?? 0) + 1);
      const own = outcomes.filter((o, i) => {
        const y = o.body.outputs?.find((t) => t.name === "y");
        return (
          o.status === 200 &&
          o.callerId === `caller-${i}` &&
          JSON.stringify(y?.data) === JSON.stringify(expected[i]) &&
          JSON.stringify(y?.shape) === "[1,3]"
        );
      }).length;
      const ids = new Set(outcomes.map((o) => o.body.id));
      console.log(
        `pipeline-concurrency: ${REQUESTS} concurrent requests in ${seconds.toFixed(1)} s; status ${[...byStatus]
          .map(([s, n]) => `${s}: ${n}`)
          .join(
            ", ",
          )} (0: no answer); answered with the caller's own result: ${own}; distinct request ids: ${ids.size}`,
      );

      const firstWrong = outcomes.findIndex((o, i) => o.status !== 200 || o.callerId !== `caller-${i}`);
      if (firstWrong >= 0) {
        // The gateway logs why a request could not be sent; show the first few reasons with the failure.
        const reasons = stack
          .logs()
          .split("\n")
          .filter((line) => /could not be produced|reply reader/.test(line))
          .slice(0, 3);
        expect.fail(`caller ${firstWrong} got ${JSON.stringify(outcomes[firstWrong])}\n${reasons.join("\n")}`);
      }
      // Compared whole, so a mismatch prints which caller got what.
      expect(outcomes.map((o) => o.body.outputs?.find((t) => t.name === "y")?.data)).toEqual(expected);
      expect(own).toBe(REQUESTS);
      expect(ids.size).toBe(REQUESTS);
      expect(outcomes.every((o) => o.ternId === o.body.id)).toBe(true);
    },
    PIPELINE_TIMEOUT_MS + 60_000,
  );
});
