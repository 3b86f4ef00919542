import { describe, expect, it } from "vitest";
import { checkModelGatewayReplicas, modelGatewayEnvSchema, parseEnv } from "../../src/config.js";
import { checkWorkerPath, workerRegistrationSchema } from "../../src/worker-protocol.js";

function problems(body: unknown): string[] {
  const result = workerRegistrationSchema.safeParse(body);
  return result.success ? [] : result.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
}

describe("worker registration", () => {
  it("accepts a model gateway and a dataflow worker with a stable id, with or without an endpoint", () => {
    expect(problems({ kind: "modelgateway", id: "modelgateway-0" })).toEqual([]);
    expect(problems({ kind: "dataflow", id: "dataflow-1", endpoint: "http://127.0.0.1:9300" })).toEqual([]);
  });

  it("refuses unknown fields, naming them", () => {
    expect(problems({ kind: "modelgateway", id: "mg-0", replica: 0 }).join()).toMatch(/replica/);
  });

  it("refuses an unknown kind and a missing id", () => {
    expect(problems({ kind: "agent", id: "a-0" }).join()).toMatch(/^kind:/);
    expect(problems({ kind: "dataflow" }).join()).toMatch(/^id:/);
  });

  it.each(["", "Modelgateway-0", "mg.0", "-mg", "mg-", "mg_0", "a".repeat(64)])("refuses the id %j", (id) => {
    expect(problems({ kind: "modelgateway", id }).join()).toMatch(/^id:/);
  });

  it("refuses an endpoint that is not an http(s) URL", () => {
    expect(problems({ kind: "dataflow", id: "d-0", endpoint: "ftp://x" }).join()).toMatch(/^endpoint:/);
  });

  it("checks the kind and id of a path", () => {
    expect(checkWorkerPath("modelgateway", "modelgateway-0")).toBeUndefined();
    expect(checkWorkerPath("agents", "x")).toMatch(/unknown worker kind "agents"/);
    expect(checkWorkerPath("dataflow", "Bad")).toMatch(/worker id "Bad"/);
  });
});

describe("model gateway replicas", () => {
  it("defaults to 1 replica and 16 buckets", () => {
    expect(parseEnv(modelGatewayEnvSchema, {})).toEqual({
      TERN_MODELGATEWAY_REPLICAS: 1,
      TERN_MODELGATEWAY_BUCKETS: 16,
    });
  });

  it("refuses more replicas than partitions, naming both numbers", () => {
    expect(() => checkModelGatewayReplicas({ KAFKA_PARTITIONS: 4, TERN_MODELGATEWAY_REPLICAS: 4 })).not.toThrow();
    expect(() => checkModelGatewayReplicas({ KAFKA_PARTITIONS: 4, TERN_MODELGATEWAY_REPLICAS: 5 })).toThrow(
      expect.objectContaining({
        code: "config.invalid",
        message: expect.stringMatching(/TERN_MODELGATEWAY_REPLICAS: 5 .*KAFKA_PARTITIONS 4/),
      }),
    );
  });
});
