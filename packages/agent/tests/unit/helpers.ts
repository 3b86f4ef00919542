import { fileURLToPath } from "node:url";
import type { AgentEvent } from "@tern/core";
import { createArtifactFetcher } from "../../src/artifacts/artifact-fetcher.js";
import { createAgentApp } from "../../src/http/app.js";
import { createInferenceService } from "../../src/inference/inference-service.js";
import { createAgentMetrics } from "../../src/metrics.js";
import { createModelRegistry, type ModelRegistry } from "../../src/model-registry.js";
import type { ModelRuntime } from "../../src/runtime/model-runtime.js";
import { createOnnxRuntime } from "../../src/runtime/onnx-runtime.js";

/** The repository root: relative file:// URIs in the samples resolve against it. */
export const REPO_ROOT = fileURLToPath(new URL("../../../../", import.meta.url));
export const sampleUri = (name: string) => `file://samples/models/${name}`;

/** Known iris rows (from samples/iris/iris.csv) and their classes: 0 setosa, 1 versicolor, 2 virginica. */
export const IRIS_ROWS: Array<{ features: number[]; label: number }> = [
  { features: [5.1, 3.5, 1.4, 0.2], label: 0 },
  { features: [4.9, 3.0, 1.4, 0.2], label: 0 },
  { features: [7.0, 3.2, 4.7, 1.4], label: 1 },
  { features: [5.5, 2.3, 4.0, 1.3], label: 1 },
  { features: [6.3, 3.3, 6.0, 2.5], label: 2 },
  { features: [7.7, 3.8, 6.7, 2.2], label: 2 },
];

export interface TestStackOptions {
  capacityBytes?: number;
  overcommitPercent?: number;
  maxBodyBytes?: number;
  runtime?: ModelRuntime;
  ready?: () => boolean;
  /** Folders local artifacts may come from. @default the fetcher's default (the samples folder, ./models) */
  artifactRoots?: string[];
}

/** A registry with the real ONNX runtime and file fetcher, the inference service and the REST app. */
export function createTestStack(options: TestStackOptions = {}) {
  const events: AgentEvent[] = [];
  const models: ModelRegistry = createModelRegistry({
    runtime: options.runtime ?? createOnnxRuntime(),
    fetcher: createArtifactFetcher({
      cacheDir: "/tmp/tern-agent-test-cache",
      fileBaseDir: REPO_ROOT,
      ...(options.artifactRoots ? { localRoots: options.artifactRoots } : {}),
    }),
    capacityBytes: options.capacityBytes ?? 1 << 30,
    overcommitPercent: options.overcommitPercent ?? 0,
    onStateChange: (e) => events.push(e),
  });
  const metrics = createAgentMetrics({ models });
  const service = createInferenceService({
    models,
    serverName: "mlserver",
    serverVersion: "test",
    platform: "onnxruntime",
    isReady: options.ready ?? (() => true),
  });
  const app = createAgentApp({
    service,
    metrics,
    ...(options.maxBodyBytes ? { maxBodyBytes: options.maxBodyBytes } : {}),
  });
  return { models, metrics, service, app, events };
}

/** Counts loads and unloads of a runtime, to observe eviction and reload. */
export function countingRuntime(inner: ModelRuntime) {
  const counts = { loads: new Map<string, number>(), unloads: new Map<string, number>() };
  const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
  const runtime: ModelRuntime = {
    serverType: inner.serverType,
    capabilities: inner.capabilities,
    platform: inner.platform,
    async load(path, opts) {
      const loaded = await inner.load(path, opts);
      bump(counts.loads, opts.model);
      return {
        signature: loaded.signature,
        infer: (i, o) => loaded.infer(i, o),
        async unload() {
          bump(counts.unloads, opts.model);
          await loaded.unload();
        },
      };
    },
  };
  return { runtime, counts };
}

/** Polls `check` until it returns a value (not undefined/false), or fails after `timeoutMs`. */
export async function waitFor<T>(
  check: () => T | undefined | false,
  what = "condition",
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
