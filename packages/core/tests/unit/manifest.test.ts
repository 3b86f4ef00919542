import { describe, expect, it } from "vitest";
import { hasCode } from "../../src/errors.js";
import {
  findDuplicateResources,
  formatFieldPath,
  formatProblem,
  ManifestInvalidError,
  manifestWarnings,
  parseManifestDocuments,
  parseManifests,
  parseManifestsOrThrow,
  parseResourceOrThrow,
  validateResource,
} from "../../src/manifest.js";
import { API_VERSION } from "../../src/resources.js";
import { experimentCandidates } from "../../src/schemas.js";

const iris = { storageUri: "s3://models/iris" };
const model = (spec: object, metadata: object = { name: "iris" }) => ({
  apiVersion: API_VERSION,
  kind: "Model",
  metadata,
  spec,
});
const server = (spec: object) => ({ apiVersion: API_VERSION, kind: "Server", metadata: { name: "mlserver" }, spec });
const pipeline = (spec: object, name = "p") => ({
  apiVersion: API_VERSION,
  kind: "Pipeline",
  metadata: { name },
  spec,
});
const experiment = (spec: object) => ({ apiVersion: API_VERSION, kind: "Experiment", metadata: { name: "e" }, spec });
const ab = [
  { name: "a", weight: 50 },
  { name: "b", weight: 50 },
];

