import { join } from "node:path";
import { runInstallScript } from "../helpers/install-script.js";
import { repoRoot } from "../helpers/platform-process.js";

/**
 * The slow first-time installs some test files need, in the order they are started: the Python venvs
 * (scripts/python-env.sh) and the fake-gcs-server build (scripts/fake-gcs-server.sh). On a clean clone they take
 * minutes (mlserver alone 2–3, `go install` over one); each ran inside the first test file that needed it, which sat
 * idle meanwhile.
 */
const INSTALLS: { script: string; args: string[]; prefix: string }[] = [
  { script: "scripts/python-env.sh", args: ["moto"], prefix: "python-env: " },
  { script: "scripts/python-env.sh", args: ["tritonclient"], prefix: "python-env: " },
  { script: "scripts/python-env.sh", args: ["mlserver"], prefix: "python-env: " },
  { script: "scripts/fake-gcs-server.sh", args: [], prefix: "fake-gcs-server: " },
];

/** Same deadline as the helpers' own first-install deadline (test/helpers/python.ts, emulators.ts). */
const INSTALL_TIMEOUT_MS = 900_000;

/**
 * Runs the installs one after the other in the background while the first test files run. A test file that needs one
 * still calls its script as before: the script's flock makes it wait for the warm-up's run and then return at once
 * (or build it itself when the warm-up failed), within its unchanged deadline. One at a time, not all at once: on a
 * 2-core machine a parallel compile and three pip installs would slow every test they overlap. Where everything is
 * already installed each script returns at once. `stop()` ends a run still going (the tests no longer need it) and
 * resolves once the chain has settled; a failure here is only logged, the test that needs the install reports it.
 */
export function startInstallWarmUp(): { stop(): Promise<void> } {
  const controller = new AbortController();
  const chain = (async () => {
    for (const { script, args, prefix } of INSTALLS) {
      if (controller.signal.aborted) return;
      try {
        await runInstallScript(join(repoRoot, script), args, prefix, INSTALL_TIMEOUT_MS, controller.signal);
      } catch (err) {
        if (controller.signal.aborted) return;
        console.warn(`[integration setup] warm-up of ${[script, ...args].join(" ")} failed: ${(err as Error).message}`);
      }
    }
  })();
  return {
    async stop() {
      controller.abort();
      await chain;
    },
  };
}
