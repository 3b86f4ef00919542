/**
 * The MLServer runtime against a real MLServer 1.7.1 (the venv of scripts/python-env.sh mlserver, installed on first
 * use): an agent of server type mlserver runs one MLServer process, loads an sklearn iris model trained from
 * samples/iris/iris.csv through MLServer's repository API, serves it over the agent's REST and gRPC, unloads it, and
 * brings it back when MLServer is killed under requests.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import type { AgentEvent } from "@tern/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Agent, createAgent } from "../../packages/agent/src/agent.js";
import { createArtifactFetcher } from "../../packages/agent/src/artifacts/artifact-fetcher.js";
import { loadOipService } from "../../packages/agent/src/grpc/oip-proto.js";
import { answerJson } from "../../packages/agent/src/runtime/mlserver-process.js";
import {
  createMlserverRuntime,
  type MlserverRuntime,
  MODEL_SETTINGS_FILE,
} from "../../packages/agent/src/runtime/mlserver-runtime.js";
import { irisRows } from "../e2e/iris-data.js";
import { repoRoot } from "../helpers/platform-process.js";
import { pythonEnv, runPython } from "../helpers/python.js";

/** A small xgboost classifier on the same CSV, saved as xgboost's JSON (a file name that does not say the framework). */
const TRAIN_XGBOOST = `
import csv, os, sys
import xgboost
classes = ["setosa", "versicolor", "virginica"]
x, y = [], []
with open(sys.argv[1], newline="") as f:
    for row in csv.DictReader(f):
        x.append([float(row[k]) for k in ("sepal_length", "sepal_width", "petal_length", "petal_width")])
        y.append(classes.index(row["species"].strip()))
model = xgboost.XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1, random_state=0)
model.fit(x, y)
os.makedirs(sys.argv[2], exist_ok=True)
model.save_model(os.path.join(sys.argv[2], "model.json"))
`;

/** A lightgbm booster on the same CSV, saved as model.bst (xgboost's name too: only the requirements tell). */
const TRAIN_LIGHTGBM = `
import csv, os, sys
import lightgbm, numpy
classes = ["setosa", "versicolor", "virginica"]
x, y = [], []
with open(sys.argv[1], newline="") as f:
    for row in csv.DictReader(f):
        x.append([float(row[k]) for k in ("sepal_length", "sepal_width", "petal_length", "petal_width")])
        y.append(classes.index(row["species"].strip()))
params = {"objective": "multiclass", "num_class": 3, "num_threads": 1, "verbose": -1, "min_data_in_leaf": 5, "seed": 0}
booster = lightgbm.train(params, lightgbm.Dataset(numpy.array(x), label=numpy.array(y)), num_boost_round=20)
os.makedirs(sys.argv[2], exist_ok=True)
booster.save_model(os.path.join(sys.argv[2], "model.bst"))
`;

/** The first row of each class in the CSV: their species are the expected labels 0, 1, 2. */
const ROWS = [0, 50, 100].map((i) => irisRows()[i]!);
const EXPECTED = ROWS.map((r) => r.label);

let dir: string;
let runtime: MlserverRuntime;
let agent: Agent;
let http: string;
// biome-ignore lint/suspicious/noExplicitAny: the proto-loader client is untyped.
let client: any;
const events: AgentEvent[] = [];

async function waitFor<T>(
  what: string,
  fn: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function restInfer(model: string): Promise<Response> {
  return fetch(`${http}/v2/models/${model}/infer`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      inputs: [{ name: "predict", datatype: "FP64", shape: [ROWS.length, 4], data: ROWS.flatMap((r) => r.features) }],
    }),
    signal: AbortSignal.timeout(30_000),
  });
}

async function restLabels(model: string): Promise<number[]> {
  const res = await restInfer(model);
  const body = (await res.json()) as { outputs?: Array<{ data: number[] }>; error?: string };
  if (res.status !== 200) throw new Error(`${res.status}: ${body.error}`);
  return body.outputs![0]!.data.map(Number);
}

