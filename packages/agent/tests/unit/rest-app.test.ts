import http from "node:http";
import type { AddressInfo } from "node:net";
import { type ServerType, serve } from "@hono/node-server";
import { encodeTensorData, REPLICA_MISS_HEADER } from "@tern/core";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAgentApp } from "../../src/http/app.js";
import { createTestStack, IRIS_ROWS, sampleUri } from "./helpers.js";

const stack = createTestStack({ maxBodyBytes: 64 * 1024 });
const { app } = stack;

const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  app.request(path, {
    method: "POST",
    body: typeof body === "string" || body instanceof Uint8Array ? body : JSON.stringify(body),
    headers: { "content-type": "application/json", ...headers },
  });

const irisBody = (rows = IRIS_ROWS) => ({
  id: "req-1",
  inputs: [{ name: "predict", shape: [rows.length, 4], datatype: "FP32", data: rows.map((r) => r.features) }],
});

/** JSON text `[[[…[1]…]]]`, `depth` levels deep (JSON.stringify itself cannot write such a value). */
const deepArray = (depth: number) => `${"[".repeat(depth)}1${"]".repeat(depth)}`;
/** JSON text `{"a":{"a":…1…}}`, `depth` levels deep. */
const deepObject = (depth: number) => `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`;

/** Builds a binary-extension body: JSON header followed by raw tensors. */
function binaryBody(json: unknown, parts: Uint8Array[]): { body: Uint8Array; headerLength: number } {
  const head = new TextEncoder().encode(JSON.stringify(json));
  const body = new Uint8Array(head.length + parts.reduce((a, p) => a + p.length, 0));
  body.set(head);
  let o = head.length;
  for (const p of parts) {
    body.set(p, o);
    o += p.length;
  }
  return { body, headerLength: head.length };
}

/** The values of whole series names (`name{labels}`) on /metrics; 0 for a series not written yet. */
async function metricValues(series: string[]): Promise<number[]> {
  const lines = (await (await app.request("/metrics")).text()).split("\n");
  return series.map((s) => {
    const line = lines.find((l) => l.startsWith(`${s} `));
    return line === undefined ? 0 : Number(line.slice(s.length + 1));
  });
}

beforeAll(async () => {
  for (const m of ["iris", "sum-diff"]) {
    const r = await stack.models.load({ model: m, version: 1, storageUri: sampleUri(m) });
    expect(r.state).toBe("Available");
  }
  const r = await stack.models.load({
    model: "choose",
    version: 1,
    storageUri: sampleUri("choose"),
    parameters: [{ name: "drop_empty_outputs", value: "true" }],
  });
  expect(r.state).toBe("Available");
});

