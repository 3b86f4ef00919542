import { spawnSync } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { CliIo } from "../../src/io.js";
import { main } from "../../src/main.js";

const repoRoot = fileURLToPath(new URL("../../../../", import.meta.url));
const fixtures = "packages/core/tests/fixtures";

const model = (name: string, spec = "storageUri: s3://models/iris\n  replicas: 3") =>
  `apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata:\n  name: ${name}\nspec:\n  ${spec}\n`;
const server = (name: string) =>
  `apiVersion: mlops.seldon.io/v1alpha1\nkind: Server\nmetadata:\n  name: ${name}\nspec:\n  serverConfig: mlserver\n`;

/** Runs `tern <args>` in-process with captured output. */
async function tern(args: string[], options: { cwd?: string; stdin?: string } = {}) {
  let stdout = "";
  let stderr = "";
  const io: CliIo = {
    stdout: { write: (t: string) => (stdout += t) },
    stderr: { write: (t: string) => (stderr += t) },
    readStdin: async () => options.stdin ?? "",
    cwd: options.cwd ?? repoRoot,
  };
  const code = await main(args, io);
  return { code, stdout, stderr };
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "tern-validate-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("tern validate", () => {
  it("accepts a valid file and names what it read", async () => {
    const result = await tern(["validate", "-f", `${fixtures}/valid/iris-mlserver.yaml`]);
    expect(result).toEqual({
      code: 0,
      stdout: "ok: 2 resources in 1 file (Model iris, Server mlserver)\n",
      stderr: "",
    });
  });

  it("prints one line per problem with file, document, kind, name and field, and exits 1", async () => {
    const result = await tern(["validate", "-f", `${fixtures}/invalid/bad.yaml`]);
    expect(result).toEqual({
      code: 1,
      stdout: `${fixtures}/invalid/bad.yaml: document 2 (Model iris): spec.replicas: must be at least spec.minReplicas (3 < 4)\n`,
      stderr: "invalid: 1 problem in 1 file\n",
    });
  });

  it("recurses into directories, reading .yaml, .yml and .json files only", async () => {
    await mkdir(join(dir, "models", "deep"), { recursive: true });
    await mkdir(join(dir, ".hidden"));
    await writeFile(join(dir, "servers.yaml"), server("mlserver"));
    await writeFile(join(dir, "models", "a.yml"), model("a"));
    const b = {
      apiVersion: "mlops.seldon.io/v1alpha1",
      kind: "Model",
      metadata: { name: "b" },
      spec: { storageUri: "file:///b" },
    };
    await writeFile(join(dir, "models", "deep", "b.json"), JSON.stringify(b));
    await writeFile(join(dir, "models", "notes.txt"), "kind: nonsense");
    await writeFile(join(dir, ".hidden", "c.yaml"), "kind: nonsense");
    const result = await tern(["validate", "-f", "."], { cwd: dir });
    expect(result).toEqual({
      code: 0,
      // Sorted by name at each level: models/a.yml, models/deep/b.json, servers.yaml.
      stdout: "ok: 3 resources in 3 files (Model a, Model b, Server mlserver)\n",
      stderr: "",
    });
  });

  it("names files found in a directory by the path given plus their place under it", async () => {
    await mkdir(join(dir, "m"));
    await writeFile(
      join(dir, "m", "bad.yaml"),
      `${server("s")}---\n${model("iris", "storageUri: s3://x\n  replica: 2")}`,
    );
    const result = await tern(["validate", "-f", "m"], { cwd: dir });
    expect(result.code).toBe(1);
    expect(result.stdout).toBe(
      'm/bad.yaml: document 2 (Model iris): spec.replica: unknown field (did you mean "replicas"?)\n',
    );
  });

  it("accepts allowCycles and maxStepRevisits, and refuses a cycle unless allowCycles is set", async () => {
    const cyclic = (extra: string) =>
      `apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata:\n  name: loop\nspec:\n${extra}  steps:\n    - name: a\n      inputs: [loop.inputs, b]\n      inputsJoinType: any\n    - name: b\n      inputs: [a]\n`;
    const allowed = await tern(["validate", "-f", "-"], {
      stdin: cyclic("  allowCycles: true\n  maxStepRevisits: 5\n"),
    });
    expect(allowed).toEqual({ code: 0, stdout: "ok: 1 resource in 1 file (Pipeline loop)\n", stderr: "" });
    const refused = await tern(["validate", "-f", "-"], { stdin: cyclic("  maxStepRevisits: 5\n") });
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe(
      "<stdin>: document 1 (Pipeline loop): spec.steps[0].inputs: steps form a cycle: a -> b -> a (set spec.allowCycles: true to allow it)\n",
    );
    const negative = await tern(["validate", "-f", "-"], {
      stdin: cyclic("  allowCycles: true\n  maxStepRevisits: -1\n"),
    });
    expect(negative.code).toBe(1);
    expect(negative.stdout).toContain("spec.maxStepRevisits");
  });

  it("warns on stderr that Server.spec.deploymentStrategy acts on ECS only, and still exits 0", async () => {
    const text = `${server("mlserver")}  deploymentStrategy:\n    type: Recreate\n`;
    const result = await tern(["validate", "-f", "-"], { stdin: text });
    expect(result).toEqual({
      code: 0,
      stdout: "ok: 1 resource in 1 file (Server mlserver)\n",
      stderr:
        "warning: <stdin>: document 1 (Server mlserver): spec.deploymentStrategy: applied on ECS only, as the agent service's deployment configuration; the local controller never replaces a running agent, so locally it has no effect\n",
    });
  });

  it("names the field of a bad deploymentStrategy", async () => {
    const text = `${server("mlserver")}  deploymentStrategy:\n    rollingUpdate: {maxSurge: -2}\n`;
    const result = await tern(["validate", "-f", "-"], { stdin: text });
    expect(result.code).toBe(1);
    expect(result.stdout).toBe(
      "<stdin>: document 1 (Server mlserver): spec.deploymentStrategy.rollingUpdate.maxSurge: must be a non-negative integer or a percentage such as 25% (got -2)\n",
    );
  });

  it("reads standard input for -f -", async () => {
    const ok = await tern(["validate", "-f", "-"], { stdin: model("iris") });
    expect(ok).toEqual({ code: 0, stdout: "ok: 1 resource in 1 file (Model iris)\n", stderr: "" });
    const bad = await tern(["validate", "-f", "-"], { stdin: `---\n${model("iris.v1")}` });
    expect(bad.code).toBe(1);
    expect(bad.stdout).toBe(
      '<stdin>: document 1 (Model iris.v1): metadata.name: must not contain "." (got "iris.v1"); use letters, digits, "-" and "_"\n',
    );
  });

  it("reports every problem of several files, in order", async () => {
    await writeFile(join(dir, "one.yaml"), model("a", "storageUri: models/a"));
    await writeFile(join(dir, "two.yaml"), `${model("b")}---\nkind: Modle\n`);
    const result = await tern(["validate", "-f", "one.yaml", "-f", "two.yaml"], { cwd: dir });
    expect(result.code).toBe(1);
    expect(result.stdout.split("\n")).toEqual([
      'one.yaml: document 1 (Model a): spec.storageUri: must be a URI with a scheme (e.g. s3://bucket/path, file:///path) or an absolute path (got "models/a")',
      "two.yaml: document 2 (Modle): apiVersion: required (mlops.seldon.io/v1alpha1)",
      'two.yaml: document 2 (Modle): kind: unknown kind "Modle" (did you mean "Model"?); expected one of Model, Server, Pipeline, Experiment',
      "",
    ]);
    expect(result.stderr).toBe("invalid: 3 problems in 2 files\n");
  });

  it("reports a resource defined in two files", async () => {
    await writeFile(join(dir, "a.yaml"), model("iris"));
    await writeFile(join(dir, "b.yaml"), model("iris"));
    const result = await tern(["validate", "-f", dir]);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe(
      `${dir}/b.yaml: document 1 (Model iris): metadata.name: Model "iris" is defined twice (also in ${dir}/a.yaml document 1)\n`,
    );
  });

  it("fails on a missing file, an empty directory and input without resources", async () => {
    const missing = await tern(["validate", "-f", "nope.yaml"], { cwd: dir });
    expect(missing).toEqual({
      code: 1,
      stdout: "",
      stderr: "tern validate: nope.yaml: cannot read: no such file or directory\n",
    });
    await mkdir(join(dir, "empty"));
    const empty = await tern(["validate", "-f", "empty"], { cwd: dir });
    expect(empty).toEqual({
      code: 1,
      stdout: "",
      stderr: "tern validate: empty: no .yaml, .yml or .json files in this directory\n",
    });
    const nothing = await tern(["validate", "-f", "-"], { stdin: "# nothing here\n" });
    expect(nothing).toEqual({ code: 1, stdout: "", stderr: "tern validate: no resources found in 1 file\n" });
  });

  it("exits 2 on wrong usage, printing the usage to stderr", async () => {
    for (const args of [["validate"], ["validate", "-f"], ["validate", "--nope"], ["validate", "x.yaml"]]) {
      const result = await tern(args);
      expect(result.code).toBe(2);
      expect(result.stdout).toBe("");
      expect(result.stderr).toContain("Usage: tern validate -f FILE|DIR|- [-f ...]");
    }
    expect((await tern(["validate", "x.yaml"])).stderr.split("\n")[0]).toBe(
      "tern validate: Unexpected argument 'x.yaml'. This command does not take positional arguments",
    );
  });

  it("prints its help with --help and exits 0", async () => {
    const result = await tern(["validate", "--help"]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("Exit status: 0 all valid, 1 a problem or an unreadable input, 2 wrong usage.");
    expect(result.stderr).toBe("");
  });
});

