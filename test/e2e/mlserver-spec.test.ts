/**
 * The scaling specification's example end to end, on Seldon's own server: the Server and Model of samples/manifests
 * (serverConfig mlserver, 4 replicas; Model iris, requirements [sklearn], 3 replicas), applied as written, on four
 * MLServer-backed agent processes, served through the gateway process over REST and gRPC; the Server scaled below the
 * Model's replicas and back; and an xgboost model trained here, placed by the scheduler on the same Server.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { OIP_LOADER_OPTIONS, OIP_PROTO_PATH } from "@tern/agent";
import type { ModelStatus } from "@tern/core";
import { waitFor } from "@tern/devstack";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { repoRoot } from "../helpers/platform-process.js";
import { pythonEnv, runPython } from "../helpers/python.js";
import { type E2eStack, startE2eStack } from "./harness.js";
import { irisRows } from "./iris-data.js";

// The three canonical rows: Fisher's first setosa, versicolor and virginica (rows 0, 50 and 100 of the CSV).
const ROWS = [0, 50, 100].map((i) => irisRows()[i]!);

let stack: E2eStack;
let dir: string;
let serverYaml: string;
let irisYaml: string;

/** One document of a samples/manifests file, by kind and name, exactly as written there. */
async function sampleDocument(file: string, kind: string, name: string): Promise<string> {
  const text = await readFile(join(repoRoot, "samples/manifests", file), "utf8");
  const doc = text
    .split(/^---\s*$/m)
    .find((d) => new RegExp(`^kind: ${kind}$`, "m").test(d) && new RegExp(`^  name: ${name}$`, "m").test(d));
  if (doc === undefined) throw new Error(`no ${kind} ${name} in samples/manifests/${file}`);
  return doc;
}

/** The sample Server with another replica count (the only line changed). */
const serverWith = (replicas: number): string => serverYaml.replace(/^ {2}replicas: 4$/m, `  replicas: ${replicas}`);

const available = (replicas: number) => (s: ModelStatus) =>
  s.state === "ModelAvailable" && s.availableReplicas === replicas && s.placement.length === replicas;

/** The three rows through the gateway's REST port: the labels of MLServer's `predict` output. */
async function restLabels(model: string): Promise<{ status: number; labels?: number[]; body: unknown }> {
  const res = await fetch(`${stack.gateway.url}/v2/models/${model}/infer`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      inputs: [{ name: "predict", datatype: "FP32", shape: [ROWS.length, 4], data: ROWS.flatMap((r) => r.features) }],
    }),
    signal: AbortSignal.timeout(30_000),
  });
  const body = (await res.json()) as { outputs?: Array<{ name: string; data: number[] }> };
  const predict = body.outputs?.find((o) => o.name === "predict");
  return { status: res.status, body, ...(predict ? { labels: predict.data.map(Number) } : {}) };
}

beforeAll(async () => {
  const began = performance.now();
  const python = await pythonEnv("mlserver");
  dir = await mkdtemp(join(tmpdir(), "tern-e2e-mlserver-"));
  await runPython(
    python,
    [
      join(repoRoot, "test/e2e/train_iris_xgboost.py"),
      join(repoRoot, "samples/iris/iris.csv"),
      join(dir, "iris-xgboost"),
    ],
    "",
    120_000,
  );
  // Trained again, to compare with the committed sample (the last test).
  await runPython(
    python,
    [
      join(repoRoot, "samples/scripts/train_iris_sklearn.py"),
      join(repoRoot, "samples/iris/iris.csv"),
      join(dir, "iris-sklearn"),
    ],
    "",
    120_000,
  );
  serverYaml = await sampleDocument("servers.yaml", "Server", "mlserver");
  irisYaml = await sampleDocument("iris.yaml", "Model", "iris");
  // The scheduler and the gateway first, then the agents: four MLServer starts at once leave a busy 2-core machine
  // no room to start the gateway within its deadline.
  stack = await startE2eStack({
    name: "mlserver-spec",
    agents: 0,
    agentEnv: {
      TERN_AGENT_SERVER_TYPE: "mlserver",
      TERN_MLSERVER_PYTHON: python,
      // The harness's 64Mi is less than MLServer itself holds, which placement subtracts (docs/agent.md, "Memory").
      TERN_AGENT_MEMORY: "1Gi",
      TERN_AGENT_CACHE_DIR: join(dir, "cache"),
      // The sample's relative file:// path resolves against the repo root (the agents' working directory).
      TERN_ARTIFACT_ROOTS: `${resolve(repoRoot, "samples")},${dir}`,
    },
    // Four MLServer processes start at once on two shared cores.
    agentStartTimeoutMs: 180_000,
  });
  await Promise.all([0, 1, 2, 3].map((replica) => stack.startAgent(replica)));
  console.log(`[e2e mlserver] 4 MLServer-backed agents ready ${seconds(began)} after the setup began (venv current)`);
}, 900_000);

