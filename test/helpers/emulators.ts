import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { findFreePort } from "@tern/devstack";
import { runInstallScript } from "./install-script.js";
import { repoRoot } from "./platform-process.js";
import { pythonEnv } from "./python.js";

/** A storage emulator (fake-gcs-server, moto) on a free loopback port, started by a test file and stopped by it. */
export interface Emulator {
  /** Base URL, e.g. `http://127.0.0.1:41234`. */
  readonly url: string;
  output(): string;
  /** SIGTERM, then SIGKILL after 5 s; resolves once it has exited. */
  stop(): Promise<void>;
}

/**
 * fake-gcs-server serving `dataDir` (one sub-folder per bucket, objects as files below it) over plain HTTP. The binary
 * comes from scripts/fake-gcs-server.sh (`go install` into .tern/go on first use, its progress summed up in the test
 * output).
 *
 * @param installTimeoutMs deadline for a first build @default 900000
 */
export async function startFakeGcs(dataDir: string, installTimeoutMs = 900_000): Promise<Emulator> {
  const binary = await runInstallScript(
    join(repoRoot, "scripts/fake-gcs-server.sh"),
    [],
    "fake-gcs-server: ",
    installTimeoutMs,
  );
  const port = await findFreePort();
  const url = `http://127.0.0.1:${port}`;
  return startEmulator(
    "fake-gcs-server",
    binary,
    ["-scheme", "http", "-host", "127.0.0.1", "-port", String(port), "-backend", "memory", "-data", dataDir],
    url,
    `${url}/storage/v1/b`,
    {},
  );
}

/**
 * moto's server (scripts/python/moto.txt, its venv made by scripts/python-env.sh on first use) on a free port. With
 * `enforceAuth`, moto checks credentials and IAM policies after the first `INITIAL_NO_AUTH_ACTION_COUNT` requests
 * (those seed the users).
 */
export async function startMoto(env: Record<string, string> = {}): Promise<Emulator & { python: string }> {
  const python = await pythonEnv("moto");
  const port = await findFreePort();
  const url = `http://127.0.0.1:${port}`;
  const emulator = await startEmulator(
    "moto_server",
    python,
    [join(python, "..", "moto_server"), "-H", "127.0.0.1", "-p", String(port)],
    url,
    `${url}/moto-api/`,
    env,
  );
  return { ...emulator, python };
}

async function startEmulator(
  name: string,
  command: string,
  args: string[],
  url: string,
  probe: string,
  env: Record<string, string>,
): Promise<Emulator> {
  const child = spawn(command, args, {
    cwd: repoRoot,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout?.on("data", (b: Buffer) => {
    out += b.toString();
  });
  child.stderr?.on("data", (b: Buffer) => {
    out += b.toString();
  });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  const stop = async () => {
    if (gone) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
  };
  try {
    await waitReady(
      name,
      child,
      probe,
      () => gone,
      () => out,
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { url, output: () => out, stop };
}

/** Polls `probe` until it answers (any HTTP status), 30 s at most; fails at once if the process exits. */
async function waitReady(
  name: string,
  child: ChildProcess,
  probe: string,
  gone: () => boolean,
  output: () => string,
): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (gone()) throw new Error(`${name} exited before it answered (exit ${child.exitCode}): ${output().slice(-2000)}`);
    try {
      await fetch(probe, { signal: AbortSignal.timeout(1000) });
      return;
    } catch {
      if (Date.now() > deadline)
        throw new Error(`${name} did not answer ${probe} within 30 s: ${output().slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