/** [what is wrong, the manifest (object → JSON, or YAML text), the exact lines `tern validate` prints]. */
const invalid: [string, object | string, string[]][] = [
  [
    "replicas below minReplicas",
    model({ ...iris, replicas: 3, minReplicas: 4 }),
    ["spec.replicas: must be at least spec.minReplicas (3 < 4)"],
  ],
  [
    "replicas above maxReplicas",
    model({ ...iris, replicas: 5, maxReplicas: 4 }),
    ["spec.replicas: must be at most spec.maxReplicas (5 > 4)"],
  ],
  [
    "minReplicas above maxReplicas",
    model({ ...iris, minReplicas: 5, maxReplicas: 3 }),
    ["spec.minReplicas: must be at most spec.maxReplicas (5 > 3)"],
  ],
  [
    "maxReplicas below the default replica count",
    model({ ...iris, maxReplicas: 0 }),
    ["spec.maxReplicas: must be at least the default replica count 1 (0 < 1); set spec.replicas"],
  ],
  [
    "a typo in a field name",
    model({ ...iris, replica: 2 }),
    ['spec.replica: unknown field (did you mean "replicas"?)'],
  ],
  ["an unknown field with no close match", model({ ...iris, colour: "red" }), ["spec.colour: unknown field"]],
  ["negative replicas", model({ ...iris, replicas: -1 }), ["spec.replicas: must be a non-negative integer (got -1)"]],
  [
    "fractional replicas",
    model({ ...iris, replicas: 1.5 }),
    ["spec.replicas: must be a non-negative integer (got 1.5)"],
  ],
  ["replicas as a string", model({ ...iris, replicas: "3" }), ['spec.replicas: must be a number (got "3")']],
  ["no storageUri", model({ replicas: 1 }), ["spec.storageUri: required"]],
  ["an empty storageUri", model({ storageUri: " " }), ["spec.storageUri: must not be empty"]],
  [
    "a storageUri without a scheme",
    model({ storageUri: "models/iris" }),
    [
      'spec.storageUri: must be a URI with a scheme (e.g. s3://bucket/path, file:///path) or an absolute path (got "models/iris")',
    ],
  ],
  [
    "a memory that is not a quantity",
    model({ ...iris, memory: "lots" }),
    ['spec.memory: "lots" is not a quantity (expected a Kubernetes quantity such as 100Ki, 1.5Gi, 500M or 1e3)'],
  ],
  ["a negative memory", model({ ...iris, memory: "-1Gi" }), ['spec.memory: must not be negative (got "-1Gi")']],
  [
    "a memory in GB",
    model({ ...iris, memory: "2GB" }),
    [
      'spec.memory: unknown unit "GB" in "2GB" (did you mean "G"?); units are Ki, Mi, Gi, Ti, Pi, Ei, n, u, m, k, M, G, T, P, E',
    ],
  ],
  [
    "requirements as a single string",
    model({ ...iris, requirements: "sklearn" }),
    ['spec.requirements: must be a list (got "sklearn")'],
  ],
  [
    "duplicate parameter names",
    model({
      ...iris,
      parameters: [
        { name: "device", value: "cpu" },
        { name: "device", value: "gpu" },
      ],
    }),
    ['spec.parameters[1].name: duplicate parameter "device" (also spec.parameters[0])'],
  ],
  [
    "a parameter value that is not a string",
    model({ ...iris, parameters: [{ name: "batch", value: 16 }] }),
    ["spec.parameters[0].value: must be a string (got 16)"],
  ],
  [
    "a logger percent above 100",
    model({ ...iris, logger: { percent: 150 } }),
    ["spec.logger.percent: must be an integer from 0 to 100 (got 150)"],
  ],
  [
    "a server name with a dot",
    model({ ...iris, server: "ml.server" }),
    ['spec.server: must not contain "." (got "ml.server"); use letters, digits, "-" and "_"'],
  ],
  [
    "a name with a dot",
    model(iris, { name: "iris.v1" }),
    ['metadata.name: must not contain "." (got "iris.v1"); use letters, digits, "-" and "_"'],
  ],
  [
    "a name with a space",
    model(iris, { name: "my model" }),
    ['metadata.name: may contain only letters, digits, "-" and "_" (got "my model")'],
  ],
  ["an empty name", model(iris, { name: "" }), ["metadata.name: must not be empty"]],
  [
    "a name longer than 253 characters",
    model(iris, { name: "n".repeat(254) }),
    ["metadata.name: must be at most 253 characters (got 254)"],
  ],
  ["no metadata", { apiVersion: API_VERSION, kind: "Model", spec: iris }, ["metadata: required"]],
  [
    "a label that is not a string",
    model(iris, { name: "iris", labels: { v: 1 } }),
    ["metadata.labels.v: must be a string (got 1)"],
  ],
  [
    "another apiVersion",
    { ...model(iris), apiVersion: "v1" },
    ['apiVersion: must be mlops.seldon.io/v1alpha1 (got "v1")'],
  ],
  [
    "no apiVersion",
    { kind: "Model", metadata: { name: "iris" }, spec: iris },
    ["apiVersion: required (mlops.seldon.io/v1alpha1)"],
  ],
  [
    "a misspelt kind",
    { ...model(iris), kind: "Modle" },
    ['kind: unknown kind "Modle" (did you mean "Model"?); expected one of Model, Server, Pipeline, Experiment'],
  ],
  [
    "a Seldon kind Tern does not take",
    { ...model(iris), kind: "SeldonRuntime" },
    ['kind: unknown kind "SeldonRuntime"; expected one of Model, Server, Pipeline, Experiment'],
  ],
  [
    "no kind",
    { apiVersion: API_VERSION, metadata: { name: "iris" } },
    ["kind: required (expected one of Model, Server, Pipeline, Experiment)"],
  ],
  [
    "specs instead of spec",
    { apiVersion: API_VERSION, kind: "Model", metadata: { name: "iris" }, specs: iris },
    ["spec: required", 'specs: unknown field (did you mean "spec"?)'],
  ],
  [
    "a scalar document",
    "just some text\n",
    ['a manifest must be a map with apiVersion, kind, metadata and spec (got "just some text")'],
  ],
  [
    "a YAML indentation error",
    "apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata:\n  name: iris\n bad: x\n",
    ["YAML syntax error at line 5, column 1: All mapping items must start at the same column"],
  ],
  [
    "a tab used as indentation",
    "kind: Model\nspec:\n\tx: 1\n",
    ["YAML syntax error at line 3, column 1: Tabs are not allowed as indentation"],
  ],
  ["a server without serverConfig", server({ replicas: 1 }), ["spec.serverConfig: required"]],
  [
    "server capabilities as a string",
    server({ serverConfig: "mlserver", capabilities: "onnx" }),
    ['spec.capabilities: must be a list (got "onnx")'],
  ],
  [
    "server replicas above maxReplicas",
    server({ serverConfig: "mlserver", replicas: 7, maxReplicas: 6 }),
    ["spec.replicas: must be at most spec.maxReplicas (7 > 6)"],
  ],
  ["a pipeline without steps", pipeline({}), ["spec.steps: a pipeline needs at least one step"]],
  ["a pipeline with an empty step list", pipeline({ steps: [] }), ["spec.steps: a pipeline needs at least one step"]],
  [
    "duplicate step names",
    pipeline({ steps: [{ name: "a" }, { name: "a" }] }),
    ['spec.steps[1].name: duplicate step name "a" (also spec.steps[0])'],
  ],
  [
    "a step reading an unknown step",
    pipeline({ steps: [{ name: "preprocess" }, { name: "model", inputs: ["prepocess.outputs"] }] }),
    ['spec.steps[1].inputs[0]: unknown step "prepocess" (did you mean "preprocess"?)'],
  ],
  [
    "a step named like its pipeline",
    pipeline({ steps: [{ name: "p" }] }),
    ['spec.steps[0].name: a step must not be named like its pipeline ("p")'],
  ],
  [
    "a cycle between two steps",
    pipeline({
      steps: [
        { name: "a", inputs: ["b"] },
        { name: "b", inputs: ["a"] },
      ],
    }),
    ["spec.steps[0].inputs: steps form a cycle: a -> b -> a (set spec.allowCycles: true to allow it)"],
  ],
  [
    "a step reading its own outputs",
    pipeline({ steps: [{ name: "a" }, { name: "b", inputs: ["a", "b.outputs.x"] }] }),
    ["spec.steps[1].inputs: steps form a cycle: b -> b (set spec.allowCycles: true to allow it)"],
  ],
  [
    "an empty part in a reference",
    pipeline({ steps: [{ name: "a" }, { name: "b", inputs: ["a..outputs"] }] }),
    ['spec.steps[1].inputs[0]: "a..outputs": empty part between dots'],
  ],
  [
    "output instead of outputs",
    pipeline({ steps: [{ name: "a" }, { name: "b", inputs: ["a.output.x"] }] }),
    [
      'spec.steps[1].inputs[0]: "a.output.x": expected "inputs" or "outputs" after the name, got "output" (did you mean "outputs"?)',
    ],
  ],
  [
    "triggers equal to inputs",
    pipeline({ steps: [{ name: "a" }, { name: "b", inputs: ["a"], triggers: ["a.outputs"] }] }),
    ["spec.steps[1].triggers: triggers must not be the same references as inputs (trigger data is not passed on)"],
  ],
  [
    "an output step that does not exist",
    pipeline({ steps: [{ name: "a" }], output: { steps: ["b"] } }),
    ['spec.output.steps[0]: unknown step "b"'],
  ],
  [
    "a negative join window",
    pipeline({ steps: [{ name: "a", joinWindowMs: -5 }] }),
    ["spec.steps[0].joinWindowMs: must be a non-negative integer (got -5)"],
  ],
  [
    "a fractional batch size",
    pipeline({ steps: [{ name: "a", batch: { size: 2.5 } }] }),
    ["spec.steps[0].batch.size: must be a non-negative integer (got 2.5)"],
  ],
  [
    "an unknown join type",
    pipeline({ steps: [{ name: "a", inputsJoinType: "left" }] }),
    ['spec.steps[0].inputsJoinType: must be one of inner, outer, any (got "left")'],
  ],
  [
    "a misspelt output join",
    pipeline({ steps: [{ name: "a" }], output: { steps: ["a"], stepsJoin: "iner" } }),
    ['spec.output.stepsJoin: must be one of inner, outer, any (got "iner"; did you mean "inner"?)'],
  ],
  [
    "a typo inside a step",
    pipeline({ steps: [{ name: "a", input: ["p.inputs"] }] }),
    ['spec.steps[0].input: unknown field (did you mean "inputs"?)'],
  ],
  [
    "a tensorMap key naming an unknown step",
    pipeline({ steps: [{ name: "a", tensorMap: { "zz.outputs.t": "x" } }] }),
    ['spec.steps[0].tensorMap["zz.outputs.t"]: unknown step "zz"'],
  ],
  [
    "an external input from the pipeline itself",
    pipeline({ input: { externalInputs: ["p.outputs"] }, steps: [{ name: "a" }] }),
    ['spec.input.externalInputs[0]: "p.outputs": external inputs must come from another pipeline, not from "p" itself'],
  ],
  [
    "a deploymentStrategy type Kubernetes does not have",
    server({ serverConfig: "mlserver", deploymentStrategy: { type: "RollingUpdates" } }),
    [
      'spec.deploymentStrategy.type: must be one of RollingUpdate, Recreate (got "RollingUpdates"; did you mean "RollingUpdate"?)',
    ],
  ],
  [
    "a negative maxUnavailable",
    server({ serverConfig: "mlserver", deploymentStrategy: { rollingUpdate: { maxUnavailable: -1 } } }),
    [
      "spec.deploymentStrategy.rollingUpdate.maxUnavailable: must be a non-negative integer or a percentage such as 25% (got -1)",
    ],
  ],
  [
    "a maxSurge that is neither a number nor a percentage",
    server({ serverConfig: "mlserver", deploymentStrategy: { rollingUpdate: { maxSurge: "two" } } }),
    [
      'spec.deploymentStrategy.rollingUpdate.maxSurge: must be a non-negative integer or a percentage such as 25% (got "two")',
    ],
  ],
  [
    "a maxUnavailable above 100%",
    server({ serverConfig: "mlserver", deploymentStrategy: { rollingUpdate: { maxUnavailable: "150%" } } }),
    ['spec.deploymentStrategy.rollingUpdate.maxUnavailable: must be at most 100% (got "150%")'],
  ],
  [
    "maxUnavailable and maxSurge both 0",
    server({ serverConfig: "mlserver", deploymentStrategy: { rollingUpdate: { maxUnavailable: "0%", maxSurge: 0 } } }),
    [
      "spec.deploymentStrategy.rollingUpdate.maxUnavailable: must not be 0 when maxSurge is 0 (no replica could ever be replaced)",
    ],
  ],
  [
    "rollingUpdate with the Recreate type",
    server({ serverConfig: "mlserver", deploymentStrategy: { type: "Recreate", rollingUpdate: { maxSurge: 1 } } }),
    ["spec.deploymentStrategy.rollingUpdate: must not be set when type is Recreate"],
  ],
  [
    "a typo inside rollingUpdate",
    server({ serverConfig: "mlserver", deploymentStrategy: { rollingUpdate: { maxUnavaliable: 1 } } }),
    ['spec.deploymentStrategy.rollingUpdate.maxUnavaliable: unknown field (did you mean "maxUnavailable"?)'],
  ],
  [
    "an experiment without candidates",
    experiment({ candidates: [] }),
    ["spec.candidates: an experiment needs at least one candidate, or a mirror"],
  ],
  [
    "an experiment with no candidates field",
    experiment({}),
    ["spec.candidates: an experiment needs at least one candidate, or a mirror"],
  ],
  [
    "a mirror-only experiment without a default",
    experiment({ mirror: { name: "shadow" } }),
    [
      "spec.default: required when the experiment has a mirror and no candidates (the model whose traffic is served and mirrored)",
    ],
  ],
  [
    "a mirror-only experiment mirroring its own default",
    experiment({ default: "iris", mirror: { name: "iris" } }),
    ['spec.mirror.name: must not be spec.default (got "iris")'],
  ],
  [
    "duplicate candidates",
    experiment({ candidates: [...ab, { name: "a", weight: 1 }] }),
    ['spec.candidates[2].name: duplicate candidate "a" (also spec.candidates[0])'],
  ],
  [
    "weights adding up to 0",
    experiment({
      candidates: [
        { name: "a", weight: 0 },
        { name: "b", weight: 0 },
      ],
    }),
    ["spec.candidates: the candidates' weights must add up to more than 0"],
  ],
  [
    "a negative weight",
    experiment({ candidates: [{ name: "a", weight: -1 }] }),
    ["spec.candidates[0].weight: must be a non-negative integer (got -1)"],
  ],
  [
    "a candidate without a weight",
    experiment({ candidates: [{ name: "a" }] }),
    ["spec.candidates[0].weight: required"],
  ],
  [
    "a default that is not a candidate",
    experiment({ default: "c", candidates: ab }),
    ['spec.default: must be one of the candidates (a, b) (got "c")'],
  ],
  [
    "an unknown resourceType",
    experiment({ candidates: ab, resourceType: "models" }),
    ['spec.resourceType: must be one of model, pipeline (got "models"; did you mean "model"?)'],
  ],
  [
    "a mirror that is also a candidate",
    experiment({ candidates: ab, mirror: { name: "b" } }),
    ['spec.mirror.name: must not be one of the candidates (got "b")'],
  ],
];

