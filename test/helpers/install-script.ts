import { spawn } from "node:child_process";
import { repoRoot } from "./platform-process.js";

/** Tool output kept for a failure's message. */
const TAIL_LINES = 60;
/** How often a long install says it is still moving. */
const PROGRESS_EVERY_MS = 15_000;

/**
 * Runs one of the project's install scripts (`scripts/python-env.sh`, `scripts/fake-gcs-server.sh`), which print a
 * path as their last stdout line and their progress on stderr, and resolves with that path.
 *
 * The script's own lines (`<prefix> ...`) go to the test output as they come. The tools' lines below them (pip's
 * "Collecting ...", `go install`'s downloads and package names: hundreds on a fresh machine) are counted instead and
 * summed up every 15 s, so that the test log stays vitest's and the install still shows it moves. A failure's message
 * carries the tools' last lines. Its own process group, so that the deadline also ends what the script started.
 *
 * @param prefix the script's own line prefix, e.g. `python-env: `
 * @param signal ends the script (and what it started) early, rejecting like a missed deadline
 */
export function runInstallScript(
  script: string,
  args: string[],
  prefix: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<string> {
  const what = [script.replace(`${repoRoot}/`, ""), ...args].join(" ");
  return new Promise((resolve, reject) => {
    const child = spawn("bash", [script, ...args], {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    const started = Date.now();
    let stdout = "";
    let partial = "";
    let toolLines = 0;
    const tail: string[] = [];
    const say = (line: string) => process.stderr.write(`${line}\n`);
    child.stdout?.on("data", (b: Buffer) => {
      stdout += b.toString();
    });
    child.stderr?.on("data", (b: Buffer) => {
      const lines = (partial + b.toString()).split(/\r?\n|\r/);
      partial = lines.pop() ?? "";
      for (const line of lines) {
        if (line.startsWith(prefix)) say(line);
        else if (line.trim() !== "") {
          toolLines++;
          tail.push(line);
          if (tail.length > TAIL_LINES) tail.shift();
        }
      }
    });
    const progress = setInterval(() => {
      if (toolLines > 0)
        say(`${prefix}${what}: ${Math.round((Date.now() - started) / 1000)} s, ${toolLines} lines of tool output`);
    }, PROGRESS_EVERY_MS);
    const finish = () => {
      clearTimeout(timer);
      clearInterval(progress);
      signal?.removeEventListener("abort", abort);
    };
    const kill = (why: string) => {
      finish();
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      } catch {
        // already gone
      }
      reject(new Error(`${what} ${why}; its last output:\n${tail.join("\n")}`));
    };
    const timer = setTimeout(() => kill(`did not finish within ${timeoutMs} ms`), timeoutMs);
    const abort = () => kill("was stopped");
    if (signal?.aborted) abort();
    else signal?.addEventListener("abort", abort);
    child.on("error", (e) => {
      finish();
      reject(e);
    });
    child.on("close", (code) => {
      finish();
      if (partial.startsWith(prefix)) say(partial);
      const path = stdout.trim().split("\n").at(-1);
      if (code === 0 && path) resolve(path);
      else reject(new Error(`${what} exited with ${code}; its last output:\n${[...tail, partial].join("\n").trim()}`));
    });
  });
}
