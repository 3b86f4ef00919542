import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { parsePpid, parseVmRssBytes, processOverheadBytes, treeRssBytes } from "../../src/runtime/process-memory.js";

let root: string | undefined;
afterEach(async () => {
  if (root) await rm(root, { recursive: true, force: true });
  root = undefined;
});

/** A folder laid out like /proc: `<pid>/stat` naming the parent, `<pid>/status` with VmRSS (kB). */
async function fakeProc(processes: Array<{ pid: number; ppid: number; rssKb?: number; comm?: string }>) {
  root = await mkdtemp(join(tmpdir(), "tern-fake-proc-"));
  for (const p of processes) {
    await mkdir(join(root, String(p.pid)));
    await writeFile(
      join(root, String(p.pid), "stat"),
      `${p.pid} (${p.comm ?? "python"}) S ${p.ppid} ${p.pid} 0 0 -1\n`,
    );
    const rss = p.rssKb === undefined ? "" : `VmRSS:\t${p.rssKb} kB\n`;
    await writeFile(join(root, String(p.pid), "status"), `Name:\tpython\nVmPeak:\t999999 kB\n${rss}Threads:\t4\n`);
  }
  await mkdir(join(root, "self")); // not a pid: ignored
  return root;
}

describe("process memory", () => {
  it("reads VmRSS in bytes and the parent pid after a command name with spaces and parentheses", () => {
    expect(parseVmRssBytes("Name:\tx\nVmRSS:\t   2048 kB\nVmSwap:\t0 kB\n")).toBe(2048 * 1024);
    expect(parseVmRssBytes("Name:\tkthreadd\nState:\tS\n")).toBeUndefined();
    expect(parsePpid("4242 (my (odd) name) S 17 4242 0")).toBe(17);
  });

  it("adds the resident memory of every descendant, and of nothing else", async () => {
    const proc = await fakeProc([
      { pid: 100, ppid: 1, rssKb: 200_000 }, // MLServer
      { pid: 101, ppid: 100, rssKb: 50_000, comm: "worker 1" }, // a worker it forked
      { pid: 102, ppid: 101, rssKb: 1_000 }, // and that worker's child
      { pid: 103, ppid: 100 }, // a zombie child: no VmRSS
      { pid: 200, ppid: 1, rssKb: 900_000 }, // another process
      { pid: 201, ppid: 200, rssKb: 70_000 },
    ]);
    expect(await treeRssBytes(100, proc)).toBe((200_000 + 50_000 + 1_000) * 1024);
    expect(await treeRssBytes(101, proc)).toBe((50_000 + 1_000) * 1024);
    expect(await treeRssBytes(999, proc)).toBeUndefined();
  });

  it("measures a real process: at least its own VmRSS", async () => {
    const own = parseVmRssBytes(await readFile(`/proc/${process.pid}/status`, "utf8"))!;
    const tree = (await treeRssBytes(process.pid))!;
    expect(tree).toBeGreaterThanOrEqual(own * 0.9); // it may shrink a little between the two reads
  });

  it("reports what the process holds beyond its models' declared memory, never below 0", () => {
    const MiB = 1024 * 1024;
    // The specification's iris: 100Ki declared in a ~200 MB Python process.
    expect(processOverheadBytes(200 * MiB, 100 * 1024)).toBe(200 * MiB - 100 * 1024);
    // Declarations larger than what the process holds so far: the declarations count, the process adds nothing.
    expect(processOverheadBytes(300 * MiB, 2048 * MiB)).toBe(0);
    expect(processOverheadBytes(0, 0)).toBe(0);
    // No process of its own (ONNX runs in the agent): nothing to report.
    expect(processOverheadBytes(undefined, 5 * MiB)).toBeUndefined();
  });
});
