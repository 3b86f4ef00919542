import { describe, expect, it } from "vitest";
import { type ExistingService, planEcsServices, serviceName } from "../../src/ecs-plan.js";
import { type DesiredServer, desiredServers } from "../../src/server-follower.js";

const defs = { "tern-onnx": "agent-onnx", mlserver: "agent-mlserver" };
const onnx = (server: string, replicas: number): DesiredServer => ({
  server,
  replicas,
  serverConfig: "tern-onnx",
  capabilities: ["onnx"],
});
const active = (server: string, desiredCount: number, taskDefinition = "td:1"): ExistingService => ({
  name: serviceName("prod", server),
  status: "ACTIVE",
  desiredCount,
  taskDefinition,
  deploymentConfiguration: { minimumHealthyPercent: 100, maximumPercent: 200 },
});
const never = () => false;
/** What a Server without a deploymentStrategy gets. */
const DEFAULT = { minimumHealthyPercent: 100, maximumPercent: 200 };

describe("planEcsServices", () => {
  it("creates a missing service with the Server's replicas", () => {
    expect(planEcsServices("prod", [onnx("a", 2)], [], defs, never)).toEqual([
      {
        action: "create",
        service: "tern-prod-a",
        server: onnx("a", 2),
        desiredCount: 2,
        deploymentConfiguration: DEFAULT,
      },
    ]);
  });

  it("creates a service with the deployment configuration of the Server's strategy", () => {
    const server = { ...onnx("a", 4), deploymentStrategy: { rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } } };
    const [action] = planEcsServices("prod", [server], [], defs, never);
    expect(action).toMatchObject({
      action: "create",
      deploymentConfiguration: { minimumHealthyPercent: 100, maximumPercent: 125 },
    });
  });

  it("updates only the configuration of a service whose Server changed its strategy, keeping the revision", () => {
    const server = { ...onnx("a", 2), deploymentStrategy: { type: "Recreate" as const } };
    expect(planEcsServices("prod", [server], [active("a", 2)], defs, never)).toEqual([
      {
        action: "update",
        service: "tern-prod-a",
        server,
        desiredCount: 2,
        deploymentConfiguration: { minimumHealthyPercent: 0, maximumPercent: 100 },
        newRevision: false,
      },
    ]);
  });

  it("updates a service that reports no deployment configuration (moto does not keep CreateService's)", () => {
    const bare = { ...active("a", 2), deploymentConfiguration: undefined };
    expect(planEcsServices("prod", [onnx("a", 2)], [bare], defs, never)).toMatchObject([
      { action: "update", deploymentConfiguration: DEFAULT, newRevision: false },
    ]);
  });

  it("sends the percentages for the new count when a Server with a strategy scales", () => {
    const server = { ...onnx("a", 2), deploymentStrategy: { rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } } };
    const at4 = { ...active("a", 4), deploymentConfiguration: { minimumHealthyPercent: 100, maximumPercent: 125 } };
    expect(planEcsServices("prod", [server], [at4], defs, never)).toMatchObject([
      {
        action: "update",
        desiredCount: 2,
        deploymentConfiguration: { minimumHealthyPercent: 100, maximumPercent: 150 },
      },
    ]);
  });

  it("updates a service whose desired count differs, and leaves a matching one alone", () => {
    const plan = planEcsServices("prod", [onnx("a", 3), onnx("b", 1)], [active("a", 2), active("b", 1)], defs, never);
    expect(plan).toEqual([
      {
        action: "update",
        service: "tern-prod-a",
        server: onnx("a", 3),
        desiredCount: 3,
        deploymentConfiguration: DEFAULT,
        newRevision: false,
      },
    ]);
  });

  it("updates a service that runs a stale task definition even when its count is right", () => {
    const plan = planEcsServices(
      "prod",
      [onnx("a", 2)],
      [active("a", 2, "old:1")],
      defs,
      (s) => s.taskDefinition === "old:1",
    );
    expect(plan).toMatchObject([{ action: "update", newRevision: true }]);
  });

  it("deletes an active service whose Server is gone, and ignores one already draining", () => {
    const draining = { ...active("gone2", 0), status: "DRAINING" };
    expect(planEcsServices("prod", [], [active("gone", 1), draining], defs, never)).toEqual([
      { action: "delete", service: "tern-prod-gone" },
    ]);
  });

  it("waits for a service still being deleted before creating it again", () => {
    const plan = planEcsServices("prod", [onnx("a", 1)], [{ ...active("a", 0), status: "DRAINING" }], defs, never);
    expect(plan).toEqual([
      { action: "wait", service: "tern-prod-a", reason: "service tern-prod-a is still being deleted" },
    ]);
  });

  it("creates again over an INACTIVE (deleted) service", () => {
    const plan = planEcsServices("prod", [onnx("a", 1)], [{ ...active("a", 0), status: "INACTIVE" }], defs, never);
    expect(plan.map((a) => a.action)).toEqual(["create"]);
  });

  it("waits, naming the variable, for an mlserver Server when no mlserver task definition is configured", () => {
    const ml: DesiredServer = { server: "ml", replicas: 1, serverConfig: "mlserver", capabilities: ["sklearn"] };
    const [action] = planEcsServices("prod", [ml], [], { "tern-onnx": "agent-onnx" }, never);
    expect(action).toMatchObject({ action: "wait", service: "tern-prod-ml" });
    expect(action?.action === "wait" ? action.reason : "").toContain("TERN_ECS_TASK_DEFINITION_MLSERVER");
  });
});

describe("desiredServers", () => {
  it("wants 0 replicas of a Server being deleted, and the status replicas (autoscaled) otherwise", () => {
    expect(
      desiredServers([
        { name: "a", serverConfig: "tern-onnx", capabilities: ["onnx"], state: "ServerReady", replicas: 4 },
        { name: "b", serverConfig: "mlserver", capabilities: ["sklearn"], state: "ServerTerminating", replicas: 2 },
      ]).map((s) => [s.server, s.replicas]),
    ).toEqual([
      ["a", 4],
      ["b", 0],
    ]);
  });
});
