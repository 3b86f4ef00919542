import { describe, expect, it } from "vitest";
import { formatStatus } from "../../src/commands/status.js";

describe("tern status model (text)", () => {
  it("shows requested, desired and available replicas and the last autoscaling decision with its reason", () => {
    const text = formatStatus("Model", {
      name: "iris",
      version: 1,
      state: "ModelAvailable",
      replicas: 1,
      desiredReplicas: 3,
      availableReplicas: 3,
      server: "onnx",
      placement: [],
      autoscaling: {
        minReplicas: 1,
        maxReplicas: 4,
        lastDecision: { at: 0, from: 2, to: 3, reason: "lag 5 per replica above 2 for 5 s: 2 → 3" },
      },
    });
    expect(text).toContain("replicas: 1 requested, 3 desired, 3 available, server onnx");
    expect(text).toContain("autoscaling: 1..4, 3 desired now");
    expect(text).toContain("last decision (1970-01-01T00:00:00.000Z): lag 5 per replica above 2 for 5 s: 2 → 3");
  });

  it("shows a plain model as before", () => {
    const text = formatStatus("Model", {
      name: "iris",
      version: 1,
      state: "ModelAvailable",
      replicas: 2,
      desiredReplicas: 2,
      availableReplicas: 2,
      placement: [],
    });
    expect(text).toBe("Model iris version 1: ModelAvailable\n  replicas: 2 requested, 2 available\n");
  });

  it("shows a Server's desired replicas, the manifest's, and why autoscaling moved it", () => {
    const text = formatStatus("Server", {
      name: "onnx",
      state: "ServerReady",
      replicas: 3,
      specReplicas: 1,
      availableReplicas: 3,
      loadedModels: 3,
      autoscaling: { minReplicas: 1, maxReplicas: 4, reason: "model iris wants 3 replicas: 2 → 3" },
      replicaStatus: [],
    });
    expect(text).toContain("replicas: 3 desired (manifest 1), 3 connected; 3 model replicas held");
    expect(text).toContain("autoscaling: 1..4; last: model iris wants 3 replicas: 2 → 3");
  });
});