function grpcLabels(model: string): Promise<number[]> {
  return new Promise((resolve, reject) => {
    client.ModelInfer(
      {
        model_name: model,
        inputs: [
          {
            name: "predict",
            datatype: "FP64",
            shape: [ROWS.length, 4],
            contents: { fp64_contents: ROWS.flatMap((r) => r.features) },
          },
        ],
      },
      { deadline: Date.now() + 30_000 },
      (err: Error | null, res: { outputs: Array<{ contents: { int64_contents: Array<string | number> } }> }) =>
        err ? reject(err) : resolve(res.outputs[0]!.contents.int64_contents.map(Number)),
    );
  });
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

beforeAll(async () => {
  const python = await pythonEnv("mlserver");
  dir = await mkdtemp(join(tmpdir(), "tern-mlserver-"));
  const csv = join(repoRoot, "samples/iris/iris.csv");
  const script = join(repoRoot, "samples/scripts/train_iris_sklearn.py");
  await runPython(python, [script, csv, join(dir, "models/iris")], "", 120_000);
  await runPython(python, [script, csv, join(dir, "models/iris-bare"), "--no-settings"], "", 120_000);
  await runPython(python, ["-c", TRAIN_XGBOOST, csv, join(dir, "models/iris-xgb")], "", 120_000);
  await runPython(python, ["-c", TRAIN_LIGHTGBM, csv, join(dir, "models/iris-lgb")], "", 120_000);
  await mkdir(join(dir, "models/boosted"), { recursive: true });
  await writeFile(join(dir, "models/boosted/model.bst"), "not read: the framework is unknown");
  runtime = createMlserverRuntime({ python, workDir: join(dir, "mlserver"), healthIntervalMs: 500 });
  agent = createAgent({
    server: "mlserver",
    replica: 0,
    runtime,
    fetcher: createArtifactFetcher({
      cacheDir: join(dir, "cache"),
      localRoots: [join(dir, "models")],
      modelFileName: MODEL_SETTINGS_FILE,
      modelExtension: "",
    }),
    memoryBytes: 1024 ** 3,
    httpPort: 0,
    grpcPort: 0,
    onStateChange: (e) => events.push(e),
  });
  const endpoints = await agent.start();
  http = endpoints.http;
  const { Client } = loadOipService();
  client = new Client(endpoints.grpc!, grpc.credentials.createInsecure());
}, 900_000);

afterAll(async () => {
  client?.close();
  const pid = runtime?.process.pid();
  await agent?.stop(1000);
  // Stopping the agent stops its MLServer: nothing is left behind.
  if (pid !== undefined) expect(alive(pid)).toBe(false);
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("the MLServer runtime", () => {
  it("loads a Seldon-style sklearn artifact (its model-settings.json) and answers the CSV's labels over REST and gRPC", async () => {
    const record = await agent.loadModel({
      model: "iris",
      version: 1,
      storageUri: `file://${join(dir, "models/iris")}`,
      requirements: ["sklearn"],
    });
    expect(record.state, record.reason).toBe("Available");
    expect(EXPECTED).toEqual([0, 1, 2]);
    expect(await restLabels("iris")).toEqual(EXPECTED);
    expect(await grpcLabels("iris")).toEqual(EXPECTED);
  });

  it("passes a JSON request to MLServer and its answer back as they are, under the caller's model name", async () => {
    const post = (body: string | Uint8Array, headers: Record<string, string> = {}) =>
      fetch(`${http}/v2/models/iris/infer`, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body,
        signal: AbortSignal.timeout(30_000),
      });
    const features = ROWS.flatMap((r) => r.features);
    const request = {
      id: "req-7",
      inputs: [{ name: "predict", datatype: "FP64", shape: [ROWS.length, 4], data: features }],
    };
    const res = await post(JSON.stringify(request));
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown> & {
      outputs: Array<{ data: number[]; parameters?: { content_type?: string } }>;
    };
    expect(body.model_name).toBe("iris");
    expect(body.model_version).toBe("1");
    expect(body.id).toBe("req-7");
    expect(body.outputs[0]!.data).toEqual(EXPECTED);
    // MLServer's own output parameters came through: the agent did not decode and re-encode the answer.
    expect(body.outputs[0]!.parameters?.content_type).toBe("np");

    // A request the agent would refuse itself gets the agent's message, as on the decoding path.
    const short = await post(
      JSON.stringify({ inputs: [{ name: "predict", datatype: "FP64", shape: [1, 4], data: [1, 2, 3] }] }),
    );
    expect(short.status).toBe(400);
    expect(((await short.json()) as { error: string }).error).toMatch(/predict.*4.*3|3.*4/);
    const malformed = await post("{not json");
    expect(malformed.status).toBe(400);
    expect(((await malformed.json()) as { error: string }).error).toMatch(/^malformed JSON body/);
    // One MLServer refuses (3 features for a model trained on 4): 400 with its reason, as before.
    const narrow = await post(
      JSON.stringify({ inputs: [{ name: "predict", datatype: "FP64", shape: [1, 3], data: [5.1, 3.5, 1.4] }] }),
    );
    expect(narrow.status).toBe(400);
    expect(((await narrow.json()) as { error: string }).error).toMatch(/^model iris rejected the request: /);
    const unknown = await fetch(`${http}/v2/models/ghost/infer`, { method: "POST", body: JSON.stringify(request) });
    expect(unknown.status).toBe(404);

    // Binary tensors (MLServer has no such extension) take the decoding path and still answer right.
    const json = new TextEncoder().encode(
      JSON.stringify({
        inputs: [
          {
            name: "predict",
            datatype: "FP64",
            shape: [ROWS.length, 4],
            parameters: { binary_data_size: features.length * 8 },
          },
        ],
        outputs: [{ name: "predict", parameters: { binary_data: true } }],
      }),
    );
    const tensor = new Uint8Array(Float64Array.from(features).buffer);
    const binaryBody = new Uint8Array(json.length + tensor.length);
    binaryBody.set(json, 0);
    binaryBody.set(tensor, json.length);
    const binary = await post(binaryBody, {
      "content-type": "application/octet-stream",
      "inference-header-content-length": String(json.length),
    });
    expect(binary.status).toBe(200);
    const headerLength = Number(binary.headers.get("inference-header-content-length"));
    const bytes = new Uint8Array(await binary.arrayBuffer());
    const labels = new BigInt64Array(bytes.slice(headerLength).buffer);
    expect([...labels].map(Number)).toEqual(EXPECTED);
  });

  it("counts the JSON requests it passes to MLServer in the traffic autoscaling reads, as it counts decoded ones", async () => {
    agent.traffic(); // a new period from here
    const statuses = await Promise.all(Array.from({ length: 5 }, () => restInfer("iris").then((r) => r.status)));
    expect(statuses).toEqual([200, 200, 200, 200, 200]);
    const iris = agent.traffic().find((t) => t.model === "iris");
    expect(iris?.inFlight).toBe(0);
    // Five answered over the period, and in flight for a while: both are what the scheduler scales on.
    expect(iris?.requestsPerSecond).toBeGreaterThan(0);
    expect(iris?.lag).toBeGreaterThan(0);
  });

  it("chooses the sklearn runtime from the requirements for an artifact without model-settings.json", async () => {
    const record = await agent.loadModel({
      model: "iris-bare",
      version: 1,
      storageUri: `file://${join(dir, "models/iris-bare")}`,
      requirements: ["sklearn"],
    });
    expect(record.state, record.reason).toBe("Available");
    expect(await restLabels("iris-bare")).toEqual(EXPECTED);
  });

  it("serves an xgboost model through MLServer's xgboost runtime, chosen from the requirements", async () => {
    const record = await agent.loadModel({
      model: "iris-xgb",
      version: 1,
      storageUri: `file://${join(dir, "models/iris-xgb")}`,
      requirements: ["xgboost"],
    });
    expect(record.state, record.reason).toBe("Available");
    expect(await restLabels("iris-xgb")).toEqual(EXPECTED);
    await agent.unloadModel("iris-xgb", 1);
  });

  it("serves a lightgbm booster through MLServer's lightgbm runtime: class probabilities whose best is the CSV's label", async () => {
    const record = await agent.loadModel({
      model: "iris-lgb",
      version: 1,
      storageUri: `file://${join(dir, "models/iris-lgb")}`,
      requirements: ["lightgbm"],
    });
    expect(record.state, record.reason).toBe("Available");
    const res = await restInfer("iris-lgb");
    const body = (await res.json()) as { outputs: Array<{ shape: number[]; data: number[] }> };
    expect(res.status).toBe(200);
    const out = body.outputs[0]!;
    expect(out.shape).toEqual([3, 3]);
    const best = [0, 1, 2].map((row) => {
      const p = out.data.slice(row * 3, row * 3 + 3);
      return p.indexOf(Math.max(...p));
    });
    expect(best).toEqual(EXPECTED);
    await agent.unloadModel("iris-lgb", 1);
  });

  it("fails to load, saying why, what it cannot serve", async () => {
    const unknown = await agent.loadModel({
      model: "boosted",
      version: 1,
      storageUri: `file://${join(dir, "models/boosted")}`,
    });
    expect(unknown.state).toBe("LoadFailed");
    expect(unknown.reason).toMatch(
      /cannot tell which MLServer runtime serves .*model\.bst: add sklearn, xgboost or lightgbm/,
    );
    const mlflow = await agent.loadModel({
      model: "wine",
      version: 1,
      storageUri: `file://${join(dir, "models/iris-bare")}`,
      requirements: ["mlflow"],
    });
    expect(mlflow.state).toBe("LoadFailed");
    expect(mlflow.reason).toMatch(
      /needs mlserver_mlflow\.MLflowRuntime \(mlflow\), which this MLServer installation does not include/,
    );
  });

  it("unloads through MLServer's repository API", async () => {
    await agent.unloadModel("iris-bare", 1);
    expect(events.filter((e) => e.model === "iris-bare").at(-1)?.state).toBe("Unloaded");
    const res = await restInfer("iris-bare");
    expect(res.status).toBe(404);
    const index = await runtime.process.request("POST", "/v2/repository/index", {});
    const models = answerJson(index) as Array<{ name: string; state: string }>;
    expect(models.find((m) => m.name === "iris-bare-v1")).toBeUndefined();
    expect(models.find((m) => m.name === "iris-v1")?.state).toBe("READY");
  });

  it("restarts a killed MLServer and loads its models again, reporting Loading then Available", async () => {
    const before = runtime.process.pid()!;
    const seen = events.length;
    // A few requests in flight when it dies: each ends (an answer or a 503 to retry elsewhere), none hangs.
    const inFlight = Array.from({ length: 4 }, () => restInfer("iris").then((r) => r.status));
    process.kill(before, "SIGKILL");
    const statuses = await Promise.all(inFlight);
    for (const s of statuses) expect([200, 503]).toContain(s);
    await waitFor("iris Available again", () =>
      events.slice(seen).some((e) => e.model === "iris" && e.state === "Available"),
    );
    const states = events
      .slice(seen)
      .filter((e) => e.model === "iris")
      .map((e) => e.state);
    expect(states).toEqual(["Loading", "Available"]);
    expect(events.slice(seen).find((e) => e.state === "Loading")?.reason).toMatch(/MLServer is restarting/);
    const after = runtime.process.pid();
    expect(after).not.toBe(before);
    expect(alive(before)).toBe(false);
    expect(await restLabels("iris")).toEqual(EXPECTED);
    expect(await grpcLabels("iris")).toEqual(EXPECTED);
    // Memory accounting sees the MLServer process.
    expect(agent.models.usage().processBytes).toBeGreaterThan(10 * 1024 ** 2);
  });
});