describe("OIP REST", () => {
  it("answers health, server metadata, model metadata and readiness", async () => {
    expect(await (await app.request("/v2/health/live")).json()).toEqual({ live: true });
    expect((await app.request("/v2/health/ready")).status).toBe(200);
    expect(await (await app.request("/v2")).json()).toMatchObject({
      name: "mlserver",
      extensions: ["binary_tensor_data"],
    });
    const meta = await (await app.request("/v2/models/iris")).json();
    expect(meta).toMatchObject({
      name: "iris",
      versions: ["1"],
      platform: "onnxruntime",
      inputs: [{ name: "predict", datatype: "FP32", shape: [-1, 4] }],
    });
    expect((await app.request("/v2/models/iris/versions/1")).status).toBe(200);
    expect((await app.request("/v2/models/iris/ready")).status).toBe(200);
    expect((await app.request("/v2/models/iris/versions/1/ready")).status).toBe(200);
    expect((await app.request("/v2/models/nope/ready")).status).toBe(404);
  });

  it("predicts known iris rows (nested data), echoing the id", async () => {
    const res = await post("/v2/models/iris/infer", irisBody());
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      id: string;
      model_name: string;
      outputs: Array<{ name: string; data: number[] }>;
    };
    expect(body.id).toBe("req-1");
    expect(body.model_name).toBe("iris");
    expect(body.outputs.find((o) => o.name === "label")!.data).toEqual(IRIS_ROWS.map((r) => r.label));
  });

  it("accepts flat data, a version path and an output selection", async () => {
    const res = await post("/v2/models/iris/versions/1/infer", {
      inputs: [{ name: "predict", shape: [1, 4], datatype: "FP32", data: IRIS_ROWS[4]!.features }],
      outputs: [{ name: "label" }],
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { outputs: Array<{ name: string; shape: number[]; data: number[] }> };
    expect(body.outputs).toEqual([{ name: "label", datatype: "INT64", shape: [1], data: [2] }]);
  });

  it("round-trips the binary-tensor extension (binary input, binary output)", async () => {
    const features = Float32Array.from(IRIS_ROWS.flatMap((r) => r.features));
    const raw = encodeTensorData("FP32", features);
    const { body, headerLength } = binaryBody(
      {
        inputs: [
          {
            name: "predict",
            shape: [IRIS_ROWS.length, 4],
            datatype: "FP32",
            parameters: { binary_data_size: raw.length },
          },
        ],
        parameters: { binary_data_output: true },
      },
      [raw],
    );
    const res = await post("/v2/models/iris/infer", body, {
      "content-type": "application/octet-stream",
      "inference-header-content-length": String(headerLength),
    });
    expect(res.status).toBe(200);
    const jsonLength = Number(res.headers.get("inference-header-content-length"));
    const bytes = new Uint8Array(await res.arrayBuffer());
    const head = JSON.parse(new TextDecoder().decode(bytes.subarray(0, jsonLength))) as {
      outputs: Array<{ name: string; parameters: { binary_data_size: number }; data?: unknown }>;
    };
    const [probs, label] = head.outputs;
    expect(probs!.data).toBeUndefined();
    expect(probs!.parameters.binary_data_size).toBe(IRIS_ROWS.length * 3 * 4);
    const labelStart = jsonLength + probs!.parameters.binary_data_size;
    const labels = new BigInt64Array(bytes.slice(labelStart, labelStart + label!.parameters.binary_data_size).buffer);
    expect(Array.from(labels, Number)).toEqual(IRIS_ROWS.map((r) => r.label));
  });

  it("sends only the outputs marked binary_data in binary", async () => {
    const res = await post("/v2/models/iris/infer", {
      ...irisBody(IRIS_ROWS.slice(0, 1)),
      outputs: [{ name: "label", parameters: { binary_data: true } }, { name: "probabilities" }],
    });
    const jsonLength = Number(res.headers.get("inference-header-content-length"));
    const bytes = new Uint8Array(await res.arrayBuffer());
    const head = JSON.parse(new TextDecoder().decode(bytes.subarray(0, jsonLength)));
    expect(head.outputs[0]).toMatchObject({ name: "label", parameters: { binary_data_size: 8 } });
    expect(head.outputs[1].data).toHaveLength(3);
    expect(bytes.length - jsonLength).toBe(8);
  });

  it("drops the empty output of choose when the model has drop_empty_outputs=true", async () => {
    const pos = await (
      await post("/v2/models/choose/infer", { inputs: [{ name: "x", shape: [1, 2], datatype: "FP32", data: [1, 2] }] })
    ).json();
    expect((pos as { outputs: Array<{ name: string }> }).outputs.map((o: { name: string }) => o.name)).toEqual([
      "positive",
    ]);
    const neg = await (
      await post("/v2/models/choose/infer", {
        inputs: [{ name: "x", shape: [1, 2], datatype: "FP32", data: [-1, -2] }],
      })
    ).json();
    expect((neg as { outputs: unknown }).outputs).toEqual([
      { name: "negative", datatype: "FP32", shape: [1, 2], data: [-1, -2] },
    ]);
  });

  const good = { name: "predict", shape: [1, 4], datatype: "FP32", data: [5.1, 3.5, 1.4, 0.2] };
  const badCases: Array<{
    what: string;
    path?: string;
    body: unknown;
    headers?: Record<string, string>;
    status: number;
    message: RegExp;
  }> = [
    { what: "malformed JSON", body: "{not json", status: 400, message: /malformed JSON body/ },
    { what: "a JSON array body", body: [1, 2], status: 400, message: /JSON object with an "inputs" array/ },
    { what: "no inputs", body: { inputs: [] }, status: 400, message: /"inputs" must be a non-empty array/ },
    { what: "inputs not an array", body: { inputs: "x" }, status: 400, message: /"inputs" must be a non-empty array/ },
    {
      what: "input without a name",
      body: { inputs: [{ ...good, name: undefined }] },
      status: 400,
      message: /inputs\[0\]: "name"/,
    },
    {
      what: "unknown input name",
      body: { inputs: [{ ...good, name: "features" }] },
      status: 400,
      message: /unknown input "features" for model iris \(its inputs: predict\)/,
    },
    {
      what: "missing input",
      path: "/v2/models/sum-diff/infer",
      body: { inputs: [{ name: "a", shape: [1, 1], datatype: "FP32", data: [1] }] },
      status: 400,
      message: /missing input "b" for model sum-diff/,
    },
    {
      what: "duplicate input",
      body: { inputs: [good, good] },
      status: 400,
      message: /input "predict" is given more than once/,
    },
    {
      what: "wrong datatype",
      body: { inputs: [{ ...good, datatype: "FP64" }] },
      status: 400,
      message: /input "predict": datatype FP64 does not match the model's FP32/,
    },
    {
      what: "unknown datatype",
      body: { inputs: [{ ...good, datatype: "FLOAT" }] },
      status: 400,
      message: /input "predict": datatype "FLOAT" is not an OIP datatype/,
    },
    {
      what: "wrong rank",
      body: { inputs: [{ ...good, shape: [4] }] },
      status: 400,
      message: /input "predict": shape \[4\] has rank 1, the model expects rank 2/,
    },
    {
      what: "wrong fixed dimension",
      body: { inputs: [{ ...good, shape: [1, 5], data: [1, 2, 3, 4, 5] }] },
      status: 400,
      message: /input "predict": shape \[1,5\] does not match the model's \[-1,4\] at dimension 1 \(5 ≠ 4\)/,
    },
    {
      what: "negative shape",
      body: { inputs: [{ ...good, shape: [-1, 4] }] },
      status: 400,
      message: /input "predict": shape \[-1,4\] must hold non-negative integers/,
    },
    {
      what: "shape not an array",
      body: { inputs: [{ ...good, shape: "1x4" }] },
      status: 400,
      message: /input "predict": "shape" must be an array/,
    },
    {
      what: "data shorter than the shape",
      body: { inputs: [{ ...good, shape: [2, 4] }] },
      status: 400,
      message: /input "predict": data has 4 elements but shape \[2,4\] needs 8/,
    },
    {
      what: "non-numeric data",
      body: { inputs: [{ ...good, data: [5.1, "wide", 1.4, 0.2] }] },
      status: 400,
      message: /input "predict": element 1 is "wide", expected a number for datatype FP32/,
    },
    {
      what: "missing data",
      body: { inputs: [{ ...good, data: undefined }] },
      status: 400,
      message: /input "predict": "data" is missing/,
    },
    {
      what: "unknown requested output",
      body: { inputs: [good], outputs: [{ name: "score" }] },
      status: 400,
      message: /unknown output "score" requested from model iris \(its outputs: probabilities, label\)/,
    },
    { what: "non-string id", body: { id: 7, inputs: [good] }, status: 400, message: /"id" must be a string/ },
    {
      what: "bad parameters",
      body: { inputs: [good], parameters: [1] },
      status: 400,
      message: /request: "parameters" must be an object/,
    },
    {
      what: "unknown model",
      path: "/v2/models/nope/infer",
      body: { inputs: [good] },
      status: 404,
      message: /model nope is not loaded on this server replica/,
    },
    {
      what: "unknown version",
      path: "/v2/models/iris/versions/9/infer",
      body: { inputs: [good] },
      status: 404,
      message: /model iris has no version 9 here \(loaded: 1\)/,
    },
    {
      what: "binary header longer than the body",
      body: JSON.stringify({ inputs: [good] }),
      headers: { "inference-header-content-length": "99999" },
      status: 400,
      message: /Inference-Header-Content-Length is 99999 but the body has only \d+ bytes/,
    },
    {
      what: "binary header not a number",
      body: JSON.stringify({ inputs: [good] }),
      headers: { "inference-header-content-length": "ten" },
      status: 400,
      message: /Inference-Header-Content-Length must be a byte count, got "ten"/,
    },
    {
      what: "binary_data_size without a binary part",
      body: { inputs: [{ ...good, data: undefined, parameters: { binary_data_size: 16 } }] },
      status: 400,
      message: /binary_data_size is set but the request has no binary part/,
    },
    {
      what: "body over the size limit",
      body: JSON.stringify({ inputs: [{ ...good, data: new Array(20000).fill(1.5) }] }),
      status: 413,
      message: /request body is larger than the limit of 65536 bytes/,
    },
    {
      what: "data nested deeper than the limit",
      body: `{"inputs":[{"name":"predict","shape":[1],"datatype":"FP32","data":${"[".repeat(40)}1${"]".repeat(40)}}]}`,
      status: 400,
      message: /input "predict": "data" is nested more than 32 levels deep \(the limit\)/,
    },
    {
      what: "a shape holding a nested array",
      body: `{"inputs":[{"name":"predict","datatype":"FP32","data":[1,2,3,4],"shape":[1,${deepArray(20_000)}]}]}`,
      status: 400,
      message: /input "predict": shape must hold non-negative integers \(dimension 1 is an array\)/,
    },
    {
      what: "a datatype that is a deep array",
      body: `{"inputs":[{"name":"predict","shape":[1,4],"data":[1,2,3,4],"datatype":${deepArray(20_000)}}]}`,
      status: 400,
      message: /input "predict": datatype an array is not an OIP datatype/,
    },
    {
      what: "a data element that is a deep object",
      body: `{"inputs":[{"name":"predict","shape":[1,4],"datatype":"FP32","data":[${deepObject(5000)},1,2,3]}]}`,
      status: 400,
      message: /input "predict": element 0 is an object, expected a number for datatype FP32/,
    },
    {
      what: "FP32 1e400 (Infinity once parsed)",
      body: '{"inputs":[{"name":"predict","shape":[1,4],"datatype":"FP32","data":[5.1,1e400,1.4,0.2]}]}',
      status: 400,
      message:
        /input "predict": element 1 is Infinity, expected a finite number within ±3.4028234663852886e\+38 for datatype FP32/,
    },
    {
      what: "FP32 beyond the float range (1e39)",
      body: { inputs: [{ ...good, data: [5.1, 3.5, -1e39, 0.2] }] },
      status: 400,
      message: /input "predict": element 2 is -1e\+39, expected a finite number within ±3.4028234663852886e\+38/,
    },
    {
      what: "FP16 beyond the half range",
      body: { inputs: [{ name: "h", shape: [2], datatype: "FP16", data: [1, 70000] }] },
      status: 400,
      message: /input "h": element 1 is 70000, expected a finite number within ±65504 for datatype FP16/,
    },
    {
      what: "FP64 1e400",
      body: '{"inputs":[{"name":"d","shape":[1],"datatype":"FP64","data":[-1e400]}]}',
      status: 400,
      message: /input "d": element 0 is -Infinity, expected a finite number within ±1.7976931348623157e\+308/,
    },
    {
      what: "INT64 1e300",
      body: { inputs: [{ name: "n", shape: [2], datatype: "INT64", data: [1, 1e300] }] },
      status: 400,
      message:
        /input "n": element 1 is 1e\+300, expected an integer in \[-9223372036854775808, 9223372036854775807\] for datatype INT64/,
    },
    {
      what: "INT64 2^63",
      body: { inputs: [{ name: "n", shape: [1], datatype: "INT64", data: [2 ** 63] }] },
      status: 400,
      message:
        /input "n": element 0 is 9223372036854776000, expected an integer in \[-9223372036854775808, 9223372036854775807\]/,
    },
    {
      what: "UINT64 2^64",
      body: { inputs: [{ name: "n", shape: [1], datatype: "UINT64", data: [2 ** 64] }] },
      status: 400,
      message: /input "n": element 0 is 18446744073709552000, expected an integer in \[0, 18446744073709551615\]/,
    },
    {
      what: "INT8 out of range",
      body: { inputs: [{ name: "n", shape: [3], datatype: "INT8", data: [0, 127, 128] }] },
      status: 400,
      message: /input "n": element 2 is 128, expected an integer in \[-128, 127\] for datatype INT8/,
    },
    {
      what: "unknown route",
      path: "/v2/models/iris/predict",
      body: { inputs: [good] },
      status: 404,
      message: /no route POST \/v2\/models\/iris\/predict/,
    },
  ];

  it.each(badCases)(
    "rejects $what with $status and a clear message",
    async ({ path, body, headers, status, message }) => {
      const res = await post(path ?? "/v2/models/iris/infer", body, headers);
      expect(res.status).toBe(status);
      const json = (await res.json()) as { error: string };
      expect(json.error).toMatch(message);
      expect(json.error).not.toMatch(/\n\s+at /); // never a stack trace
      // ...and keeps serving afterwards.
      expect((await post("/v2/models/iris/infer", irisBody())).status).toBe(200);
    },
  );

  it("answers a 40 KB body nesting data 20,000 levels deep with 400 naming the limit, logging no error", async () => {
    const lines: string[] = [];
    const logger = pino({ level: "debug" }, { write: (line: string) => void lines.push(line) });
    const logged = createAgentApp({ service: stack.service, metrics: stack.metrics, logger });
    const body = `{"inputs":[{"name":"predict","shape":[1,4],"datatype":"FP32","data":${deepArray(20_000)}}]}`;
    expect(body.length).toBeGreaterThan(40_000);
    const res = await logged.request("/v2/models/iris/infer", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toBe(
      'input "predict": "data" is nested more than 32 levels deep (the limit); send it flat in row-major order',
    );
    // A client's mistake is not the server's: nothing at warn or above (at most a debug line).
    const levels = lines.map((l) => (JSON.parse(l) as { level: number }).level);
    expect(levels.filter((level) => level >= 40)).toEqual([]);
    expect(levels.length).toBeLessThanOrEqual(1);
  });

  it("accepts data nested as deep as the limit", async () => {
    const res = await post("/v2/models/sum-diff/infer", {
      inputs: ["a", "b"].map((name) => ({
        name,
        shape: [1, 1],
        datatype: "FP32",
        data: JSON.parse(`${"[".repeat(32)}2${"]".repeat(32)}`),
      })),
    });
    expect(res.status).toBe(200);
  });

  it("marks a 404 for a model it does not hold as a replica miss, and only that 404", async () => {
    const miss = await post("/v2/models/nope/infer", irisBody());
    expect(miss.status).toBe(404);
    expect(miss.headers.get(REPLICA_MISS_HEADER)).toBe("1");
    const noVersion = await post("/v2/models/iris/versions/9/infer", irisBody());
    expect(noVersion.status).toBe(404);
    expect(noVersion.headers.get(REPLICA_MISS_HEADER)).toBeNull();
    const noRoute = await post("/v2/models/iris/predict", irisBody());
    expect(noRoute.status).toBe(404);
    expect(noRoute.headers.get(REPLICA_MISS_HEADER)).toBeNull();
  });

  it("rejects a binary part whose size does not match the tensor", async () => {
    const raw = encodeTensorData("FP32", Float32Array.from([1, 2, 3]));
    const { body, headerLength } = binaryBody(
      { inputs: [{ name: "predict", shape: [1, 4], datatype: "FP32", parameters: { binary_data_size: raw.length } }] },
      [raw],
    );
    const res = await post("/v2/models/iris/infer", body, { "inference-header-content-length": String(headerLength) });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toMatch(
      /input "predict": binary data is 12 bytes, shape and datatype FP32 need 16/,
    );
  });

  it("answers 503 while the server is not ready", async () => {
    let ready = false;
    const s = createTestStack({ ready: () => ready });
    await s.models.load({ model: "iris", version: 1, storageUri: sampleUri("iris") });
    const send = () => s.app.request("/v2/models/iris/infer", { method: "POST", body: JSON.stringify(irisBody()) });
    expect((await s.app.request("/v2/health/ready")).status).toBe(503);
    const res = await send();
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: string }).error).toMatch(/not ready/);
    ready = true;
    expect((await send()).status).toBe(200);
    await s.models.close();
  });

  it("answers 503 with the reason for a model that failed to load", async () => {
    const s = createTestStack();
    await s.models.load({ model: "ghost", version: 1, storageUri: "file://samples/models/does-not-exist" });
    const res = await s.app.request("/v2/models/ghost/infer", {
      method: "POST",
      body: JSON.stringify({ inputs: [good] }),
    });
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: string }).error).toMatch(
      /model ghost version 1 failed to load: model artifact not found/,
    );
  });

  it("exposes per-model request counts and latency histograms on /metrics", async () => {
    // Counts before and after this test's own requests: the test does not depend on what ran before it.
    const series = [
      'tern_agent_inference_requests_total{model="iris",protocol="rest",code="200"}',
      'tern_agent_inference_requests_total{model="iris",protocol="rest",code="400"}',
      'tern_agent_inference_requests_total{model="_unknown",protocol="rest",code="404"}',
      'tern_agent_inference_duration_seconds_count{model="iris",protocol="rest"}',
    ];
    const before = await metricValues(series);
    expect((await post("/v2/models/iris/infer", irisBody())).status).toBe(200);
    const wrongType = { inputs: [{ name: "predict", shape: [1, 4], datatype: "INT32", data: [5, 3, 1, 0] }] };
    expect((await post("/v2/models/iris/infer", wrongType)).status).toBe(400);
    expect((await post("/v2/models/nobody-loaded-this/infer", irisBody())).status).toBe(404);
    const after = await metricValues(series);
    expect(after.map((v, i) => v - before[i]!)).toEqual([1, 1, 1, 2]);
    expect(await (await app.request("/metrics")).text()).toMatch(/tern_agent_memory_bytes\{kind="resident"\} \d+/);
  });
});

