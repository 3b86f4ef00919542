import { createTopicNames, encodeModelInferRequest, encodeModelInferResponse, tensorsFromOip } from "@tern/core";
import { afterEach, describe, expect, it } from "vitest";
import { createControlApp } from "../../../scheduler/src/app.js";
import { createHarness, type Harness, silentLogger } from "../../../scheduler/tests/unit/helpers.js";
import type { SchedulerCommandIo } from "../../src/commands/apply.js";
import { filterRecords, inspectRecord, runPipelineInspect } from "../../src/commands/pipeline.js";
import { inspectTopics, parseInspectPath } from "../../src/inspect-path.js";
import { main } from "../../src/main.js";

const topics = createTopicNames({ namespace: "ns" });

describe("parseInspectPath", () => {
  it.each([
    ["p", { pipeline: "p" }],
    ["p.inputs", { pipeline: "p", direction: "inputs" }],
    ["p.outputs", { pipeline: "p", direction: "outputs" }],
    ["p.outputs.y", { pipeline: "p", direction: "outputs", tensor: "y" }],
    ["p.add10", { pipeline: "p", step: "add10" }],
    ["p.add10.inputs", { pipeline: "p", step: "add10", direction: "inputs" }],
    ["p.add10.outputs.y", { pipeline: "p", step: "add10", direction: "outputs", tensor: "y" }],
    ["p.add10.outputs.a.b", { pipeline: "p", step: "add10", direction: "outputs", tensor: "a.b" }],
  ])("reads %s", (text, expected) => {
    expect(parseInspectPath(text)).toEqual(expected);
  });

  it.each([
    ["", /empty part/],
    ["p.", /empty part/],
    ["p..inputs", /empty part/],
    ["p.add10.sideways", /"sideways" after step add10: expected inputs or outputs/],
    ["P!", /^pipeline name /],
    ["p.st@p", /^step name /],
  ])("refuses %j naming the part", (text, message) => {
    const parsed = parseInspectPath(text);
    expect("problem" in parsed && parsed.problem).toMatch(message);
  });
});

describe("inspectTopics", () => {
  const steps = ["add10", "mul10"];

  it("reads the whole flow for a pipeline: its inputs, each step's model topics, its outputs", () => {
    expect(inspectTopics({ pipeline: "p" }, steps, topics)).toEqual([
      { topic: "seldon.ns.pipeline.p.inputs", label: "inputs", shared: false },
      { topic: "seldon.ns.model.add10.inputs", label: "step add10 inputs", shared: true },
      { topic: "seldon.ns.model.add10.outputs", label: "step add10 outputs", shared: true },
      { topic: "seldon.ns.model.mul10.inputs", label: "step mul10 inputs", shared: true },
      { topic: "seldon.ns.model.mul10.outputs", label: "step mul10 outputs", shared: true },
      { topic: "seldon.ns.pipeline.p.outputs", label: "outputs", shared: false },
    ]);
  });

  it("reads one step, one side of it, or one side of the pipeline", () => {
    const names = (path: Parameters<typeof inspectTopics>[0]) => {
      const found = inspectTopics(path, steps, topics);
      return "problem" in found ? found.problem : found.map((t) => t.topic);
    };
    expect(names({ pipeline: "p", step: "mul10" })).toEqual([
      "seldon.ns.model.mul10.inputs",
      "seldon.ns.model.mul10.outputs",
    ]);
    expect(names({ pipeline: "p", step: "mul10", direction: "outputs", tensor: "y" })).toEqual([
      "seldon.ns.model.mul10.outputs",
    ]);
    expect(names({ pipeline: "p", direction: "outputs" })).toEqual(["seldon.ns.pipeline.p.outputs"]);
  });

  it("names the step the pipeline does not have, and the steps it has", () => {
    expect(inspectTopics({ pipeline: "p", step: "nope" }, steps, topics)).toEqual({
      problem: "pipeline p has no step nope (its steps: add10, mul10)",
    });
  });
});

