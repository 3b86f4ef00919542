import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  createSupervisor,
  type ExitInfo,
  isProcessAlive,
  killStaleChildren,
  type Supervisor,
  waitFor,
} from "@tern/devstack";
import { afterAll, afterEach, describe, expect, it } from "vitest";

const dir = mkdtempSync(join(tmpdir(), "tern-it-supervisor-"));
const supervisors: Supervisor[] = [];
afterEach(async () => {
  await Promise.all(supervisors.splice(0).map((s) => s.stopAll(0)));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Gone, or a zombie waiting for init to reap it: either way it no longer runs. */
function isRunning(pid: number): boolean {
  if (!isProcessAlive(pid)) return false;
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

function supervisor(onUnexpectedExit?: (name: string, exit: ExitInfo) => void): Supervisor {
  const s = createSupervisor(
    onUnexpectedExit === undefined ? {} : { onUnexpectedExit: (child, exit) => onUnexpectedExit(child.name, exit) },
  );
  supervisors.push(s);
  return s;
}

describe("process supervisor", () => {
  it("stops a child together with the processes it started (its process group)", async () => {
    const pidFile = join(dir, "grandchild.pid");
    const child = await supervisor().spawn({
      name: "parent",
      command: "sh",
      args: ["-c", `sleep 300 & echo $! > ${pidFile}; wait`],
      logFile: join(dir, "parent.log"),
    });
    const grandchild = await waitFor(
      () => {
        const text = readFileSync(pidFile, "utf8").trim();
        return text === "" ? false : Number(text);
      },
      { timeoutMs: 10_000, intervalMs: 20, description: "the grandchild's pid" },
    );
    expect(isRunning(grandchild)).toBe(true);

    await child.stop(5_000);
    expect(await child.exited).toEqual({ code: null, signal: "SIGTERM" });
    await waitFor(() => !isRunning(grandchild), { timeoutMs: 5_000, intervalMs: 20, description: "grandchild gone" });
  });

  it("kills a child that ignores SIGTERM once the grace period ends", async () => {
    const child = await supervisor().spawn({
      name: "stubborn",
      command: process.execPath,
      args: ["-e", "process.on('SIGTERM', () => {}); console.log('ready'); setInterval(() => {}, 1000);"],
      logFile: join(dir, "stubborn.log"),
    });
    // Only once the handler is installed does SIGTERM get ignored.
    await waitFor(() => readFileSync(child.logFile!, "utf8").includes("ready"), {
      timeoutMs: 10_000,
      intervalMs: 20,
      description: "the stubborn child's handler",
    });
    await child.stop(200);
    expect((await child.exited).signal).toBe("SIGKILL");
    expect(isRunning(child.pid)).toBe(false);
  });

  it("reports a child that dies on its own, but not one it was asked to stop", async () => {
    const unexpected: Array<[string, ExitInfo]> = [];
    const s = supervisor((name, exit) => unexpected.push([name, exit]));
    const crashing = await s.spawn({
      name: "crashing",
      command: process.execPath,
      args: ["-e", "process.exit(3)"],
      logFile: join(dir, "crashing.log"),
    });
    const stopped = await s.spawn({
      name: "stopped",
      command: process.execPath,
      args: ["-e", "setInterval(() => {}, 1000)"],
      logFile: join(dir, "stopped.log"),
    });
    await crashing.exited;
    await stopped.stop(5_000);
    await waitFor(() => unexpected.length > 0, { timeoutMs: 5_000, intervalMs: 10, description: "the report" });
    expect(unexpected).toEqual([["crashing", { code: 3, signal: null }]]);
  });

  it("truncates a child's log at start, or appends to it when asked (a restart keeps the crashed run's lines)", async () => {
    const logFile = join(dir, "runs.log");
    const run = async (text: string, appendLog: boolean) => {
      const child = await supervisor().spawn({
        name: "runs",
        command: process.execPath,
        args: ["-e", `console.log(${JSON.stringify(text)})`],
        logFile,
        appendLog,
      });
      await child.exited;
    };
    await run("first run", false);
    await run("second run", true);
    expect(readFileSync(logFile, "utf8")).toBe("first run\nsecond run\n");
    await run("third run", false);
    expect(readFileSync(logFile, "utf8")).toBe("third run\n");
  });

  it("says which command was not found instead of crashing", async () => {
    await expect(
      supervisor().spawn({
        name: "ghost",
        command: "tern-no-such-command",
        args: [],
        logFile: join(dir, "ghost.log"),
      }),
    ).rejects.toThrow("could not start ghost (`tern-no-such-command`): command not found");
  });

  it("cleans up only the leftovers that carry the stack's marker", async () => {
    const s = supervisor();
    const sleeper = ["-e", "setInterval(() => {}, 1000)"];
    const ours = await s.spawn({
      name: "ours",
      command: process.execPath,
      args: sleeper,
      env: { ...process.env, TERN_DEVSTACK_OWNER: dir },
      logFile: join(dir, "ours.log"),
    });
    const unrelated = await s.spawn({
      name: "unrelated",
      command: process.execPath,
      args: sleeper,
      logFile: join(dir, "unrelated.log"),
    });
    expect(killStaleChildren([ours.pid, unrelated.pid], `TERN_DEVSTACK_OWNER=${dir}`)).toEqual([ours.pid]);
    expect((await ours.exited).signal).toBe("SIGKILL");
    expect(isRunning(unrelated.pid)).toBe(true);
  });
});
