import type { RouteTable } from "@tern/core";
import { waitFor } from "@tern/devstack";
import { httpStatusForErrorRecord, type RunningGateway, startGateway } from "@tern/gateway";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DataflowStack, sampleManifest, startDataflowStack } from "../dataflow/dataflow-stack.js";
import { kafkaBrokers } from "../helpers/services.js";

// The Node gateway's pipeline front (issue 11, first part) on the real broker: the gateway process as users run it,
// with KAFKA_BROKERS, in front of one dataflow worker, one model gateway and one agent serving the sample models, with
// samples/manifests/pipelines.yaml applied. Requests go in over HTTP only; every expectation is computed here from the
// request (in float32 like the models), never recorded.

const f = Math.fround;
const REQUEST_MS = 30_000;

let stack: DataflowStack;

interface InferJson {
  id: string;
  model_name: string;
  outputs: Array<{ name: string; datatype: string; shape: number[]; data: number[] }>;
}

async function infer(
  pipeline: string,
  inputs: Array<{ name: string; rows: number[][] }>,
  options: { base?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; headers: Headers; json: unknown }> {
  const res = await fetch(`${options.base ?? stack.e2e.gateway.url}/v2/pipelines/${pipeline}/infer`, {
    method: "POST",
    headers: { "content-type": "application/json", ...options.headers },
    body: JSON.stringify({
      inputs: inputs.map(({ name, rows }) => ({
        name,
        datatype: "FP32",
        shape: [rows.length, rows[0]!.length],
        data: rows.flat(),
      })),
    }),
    signal: AbortSignal.timeout(REQUEST_MS + 5_000),
  });
  return { status: res.status, headers: res.headers, json: await res.json() };
}

function rows(json: unknown, name: string): number[][] {
  const out = (json as InferJson).outputs?.find((o) => o.name === name);
  if (!out) throw new Error(`no output ${name} in ${JSON.stringify(json)}`);
  const columns = out.shape[out.shape.length - 1]!;
  const result: number[][] = [];
  for (let i = 0; i < out.data.length; i += columns) result.push(out.data.slice(i, i + columns));
  return result;
}

const map = (r: number[][], fn: (v: number) => number) => r.map((row) => row.map((v) => f(fn(v))));

beforeAll(async () => {
  stack = await startDataflowStack({
    name: "pfront",
    workers: 1,
    replication: 1,
    gatewayEnv: { TERN_GATEWAY_PIPELINE_TIMEOUT_MS: String(REQUEST_MS) },
  });
  await stack.applyPipelines(sampleManifest("pipelines.yaml"));
}, 180_000);

afterAll(async () => {
  await stack?.close();
});

describe("POST /v2/pipelines/{p}/infer through the Node gateway over Kafka", () => {
  it("add-then-mul answers (x + 10) * 10; the caller's x-request-id comes back and its x-* headers ride the records, the gateway's own id is the answer's id", async () => {
    const x = [
      [1.5, -2, 0],
      [3, 4, -12.5],
    ];
    const res = await infer("add-then-mul", [{ name: "x", rows: x }], {
      headers: { "x-request-id": "caller-7", "x-tenant": "blue" },
    });
    expect(res.status, JSON.stringify(res.json)).toBe(200);
    expect(rows(res.json, "y")).toEqual(map(x, (v) => f(v + 10) * 10));
    expect(res.headers.get("x-request-id")).toBe("caller-7");
    const id = (res.json as InferJson).id;
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.headers.get("x-tern-request-id")).toBe(id);
    expect((res.json as InferJson).model_name).toBe("add-then-mul");
    // The caller's x-* headers went onto the request's record and the dataflow carried them to the answer's.
    const answer = await (await stack.client.outputs("add-then-mul")).answer(id, 15_000);
    expect(answer.record.headers).toMatchObject({ "x-request-id": "caller-7", "x-tenant": "blue" });
  });

  it("add-then-mul over REST binary tensors: FP32 bytes in, bytes out (binary_data_output, as tritonclient asks)", async () => {
    const x = Float32Array.from([0.5, -7, 1e3, 2.25]);
    const head = Buffer.from(
      JSON.stringify({
        inputs: [{ name: "x", datatype: "FP32", shape: [2, 2], parameters: { binary_data_size: x.byteLength } }],
        parameters: { binary_data_output: true },
      }),
    );
    const res = await fetch(`${stack.e2e.gateway.url}/v2/pipelines/add-then-mul/infer`, {
      method: "POST",
      headers: { "content-type": "application/octet-stream", "inference-header-content-length": String(head.length) },
      body: Buffer.concat([head, Buffer.from(x.buffer)]),
      signal: AbortSignal.timeout(REQUEST_MS + 5_000),
    });
    const body = new Uint8Array(await res.arrayBuffer());
    expect(res.status, Buffer.from(body).toString()).toBe(200);
    const n = Number(res.headers.get("inference-header-content-length"));
    const json = JSON.parse(Buffer.from(body.subarray(0, n)).toString()) as InferJson & {
      outputs: Array<{ parameters?: { binary_data_size?: number } }>;
    };
    expect(json.outputs).toEqual([
      { name: "y", datatype: "FP32", shape: [2, 2], parameters: { binary_data_size: x.byteLength } },
    ]);
    const y = new Float32Array(body.slice(n).buffer);
    expect(Array.from(y)).toEqual(Array.from(x, (v) => f(f(v + 10) * 10)));
  });

  it.each([
    ["positive", "add10", [[2, -1, 0.5]]],
    ["negative", "mul10", [[-2, 1, -0.5]]],
  ] as const)("choose-route: a %s sum takes the %s branch", async (_sign, taken, x) => {
    const input = x.map((r) => [...r]);
    const res = await infer("choose-route", [{ name: "x", rows: input }]);
    expect(res.status, JSON.stringify(res.json)).toBe(200);
    expect(rows(res.json, "y")).toEqual(map(input, (v) => (taken === "add10" ? v + 10 : v * 10)));
  });

  it("a step's error comes back with the step's status and message (sum-diff without b)", async () => {
    const res = await infer("sum-diff-pipeline", [{ name: "a", rows: [[1, 2]] }]);
    const { error } = res.json as { error: string };
    expect(error).toContain("pipeline sum-diff-pipeline: step sum-diff failed");
    // The status is the error record's own, as the worker wrote it: read that record off the outputs topic.
    const id = res.headers.get("x-tern-request-id");
    expect(id, JSON.stringify(res.json)).toBeTruthy();
    const record = await (await stack.client.outputs("sum-diff-pipeline")).answer(id!, 15_000);
    expect(record.ok).toBe(false);
    if (record.ok) return;
    expect(res.status).toBe(httpStatusForErrorRecord(record.status));
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(error).toBe(record.message);
  });

  it("404 for an unknown pipeline; 503 naming the state of a pipeline that is not ready", async () => {
    const missing = await infer("no-such-pipeline", [{ name: "x", rows: [[1]] }]);
    expect(missing.status).toBe(404);
    expect(missing.json).toEqual({ error: "pipeline no-such-pipeline not found" });

    // Its model does not exist, so the pipeline never becomes ready.
    await stack.e2e.apply(
      "apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata:\n  name: waits-for-model\nspec:\n  steps:\n    - name: no-such-model\n",
    );
    const notReady = await waitFor(
      async () => {
        const res = await infer("waits-for-model", [{ name: "x", rows: [[1]] }]);
        return res.status === 404 ? undefined : res;
      },
      { timeoutMs: 15_000, intervalMs: 100, description: "the gateway knowing pipeline waits-for-model" },
    );
    expect(notReady.status).toBe(503);
    expect((notReady.json as { error: string }).error).toMatch(
      /^pipeline waits-for-model is not ready \(state Pipeline\w+\)$/,
    );
  });

  it("GET /v2/pipelines/{p}/ready: 200 for a ready pipeline, 424 for one that is not, 404 for an unknown one", async () => {
    const base = stack.e2e.gateway.url;
    const ready = await fetch(`${base}/v2/pipelines/add-then-mul/ready`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ name: "add-then-mul", ready: true });
    // The pipeline of the test above, whose model does not exist.
    const waiting = await fetch(`${base}/v2/pipelines/waits-for-model/ready`);
    expect(waiting.status).toBe(424);
    expect(await waiting.json()).toMatchObject({ name: "waits-for-model", ready: false });
    expect((await fetch(`${base}/v2/pipelines/no-such-pipeline/ready`)).status).toBe(404);
  });

  it("GET /v2/pipelines/{p}: add-then-mul takes add10's inputs and answers mul10's outputs, as those models describe them", async () => {
    const base = stack.e2e.gateway.url;
    const model = async (name: string) =>
      (await (await fetch(`${base}/v2/models/${name}`)).json()) as { inputs: unknown[]; outputs: unknown[] };
    const [add10, mul10] = [await model("add10"), await model("mul10")];
    expect(add10.inputs.length, JSON.stringify(add10)).toBeGreaterThan(0);
    const res = await fetch(`${base}/v2/pipelines/add-then-mul`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      name: "add-then-mul",
      platform: "tern-pipeline",
      inputs: add10.inputs,
      outputs: mul10.outputs,
    });
  });

  it("200 concurrent requests with distinct inputs each get their own answer", async () => {
    const xs = Array.from({ length: 200 }, (_, i) => [i, -i / 4]);
    const answers = await Promise.all(xs.map((x) => infer("add-then-mul", [{ name: "x", rows: [x] }])));
    const statuses = answers.map((a) => a.status);
    expect(
      statuses.filter((s) => s !== 200),
      JSON.stringify(answers.find((a) => a.status !== 200)?.json),
    ).toEqual([]);
    expect(answers.map((a) => rows(a.json, "y"))).toEqual(xs.map((x) => map([x], (v) => f(v + 10) * 10)));
    expect(new Set(answers.map((a) => (a.json as InferJson).id)).size).toBe(200);
  });

  it("an experiment of two sample pipelines: add-then-mul's path split with choose-route, each answer the function of the pipeline its x-seldon-route names", async () => {
    const exp = `pexp${Date.now().toString(36)}`;
    await stack.e2e.apply(
      `apiVersion: mlops.seldon.io/v1alpha1\nkind: Experiment\nmetadata:\n  name: ${exp}\nspec:\n  resourceType: pipeline\n  default: add-then-mul\n  candidates:\n    - name: add-then-mul\n      weight: 50\n    - name: choose-route\n      weight: 50\n`,
    );
    try {
      await splitAddThenMul(exp);
    } finally {
      // The other tests want add-then-mul unsplit: gone from the scheduler's table before the next one starts.
      await fetch(`${stack.e2e.scheduler.url}/v1/experiments/${exp}`, { method: "DELETE" });
      await waitFor(
        async () => {
          const table = (await (await fetch(`${stack.e2e.scheduler.url}/v1/routes`)).json()) as RouteTable;
          return table.experiments[exp] === undefined;
        },
        { timeoutMs: 15_000, intervalMs: 100, description: `experiment ${exp} gone from the route table` },
      );
    }
  });

  async function splitAddThenMul(exp: string): Promise<void> {
    // add-then-mul: (x + 10) * 10; choose-route with a positive sum: x + 10.
    const expected = (route: string | null, x: number[]) =>
      route === ":choose-route.pipeline:" ? map([x], (v) => v + 10) : map([x], (v) => f(v + 10) * 10);
    // Until the experiment is active its default answers; pinned to choose-route, the answer says when it is.
    const pinned = await waitFor(
      async () => {
        const res = await infer("add-then-mul", [{ name: "x", rows: [[1, 2]] }], {
          headers: { "x-seldon-route": ":choose-route.pipeline:" },
        });
        return res.headers.get("x-seldon-route") === ":choose-route.pipeline:" ? res : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 200, description: `experiment ${exp} active in the gateway` },
    );
    expect(rows(pinned.json, "y")).toEqual(expected(":choose-route.pipeline:", [1, 2]));
    expect((pinned.json as InferJson).model_name).toBe("choose-route");

    // The experiment by its header on a model path.
    const byHeader = await fetch(`${stack.e2e.gateway.url}/v2/models/anything/infer`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "seldon-model": `${exp}.experiment`,
        "x-seldon-route": ":add-then-mul.pipeline:",
      },
      body: JSON.stringify({ inputs: [{ name: "x", datatype: "FP32", shape: [1, 2], data: [3, 4] }] }),
    });
    expect(byHeader.status).toBe(200);
    expect(byHeader.headers.get("x-seldon-route")).toBe(":add-then-mul.pipeline:");
    expect(rows(await byHeader.json(), "y")).toEqual(expected(":add-then-mul.pipeline:", [3, 4]));

    // Unpinned: drawn 50/50; each answer is its own pipeline's function of its own input.
    const xs = Array.from({ length: 24 }, (_, i) => [i + 1, 0.5]);
    const answers = await Promise.all(xs.map((x) => infer("add-then-mul", [{ name: "x", rows: [x] }])));
    const routesSeen = new Set<string | null>();
    answers.forEach((a, i) => {
      expect(a.status, JSON.stringify(a.json)).toBe(200);
      const route = a.headers.get("x-seldon-route");
      routesSeen.add(route);
      expect(rows(a.json, "y")).toEqual(expected(route, xs[i]!));
    });
    // Both candidates drew some of 24 requests (all on one side: probability 2^-23).
    expect([...routesSeen].sort()).toEqual([":add-then-mul.pipeline:", ":choose-route.pipeline:"]);
  }

  it("a deleted pipeline's outputs topic leaves the gateway's reply reader; the other pipelines keep answering", async () => {
    // An in-process gateway on the scheduler's watch, with one reader bucket, so both pipelines share one reader.
    const doomed = `doomed-${Date.now().toString(36)}`;
    let gateway: RunningGateway | undefined;
    try {
      gateway = await startGateway({
        port: 0,
        grpcPort: false,
        schedulerUrl: stack.e2e.scheduler.url,
        firstTableWaitMs: 15_000,
        logger: pino({ level: "silent" }),
        kafka: { brokers: kafkaBrokers(), partitions: stack.partitions, namespace: stack.namespace, readerBuckets: 1 },
      });
      await stack.applyPipelines(
        `apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata:\n  name: ${doomed}\nspec:\n  steps:\n    - name: add10\n`,
      );
      const base = gateway.url;
      const served = await waitFor(
        async () => {
          const res = await infer(doomed, [{ name: "x", rows: [[1, 2]] }], { base });
          return res.status === 404 ? undefined : res;
        },
        { timeoutMs: 15_000, intervalMs: 100, description: `the gateway knowing pipeline ${doomed}` },
      );
      expect(served.status, JSON.stringify(served.json)).toBe(200);
      expect(rows(served.json, "y")).toEqual([[11, 12]]);
      expect((await infer("add-then-mul", [{ name: "x", rows: [[1]] }], { base })).status).toBe(200);
      const front = gateway.pipelines!;
      expect(front.readers()[0]!.pipelines).toEqual(["add-then-mul", doomed].sort());

      const deleted = await fetch(`${stack.e2e.scheduler.url}/v1/pipelines/${doomed}`, { method: "DELETE" });
      expect(deleted.status).toBeLessThan(300);
      // While the reader restarts it reads nothing; then add-then-mul alone.
      await waitFor(() => (front.readers()[0]!.pipelines.join() === "add-then-mul" ? true : undefined), {
        timeoutMs: 30_000,
        intervalMs: 100,
        description: `the reply reader reading add-then-mul without ${doomed}`,
      });
      const after = await infer("add-then-mul", [{ name: "x", rows: [[3]] }], { base });
      expect(after.status, JSON.stringify(after.json)).toBe(200);
      expect(rows(after.json, "y")).toEqual([[130]]);
    } finally {
      await gateway?.close();
    }
  });

  it("a request on a stalled pipeline gets 504 naming its request id by its deadline", async () => {
    // A second gateway in this process, with a short pipeline deadline; the pipeline's only worker is stopped.
    let gateway: RunningGateway | undefined;
    const worker = [...stack.workers.values()][0]!;
    try {
      gateway = await startGateway({
        port: 0,
        grpcPort: false,
        schedulerUrl: stack.e2e.scheduler.url,
        // On a loaded machine the first table can take more than the default 3 s.
        firstTableWaitMs: 15_000,
        logger: pino({ level: "silent" }),
        // Long enough for the first request's reader to join its group on a loaded machine.
        config: { pipelineDeadlineMs: 6_000 },
        kafka: { brokers: kafkaBrokers(), partitions: stack.partitions, namespace: stack.namespace },
      });
      // Served first, so the reader already reads the topic and the stall is the only reason for no answer.
      const served = await infer("add-then-mul", [{ name: "x", rows: [[1]] }], { base: gateway.url });
      expect(served.status, JSON.stringify(served.json)).toBe(200);
      worker.kill("SIGSTOP");
      const res = await infer("add-then-mul", [{ name: "x", rows: [[2]] }], { base: gateway.url });
      expect(res.status).toBe(504);
      expect((res.json as { error: string }).error).toMatch(
        /^pipeline add-then-mul did not answer request id [0-9a-f-]{36} within \d+ ms$/,
      );
    } finally {
      worker.kill("SIGCONT");
      await gateway?.close();
    }
  });
});