describe("invalid manifests", () => {
  it("has a good number of cases", () => {
    expect(invalid.length).toBeGreaterThanOrEqual(30);
  });

  it.each(invalid)("reports %s", (_what, manifest, expected) => {
    const text = typeof manifest === "string" ? manifest : JSON.stringify(manifest, null, 2);
    const { resources, problems } = parseManifests(text, "bad.yaml");
    expect(resources).toEqual([]);
    const header = (p: (typeof problems)[number]) => formatProblem({ ...p, path: "", message: "" }).replace(/: $/, "");
    // Every line names the file and the document; the rest is compared exactly.
    const lines = problems.map((p) => formatProblem(p).slice(header(p).length + 2));
    expect(problems.every((p) => p.source === "bad.yaml" && p.index === 1)).toBe(true);
    expect(lines).toEqual(expected);
  });
});

describe("parseManifests", () => {
  it("formats a problem exactly as tern validate prints it", () => {
    const text = [
      "apiVersion: mlops.seldon.io/v1alpha1",
      "kind: Server",
      "metadata: {name: mlserver}",
      "spec: {serverConfig: mlserver, replicas: 4}",
      "---",
      "apiVersion: mlops.seldon.io/v1alpha1",
      "kind: Model",
      "metadata: {name: iris}",
      "spec: {storageUri: s3://m/iris, replicas: 3, minReplicas: 4}",
    ].join("\n");
    const { resources, problems } = parseManifests(text, "bad.yaml");
    expect(resources.map((r) => r.metadata.name)).toEqual(["mlserver"]);
    expect(problems.map(formatProblem)).toEqual([
      "bad.yaml: document 2 (Model iris): spec.replicas: must be at least spec.minReplicas (3 < 4)",
    ]);
  });

  it("counts empty documents in the numbering but skips them", () => {
    const text = `# leading comment\n---\n---\n${JSON.stringify(model({ storageUri: "x" }))}\n---\n`;
    const { resources, problems } = parseManifests(text);
    expect(resources).toEqual([]);
    expect(problems.map(formatProblem)).toEqual([
      'document 2 (Model iris): spec.storageUri: must be a URI with a scheme (e.g. s3://bucket/path, file:///path) or an absolute path (got "x")',
    ]);
  });

  it("returns nothing for an empty text", () => {
    expect(parseManifests("")).toEqual({ resources: [], problems: [] });
    expect(parseManifests("# only a comment\n")).toEqual({ resources: [], problems: [] });
  });

  it("reads a JSON list and a Kubernetes List as one document per item", () => {
    const items = [model(iris), server({ serverConfig: "mlserver" })];
    expect(parseManifests(JSON.stringify(items)).resources.map((r) => r.kind)).toEqual(["Model", "Server"]);
    const list = { apiVersion: "v1", kind: "List", items: [items[0], { ...items[1], spec: {} }] };
    const { resources, problems } = parseManifests(JSON.stringify(list), "list.json");
    expect(resources.map((r) => r.kind)).toEqual(["Model"]);
    expect(problems.map(formatProblem)).toEqual([
      "list.json: document 2 (Server mlserver): spec.serverConfig: required",
    ]);
  });

  it("treats empty YAML values as absent, as Kubernetes does", () => {
    const text =
      "apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata:\n  name: iris\n  labels:\nspec:\n  storageUri: s3://m/iris\n  requirements:\n";
    expect(parseManifests(text)).toEqual({
      resources: [
        { apiVersion: API_VERSION, kind: "Model", metadata: { name: "iris" }, spec: { storageUri: "s3://m/iris" } },
      ],
      problems: [],
    });
  });

  it("reports a resource defined twice", () => {
    const text = [model(iris), model(iris)].map((m) => JSON.stringify(m)).join("\n---\n");
    expect(parseManifests(text, "twice.yaml").problems.map(formatProblem)).toEqual([
      'twice.yaml: document 2 (Model iris): metadata.name: Model "iris" is defined twice (also in document 1)',
    ]);
  });

  it("reports several problems of one document, each on its own line", () => {
    const { problems } = parseManifests(JSON.stringify(model({ storageUri: "s3://m", replica: 2, memory: "1GB" })));
    expect(problems.map((p) => p.path)).toEqual(["spec.memory", "spec.replica"]);
  });

  it("reports a duplicate YAML key as a syntax error", () => {
    const { problems } = parseManifests("kind: Model\nkind: Server\n");
    expect(problems).toEqual([
      { index: 1, path: "", message: "YAML syntax error at line 2, column 1: Map keys must be unique" },
    ]);
  });
});