afterAll(async () => {
  await stack?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("the specification's iris on four MLServer-backed agents, through the gateway process", () => {
  it("applied as written: ModelAvailable with 3 replicas on 3 distinct agents, labels 0, 1, 2 over REST and gRPC", async () => {
    expect(serverYaml).toMatch(/^ {2}serverConfig: mlserver$/m);
    expect(irisYaml).toMatch(/^ {4}- sklearn$/m);
    await stack.apply(`${serverYaml}\n---\n${irisYaml}`);
    const applied = performance.now();
    const status = await stack.waitModel("iris", available(3), "iris ModelAvailable with 3 replicas", 180_000);
    console.log(`[e2e mlserver] iris ModelAvailable on 3 agents ${seconds(applied)} after the apply`);
    expect(status.server).toBe("mlserver");
    expect(new Set(status.placement.map((p) => p.replica)).size).toBe(3);
    expect(status.placement.every((p) => p.server === "mlserver" && p.state === "Available")).toBe(true);

    // REST: the gateway learns the route from the scheduler's watch stream.
    const rest = await waitFor(
      async () => {
        const answer = await restLabels("iris");
        return answer.status === 200 ? answer : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 200, description: "iris served through the gateway" },
    );
    expect(rest.labels, JSON.stringify(rest.body)).toEqual(ROWS.map((r) => r.label));
    console.log(`[e2e mlserver] iris answered through the gateway ${seconds(applied)} after the apply`);

    // gRPC: the same rows through the gateway's gRPC port.
    const definition = protoLoader.loadSync(OIP_PROTO_PATH, OIP_LOADER_OPTIONS);
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      inference: { GRPCInferenceService: new (address: string, creds: grpc.ChannelCredentials) => grpc.Client };
    };
    const client = new loaded.inference.GRPCInferenceService(
      stack.gateway.grpcAddress,
      grpc.credentials.createInsecure(),
    ) as grpc.Client & {
      ModelInfer(
        request: unknown,
        options: grpc.CallOptions,
        callback: (err: grpc.ServiceError | null, res: GrpcInferResponse) => void,
      ): void;
    };
    try {
      const answer = await new Promise<GrpcInferResponse>((ok, fail) =>
        client.ModelInfer(
          {
            model_name: "iris",
            inputs: [
              {
                name: "predict",
                datatype: "FP32",
                shape: [ROWS.length, 4],
                contents: { fp32_contents: ROWS.flatMap((r) => r.features) },
              },
            ],
          },
          { deadline: Date.now() + 30_000 },
          (err, res) => (err ? fail(err) : ok(res)),
        ),
      );
      expect(answer.model_name).toBe("iris");
      const predict = answer.outputs.find((o) => o.name === "predict");
      expect(predict?.contents?.int64_contents?.map(Number), JSON.stringify(answer)).toEqual(ROWS.map((r) => r.label));
    } finally {
      client.close();
    }
  }, 300_000);

  it("the Server scaled to 2: ScheduleFailed naming 3 and 2; back to 4: available again", async () => {
    const began = performance.now();
    await stack.apply(serverWith(2));
    // The local controller's part: replicas 2 and 3 go (each drains first).
    await Promise.all([stack.stopAgent(3, "SIGTERM"), stack.stopAgent(2, "SIGTERM")]);
    const failed = await stack.waitModel(
      "iris",
      (s) => s.state === "ScheduleFailed",
      "iris ScheduleFailed on a 2-replica Server",
      60_000,
    );
    expect(failed.reason).toMatch(/\b3\b/);
    expect(failed.reason).toMatch(/\b2\b/);
    console.log(`[e2e mlserver] ScheduleFailed ${seconds(began)} after the scale-down: ${failed.reason}`);

    await stack.apply(serverYaml);
    await Promise.all([stack.startAgent(2), stack.startAgent(3)]);
    const back = await stack.waitModel("iris", available(3), "iris available again with 3 replicas", 180_000);
    console.log(`[e2e mlserver] available again ${seconds(began)} after the scale-down`);
    expect(new Set(back.placement.map((p) => p.replica)).size).toBe(3);
    const rest = await waitFor(
      async () => {
        const answer = await restLabels("iris");
        return answer.status === 200 ? answer : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 200, description: "iris answering again" },
    );
    expect(rest.labels, JSON.stringify(rest.body)).toEqual(ROWS.map((r) => r.label));
  }, 400_000);

  it("serves an xgboost model trained in the setup, placed by the scheduler from requirements [xgboost]", async () => {
    await stack.apply(`apiVersion: mlops.seldon.io/v1alpha1
kind: Model
metadata:
  name: iris-xgboost
spec:
  storageUri: "file://${join(dir, "iris-xgboost")}"
  requirements:
    - xgboost
  memory: 1Mi
  replicas: 2
`);
    const applied = performance.now();
    const status = await stack.waitModel("iris-xgboost", available(2), "iris-xgboost available", 180_000);
    console.log(`[e2e mlserver] iris-xgboost ModelAvailable ${seconds(applied)} after the apply`);
    expect(status.server).toBe("mlserver");
    const rest = await waitFor(
      async () => {
        const answer = await restLabels("iris-xgboost");
        return answer.status === 200 ? answer : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 200, description: "iris-xgboost served through the gateway" },
    );
    expect(rest.labels, JSON.stringify(rest.body)).toEqual(ROWS.map((r) => r.label));
  }, 300_000);
});

function seconds(since: number): string {
  return `${((performance.now() - since) / 1000).toFixed(1)} s`;
}

describe("the sample artifact", () => {
  it("samples/models/iris-sklearn is what train_iris_sklearn.py makes with the pinned scikit-learn, byte for byte", async () => {
    // A pin change that alters the pickle shows here: train the sample again with the new venv.
    for (const file of ["model.joblib", "model-settings.json"]) {
      const trained = await readFile(join(dir, "iris-sklearn", file));
      const committed = await readFile(join(repoRoot, "samples/models/iris-sklearn", file));
      expect(trained.equals(committed), `${file} differs`).toBe(true);
    }
  });
});

interface GrpcInferResponse {
  model_name: string;
  outputs: Array<{ name: string; datatype: string; contents?: { int64_contents?: string[] } }>;
}
