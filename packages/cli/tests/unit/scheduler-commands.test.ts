import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findFreePort } from "@tern/devstack";
import { afterEach, describe, expect, it } from "vitest";
import { createControlApp } from "../../../scheduler/src/app.js";
import { createHarness, type Harness, model, server, silentLogger } from "../../../scheduler/tests/unit/helpers.js";
import { runApply, type SchedulerCommandIo } from "../../src/commands/apply.js";
import { runDelete } from "../../src/commands/delete.js";
import { runList } from "../../src/commands/list.js";
import { runServer } from "../../src/commands/server.js";
import { runStatus } from "../../src/commands/status.js";

let h: Harness;
let dir: string | undefined;
afterEach(async () => {
  await h?.close();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

/** A real control app over an in-memory scheduler, reached through an injected fetch. */
async function setup(token?: string) {
  h = await createHarness();
  const app = createControlApp({
    active: () => h.scheduler,
    store: h.store,
    leaseName: "scheduler",
    logger: silentLogger,
    ...(token === undefined ? {} : { token }),
  });
  const out = { stdout: "", stderr: "" };
  const io = (env: Record<string, string> = {}, stdin = ""): SchedulerCommandIo => ({
    stdout: { write: (t: string) => (out.stdout += t) },
    stderr: { write: (t: string) => (out.stderr += t) },
    env: { TERN_SCHEDULER_URL: "http://scheduler.test", ...env },
    cwd: dir ?? process.cwd(),
    readStdin: async () => stdin,
    fetch: ((input: string | URL | Request, init?: RequestInit) => app.fetch(new Request(input, init))) as typeof fetch,
  });
  const reset = () => {
    out.stdout = "";
    out.stderr = "";
  };
  return { io, out, reset };
}

function writeManifests(files: Record<string, string>): string {
  dir = mkdtempSync(join(tmpdir(), "tern-cli-"));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

describe("tern apply / list / status / delete / server", () => {
  it("applies a directory of manifests and prints what happened", async () => {
    const { io, out } = await setup();
    const d = writeManifests({ "a-server.yaml": server("onnx", 1), "b-model.yaml": model("iris") });
    expect(await runApply(["-f", d], io())).toBe(0);
    expect(out.stdout).toBe("Server onnx created\nModel iris created (version 1)\n");
    expect(h.scheduler.list("Model")).toHaveLength(1);
  });

  it("applies from standard input", async () => {
    const { io, out } = await setup();
    expect(await runApply(["-f", "-"], io({}, server("onnx", 2)))).toBe(0);
    expect(out.stdout).toBe("Server onnx created\n");
  });

  it("refuses an invalid manifest before contacting the scheduler, with validate's message", async () => {
    const { io, out } = await setup();
    const d = writeManifests({ "bad.yaml": model("iris").replace("replicas: 1", "replicas: -1") });
    expect(await runApply(["-f", join(d, "bad.yaml")], io())).toBe(1);
    expect(out.stderr).toMatch(/bad\.yaml: document 1 \(Model iris\): spec\.replicas/);
    expect(h.scheduler.list("Model")).toEqual([]);
  });

  it("exits 2 on usage errors", async () => {
    const { io } = await setup();
    expect(await runApply([], io())).toBe(2);
    expect(await runList(["widgets"], io())).toBe(2);
    expect(await runStatus(["model"], io())).toBe(2);
    expect(await runStatus(["model", "iris", "-w", "Happy"], io())).toBe(2);
    expect(await runDelete(["model"], io())).toBe(2);
    expect(await runServer(["frobnicate"], io())).toBe(2);
  });

  it("lists models as a table and as JSON, accepting any kind spelling", async () => {
    const { io, out, reset } = await setup();
    await h.apply(`${server("onnx", 1)}---\n${model("iris")}`);
    await h.agent("onnx", 0);
    expect(await runList(["Model"], io())).toBe(0);
    expect(out.stdout.split("\n")[0]).toMatch(/^NAME\s+VERSION\s+STATE\s+REPLICAS\s+AVAILABLE\s+SERVER\s+REASON$/);
    expect(out.stdout).toMatch(/iris\s+1\s+ModelAvailable\s+1\s+1\s+onnx/);
    reset();
    expect(await runList(["models", "--json"], io())).toBe(0);
    expect(JSON.parse(out.stdout)).toMatchObject([{ name: "iris", state: "ModelAvailable" }]);
  });

  it("prints a model's status as JSON with state, reason, replicas, availableReplicas and placement", async () => {
    const { io, out } = await setup();
    await h.apply(`${server("onnx", 2)}---\n${model("iris", "", 3)}`);
    await h.agent("onnx", 0);
    await h.agent("onnx", 1);
    expect(await runStatus(["model", "iris", "--json"], io())).toBe(0);
    const s = JSON.parse(out.stdout);
    expect(s).toMatchObject({ state: "ScheduleFailed", replicas: 3, availableReplicas: 0, placement: [] });
    expect(s.reason).toMatch(/3 replicas requested, server onnx has 2/);
  });

  it("waits for a state and succeeds once it is reached", async () => {
    const { io, out } = await setup();
    await h.apply(`${server("onnx", 1)}---\n${model("iris")}`);
    const agent = await h.agent("onnx", 0, { auto: false });
    const waiting = runStatus(["model", "iris", "-w", "ModelAvailable", "--timeout", "5"], io());
    await agent.complete();
    expect(await waiting).toBe(0);
    expect(out.stdout).toMatch(/Model iris version 1: ModelAvailable/);
    expect(out.stdout).toMatch(/onnx\/0 {2}Available/);
  });

  it("times out with exit 1 and says what the state is", async () => {
    const { io, out } = await setup();
    await h.apply(model("iris"));
    expect(await runStatus(["model", "iris", "-w", "ModelAvailable", "--timeout", "0.3"], io())).toBe(1);
    expect(out.stderr).toMatch(
      /timed out after 0.3 s waiting for Model iris to be ModelAvailable; it is ScheduleFailed/,
    );
  });

  it("deletes by kind and name, and by manifest; an unknown name exits 1", async () => {
    const { io, out, reset } = await setup();
    await h.apply(`${server("onnx", 1)}---\n${model("iris")}`);
    expect(await runDelete(["model", "iris"], io())).toBe(0);
    expect(out.stdout).toBe("Model iris deleted\n");
    expect(await runStatus(["model", "iris", "-w", "ModelTerminated", "--timeout", "2"], io())).toBe(0);
    reset();
    const d = writeManifests({ "s.yaml": server("onnx", 1) });
    expect(await runDelete(["-f", join(d, "s.yaml")], io())).toBe(0);
    expect(out.stdout).toBe("Server onnx deleted\n");
    reset();
    expect(await runDelete(["model", "ghost"], io())).toBe(1);
    expect(out.stderr).toBe("tern delete: Model ghost not found\n");
  });

  it("shows servers and one server with its replicas", async () => {
    const { io, out, reset } = await setup();
    await h.apply(server("onnx", 2));
    await h.agent("onnx", 0);
    expect(await runServer(["list"], io())).toBe(0);
    expect(out.stdout).toMatch(/onnx\s+tern-onnx\s+ServerProgressing\s+2\s+1\s+0/);
    reset();
    expect(await runServer(["status", "onnx"], io())).toBe(0);
    expect(out.stdout).toMatch(/Server onnx: ServerProgressing/);
    expect(out.stdout).toMatch(/replica 0: 0 models/);
    reset();
    expect(await runServer(["status", "nope"], io())).toBe(1);
  });

  it("lists the model gateways with their buckets, owners, groups, consumers and models, as a table and as JSON", async () => {
    const { io, out, reset } = await setup();
    expect(await runList(["modelgateways"], io())).toBe(0);
    expect(out.stdout).toMatch(/^0 model-gateway replicas, 16 buckets, 4 partitions \(Kafka not configured/);
    expect(out.stdout).toContain("no model-gateway replicas registered");
    reset();
    await h.apply(server("onnx", 1));
    await h.agent("onnx", 0);
    await h.apply(model("iris"));
    await h.settle();
    await h.scheduler.workers.register({ kind: "modelgateway", id: "modelgateway-0" });
    await h.scheduler.workers.register({ kind: "modelgateway", id: "modelgateway-1" });
    expect(await runList(["modelgateways"], io())).toBe(0);
    const lines = out.stdout.split("\n");
    expect(lines[0]).toBe(
      "2 model-gateway replicas, 16 buckets, 4 partitions (Kafka not configured on the scheduler: no topics are managed)",
    );
    expect(out.stdout).toMatch(/^REPLICA\s+STATE\s+LAST HEARTBEAT\s+BUCKETS$/m);
    expect(out.stdout).toMatch(/^modelgateway-0\s+Ready\s+1970-01-01T00:16:40\.000Z\s+[\d,]+$/m);
    expect(out.stdout).toMatch(/^BUCKET\s+OWNER\s+GROUP\s+CONSUMERS\s+MODELS$/m);
    const irisLine = lines.find((l) => l.endsWith(" iris"));
    expect(irisLine).toMatch(/^\d+\s+modelgateway-[01]\s+tern\.default\.modelgateway\.bucket-\d+\s+1\s+iris$/);
    reset();
    expect(await runList(["modelgateways", "--json"], io())).toBe(0);
    const json = JSON.parse(out.stdout) as { replicas: { id: string }[]; buckets: { models: string[] }[] };
    expect(json.replicas.map((r) => r.id)).toEqual(["modelgateway-0", "modelgateway-1"]);
    expect(json.buckets).toHaveLength(16);
    expect(json.buckets.flatMap((b) => b.models)).toEqual(["iris"]);
  });

  it("lists the dataflow workers with their pipelines and each pipeline's owners, as a table and as JSON", async () => {
    const { io, out, reset } = await setup();
    const pipeline = (name: string) =>
      `apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata: {name: ${name}}\nspec:\n  steps: [{name: m}]\n`;
    await h.apply(pipeline("chain"));
    expect(await runList(["dataflow"], io())).toBe(0);
    expect(out.stdout).toMatch(/^0 dataflow workers, 1 pipelines, replication 2, 4 partitions/);
    expect(out.stdout).toContain("no dataflow workers registered");
    expect(out.stdout).toMatch(/^chain\s+1\s+PipelineFailed\s+tern\.default\.dataflow\.pipeline\.chain$/m);
    reset();
    await h.apply(pipeline("join"));
    for (const id of ["dataflow-0", "dataflow-1", "dataflow-2"]) {
      await h.scheduler.workers.register({ kind: "dataflow", id });
    }
    expect(await runList(["dataflow"], io())).toBe(0);
    expect(out.stdout.split("\n")[0]).toBe(
      "3 dataflow workers, 2 pipelines, replication 2, 4 partitions (Kafka not configured on the scheduler: no topics are managed)",
    );
    expect(out.stdout).toMatch(/^WORKER\s+STATE\s+LAST HEARTBEAT\s+PIPELINES$/m);
    expect(out.stdout).toMatch(/^PIPELINE\s+VERSION\s+STATE\s+GROUP\s+OWNERS\s+RUNS$/m);
    const owners = (p: string) => h.scheduler.snapshot().pipelines.get(p)!.owners!;
    for (const p of ["chain", "join"]) {
      expect(owners(p)).toHaveLength(2);
      expect(out.stdout).toMatch(
        new RegExp(`^${p}\\s+1\\s+\\w+\\s+tern\\.default\\.dataflow\\.pipeline\\.${p}\\s+${owners(p).join(",")}$`, "m"),
      );
    }
    for (const id of ["dataflow-0", "dataflow-1", "dataflow-2"]) {
      const own = ["chain", "join"].filter((p) => owners(p).includes(id));
      expect(out.stdout).toMatch(new RegExp(`^${id}\\s+Ready\\s+\\S+\\s*${own.join(",")}$`, "m"));
    }
    reset();
    expect(await runList(["dataflow", "--json"], io())).toBe(0);
    const json = JSON.parse(out.stdout) as { replication: number; pipelines: { pipeline: string; owners: string[] }[] };
    expect(json.replication).toBe(2);
    expect(json.pipelines.map((p) => [p.pipeline, p.owners])).toEqual([
      ["chain", owners("chain")],
      ["join", owners("join")],
    ]);
    // What the workers report running shows per pipeline, the version marked when it is not the current one.
    const [first, second] = owners("chain") as [string, string];
    await h.scheduler.workers.report("dataflow", first, {
      pipelines: [{ pipeline: "chain", version: 1, state: "Ready" }],
    });
    await h.scheduler.workers.report("dataflow", second, {
      pipelines: [{ pipeline: "chain", version: 7, state: "Draining" }],
    });
    reset();
    expect(await runList(["dataflow"], io())).toBe(0);
    const runs = [`${first}=Ready`, `${second}=Draining@v7`].sort().join(",");
    expect(out.stdout).toMatch(new RegExp(`^chain\\s+1\\s+PipelineFailed\\s+\\S+\\s+\\S+\\s+${runs}$`, "m"));
  });

  it("sends the token from TERN_SCHEDULER_TOKEN and reports a refusal", async () => {
    const { io, out, reset } = await setup("t0ken");
    expect(await runList(["models"], io())).toBe(1);
    expect(out.stderr).toMatch(/bearer token/);
    reset();
    expect(await runList(["models"], io({ TERN_SCHEDULER_TOKEN: "t0ken" }))).toBe(0);
  });

  it("says where it looked when the scheduler cannot be reached", async () => {
    const { io, out } = await setup();
    // A port that was free a moment ago: the connection is refused (port 9, say, is refused by fetch itself).
    const url = `http://127.0.0.1:${await findFreePort()}`;
    const unreachable = { ...io({ TERN_SCHEDULER_URL: url }), fetch: undefined };
    expect(await runList(["models"], unreachable)).toBe(1);
    expect(out.stderr).toContain(`cannot reach the scheduler at ${url} (is it running?`);
  });
});
