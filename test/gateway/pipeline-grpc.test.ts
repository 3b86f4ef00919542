import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import type { RouteTable } from "@tern/core";
import { waitFor } from "@tern/devstack";
import {
  grpcStatusForErrorRecord,
  httpStatusForErrorRecord,
  type PipelineMetadata,
  type PipelineTensorMetadata,
  type RunningGateway,
  startGateway,
} from "@tern/gateway";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DataflowStack, sampleManifest, startDataflowStack } from "../dataflow/dataflow-stack.js";
import { decodeTensors } from "../helpers/pipeline-kafka.js";
import { repoRoot } from "../helpers/platform-process.js";
import { pythonEnv, runPython } from "../helpers/python.js";
import { kafkaBrokers } from "../helpers/services.js";

// Pipelines over gRPC (issue 11): ModelInfer with `seldon-model: <p>.pipeline` on the gateway's gRPC port, the gateway
// process as users run it (KAFKA_BROKERS), in front of a real dataflow worker, model gateway and agent on the real
// broker, with samples/manifests/pipelines.yaml applied. Then an outside client, NVIDIA's tritonclient (Python), calls
// the same pipelines over REST and gRPC. Every expectation is computed here from the request, in float32 like the
// models.

const f = Math.fround;
const REQUEST_MS = 30_000;
const SCRIPT = fileURLToPath(new URL("./tritonclient_pipeline.py", import.meta.url));

interface WireTensor {
  name: string;
  datatype: string;
  shape: string[];
  contents?: { fp32_contents?: number[] };
}
interface InferResponse {
  model_name: string;
  id: string;
  outputs: WireTensor[];
  raw_output_contents: Buffer[];
}
type OipClient = grpc.Client & Record<string, (...args: unknown[]) => grpc.ClientUnaryCall>;

let stack: DataflowStack;
let client: OipClient;
let Service: new (address: string, credentials: grpc.ChannelCredentials) => OipClient;
let python: string;

beforeAll(async () => {
  const definition = await protoLoader.load(resolve(repoRoot, "packages/core/proto/oip.proto"), {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  Service = (
    grpc.loadPackageDefinition(definition) as unknown as { inference: { GRPCInferenceService: typeof Service } }
  ).inference.GRPCInferenceService;
  // The venv (a first install downloads from PyPI) is made while the stack starts.
  const [started, py] = await Promise.all([
    startDataflowStack({
      name: "pgrpc",
      workers: 1,
      replication: 1,
      gatewayEnv: { TERN_GATEWAY_PIPELINE_TIMEOUT_MS: String(REQUEST_MS) },
    }),
    pythonEnv("tritonclient"),
  ]);
  stack = started;
  python = py;
  await stack.applyPipelines(sampleManifest("pipelines.yaml"));
  client = new Service(stack.e2e.gateway.grpcAddress, grpc.credentials.createInsecure());
}, 900_000);

afterAll(async () => {
  client?.close();
  await stack?.close();
});

function call<T>(
  method: string,
  request: unknown,
  metadata: Record<string, string>,
  on: OipClient = client,
): Promise<{ value?: T; error?: grpc.ServiceError; headers?: grpc.Metadata }> {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(metadata)) md.set(k, v);
  return new Promise((done) => {
    let headers: grpc.Metadata | undefined;
    const c = on[method]!.call(
      on,
      request,
      md,
      { deadline: Date.now() + REQUEST_MS + 5_000 },
      (error: grpc.ServiceError | null, value: T) =>
        done({ ...(error ? { error } : { value }), ...(headers ? { headers } : {}) }),
    );
    c.on("metadata", (m: grpc.Metadata) => {
      headers = m;
    });
  });
}

const pipeline = (p: string) => ({ "seldon-model": `${p}.pipeline` });
const fp32 = (values: number[]) => Buffer.from(new Float32Array(values).buffer);
const fromFp32 = (b: Buffer) => [...new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength))];
const raw = (name: string, shape: number[], values: number[]) => ({
  inputs: [{ name, datatype: "FP32", shape }],
  raw_input_contents: [fp32(values)],
});

