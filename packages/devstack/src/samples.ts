import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { ControlClient, ModelSummary } from "@tern/control";
import { TernError } from "@tern/core";
import { waitFor } from "./wait-for.js";

/** The iris row `npm start` sends (Fisher's first row, a setosa) and the class the model must answer. */
export const IRIS_SAMPLE = { row: [5.1, 3.5, 1.4, 0.2], label: 0, species: "setosa" } as const;

/** A sample iris model `npm start` waits for and prints a curl for, and the output that carries its class. */
export interface IrisSample {
  model: string;
  /** `label` for the ONNX graph; `predict` is what MLServer's sklearn runtime calls `predict()`'s answer. */
  labelOutput: string;
  /** How the ready line names it. */
  title: string;
}

/**
 * The two iris models of `samples/manifests`: the ONNX one on the built-in runtime (ready in seconds) and the
 * specification's sklearn one on MLServer (ready once MLServer is installed).
 */
export const IRIS_SAMPLES = {
  onnx: { model: "iris-onnx", labelOutput: "label", title: "the ONNX iris (Server tern-onnx)" },
  mlserver: {
    model: "iris",
    labelOutput: "predict",
    title: "the specification's iris (sklearn on MLServer, Server mlserver)",
  },
} as const satisfies Record<string, IrisSample>;

/**
 * Every manifest file under `path` (a file, or a folder searched recursively for .yaml/.yml/.json), in name order,
 * as one multi-document YAML text (JSON is YAML). Throws a `not_found` TernError when there is none.
 */
export function readManifests(path: string): string {
  const files: string[] = [];
  const visit = (p: string): void => {
    if (statSync(p).isDirectory()) {
      for (const entry of readdirSync(p).sort()) visit(join(p, entry));
    } else if (/\.(ya?ml|json)$/i.test(p)) {
      files.push(p);
    }
  };
  try {
    visit(path);
  } catch (err) {
    throw new TernError("not_found", `cannot read the sample manifests at ${path} (TERN_SAMPLES_DIR)`, { cause: err });
  }
  if (files.length === 0) throw new TernError("not_found", `no .yaml, .yml or .json manifests in ${path}`);
  return files.map((f) => readFileSync(f, "utf8")).join("\n---\n");
}

/**
 * Applies the manifests under `path` through the scheduler (like `tern apply -f`): a summary of what changed, and the
 * names of the Models applied.
 */
export async function applyManifests(
  client: ControlClient,
  path: string,
): Promise<{ summary: string; models: string[] }> {
  const results = await client.apply(readManifests(path));
  const counts = new Map<string, number>();
  for (const r of results) counts.set(r.action, (counts.get(r.action) ?? 0) + 1);
  const summary = [...counts.entries()].map(([action, n]) => `${n} ${action}`).join(", ");
  return {
    summary: `${results.length} resources (${summary})`,
    models: results.filter((r) => r.kind === "Model").map((r) => r.name),
  };
}

/** Waits until a model is `ModelAvailable`; the timeout error quotes its last state and reason. */
export async function waitForModelAvailable(
  client: ControlClient,
  name: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<ModelSummary> {
  let last: ModelSummary | undefined;
  try {
    return await waitFor(
      async () => {
        last = await client.getModel(name);
        return last?.state === "ModelAvailable" ? last : false;
      },
      { timeoutMs, intervalMs: 250, description: `model ${name}`, ...(signal ? { signal } : {}) },
    );
  } catch (err) {
    if (signal?.aborted || last === undefined) throw err;
    throw new TernError(
      "timeout",
      `model ${name} not available after ${timeoutMs} ms: ${last.state}${last.reason ? ` (${last.reason})` : ""}, ${last.availableReplicas}/${last.replicas} replicas`,
      { cause: err },
    );
  }
}

/** The request body of the iris sample (input `predict`, FP32 [1, 4]; see samples/README.md). */
export function irisRequestBody(): string {
  return JSON.stringify({ inputs: [{ name: "predict", shape: [1, 4], datatype: "FP32", data: [IRIS_SAMPLE.row] }] });
}

/** A ready-to-paste curl for an iris model through the gateway. */
export function irisCurl(gatewayPort: number, model: string): string {
  return `curl -s localhost:${gatewayPort}/v2/models/${model}/infer -H 'content-type: application/json' -d '${irisRequestBody()}'`;
}

/**
 * Sends the iris row through the gateway to `sample.model` until it answers 200 (the gateway learns the route from the
 * watch stream a moment after the model is available) and returns the predicted label, read from
 * `sample.labelOutput`. Throws when the label is not the expected one.
 */
export async function inferIris(
  gatewayPort: number,
  sample: IrisSample,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<number> {
  let lastAnswer = "";
  const label = await waitFor(
    async () => {
      const res = await fetch(`http://127.0.0.1:${gatewayPort}/v2/models/${sample.model}/infer`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: irisRequestBody(),
        signal: AbortSignal.timeout(5000),
      });
      lastAnswer = `${res.status} ${await res.text()}`;
      if (res.status !== 200) throw new Error(lastAnswer);
      const body = JSON.parse(lastAnswer.slice(4)) as { outputs?: Array<{ name: string; data: unknown[] }> };
      const output = body.outputs?.find((o) => o.name === sample.labelOutput);
      const value = Array.isArray(output?.data) ? Number(output.data.flat()[0]) : Number.NaN;
      if (!Number.isInteger(value)) throw new Error(`no label in ${lastAnswer}`);
      return { value };
    },
    {
      timeoutMs,
      intervalMs: 200,
      description: `${sample.model} through the gateway on port ${gatewayPort}`,
      ...(signal ? { signal } : {}),
    },
  );
  if (label.value !== IRIS_SAMPLE.label) {
    throw new TernError(
      "internal",
      `${sample.model} answered label ${label.value} for a ${IRIS_SAMPLE.species} row (expected ${IRIS_SAMPLE.label}): ${lastAnswer}`,
    );
  }
  return label.value;
}
