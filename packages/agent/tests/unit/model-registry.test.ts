import { describe, expect, it } from "vitest";
import { type ArtifactFetcher, createArtifactFetcher } from "../../src/artifacts/artifact-fetcher.js";
import { createModelRegistry } from "../../src/model-registry.js";
import type { LoadOptions, ModelRuntime } from "../../src/runtime/model-runtime.js";
import { createOnnxRuntime } from "../../src/runtime/onnx-runtime.js";
import { countingRuntime, createTestStack, REPO_ROOT, sampleUri } from "./helpers.js";

const x = (v: number) => ({ inputs: [{ name: "x", shape: [1, 1], datatype: "FP32", data: [v] }] });

describe("model registry", () => {
  it("evicts the least-recently-used idle model when memory is over-committed and reloads it on the next request", async () => {
    const { runtime, counts } = countingRuntime(createOnnxRuntime());
    // Room for two resident 100-byte models; 50% over-commit lets three be placed.
    const s = createTestStack({ runtime, capacityBytes: 200, overcommitPercent: 50 });
    const infer = async (model: string, v: number) => {
      const res = await s.app.request(`/v2/models/${model}/infer`, { method: "POST", body: JSON.stringify(x(v)) });
      expect(res.status).toBe(200);
      return ((await res.json()) as { outputs: Array<{ data: number[] }> }).outputs[0]!.data[0];
    };
    await s.models.load({ model: "add10", version: 1, storageUri: sampleUri("add10"), memoryBytes: 100 });
    await s.models.load({ model: "mul10", version: 1, storageUri: sampleUri("mul10"), memoryBytes: 100 });
    expect(await infer("add10", 1)).toBe(11); // add10 is now the most recently used; mul10 the least
    const third = await s.models.load({
      model: "sum-diff",
      version: 1,
      storageUri: sampleUri("sum-diff"),
      memoryBytes: 100,
    });
    expect(third.state).toBe("Available");
    const resident = () => Object.fromEntries(s.models.list().map((r) => [r.model, r.resident]));
    expect(resident()).toEqual({ add10: true, mul10: false, "sum-diff": true });
    expect(counts.unloads.get("mul10")).toBe(1);
    expect(s.models.usage()).toMatchObject({
      capacityBytes: 200,
      committableBytes: 300,
      committedBytes: 300,
      residentBytes: 200,
    });

    // The evicted model stays Available and answers its next request after a reload, evicting the LRU (add10).
    expect(await infer("mul10", 2)).toBe(20);
    expect(counts.loads.get("mul10")).toBe(2);
    expect(resident()).toEqual({ add10: false, mul10: true, "sum-diff": true });
    expect(s.models.list().every((r) => r.state === "Available")).toBe(true);
    // Eviction is internal: the scheduler only ever heard Loading/Available.
    expect(new Set(s.events.map((e) => e.state))).toEqual(new Set(["Loading", "Available"]));
    await s.models.close();
  });

  it("fetches with the model's secretName, and loads the version again when only its secret changes", async () => {
    const real = createArtifactFetcher({ cacheDir: "/tmp/tern-agent-test-cache", fileBaseDir: REPO_ROOT });
    const asked: Array<string | undefined> = [];
    const fetcher: ArtifactFetcher = {
      fetch(uri, options) {
        asked.push(options?.secretName);
        return real.fetch(uri, options);
      },
    };
    const models = createModelRegistry({ runtime: createOnnxRuntime(), fetcher, capacityBytes: 1 << 30 });
    try {
      const spec = { model: "iris", version: 1, storageUri: sampleUri("iris") };
      expect((await models.load({ ...spec, secretName: "a" })).state).toBe("Available");
      expect((await models.load({ ...spec, secretName: "a" })).state).toBe("Available");
      expect((await models.load({ ...spec, secretName: "b" })).state).toBe("Available");
      expect(asked).toEqual(["a", "b"]);
    } finally {
      await models.close();
    }
  });

  it("fails a load that would exceed the over-committed capacity, naming the sizes", async () => {
    const s = createTestStack({ capacityBytes: 200, overcommitPercent: 0 });
    await s.models.load({ model: "add10", version: 1, storageUri: sampleUri("add10"), memoryBytes: 150 });
    const r = await s.models.load({ model: "mul10", version: 1, storageUri: sampleUri("mul10"), memoryBytes: 100 });
    expect(r.state).toBe("LoadFailed");
    expect(r.reason).toMatch(/not enough memory: model needs 100 B, 50 B of 200 B \(with 0% over-commit\) is free/);
    const big = await s.models.load({
      model: "sum-diff",
      version: 1,
      storageUri: sampleUri("sum-diff"),
      memoryBytes: 4096,
    });
    expect(big.reason).toMatch(/model needs 4.0 KiB but this replica holds at most 200 B/);
    await s.models.close();
  });

  it("accounts the artifact size when the spec gives no memory", async () => {
    const s = createTestStack();
    const r = await s.models.load({ model: "iris", version: 1, storageUri: sampleUri("iris") });
    const { statSync } = await import("node:fs");
    const { REPO_ROOT } = await import("./helpers.js");
    expect(r.memoryBytes).toBe(statSync(`${REPO_ROOT}/samples/models/iris/model.onnx`).size);
    await s.models.close();
  });

  it("reports Loading → Available, then Unloading → Unloaded, and is idempotent", async () => {
    const s = createTestStack();
    const spec = { model: "add10", version: 1, storageUri: sampleUri("add10") };
    const [a, b] = await Promise.all([s.models.load(spec), s.models.load(spec)]);
    expect(a.state).toBe("Available");
    expect(b.state).toBe("Available");
    await s.models.unload("add10", 1);
    expect(s.events.map((e) => e.state)).toEqual(["Loading", "Available", "Unloading", "Unloaded"]);
    expect(s.models.list()).toEqual([]);
    const res = await s.app.request("/v2/models/add10/infer", { method: "POST", body: JSON.stringify(x(1)) });
    expect(res.status).toBe(404);
    await s.models.close();
  });

  it("serves the newest available version when none is asked for, and a given version when it is", async () => {
    const s = createTestStack();
    await s.models.load({ model: "op", version: 1, storageUri: sampleUri("add10") });
    await s.models.load({ model: "op", version: 2, storageUri: sampleUri("mul10") });
    const send = async (path: string) =>
      (await (await s.app.request(path, { method: "POST", body: JSON.stringify(x(3)) })).json()) as {
        model_version: string;
        outputs: Array<{ data: number[] }>;
      };
    const latest = await send("/v2/models/op/infer");
    expect(latest.model_version).toBe("2");
    expect(latest.outputs[0]!.data).toEqual([30]);
    expect((await send("/v2/models/op/versions/1/infer")).outputs[0]!.data).toEqual([13]);
    await s.models.close();
  });

  it("keeps a model whose requests are in flight from being evicted", async () => {
    const s = createTestStack({ capacityBytes: 100, overcommitPercent: 100 });
    await s.models.load({ model: "add10", version: 1, storageUri: sampleUri("add10"), memoryBytes: 100 });
    const lease = await s.models.acquire("add10");
    await s.models.load({ model: "mul10", version: 1, storageUri: sampleUri("mul10"), memoryBytes: 100 });
    expect(s.models.list().find((r) => r.model === "add10")!.resident).toBe(true);
    // The load went ahead over capacity rather than fail (the scheduler placed it within the over-committed
    // budget); once add10 is idle, the next reload that needs room evicts it.
    lease.release();
    expect(s.models.usage().residentBytes).toBe(200);
    await s.models.close();
  });

  it("reports a model its runtime's process lost as Loading, refuses it meanwhile, and Available once it is back", async () => {
    // The ONNX runtime with the callback MLServer's runtime gets, kept so the test can play the process dying.
    const onnx = createOnnxRuntime();
    const callbacks: Array<NonNullable<LoadOptions["onStateChange"]>> = [];
    const runtime: ModelRuntime = {
      ...onnx,
      processBytes: () => 123_456,
      load(path, opts) {
        if (opts.onStateChange) callbacks.push(opts.onStateChange);
        return onnx.load(path, opts);
      },
    };
    const s = createTestStack({ runtime });
    await s.models.load({ model: "add10", version: 1, storageUri: sampleUri("add10"), requirements: ["onnx"] });
    expect(callbacks).toHaveLength(1);
    callbacks[0]!("Loading", "MLServer is restarting (killed by SIGKILL)");
    expect(s.models.resolve("add10")).toMatchObject({
      state: "Loading",
      reason: "MLServer is restarting (killed by SIGKILL)",
    });
    expect(s.events.at(-1)).toEqual({
      model: "add10",
      version: 1,
      state: "Loading",
      reason: "MLServer is restarting (killed by SIGKILL)",
    });
    const refused = await s.app.request("/v2/models/add10/infer", { method: "POST", body: JSON.stringify(x(1)) });
    expect(refused.status).toBe(503);
    callbacks[0]!("Available");
    expect(s.events.at(-1)).toEqual({ model: "add10", version: 1, state: "Available" });
    const ok = await s.app.request("/v2/models/add10/infer", { method: "POST", body: JSON.stringify(x(1)) });
    expect(ok.status).toBe(200);
    expect(s.models.usage().processBytes).toBe(123_456);
    // Once unloaded, a late word from the runtime changes nothing.
    await s.models.unload("add10", 1);
    const seen = s.events.length;
    callbacks[0]!("LoadFailed", "too late");
    expect(s.events.length).toBe(seen);
    await s.models.close();
  });
});