describe("findDuplicateResources", () => {
  it("names the file of the first definition when it differs", () => {
    const resource = parseResourceOrThrow(model(iris));
    const problems = findDuplicateResources([
      { source: "a.yaml", index: 1, resource },
      { source: "b.yaml", index: 3, resource },
    ]);
    expect(problems.map(formatProblem)).toEqual([
      'b.yaml: document 3 (Model iris): metadata.name: Model "iris" is defined twice (also in a.yaml document 1)',
    ]);
  });

  it("keeps document indexes with parseManifestDocuments", () => {
    const text = `---\n${JSON.stringify(model(iris))}`;
    expect(parseManifestDocuments(text, "f.yaml").documents.map((d) => [d.source, d.index])).toEqual([["f.yaml", 1]]);
  });
});

describe("parseManifestsOrThrow", () => {
  it("returns the resources of a valid text", () => {
    const text = JSON.stringify(model({ ...iris, memory: "100Ki", replicas: 3 }));
    expect(parseManifestsOrThrow(text)).toEqual([model({ ...iris, memory: "100Ki", replicas: 3 })]);
  });

  it("throws manifest.invalid with one formatted line per problem", () => {
    const text = `${JSON.stringify(model({ ...iris, replicas: 3, minReplicas: 4 }))}\n---\nkind: Modle\n`;
    let caught: unknown;
    try {
      parseManifestsOrThrow(text, "bad.yaml");
    } catch (err) {
      caught = err;
    }
    expect(hasCode(caught, "manifest.invalid")).toBe(true);
    expect(caught).toBeInstanceOf(ManifestInvalidError);
    expect((caught as Error).message).toBe(
      [
        "bad.yaml: document 1 (Model iris): spec.replicas: must be at least spec.minReplicas (3 < 4)",
        "bad.yaml: document 2 (Modle): apiVersion: required (mlops.seldon.io/v1alpha1)",
        'bad.yaml: document 2 (Modle): kind: unknown kind "Modle" (did you mean "Model"?); expected one of Model, Server, Pipeline, Experiment',
      ].join("\n"),
    );
    expect((caught as ManifestInvalidError).problems).toHaveLength(3);
  });
});