describe("inspectRecord and filterRecords", () => {
  const x = { name: "x", datatype: "FP32" as const, shape: [1, 2], data: Float32Array.from([1.5, -2]) };
  const ok = { name: "ok", datatype: "INT64" as const, shape: [1], data: BigInt64Array.from([7n]) };
  const record = (topic: string, value: Uint8Array, key: string, headers: Record<string, string> = {}) => ({
    topic,
    partition: 1,
    offset: "4",
    key,
    value,
    headers,
    timestamp: "0",
  });

  it("decodes a request on an inputs topic and a response on an outputs topic, the request id from the key", () => {
    const request = encodeModelInferRequest({ model_name: "p", inputs: tensorsFromOip([x, ok], false).tensors });
    const wire = tensorsFromOip([x], true);
    const response = encodeModelInferResponse({
      model_name: "add10",
      outputs: wire.tensors,
      raw_output_contents: wire.raw ?? [],
    });
    const input = inspectRecord(record("seldon.ns.pipeline.p.inputs", request, "1.p.req-1"), "inputs", topics);
    expect(input.requestId).toBe("req-1");
    expect(input.tensors).toEqual([
      { name: "x", datatype: "FP32", shape: [1, 2], data: [1.5, -2] },
      { name: "ok", datatype: "INT64", shape: [1], data: [7] },
    ]);
    const output = inspectRecord(
      record("seldon.ns.model.add10.outputs", response, "1.add10.req-2"),
      "step add10 outputs",
      topics,
    );
    expect(output.tensors).toEqual([{ name: "x", datatype: "FP32", shape: [1, 2], data: [1.5, -2] }]);
  });

  it("shows an error record's message and status, and says when a value is not OIP protobuf", () => {
    const failed = inspectRecord(
      record("seldon.ns.pipeline.p.outputs", new TextEncoder().encode("boom"), "1.p.r", {
        "tern-error": "pipeline p: step b failed: boom",
        "tern-error-status": "400",
        "seldon-pipeline-errors": "b",
      }),
      "outputs",
      topics,
    );
    expect(failed.error).toEqual({ message: "pipeline p: step b failed: boom", status: "400", failed: "b" });
    const garbage = inspectRecord(
      record("seldon.ns.pipeline.p.outputs", Uint8Array.from([0xff, 0xff, 0xff]), "1.p.r"),
      "outputs",
      topics,
    );
    expect(garbage.tensors).toEqual([]);
    expect(garbage.undecodable).toBeTruthy();
  });

  it("keeps one request's records (by key or caller's x-request-id) and narrows them to one tensor", () => {
    const value = encodeModelInferRequest({ model_name: "p", inputs: tensorsFromOip([x, ok], false).tensors });
    const records = [
      inspectRecord(record("seldon.ns.pipeline.p.inputs", value, "1.p.a"), "inputs", topics),
      inspectRecord(
        record("seldon.ns.pipeline.p.inputs", value, "1.p.b", { "x-request-id": "mine" }),
        "inputs",
        topics,
      ),
    ];
    expect(filterRecords(records, { requestId: "a" }).map((r) => r.key)).toEqual(["1.p.a"]);
    expect(filterRecords(records, { requestId: "mine" }).map((r) => r.key)).toEqual(["1.p.b"]);
    const narrowed = filterRecords(records, { tensor: "ok" });
    expect(narrowed.map((r) => r.tensors.map((t) => t.name))).toEqual([["ok"], ["ok"]]);
    expect(filterRecords(records, { tensor: "nope" })).toEqual([]);
  });
});

describe("tern pipeline inspect: names what does not exist before reading Kafka", () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  async function setup() {
    h = await createHarness();
    await h.apply(
      "apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata:\n  name: chain\nspec:\n  steps:\n    - name: add10\n    - name: mul10\n      inputs: [add10]\n",
    );
    const app = createControlApp({
      active: () => h!.scheduler,
      store: h.store,
      leaseName: "scheduler",
      logger: silentLogger,
    });
    const out = { stdout: "", stderr: "" };
    const io: SchedulerCommandIo = {
      stdout: { write: (t: string) => (out.stdout += t) },
      stderr: { write: (t: string) => (out.stderr += t) },
      // No broker listens here: reaching Kafka would fail with another message.
      env: { TERN_SCHEDULER_URL: "http://scheduler.test", KAFKA_BROKERS: "127.0.0.1:1" },
      fetch: ((input: string | URL | Request, init?: RequestInit) =>
        app.fetch(new Request(input, init))) as typeof fetch,
    };
    return { io, out };
  }

  it("an unknown pipeline", async () => {
    const { io, out } = await setup();
    expect(await runPipelineInspect(["nope"], io)).toBe(1);
    expect(out.stderr).toBe("tern pipeline inspect: pipeline nope not found\n");
  });

  it("an unknown step, with the steps the pipeline has", async () => {
    const { io, out } = await setup();
    expect(await runPipelineInspect(["chain.sub10.outputs"], io)).toBe(1);
    expect(out.stderr).toBe("tern pipeline inspect: pipeline chain has no step sub10 (its steps: add10, mul10)\n");
  });

  it("usage errors exit 2 naming the option", async () => {
    const { io, out } = await setup();
    expect(await runPipelineInspect(["chain", "--offset", "0"], io)).toBe(2);
    expect(await runPipelineInspect(["chain", "--format", "yaml"], io)).toBe(2);
    expect(await runPipelineInspect(["chain.add10.sideways"], io)).toBe(2);
    expect(out.stderr).toContain('--offset must be a whole number of at least 1 (got "0")');
    expect(out.stderr).toContain('--format must be raw or json (got "yaml")');
    expect(out.stderr).toContain('"sideways" after step add10: expected inputs or outputs');
  });

  it("is listed by tern --help and dispatches inspect", async () => {
    let stdout = "";
    const io = {
      stdout: { write: (t: string) => (stdout += t) },
      stderr: { write: () => undefined },
      cwd: process.cwd(),
      readStdin: async () => "",
    };
    expect(await main(["--help"], io)).toBe(0);
    expect(stdout).toMatch(/^ {2}pipeline +inspect a pipeline's Kafka topics/m);
    stdout = "";
    expect(await main(["pipeline", "inspect", "--help"], io)).toBe(0);
    expect(stdout).toMatch(/^Usage: tern pipeline inspect PIPELINE/);
  });
});
