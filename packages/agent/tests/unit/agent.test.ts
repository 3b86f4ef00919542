import { describe, expect, it } from "vitest";
import { createAgent } from "../../src/agent.js";
import { createArtifactFetcher } from "../../src/artifacts/artifact-fetcher.js";
import { loadAgentConfig } from "../../src/config.js";
import { createOnnxRuntime } from "../../src/runtime/onnx-runtime.js";
import { IRIS_ROWS, REPO_ROOT, sampleUri } from "./helpers.js";

describe("agent", () => {
  it("on an IPv6 host advertises bracketed addresses that answer (http://[::1]:port, [::1]:port)", async () => {
    const agent = createAgent({
      server: "mlserver",
      replica: 0,
      runtime: createOnnxRuntime(),
      fetcher: createArtifactFetcher({ cacheDir: "/tmp/tern-agent-test-cache", fileBaseDir: REPO_ROOT }),
      memoryBytes: 1 << 20,
      host: "::1",
      httpPort: 0,
      grpcPort: 0,
    });
    try {
      const endpoints = await agent.start();
      expect(endpoints.http).toMatch(/^http:\/\/\[::1\]:\d+$/);
      expect(endpoints.grpc).toMatch(/^\[::1\]:\d+$/);
      expect((await fetch(`${endpoints.http}/v2/health/live`, { signal: AbortSignal.timeout(5000) })).status).toBe(200);
    } finally {
      await agent.stop(0);
    }
  });

  it("goes starting → running → draining → stopped, serving real HTTP on an ephemeral port", async () => {
    const events: string[] = [];
    const agent = createAgent({
      server: "mlserver",
      replica: 2,
      runtime: createOnnxRuntime(),
      fetcher: createArtifactFetcher({ cacheDir: "/tmp/tern-agent-test-cache", fileBaseDir: REPO_ROOT }),
      memoryBytes: 1 << 20,
      httpPort: 0,
      grpcPort: 0,
      onStateChange: (e) => events.push(`${e.model}:${e.state}`),
    });
    expect(agent.state()).toBe("starting");
    const endpoints = await agent.start();
    expect(agent.state()).toBe("running");
    expect(endpoints.http).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(endpoints.grpc).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(agent.capabilities()).toEqual(["onnx"]);

    const desired = (names: string[]) =>
      names.map((m) => ({
        model: m,
        version: 1,
        storageUri: sampleUri(m),
        memoryBytes: 0,
        requirements: ["onnx"],
        parameters: [],
      }));
    await agent.reconcile(desired(["iris", "add10"]));
    expect(
      agent
        .loaded()
        .map((l) => l.model)
        .sort(),
    ).toEqual(["add10", "iris"]);
    await agent.reconcile(desired(["iris"]));
    expect(agent.loaded()).toEqual([{ model: "iris", version: 1 }]);
    expect(events).toContain("add10:Unloaded");
    // Loads and unloads are counted on /metrics; reconciling to what is held loads nothing again.
    await agent.reconcile(desired(["iris"]));
    const metricsText = await (await fetch(`${endpoints.http}/metrics`)).text();
    expect(metricsText).toContain('tern_agent_model_state_changes_total{model="iris",state="Loading"} 1');
    expect(metricsText).toContain('tern_agent_model_state_changes_total{model="add10",state="Unloaded"} 1');
    expect(metricsText).not.toMatch(/tern_agent_model_state_changes_total\{model="iris",state="Unload/);

    const infer = () =>
      fetch(`${endpoints.http}/v2/models/iris/infer`, {
        method: "POST",
        body: JSON.stringify({
          inputs: [{ name: "predict", shape: [1, 4], datatype: "FP32", data: IRIS_ROWS[2]!.features }],
        }),
      });
    const res = await infer();
    expect(res.status).toBe(200);
    expect(((await res.json()) as { outputs: Array<{ data: number[] }> }).outputs[1]!.data).toEqual([1]);

    agent.drain();
    expect(agent.state()).toBe("draining");
    expect((await fetch(`${endpoints.http}/v2/health/ready`)).status).toBe(503);
    expect((await infer()).status).toBe(503);

    await agent.stop(1000);
    expect(agent.state()).toBe("stopped");
    await expect(fetch(`${endpoints.http}/v2/health/live`)).rejects.toThrow();
  });
});

describe("agent config", () => {
  it("has working defaults", () => {
    const c = loadAgentConfig({});
    expect(c).toMatchObject({
      TERN_AGENT_SERVER: "mlserver",
      TERN_AGENT_REPLICA: 0,
      TERN_AGENT_HTTP_PORT: 9500,
      TERN_AGENT_GRPC_PORT: 9501,
      TERN_AGENT_MEMORY: 1 << 30,
      TERN_AGENT_OVERCOMMIT_PERCENT: 10,
      TERN_AGENT_MAX_BODY: 16 << 20,
      TERN_ARTIFACT_MAX_BYTES: 1 << 30,
    });
    expect(c.TERN_ARTIFACT_ROOTS).toBeUndefined();
  });

  it("parses the artifact roots and the download limit", () => {
    const c = loadAgentConfig({ TERN_ARTIFACT_ROOTS: "/mnt/models, models", TERN_ARTIFACT_MAX_BYTES: "512Mi" });
    expect(c.TERN_ARTIFACT_ROOTS).toEqual(["/mnt/models", "models"]);
    expect(c.TERN_ARTIFACT_MAX_BYTES).toBe(512 << 20);
    expect(() => loadAgentConfig({ TERN_ARTIFACT_MAX_BYTES: "big" })).toThrow(/TERN_ARTIFACT_MAX_BYTES/);
  });

  it("parses quantities and the preload list", () => {
    const c = loadAgentConfig({
      TERN_AGENT_MEMORY: "100Ki",
      TERN_AGENT_PRELOAD: "iris=file://samples/models/iris, add10:3=s3://bucket/add10",
    });
    expect(c.TERN_AGENT_MEMORY).toBe(102400);
    expect(c.TERN_AGENT_PRELOAD).toEqual([
      { model: "iris", version: 1, storageUri: "file://samples/models/iris" },
      { model: "add10", version: 3, storageUri: "s3://bucket/add10" },
    ]);
  });

  it("names the variable that is wrong", () => {
    expect(() => loadAgentConfig({ TERN_AGENT_MEMORY: "lots" })).toThrow(/TERN_AGENT_MEMORY/);
    expect(() => loadAgentConfig({ TERN_AGENT_HTTP_PORT: "70000" })).toThrow(/TERN_AGENT_HTTP_PORT/);
    expect(() => loadAgentConfig({ TERN_AGENT_PRELOAD: "iris" })).toThrow(
      /TERN_AGENT_PRELOAD: "iris" is not name=storageUri/,
    );
  });
});