describe("validateResource", () => {
  it("takes a bare absolute path as a storageUri, as Seldon does", () => {
    const bare = model({ storageUri: "/mnt/models/iris" });
    expect(validateResource(bare)).toEqual({ ok: true, resource: bare });
  });

  it("validates a parsed object such as a JSON request body", () => {
    expect(validateResource(model(iris))).toEqual({ ok: true, resource: model(iris) });
    expect(validateResource(42, { source: "request body" })).toEqual({
      ok: false,
      problems: [
        {
          source: "request body",
          index: 1,
          path: "",
          message: "a manifest must be a map with apiVersion, kind, metadata and spec (got 42)",
        },
      ],
    });
  });
});

describe("Seldon compatibility", () => {
  const strategies: [string, object][] = [
    ["Recreate", { type: "Recreate" }],
    ["RollingUpdate with no bounds", { type: "RollingUpdate" }],
    ["RollingUpdate with integer bounds", { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } }],
    ["percentage bounds without a type", { rollingUpdate: { maxUnavailable: "25%", maxSurge: "100%" } }],
    ["a maxSurge above 100%", { rollingUpdate: { maxSurge: "200%" } }],
  ];

  it.each(strategies)("accepts Server.spec.deploymentStrategy: %s", (_what, deploymentStrategy) => {
    const result = validateResource(server({ serverConfig: "mlserver", deploymentStrategy }));
    expect(result).toEqual({ ok: true, resource: server({ serverConfig: "mlserver", deploymentStrategy }) });
  });

  it("accepts an experiment with only a mirror and a default, keeping the spec as written", () => {
    const spec = { default: "iris", mirror: { name: "iris-shadow", percent: 50 } };
    expect(validateResource(experiment(spec))).toEqual({ ok: true, resource: experiment(spec) });
  });

  it("warns that deploymentStrategy acts on ECS only, naming the field", () => {
    const resource = parseResourceOrThrow(
      server({ serverConfig: "mlserver", deploymentStrategy: { type: "Recreate" } }),
      { source: "s.yaml", index: 2 },
    );
    expect(manifestWarnings(resource, { source: "s.yaml", index: 2 }).map(formatProblem)).toEqual([
      "s.yaml: document 2 (Server mlserver): spec.deploymentStrategy: applied on ECS only, as the agent service's deployment configuration; the local controller never replaces a running agent, so locally it has no effect",
    ]);
    expect(manifestWarnings(parseResourceOrThrow(server({ serverConfig: "mlserver" })))).toEqual([]);
  });
});

describe("experimentCandidates", () => {
  it("is the candidates when there are some", () => {
    expect(experimentCandidates({ default: "a", candidates: ab, mirror: { name: "m" } })).toEqual(ab);
  });

  it("is the default alone, with all the traffic, for a mirror-only experiment", () => {
    expect(experimentCandidates({ default: "iris", mirror: { name: "shadow" } })).toEqual([
      { name: "iris", weight: 100 },
    ]);
    expect(experimentCandidates({ default: "iris", candidates: [], mirror: { name: "shadow" } })).toEqual([
      { name: "iris", weight: 100 },
    ]);
  });
});

describe("formatFieldPath", () => {
  it("writes indexes in brackets and quotes keys that are not plain words", () => {
    expect(formatFieldPath(["spec", "steps", 2, "inputs", 0])).toBe("spec.steps[2].inputs[0]");
    expect(formatFieldPath(["metadata", "labels", "app.kubernetes.io/name"])).toBe(
      'metadata.labels["app.kubernetes.io/name"]',
    );
    expect(formatFieldPath([])).toBe("");
  });
});
