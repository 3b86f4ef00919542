import { spawn } from "node:child_process";
import { join } from "node:path";
import { runInstallScript } from "./install-script.js";
import { repoRoot } from "./platform-process.js";

/**
 * The python of the venv `.tern/python/<name>` with the pinned packages of `scripts/python/<name>.txt`, created by
 * `scripts/python-env.sh` on first use (its progress summed up in the test output) and reused afterwards. Fails with
 * the script's one-line reason when python3 3.10+ is missing.
 *
 * @param timeoutMs deadline for the install (a first install downloads from PyPI) @default 900000
 */
export function pythonEnv(name: string, timeoutMs = 900_000): Promise<string> {
  return runInstallScript(join(repoRoot, "scripts/python-env.sh"), [name], "python-env: ", timeoutMs);
}

/** Runs `python ...args` with `input` on stdin and resolves with its stdout; rejects with its stderr. */
export async function runPython(python: string, args: string[], input: string, timeoutMs = 60_000): Promise<string> {
  return (await run(python, args, input, timeoutMs)).stdout;
}

function run(command: string, args: string[], input: string, timeoutMs: number): Promise<{ stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: repoRoot, stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on("data", (b: Buffer) => out.push(b));
    child.stderr?.on("data", (b: Buffer) => err.push(b));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${command} ${args.join(" ")} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      if (code === 0) resolve({ stdout: Buffer.concat(out).toString() });
      else
        reject(
          new Error(
            `${command} ${args.join(" ")} exited with ${code}${err.length > 0 ? `: ${Buffer.concat(err).toString().trim()}` : ""}`,
          ),
        );
    });
    child.stdin?.end(input);
  });
}