describe("request body limit", () => {
  const LIMIT = 64 * 1024;
  const LIMIT_MESSAGE = /^request body is larger than the limit of 65536 bytes$/;
  const okBody = JSON.stringify(irisBody());
  /** A well-formed iris request a little over the limit. */
  const bigBody = JSON.stringify({
    inputs: [{ name: "predict", shape: [1, 4], datatype: "FP32", data: [5.1, 3.5, 1.4, 0.2] }],
    parameters: { padding: "x".repeat(LIMIT) },
  });

  const expectTooLarge = async (res: Response) => {
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: string }).error).toMatch(LIMIT_MESSAGE);
  };
  const stream = (text: string, chunkBytes: number) => {
    const bytes = new TextEncoder().encode(text);
    let offset = 0;
    return new ReadableStream<Uint8Array>({
      pull(controller) {
        if (offset >= bytes.length) return controller.close();
        controller.enqueue(bytes.subarray(offset, offset + chunkBytes));
        offset += chunkBytes;
      },
    });
  };

  it("answers 413 from a declared content-length over the limit", async () => {
    await expectTooLarge(await post("/v2/models/iris/infer", bigBody, { "content-length": String(bigBody.length) }));
    expect((await post("/v2/models/iris/infer", okBody, { "content-length": String(okBody.length) })).status).toBe(200);
  });

  it("answers 413 when the body holds more bytes than its content-length says", async () => {
    await expectTooLarge(await post("/v2/models/iris/infer", bigBody, { "content-length": "100" }));
    expect((await post("/v2/models/iris/infer", irisBody())).status).toBe(200);
  });

  it("counts a body without content-length while it streams in", async () => {
    const send = (text: string) =>
      app.request("/v2/models/iris/infer", {
        method: "POST",
        body: stream(text, 4096),
        headers: { "content-type": "application/json" },
        duplex: "half",
      } as RequestInit);
    await expectTooLarge(await send(bigBody));
    const ok = await send(okBody);
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { outputs: unknown[] }).outputs).toHaveLength(2);
  });

  describe("behind a real node:http server", () => {
    let server: ServerType;
    let port = 0;
    beforeAll(async () => {
      await new Promise<void>((resolve) => {
        server = serve({ fetch: app.fetch, hostname: "127.0.0.1", port: 0 }, (info: AddressInfo) => {
          port = info.port;
          resolve();
        });
      });
    });
    afterAll(async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });

    /** POSTs `body` in `chunkBytes` writes; chunked when `contentLength` is false. */
    const send = (body: string, contentLength: boolean, chunkBytes = 8192) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const bytes = Buffer.from(body);
        const headers: Record<string, string> = { "content-type": "application/json" };
        if (contentLength) headers["content-length"] = String(bytes.length);
        const req = http.request(
          { host: "127.0.0.1", port, path: "/v2/models/iris/infer", method: "POST", headers, agent: false },
          (res) => {
            let text = "";
            res.setEncoding("utf8");
            res.on("data", (d: string) => {
              text += d;
            });
            res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
          },
        );
        req.setTimeout(10_000, () => req.destroy(new Error("no answer within 10 s")));
        // The server may answer 413 and close before the whole body is written: that is not a client failure.
        req.on("error", (err: NodeJS.ErrnoException) => {
          if (err.code !== "EPIPE" && err.code !== "ECONNRESET") reject(err);
        });
        for (let o = 0; o < bytes.length; o += chunkBytes) req.write(bytes.subarray(o, o + chunkBytes));
        req.end();
      });

    it("answers 413 to an oversize body with content-length, and keeps serving", async () => {
      const res = await send(bigBody, true);
      expect(res.status).toBe(413);
      expect((JSON.parse(res.body) as { error: string }).error).toMatch(LIMIT_MESSAGE);
      expect((await send(okBody, true)).status).toBe(200);
    });

    it("answers 413 to an oversize chunked body, and keeps serving", async () => {
      const res = await send(bigBody, false);
      expect(res.status).toBe(413);
      expect((JSON.parse(res.body) as { error: string }).error).toMatch(LIMIT_MESSAGE);
      const ok = await send(okBody, false, 16);
      expect(ok.status).toBe(200);
      expect((JSON.parse(ok.body) as { outputs: unknown[] }).outputs).toHaveLength(2);
      expect((await send(okBody, true)).status).toBe(200);
    });
  });
});
