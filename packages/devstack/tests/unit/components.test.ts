import { describe, expect, it } from "vitest";
import { localComponents } from "../../src/components.js";
import { loadDevStackConfig } from "../../src/config.js";

describe("the components npm start runs", () => {
  it("runs two dataflow workers by default, after the scheduler, without waiting for them", () => {
    const components = localComponents(loadDevStackConfig({}));
    const names = components.map((c) => c.name);
    expect(names.filter((n) => n.startsWith("dataflow-"))).toEqual(["dataflow-0", "dataflow-1"]);
    expect(names.indexOf("dataflow-0")).toBeGreaterThan(names.indexOf("scheduler"));
    const worker = components.find((c) => c.name === "dataflow-1")!;
    expect(worker.args).toContain("packages/dataflow/src/main.ts");
    expect(worker.env).toMatchObject({ TERN_DATAFLOW_ID: "dataflow-1", TERN_SCHEDULER_URL: "http://127.0.0.1:9004" });
    expect(worker.readyInBackground).toBe(true);
    // The components the samples need are still waited for.
    expect(components.find((c) => c.name === "modelgateway-0")?.readyInBackground).toBeUndefined();
  });

  it("runs TERN_DATAFLOW_WORKERS of them, none at 0", () => {
    const count = (value: string) =>
      localComponents(loadDevStackConfig({ TERN_DATAFLOW_WORKERS: value })).filter((c) =>
        c.name.startsWith("dataflow-"),
      ).length;
    expect(count("3")).toBe(3);
    expect(count("0")).toBe(0);
    expect(() => loadDevStackConfig({ TERN_DATAFLOW_WORKERS: "-1" })).toThrow(/TERN_DATAFLOW_WORKERS/);
  });
});