describe("tern", () => {
  it("lists its commands with --help", async () => {
    const result = await tern(["--help"]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^Usage: tern <command> \[options\]/);
    expect(result.stdout).toMatch(/\n {2}validate {2}check manifests/);
    expect((await tern(["help", "validate"])).stdout).toContain("Usage: tern validate");
  });

  it("exits 2 without a command or with an unknown one", async () => {
    const none = await tern([]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain("Usage: tern <command>");
    const typo = await tern(["valdate"]);
    expect(typo.code).toBe(2);
    expect(typo.stderr.split("\n")[0]).toBe('tern: unknown command "valdate" (did you mean "validate"?)');
  });

  it("runs as a real process through bin/tern.mjs, with exit codes", () => {
    const bin = join(repoRoot, "packages/cli/bin/tern.mjs");
    const ok = spawnSync(process.execPath, [bin, "validate", "-f", `${fixtures}/valid`], {
      cwd: repoRoot,
      encoding: "utf8",
      timeout: 30_000,
    });
    expect(ok.status).toBe(0);
    expect(ok.stdout).toMatch(/^ok: 10 resources in 8 files \(/);
    const bad = spawnSync(process.execPath, [bin, "validate", "-f", "-"], {
      cwd: repoRoot,
      encoding: "utf8",
      input: model("iris", "storageUri: s3://x\n  replicas: 3\n  minReplicas: 4"),
      timeout: 30_000,
    });
    expect(bad.status).toBe(1);
    expect(bad.stdout).toBe(
      "<stdin>: document 1 (Model iris): spec.replicas: must be at least spec.minReplicas (3 < 4)\n",
    );
    expect(bad.stderr).toBe("invalid: 1 problem in 1 file\n");
  }, 60_000);
});