describe("gRPC ModelInfer to pipelines through the gateway's gRPC port and Kafka", () => {
  it("add-then-mul answers (x + 10) * 10 in raw contents; the caller's x-request-id comes back, the id is the gateway's", async () => {
    const x = [1.5, -2, 0, 3, 4, -12.5];
    const res = await call<InferResponse>(
      "ModelInfer",
      { model_name: "add-then-mul", ...raw("x", [2, 3], x) },
      {
        ...pipeline("add-then-mul"),
        "x-request-id": "grpc-caller-1",
        "x-tenant": "green",
      },
    );
    expect(res.error, stack.logs().slice(-4000)).toBeUndefined();
    const out = res.value!;
    expect(out.model_name).toBe("add-then-mul");
    expect(out.outputs).toEqual([expect.objectContaining({ name: "y", datatype: "FP32", shape: ["2", "3"] })]);
    expect(fromFp32(out.raw_output_contents[0]!)).toEqual(x.map((v) => f(f(v + 10) * 10)));
    expect(res.headers?.get("x-request-id")).toEqual(["grpc-caller-1"]);
    expect(out.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.headers?.get("x-tern-request-id")).toEqual([out.id]);
    // The caller's x-* metadata went onto the request's record and the dataflow carried it to the answer's.
    const answer = await (await stack.client.outputs("add-then-mul")).answer(out.id, 15_000);
    expect(answer.record.headers).toMatchObject({ "x-request-id": "grpc-caller-1", "x-tenant": "green" });
  });

  it("sum-diff-pipeline: two typed inputs in, sum and diff out as typed contents", async () => {
    const a = [1, 2.5, -3, 7];
    const b = [0.5, -4, 9, 7];
    const res = await call<InferResponse>(
      "ModelInfer",
      {
        inputs: [
          { name: "a", datatype: "FP32", shape: [2, 2], contents: { fp32_contents: a } },
          { name: "b", datatype: "FP32", shape: [2, 2], contents: { fp32_contents: b } },
        ],
      },
      pipeline("sum-diff-pipeline"),
    );
    expect(res.error).toBeUndefined();
    const byName = Object.fromEntries(res.value!.outputs.map((o) => [o.name, o.contents?.fp32_contents]));
    expect(byName).toEqual({ sum: a.map((v, i) => f(v + b[i]!)), diff: a.map((v, i) => f(v - b[i]!)) });
  });

  it("a step's error comes back with the step's status as the gRPC code, the one REST maps to its HTTP status", async () => {
    const res = await call("ModelInfer", raw("a", [1, 2], [1, 2]), pipeline("sum-diff-pipeline"));
    expect(res.error?.details).toContain("pipeline sum-diff-pipeline: step sum-diff failed");
    // The status is the error record's own, as the worker wrote it: read that record off the outputs topic.
    const id = res.headers?.get("x-tern-request-id")[0] as string;
    expect(id).toBeTruthy();
    const record = await (await stack.client.outputs("sum-diff-pipeline")).answer(id, 15_000);
    expect(record.ok).toBe(false);
    if (record.ok) return;
    expect(res.error?.code).toBe(grpcStatusForErrorRecord(record.status));
    expect(grpc.status[res.error!.code]).toBe(record.status);
    expect(res.error?.details).toBe(record.message);
    // The same request over REST gets the HTTP status of that gRPC status.
    const rest = await fetch(`${stack.e2e.gateway.url}/v2/pipelines/sum-diff-pipeline/infer`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ inputs: [{ name: "a", datatype: "FP32", shape: [1, 2], data: [1, 2] }] }),
    });
    expect(rest.status).toBe(httpStatusForErrorRecord(record.status));
  });

  it("NOT_FOUND for an unknown pipeline; ModelReady says a served pipeline is ready", async () => {
    const missing = await call("ModelInfer", raw("x", [1], [1]), pipeline("no-such-pipeline"));
    expect(missing.error?.code).toBe(grpc.status.NOT_FOUND);
    expect(missing.error?.details).toBe("pipeline no-such-pipeline not found");
    const ready = await call<{ ready: boolean }>("ModelReady", { name: "add-then-mul" }, pipeline("add-then-mul"));
    expect(ready.value).toEqual({ ready: true });
  });

  it("DEADLINE_EXCEEDED naming the request id when the pipeline's worker stalls", async () => {
    // A second gateway in this process with a short pipeline deadline; the pipeline's only worker is stopped.
    let gateway: RunningGateway | undefined;
    let own: OipClient | undefined;
    const worker = [...stack.workers.values()][0]!;
    try {
      gateway = await startGateway({
        port: 0,
        grpcPort: 0,
        schedulerUrl: stack.e2e.scheduler.url,
        logger: pino({ level: "silent" }),
        config: { pipelineDeadlineMs: 2_000 },
        kafka: { brokers: kafkaBrokers(), partitions: stack.partitions, namespace: stack.namespace },
      });
      own = new Service(gateway.grpcAddress!, grpc.credentials.createInsecure());
      // Served first, so the reader already reads the topic and the stall is the only reason for no answer. The first
      // request starts the reader (a group join), which may itself outlast 2 s on a loaded machine: ask until served.
      await waitFor(
        async () => (await call("ModelInfer", raw("x", [1, 1], [1]), pipeline("add-then-mul"), own)).value,
        { timeoutMs: 60_000, intervalMs: 100, description: "a first answer through the second gateway" },
      );
      worker.kill("SIGSTOP");
      const res = await call("ModelInfer", raw("x", [1, 1], [2]), pipeline("add-then-mul"), own);
      expect(res.error?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
      expect(res.error?.details).toMatch(
        /^pipeline add-then-mul did not answer request id [0-9a-f-]{36} within \d+ ms$/,
      );
      expect(res.error?.details).toContain(res.headers?.get("x-tern-request-id")[0] as string);
    } finally {
      worker.kill("SIGCONT");
      own?.close();
      await gateway?.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The outside client

interface TritonAnswer {
  error?: { status: string; message: string };
  model_name?: string;
  id?: string;
  outputs?: Record<string, { datatype: string; shape: number[]; data: number[] }>;
  binary_outputs?: string[];
}

async function tritonclient(
  pipelineName: string,
  inputs: Array<{ name: string; shape: number[]; data: number[] }>,
  outputs: string[],
): Promise<{ rest: TritonAnswer; rest_json: TritonAnswer; grpc: TritonAnswer }> {
  const [, httpPort] = /:(\d+)$/.exec(stack.e2e.gateway.url)!;
  const request = {
    http: `127.0.0.1:${httpPort}`,
    grpc: stack.e2e.gateway.grpcAddress,
    pipeline: pipelineName,
    request_id: `triton-${pipelineName}`,
    inputs: inputs.map((t) => ({ ...t, datatype: "FP32" })),
    outputs,
  };
  const out = await runPython(python, [SCRIPT], JSON.stringify(request), REQUEST_MS * 3);
  return JSON.parse(out) as { rest: TritonAnswer; rest_json: TritonAnswer; grpc: TritonAnswer };
}

describe("NVIDIA tritonclient (HTTP with binary tensors and with JSON, gRPC) calling pipelines through the gateway", () => {
  it("add-then-mul: every client gets y = (x + 10) * 10 with x's shape", async () => {
    const x = [0.5, -1, 2, 30, -40, 7.25];
    const {
      rest,
      rest_json: restJson,
      grpc: overGrpc,
    } = await tritonclient("add-then-mul", [{ name: "x", shape: [3, 2], data: x }], ["y"]);
    const expected = { datatype: "float32", shape: [3, 2], data: x.map((v) => f(f(v + 10) * 10)) };
    for (const answer of [rest, restJson, overGrpc]) {
      expect(answer.error, JSON.stringify(answer)).toBeUndefined();
      expect(answer.outputs).toEqual({ y: expected });
      expect(answer.model_name).toBe("add-then-mul");
      expect(answer.id).toMatch(/^[0-9a-f-]{36}$/);
    }
    // tritonclient's HTTP client as it comes asks for binary outputs; with binary_data=False it gets JSON.
    expect(rest.binary_outputs).toEqual(["y"]);
    expect(restJson.binary_outputs).toEqual([]);
  });

  it("sum-diff-pipeline: every client gets sum and diff of two inputs", async () => {
    const a = [1, -2.5, 3];
    const b = [10, 0.25, -3];
    const {
      rest,
      rest_json: restJson,
      grpc: overGrpc,
    } = await tritonclient(
      "sum-diff-pipeline",
      [
        { name: "a", shape: [1, 3], data: a },
        { name: "b", shape: [1, 3], data: b },
      ],
      ["sum", "diff"],
    );
    for (const answer of [rest, restJson, overGrpc]) {
      expect(answer.error, JSON.stringify(answer)).toBeUndefined();
      expect(answer.outputs).toEqual({
        sum: { datatype: "float32", shape: [1, 3], data: a.map((v, i) => f(v + b[i]!)) },
        diff: { datatype: "float32", shape: [1, 3], data: a.map((v, i) => f(v - b[i]!)) },
      });
    }
    expect(rest.binary_outputs).toEqual(["diff", "sum"]);
    expect(restJson.binary_outputs).toEqual([]);
  });

  it("an unknown pipeline is an error for every client (HTTP 404, gRPC NOT_FOUND)", async () => {
    const {
      rest,
      rest_json: restJson,
      grpc: overGrpc,
    } = await tritonclient("no-such-pipeline", [{ name: "x", shape: [1], data: [1] }], ["y"]);
    for (const answer of [rest, restJson]) {
      expect(answer.error).toEqual({ status: "404", message: "pipeline no-such-pipeline not found" });
    }
    expect(overGrpc.error).toEqual({ status: "StatusCode.NOT_FOUND", message: "pipeline no-such-pipeline not found" });
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Experiments of pipelines and pipeline metadata over gRPC. Last in the file: the experiment takes over add-then-mul's
// name while it lives, and is gone from the route table before the test ends.

describe("gRPC to an experiment of pipelines, and ModelMetadata of a pipeline, through the gateway's gRPC port", () => {
  it("weights 50/50 give both candidates, x-seldon-route pins one, the default's name is taken over, the mirror gets every copy", async () => {
    const exp = `gexp${Date.now().toString(36)}`;
    const tag = `mirror-${exp}`;
    const mirrorInputs = await stack.client.watch([stack.client.topics.pipelineInputs("batch-mul")]);
    const mirrorOutputs = await stack.client.outputs("batch-mul");
    await stack.e2e.apply(
      `apiVersion: mlops.seldon.io/v1alpha1\nkind: Experiment\nmetadata:\n  name: ${exp}\nspec:\n  resourceType: pipeline\n  default: add-then-mul\n  candidates:\n    - name: add-then-mul\n      weight: 50\n    - name: choose-route\n      weight: 50\n  mirror:\n    name: batch-mul\n    percent: 100\n`,
    );
    try {
      // add-then-mul: (x + 10) * 10; choose-route, for a positive sum: x + 10; the mirror batch-mul: x * 10.
      const expected = (route: string | undefined, x: number[]) =>
        route === ":choose-route.pipeline:" ? x.map((v) => f(v + 10)) : x.map((v) => f(f(v + 10) * 10));
      const send = (x: number[], metadata: Record<string, string>) =>
        call<InferResponse>("ModelInfer", raw("x", [1, x.length], x), metadata);
      const seen = (res: Awaited<ReturnType<typeof send>>, x: number[]) => {
        expect(res.error, stack.logs().slice(-4000)).toBeUndefined();
        const route = res.headers?.get("x-seldon-route")[0] as string | undefined;
        expect(fromFp32(res.value!.raw_output_contents[0]!)).toEqual(expected(route, x));
        expect(res.value!.model_name).toBe(route?.slice(1, -".pipeline:".length));
        return route;
      };
      // Until the gateway has the experiment active the default answers; pinned to choose-route, the route says when.
      await waitFor(
        async () => {
          const res = await send([1, 2], {
            "seldon-model": `${exp}.experiment`,
            "x-seldon-route": ":choose-route.pipeline:",
          });
          return res.headers?.get("x-seldon-route")[0] === ":choose-route.pipeline:" ? res : undefined;
        },
        { timeoutMs: 30_000, intervalMs: 200, description: `experiment ${exp} active in the gateway` },
      );
      const ready = await call<{ ready: boolean }>("ModelReady", { name: "" }, { "seldon-model": `${exp}.experiment` });
      expect(ready.value).toEqual({ ready: true });

      // Each request's x is distinct (its first value), so every mirror copy can be matched to its request.
      let next = 1;
      const input = () => [next++, 0.5];
      const sent: number[][] = [];
      const through = async (metadata: Record<string, string>) => {
        const x = input();
        sent.push(x);
        return seen(await send(x, { ...metadata, "x-mirror-tag": tag }), x);
      };
      // Unpinned: drawn 50/50 (all 24 on one side: probability 2^-23).
      const drawn = await Promise.all(
        Array.from({ length: 24 }, () => through({ "seldon-model": `${exp}.experiment` })),
      );
      expect([...new Set(drawn)].sort()).toEqual([":add-then-mul.pipeline:", ":choose-route.pipeline:"]);
      // Pinned by the route an answer carried: every call goes there.
      for (const pin of [":choose-route.pipeline:", ":add-then-mul.pipeline:"]) {
        const pinned = await Promise.all(
          Array.from({ length: 4 }, () => through({ "seldon-model": `${exp}.experiment`, "x-seldon-route": pin })),
        );
        expect(pinned).toEqual(Array(4).fill(pin));
      }
      // add-then-mul by its own name is the experiment's: pinned to the other candidate, that one answers.
      expect(await through({ ...pipeline("add-then-mul"), "x-seldon-route": ":choose-route.pipeline:" })).toBe(
        ":choose-route.pipeline:",
      );

      // The mirror pipeline got a copy of every one of those requests, with its x-* metadata, and answered it.
      const copies = await waitFor(
        () => {
          const mine = mirrorInputs.all().filter((r) => r.headers["x-mirror-tag"] === tag);
          return mine.length >= sent.length ? mine : undefined;
        },
        { timeoutMs: 30_000, intervalMs: 100, description: `${sent.length} mirror copies on batch-mul's inputs` },
      );
      const byFirst = (rows: number[][]) => [...rows].sort((a, b) => a[0]! - b[0]!);
      const copied = copies.map((r) => {
        const [x] = decodeTensors(r);
        return [...(x!.data as Float32Array)];
      });
      expect(byFirst(copied)).toEqual(byFirst(sent));
      for (const r of copies) {
        const answer = await mirrorOutputs.answer(r.parsedKey!.requestId, 15_000);
        expect(answer.ok).toBe(true);
        if (!answer.ok) continue;
        const x = decodeTensors(r)[0]!.data as Float32Array;
        expect([...(answer.tensors[0]!.data as Float32Array)]).toEqual([...x].map((v) => f(v * 10)));
      }
    } finally {
      // The tritonclient tests above ran first; any later test wants add-then-mul unsplit.
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

  it("ModelMetadata of a pipeline answers what GET /v2/pipelines/{p} answers, from the sample models' own metadata", async () => {
    for (const name of ["add-then-mul", "sum-diff-pipeline"]) {
      const rest = await fetch(`${stack.e2e.gateway.url}/v2/pipelines/${name}`);
      expect(rest.status).toBe(200);
      const json = (await rest.json()) as PipelineMetadata;
      const res = await call("ModelMetadata", { name: "" }, pipeline(name));
      expect(res.error).toBeUndefined();
      // proto-loader decodes int64 as strings; an absent datatype or shape is empty on the wire.
      const tensor = (t: PipelineTensorMetadata) => ({
        name: t.name,
        datatype: t.datatype ?? "",
        shape: (t.shape ?? []).map(String),
      });
      expect(res.value).toEqual({
        name,
        versions: [],
        platform: "tern-pipeline",
        inputs: json.inputs.map(tensor),
        outputs: json.outputs.map(tensor),
      });
    }
    // The pipelines' interfaces, by their specs: add-then-mul takes x and answers y; sum-diff takes a, b, answers sum, diff.
    const names = async (p: string) => {
      const v = (
        await call<{ inputs: PipelineTensorMetadata[]; outputs: PipelineTensorMetadata[] }>(
          "ModelMetadata",
          {},
          pipeline(p),
        )
      ).value!;
      return { inputs: v.inputs.map((t) => t.name), outputs: v.outputs.map((t) => t.name) };
    };
    expect(await names("add-then-mul")).toEqual({ inputs: ["x"], outputs: ["y"] });
    expect(await names("sum-diff-pipeline")).toEqual({ inputs: ["a", "b"], outputs: ["sum", "diff"] });
    const missing = await call("ModelMetadata", {}, pipeline("no-such-pipeline"));
    expect(missing.error?.code).toBe(grpc.status.NOT_FOUND);
  });
});
