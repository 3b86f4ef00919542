import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type ServerType, serve } from "@hono/node-server";
import { afterEach, describe, expect, it } from "vitest";
import { createControlApp } from "../../../scheduler/src/app.js";
import { createHarness, type Harness, model, server, silentLogger } from "../../../scheduler/tests/unit/helpers.js";
import { runStatus } from "../../src/commands/status.js";

// `tern status … --json` is read by scripts: stdout carries the JSON and nothing else, whatever Node, npm or a
// preloaded module writes to stderr.

const repoRoot = fileURLToPath(new URL("../../../../", import.meta.url));
let h: Harness | undefined;
let http: ServerType | undefined;
let dir: string | undefined;

afterEach(async () => {
  if (http) await new Promise<void>((resolve) => http!.close(() => resolve()));
  http = undefined;
  await h?.close();
  h = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

/** A real control app over an in-memory scheduler, on a loopback port. */
async function startControlApi(): Promise<{ url: string; harness: Harness }> {
  const harness = await createHarness();
  h = harness;
  const app = createControlApp({
    active: () => harness.scheduler,
    store: harness.store,
    leaseName: "s",
    logger: silentLogger,
  });
  const port = await new Promise<number>((resolve) => {
    http = serve({ fetch: app.fetch, hostname: "127.0.0.1", port: 0 }, (info: AddressInfo) => resolve(info.port));
  });
  return { url: `http://127.0.0.1:${port}`, harness };
}

/** Runs `npx tern …` as a process, with a deadline. */
function npxTern(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("npx", ["--no-install", "tern", ...args], {
      cwd: repoRoot,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`npx tern ${args.join(" ")} did not finish within 60 s; stderr: ${stderr}`));
    }, 60_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe("tern status --json", () => {
  it("prints only JSON on stdout while Node, npm and a preloaded module write to stderr (npx tern, a process)", async () => {
    const { url, harness } = await startControlApi();
    await harness.apply(`${server("onnx", 1)}---\n${model("iris")}`);
    dir = mkdtempSync(join(tmpdir(), "tern-status-"));
    const noise = join(dir, "noise.cjs");
    writeFileSync(
      noise,
      'process.stderr.write("noise from a preload\\n");\nprocess.emitWarning("a warning from a preload");\n',
    );
    const result = await npxTern(["status", "model", "iris", "--json"], {
      TERN_SCHEDULER_URL: url,
      NODE_OPTIONS: `--require ${noise}`,
      // An npm config npm does not know: npx warns about it on stderr.
      npm_config_tern_test_noise: "1",
    });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toContain("noise from a preload");
    expect(result.stderr).toContain("a warning from a preload");
    expect(result.stderr).toContain("tern-test-noise");
    expect(JSON.parse(result.stdout)).toMatchObject({ name: "iris", replicas: 1 });
  }, 90_000);

  it("prints JSON, not a sentence, when a waited-for deletion is already done", async () => {
    const { url } = await startControlApi();
    let stdout = "";
    let stderr = "";
    const code = await runStatus(["model", "gone", "-w", "ModelTerminated", "--json"], {
      stdout: { write: (t: string) => (stdout += t) },
      stderr: { write: (t: string) => (stderr += t) },
      env: { TERN_SCHEDULER_URL: url },
      cwd: repoRoot,
      readStdin: async () => "",
      fetch,
    });
    expect(code, stderr).toBe(0);
    expect(JSON.parse(stdout)).toEqual({ kind: "Model", name: "gone", state: "ModelTerminated" });
  });
});
