import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { Kafka, logLevel } from "kafkajs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SchedulerCommandIo } from "../../packages/cli/src/commands/apply.js";
import { type InspectedRecord, runPipelineInspect } from "../../packages/cli/src/commands/pipeline.js";
import { type DataflowStack, pipelineNames, sampleManifest, startDataflowStack } from "../dataflow/dataflow-stack.js";
import { repoRoot } from "../helpers/platform-process.js";
import { kafkaBrokers } from "../helpers/services.js";

// The pipeline commands of the CLI against the real data plane (issue 11): `tern infer pipeline` as a user runs it
// (the bin, a process of its own) through the Node gateway over Kafka, and `tern pipeline inspect` reading the
// records that request left on the real broker's topics. Every expected value is computed from the request.

const f = Math.fround;
const run = promisify(execFile);

let stack: DataflowStack;

/** The sample pipelines this file needs, as the samples define them. */
function samplePipelines(names: string[]): string {
  return sampleManifest("pipelines.yaml")
    .split(/^---\s*$/m)
    .filter((doc) => names.includes(pipelineNames(doc)[0] ?? ""))
    .join("\n---\n");
}

/** `tern …` as a user runs it: the bin in a process of its own, with a deadline. */
async function tern(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [join(repoRoot, "packages/cli/bin/tern.mjs"), ...args], {
      cwd: repoRoot,
      env: { ...process.env, ...env },
      timeout: 60_000,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: unknown; stdout?: string; stderr?: string };
    return { code: typeof e.code === "number" ? e.code : -1, stdout: e.stdout ?? "", stderr: e.stderr ?? String(err) };
  }
}

/** `tern pipeline inspect` in this process, against the stack's scheduler, broker and namespace. */
async function inspect(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = { stdout: "", stderr: "" };
  const io: SchedulerCommandIo = {
    stdout: { write: (t: string) => (out.stdout += t) },
    stderr: { write: (t: string) => (out.stderr += t) },
    env: {
      TERN_SCHEDULER_URL: stack.e2e.scheduler.url,
      KAFKA_BROKERS: kafkaBrokers().join(","),
      TERN_NAMESPACE: stack.namespace,
    },
  };
  const code = await runPipelineInspect(args, io);
  return { code, ...out };
}

async function inferJson(pipeline: string, inputs: Record<string, number[]>) {
  const res = await fetch(`${stack.e2e.gateway.url}/v2/pipelines/${pipeline}/infer`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      inputs: Object.entries(inputs).map(([name, data]) => ({ name, datatype: "FP32", shape: [1, data.length], data })),
    }),
    signal: AbortSignal.timeout(35_000),
  });
  return { status: res.status, id: res.headers.get("x-tern-request-id"), json: (await res.json()) as unknown };
}

const tensorOf = (r: InspectedRecord | undefined, name: string) => r?.tensors.find((t) => t.name === name)?.data;

beforeAll(async () => {
  stack = await startDataflowStack({
    name: "pcli",
    workers: 1,
    replication: 1,
    gatewayEnv: { TERN_GATEWAY_PIPELINE_TIMEOUT_MS: "30000" },
  });
  await stack.applyPipelines(samplePipelines(["add-then-mul", "sum-diff-pipeline"]));
}, 180_000);

afterAll(async () => {
  await stack?.close();
});

