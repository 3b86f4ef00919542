import { createMemoryBus, createTopicNames, type PipelineSpec, pipelineIo, type RouteTable } from "@tern/core";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.js";
import { createPipelineFront, type PipelineFront } from "../../src/pipeline-front.js";
import { pipelineMetadata } from "../../src/pipeline-metadata.js";
import { createMemoryRouteSource } from "../../src/route-source.js";
import { createHttpUpstream } from "../../src/upstream.js";
import { type FakeAgent, startFakeAgent } from "./fake-agent.js";

// GET /v2/pipelines/{p}/ready and GET /v2/pipelines/{p}: the route table says whether and how a pipeline is served;
// the step models' metadata comes from a real HTTP server standing in for their agent.

const logger = pino({ level: "silent" });
const fp32 = (name: string, shape = [-1, 3]) => ({ name, datatype: "FP32", shape });

const CHAIN: PipelineSpec = {
  steps: [{ name: "add10" }, { name: "mul10", inputs: ["add10.outputs.y"], tensorMap: { "add10.outputs.y": "x" } }],
  output: { steps: ["mul10"], tensorMap: { "mul10.outputs.y": "result" } },
};
const GATED: PipelineSpec = {
  steps: [{ name: "add10", inputs: ["gated.inputs.x"], triggers: ["gated.inputs.ok"] }],
};
const BROKEN: PipelineSpec = { steps: [{ name: "no-such-model" }] };

let agent: FakeAgent;
let front: PipelineFront;

function table(agentUrl: string): RouteTable {
  const endpoint = { server: "s", replica: 0, version: 1, http: agentUrl };
  const model = (name: string) => ({ name, version: 1, state: "ModelAvailable" as const, endpoints: [endpoint] });
  return {
    revision: 1,
    models: { add10: model("add10"), mul10: model("mul10") },
    experiments: {},
    pipelines: {
      chain: { name: "chain", state: "PipelineReady", io: pipelineIo("chain", CHAIN) },
      moving: { name: "moving", state: "PipelineRebalancing", io: pipelineIo("moving", CHAIN) },
      gated: { name: "gated", state: "PipelineCreating", io: pipelineIo("gated", GATED) },
      broken: { name: "broken", state: "PipelineFailed", io: pipelineIo("broken", BROKEN) },
      old: { name: "old", state: "PipelineReady" },
    },
  };
}

beforeEach(async () => {
  agent = await startFakeAgent({
    id: "a0",
    metadata: {
      add10: { inputs: [fp32("x")], outputs: [fp32("y")] },
      mul10: { inputs: [fp32("x")], outputs: [fp32("y"), { name: "z", datatype: "INT64", shape: [-1] }] },
    },
  });
  front = createPipelineFront({
    bus: createMemoryBus(),
    topics: createTopicNames({ namespace: "unit" }),
    partitions: 2,
    logger,
  });
});

afterEach(async () => {
  await front.close();
  await agent.close();
});

function app(withFront = true) {
  return createApp({
    routes: createMemoryRouteSource(table(agent.url)),
    upstream: createHttpUpstream(),
    logger,
    ...(withFront ? { pipelines: front } : {}),
  });
}

describe("GET /v2/pipelines/{p}/ready", () => {
  it.each([
    ["chain", 200, { name: "chain", ready: true }],
    ["moving", 200, { name: "moving", ready: true }],
    ["gated", 424, { name: "gated", ready: false, error: "pipeline gated is not ready (state PipelineCreating)" }],
    ["broken", 424, { name: "broken", ready: false, error: "pipeline broken is not ready (state PipelineFailed)" }],
  ] as const)("%s answers %i", async (name, status, body) => {
    const res = await app().request(`/v2/pipelines/${name}/ready`);
    expect(res.status).toBe(status);
    expect(await res.json()).toEqual(body);
  });

  it("404 for an unknown pipeline; the seldon-model header asks on a model path too", async () => {
    const missing = await app().request("/v2/pipelines/nope/ready");
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ error: "pipeline nope not found" });
    const viaHeader = await app().request("/v2/models/whatever/ready", {
      headers: { "seldon-model": "chain.pipeline" },
    });
    expect(viaHeader.status).toBe(200);
    expect(agent.seen).toEqual([]);
  });

  it("424 on a gateway without a pipeline front, even for a ready pipeline", async () => {
    const res = await app(false).request("/v2/pipelines/chain/ready");
    expect(res.status).toBe(424);
    expect(((await res.json()) as { error: string }).error).toBe(
      "pipeline chain is not served by this gateway (it has no pipeline front)",
    );
  });
});

describe("GET /v2/pipelines/{p}", () => {
  it("the first step's inputs and the output step's outputs, from their models' metadata, renamed by output.tensorMap", async () => {
    const res = await app().request("/v2/pipelines/chain");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      name: "chain",
      platform: "tern-pipeline",
      inputs: [fp32("x")],
      outputs: [fp32("result"), { name: "z", datatype: "INT64", shape: [-1] }],
    });
    expect(agent.seen.map((r) => r.path).sort()).toEqual(["/v2/models/add10", "/v2/models/mul10"]);
  });

  it("a trigger tensor is listed by name only; answered whatever the pipeline's state", async () => {
    const res = await app(false).request("/v2/models/any", { headers: { "seldon-model": "gated.pipeline" } });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      name: "gated",
      platform: "tern-pipeline",
      inputs: [fp32("x"), { name: "ok" }],
      outputs: [fp32("y")],
    });
  });

  it("503 naming the model whose metadata cannot be read; 404 for an unknown pipeline; 503 for a table without io", async () => {
    const broken = await app().request("/v2/pipelines/broken");
    expect(broken.status).toBe(503);
    expect(await broken.json()).toEqual({
      error: "pipeline broken: the metadata of its model no-such-model is unavailable: it is not deployed",
    });
    expect((await app().request("/v2/pipelines/nope")).status).toBe(404);
    const old = await app().request("/v2/pipelines/old");
    expect(old.status).toBe(503);
    expect(((await old.json()) as { error: string }).error).toContain("does not describe its inputs and outputs");
  });

  it("503 when the model's replica answers an error", async () => {
    await agent.close();
    agent = await startFakeAgent({ id: "a1", holds: ["mul10"], unmarkedMiss: true });
    const res = await app().request("/v2/pipelines/chain");
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({
      error: "pipeline chain: the metadata of its model add10 is unavailable: its replica answered 404",
    });
  });
});

describe("pipelineMetadata", () => {
  it("a tensor the spec names keeps its name when its model does not list it; names come once", () => {
    const io = {
      inputs: [
        { model: "m", side: "inputs" as const, tensor: "a", name: "a" },
        { model: "m", side: "inputs" as const, tensor: "missing", name: "renamed" },
        { model: "m", side: "inputs" as const },
      ],
      outputs: [{ model: "gone", side: "outputs" as const }],
    };
    const models = new Map([["m", { inputs: [fp32("a"), fp32("b")], outputs: [] }]]);
    expect(pipelineMetadata("p", io, models)).toEqual({
      name: "p",
      platform: "tern-pipeline",
      inputs: [fp32("a"), { name: "renamed" }, fp32("b")],
      outputs: [],
    });
  });
});
