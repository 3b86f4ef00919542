import { hasCode } from "@tern/core";
import { describe, expect, it } from "vitest";
import { loadControlConfig } from "../../src/config.js";

const ecsEnv = {
  TERN_ECS_CLUSTER: "tern-prod",
  TERN_ECS_SUBNETS: "subnet-a, subnet-b",
  TERN_ECS_SECURITY_GROUPS: "sg-1",
  TERN_ECS_TASK_DEFINITION_TERN_ONNX: "tern-prod-agent-onnx",
};

describe("loadControlConfig", () => {
  it("runs two dataflow workers and the ECS controller by default", () => {
    const config = loadControlConfig(ecsEnv);
    expect(config.TERN_DATAFLOW_WORKERS).toBe(2);
    expect(config.ecs).toMatchObject({
      cluster: "tern-prod",
      subnets: ["subnet-a", "subnet-b"],
      securityGroups: ["sg-1"],
      taskDefinitions: { "tern-onnx": "tern-prod-agent-onnx" },
      schedulerUrl: "http://127.0.0.1:9004",
    });
  });

  it("names every variable the ECS controller is missing", () => {
    let error: unknown;
    try {
      loadControlConfig({ TERN_ECS_SUBNETS: "subnet-a" });
    } catch (err) {
      error = err;
    }
    expect(hasCode(error, "config.invalid")).toBe(true);
    const message = (error as Error).message;
    expect(message).toContain("TERN_ECS_CLUSTER: required with TERN_CONTROLLER=ecs");
    expect(message).toContain("TERN_ECS_SECURITY_GROUPS: required");
    expect(message).toContain("TERN_ECS_TASK_DEFINITION_TERN_ONNX: required");
    expect(message).not.toContain("TERN_ECS_SUBNETS");
  });

  it("needs none of them without the ECS controller", () => {
    expect(loadControlConfig({ TERN_CONTROLLER: "none", TERN_DATAFLOW_WORKERS: "3" })).toMatchObject({
      TERN_DATAFLOW_WORKERS: 3,
    });
  });

  it("refuses a bad worker count or stage, naming the variable", () => {
    expect(() => loadControlConfig({ ...ecsEnv, TERN_DATAFLOW_WORKERS: "two" })).toThrow(/TERN_DATAFLOW_WORKERS/);
    expect(() => loadControlConfig({ ...ecsEnv, TERN_STAGE: "prod.eu" })).toThrow(/TERN_STAGE/);
  });
});