describe("tern infer pipeline and tern pipeline inspect on the real data plane", () => {
  let requestId = "";
  const x = [1.5, -2, 7.25];
  const plus10 = x.map((v) => f(v + 10));
  const y = plus10.map((v) => f(v * 10));

  it("tern infer pipeline add-then-mul prints the pipeline's outputs, (x + 10) * 10", async () => {
    const body = JSON.stringify({ inputs: [{ name: "x", datatype: "FP32", shape: [1, 3], data: x }] });
    const res = await tern(["infer", "pipeline", "add-then-mul", body], { TERN_GATEWAY_URL: stack.e2e.gateway.url });
    expect(res.code, res.stderr).toBe(0);
    const answer = JSON.parse(res.stdout) as {
      id: string;
      model_name: string;
      outputs: Array<{ name: string; data: number[] }>;
    };
    expect(answer.model_name).toBe("add-then-mul");
    expect(answer.outputs.find((o) => o.name === "y")?.data).toEqual(y);
    requestId = answer.id;
    expect(requestId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("inspect p --request-id --format json shows that request's record on every hop, decoded", async () => {
    expect(requestId, "the infer test ran first").not.toBe("");
    const res = await inspect(["add-then-mul", "--request-id", requestId, "--offset", "20", "--format", "json"]);
    expect(res.code, res.stderr).toBe(0);
    const doc = JSON.parse(res.stdout) as { records: InspectedRecord[]; unfinished: string[] };
    expect(doc.unfinished).toEqual([]);
    const at = (label: string) => doc.records.filter((r) => r.label === label);
    const labels = [
      "inputs",
      "step add10 inputs",
      "step add10 outputs",
      "step mul10 inputs",
      "step mul10 outputs",
      "outputs",
    ];
    for (const label of labels) expect(at(label), label).toHaveLength(1);
    expect(new Set(doc.records.map((r) => r.label))).toEqual(new Set(labels));
    // Every hop writes the request's partition, under the key <k>.<resource>.<id>, with the pipeline header.
    const partition = at("inputs")[0]!.partition;
    for (const r of doc.records) {
      expect(r.requestId).toBe(requestId);
      expect(r.partition).toBe(partition);
      expect(r.key).toMatch(new RegExp(`^${partition}\\.[a-z0-9-]+\\.${requestId}$`));
      expect(r.headers.pipeline).toBe("add-then-mul");
      expect(r.topic.startsWith(`seldon.${stack.namespace}.`)).toBe(true);
    }
    expect(at("inputs")[0]!.tensors).toEqual([{ name: "x", datatype: "FP32", shape: [1, 3], data: x }]);
    expect(tensorOf(at("step add10 inputs")[0], "x")).toEqual(x);
    expect(tensorOf(at("step add10 outputs")[0], "y")).toEqual(plus10);
    // The tensorMap renamed add10's y to mul10's x on the way.
    expect(tensorOf(at("step mul10 inputs")[0], "x")).toEqual(plus10);
    expect(tensorOf(at("step mul10 outputs")[0], "y")).toEqual(y);
    expect(at("outputs")[0]!.tensors).toEqual([{ name: "y", datatype: "FP32", shape: [1, 3], data: y }]);
  });

  it("inspect p.step.outputs.TENSOR (raw, last record per partition) prints the newest request's tensor", async () => {
    const input = [3, -4, 0.5];
    const sent = await inferJson("add-then-mul", { x: input });
    expect(sent.status, JSON.stringify(sent.json)).toBe(200);
    // The bin, as a user runs it: the command must also end its process (no Kafka client left open).
    const res = await tern(["pipeline", "inspect", "add-then-mul.add10.outputs.y", "--request-id", sent.id!], {
      TERN_SCHEDULER_URL: stack.e2e.scheduler.url,
      KAFKA_BROKERS: kafkaBrokers().join(","),
      TERN_NAMESPACE: stack.namespace,
    });
    expect(res.code, res.stderr).toBe(0);
    const lines = res.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(
      new RegExp(
        `^seldon\\.${stack.namespace}\\.model\\.add10\\.outputs \\[step add10 outputs\\] partition \\d+ offset \\d+ key \\d+\\.add10\\.${sent.id}$`,
      ),
    );
    expect(lines).toContain(`  request id: ${sent.id}`);
    expect(lines.at(-1)).toBe(`  y FP32 [1,3] ${JSON.stringify(input.map((v) => f(v + 10)))}`);
    expect(lines.filter((l) => /^ {2}\S+ FP32 /.test(l))).toHaveLength(1);
  });

  it("inspect shows a step's error record on the pipeline's outputs", async () => {
    const sent = await inferJson("sum-diff-pipeline", { a: [1, 2] });
    expect(sent.status).toBeGreaterThanOrEqual(400);
    const res = await inspect(["sum-diff-pipeline.outputs", "--request-id", sent.id!, "--format", "json"]);
    expect(res.code, res.stderr).toBe(0);
    const { records } = JSON.parse(res.stdout) as { records: InspectedRecord[] };
    expect(records).toHaveLength(1);
    expect(records[0]!.error?.message).toBe((sent.json as { error: string }).error);
    expect(records[0]!.error?.message).toContain("pipeline sum-diff-pipeline: step sum-diff failed");
  });

  it("names the unknown pipeline or step, and leaves no consumer group behind", async () => {
    // A request and a read that joins its throwaway group, so that this test shows the deletion on its own.
    const sent = await inferJson("add-then-mul", { x: [1] });
    expect(sent.status, JSON.stringify(sent.json)).toBe(200);
    const read = await inspect(["add-then-mul.outputs", "--offset", "5", "--format", "json"]);
    expect(read.code, read.stderr).toBe(0);
    expect((JSON.parse(read.stdout) as { records: unknown[] }).records.length).toBeGreaterThan(0);
    const step = await inspect(["add-then-mul.sub10"]);
    expect(step.code).toBe(1);
    expect(step.stderr).toBe(
      "tern pipeline inspect: pipeline add-then-mul has no step sub10 (its steps: add10, mul10)\n",
    );
    const pipeline = await inspect(["no-such-pipeline"]);
    expect(pipeline.code).toBe(1);
    expect(pipeline.stderr).toBe("tern pipeline inspect: pipeline no-such-pipeline not found\n");

    const admin = new Kafka({ clientId: "pcli-groups", brokers: kafkaBrokers(), logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    try {
      const { groups } = await admin.listGroups();
      expect(groups.filter((g) => g.groupId.startsWith("tern-inspect-"))).toEqual([]);
    } finally {
      await admin.disconnect();
    }
  });
});
