import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { parseManifests } from "../../src/manifest.js";
import type { ModelResource, ServerResource } from "../../src/resources.js";
import { checkResourceName, effectiveReplicas, resourceSchemas } from "../../src/schemas.js";

const validDir = fileURLToPath(new URL("../fixtures/valid/", import.meta.url));
const fixtures = readdirSync(validDir).map((file) => ({ file, text: readFileSync(join(validDir, file), "utf8") }));

type Def = { type: string; shape?: Record<string, { _zod: { def: Def } }>; innerType?: { _zod: { def: Def } } };
type Node = { _zod: { def: Def & { in?: Node; element?: Node } } };

/** Every field path a schema accepts (`spec.steps[].batch.size`), found by walking the zod definitions. */
function fieldPaths(schema: Node, prefix = ""): string[] {
  let def = schema._zod.def;
  while (def.innerType !== undefined || (def.type === "pipe" && def.in !== undefined)) {
    def = (def.innerType ?? def.in)!._zod.def as typeof def;
  }
  if (def.type === "array" && def.element !== undefined) return fieldPaths(def.element, `${prefix}[]`);
  if (def.type !== "object" || def.shape === undefined) return [];
  return Object.entries(def.shape).flatMap(([key, child]) => {
    const path = prefix === "" ? key : `${prefix}.${key}`;
    return [path, ...fieldPaths(child as Node, path)];
  });
}

/** Every field path present in a plain value. */
function presentPaths(value: unknown, prefix = ""): string[] {
  if (Array.isArray(value)) return value.flatMap((item) => presentPaths(item, `${prefix}[]`));
  if (typeof value !== "object" || value === null) return [];
  return Object.entries(value).flatMap(([key, child]) => {
    const path = prefix === "" ? key : `${prefix}.${key}`;
    return [path, ...presentPaths(child, path)];
  });
}

describe("valid fixtures", () => {
  it.each(fixtures)("$file parses without problems", ({ file, text }) => {
    const { resources, problems } = parseManifests(text, file);
    expect(problems).toEqual([]);
    expect(resources.length).toBeGreaterThan(0);
  });

  it("together use every field of every kind", () => {
    const raw = fixtures.flatMap(({ text }) =>
      parseAllDocuments(text).flatMap((doc) => {
        const js = doc.toJS() as unknown;
        return Array.isArray(js) ? js : [js];
      }),
    ) as { kind: string }[];
    for (const [kind, schema] of Object.entries(resourceSchemas)) {
      const present = new Set(raw.filter((r) => r.kind === kind).flatMap((r) => presentPaths(r)));
      const missing = fieldPaths(schema as unknown as Node).filter((path) => !present.has(path));
      expect({ kind, missing }).toEqual({ kind, missing: [] });
    }
  });

  it("reads the DESIGN §0 iris/mlserver pair as given", () => {
    const text = fixtures.find((f) => f.file === "iris-mlserver.yaml")!.text;
    const [model, server] = parseManifests(text).resources as [ModelResource, ServerResource];
    expect(model).toEqual({
      apiVersion: "mlops.seldon.io/v1alpha1",
      kind: "Model",
      metadata: { name: "iris" },
      spec: {
        storageUri: "gs://seldon-models/scv2/samples/mlserver_1.2.3/iris-sklearn",
        requirements: ["sklearn"],
        memory: "100Ki",
        replicas: 3,
      },
    });
    expect(server).toEqual({
      apiVersion: "mlops.seldon.io/v1alpha1",
      kind: "Server",
      metadata: { name: "mlserver", namespace: "seldon" },
      spec: { serverConfig: "mlserver", replicas: 4 },
    });
  });

  it("keeps Kubernetes metadata and drops status", () => {
    const text = fixtures.find((f) => f.file === "model-all-fields.yaml")!.text;
    const [model] = parseManifests(text).resources as [ModelResource];
    expect(model.metadata).toMatchObject({ uid: "5f1c3e2a-0000-4000-8000-000000000001", generation: 3 });
    expect(model.metadata.labels).toEqual({ team: "risk", "app.kubernetes.io/name": "income" });
    expect("status" in model).toBe(false);
    expect(model.spec.parameters).toEqual([
      { name: "max_batch_size", value: "16" },
      { name: "device", value: "cpu" },
    ]);
  });

  it("keeps a numeric memory as its string form", () => {
    const text = fixtures.find((f) => f.file === "resources.json")!.text;
    const [model] = parseManifests(text).resources as [ModelResource];
    expect(model.spec.memory).toBe("1000");
  });
});

describe("effectiveReplicas", () => {
  it.each([
    [{}, 1],
    [{ replicas: 3 }, 3],
    [{ replicas: 0 }, 0],
    [{ minReplicas: 2 }, 2],
    [{ minReplicas: 2, maxReplicas: 5 }, 2],
    [{ maxReplicas: 5 }, 1],
    [{ replicas: 4, minReplicas: 2 }, 4],
  ])("%j → %d", (spec, expected) => {
    expect(effectiveReplicas(spec)).toBe(expected);
  });
});

describe("checkResourceName", () => {
  it("accepts letters, digits, dashes and underscores up to 253 characters", () => {
    for (const name of ["iris", "Iris_2", "a-b-c", "0", "x".repeat(253)])
      expect(checkResourceName(name)).toBeUndefined();
  });

  it.each([
    ["", "must not be empty"],
    ["iris.v1", 'must not contain "." (got "iris.v1"); use letters, digits, "-" and "_"'],
    ["my model", 'may contain only letters, digits, "-" and "_" (got "my model")'],
    ["ünïcode", 'may contain only letters, digits, "-" and "_" (got "ünïcode")'],
    ["x".repeat(254), "must be at most 253 characters (got 254)"],
  ])("rejects %j", (name, message) => {
    expect(checkResourceName(name)).toBe(message);
  });
});
