import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";

/** `VmRSS` of a `/proc/<pid>/status` text, bytes; undefined when absent (a kernel thread, a zombie). */
export function parseVmRssBytes(status: string): number | undefined {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  return m ? Number(m[1]) * 1024 : undefined;
}

/** The parent pid of a `/proc/<pid>/stat` text (the 4th field; the command name before it may hold spaces). */
export function parsePpid(stat: string): number | undefined {
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ppid = Number(fields[1]);
  return Number.isInteger(ppid) ? ppid : undefined;
}

async function readOrUndefined(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch {
    return undefined; // the process ended meanwhile
  }
}

/**
 * Resident memory of process `pid` and all its descendants (Linux `/proc`), bytes; undefined when `pid` itself is
 * gone or `/proc` is not there (macOS). Children are found by the parent pid in every `/proc/<pid>/stat`, since
 * `/proc/<pid>/task/<tid>/children` is missing on kernels built without it (this machine's among them). Pages shared
 * between a parent and its forked children are counted in each, so a forking server is over- rather than
 * under-counted.
 *
 * @param procRoot the proc file system (a folder laid out like it, in unit tests) @default "/proc"
 */
export async function treeRssBytes(pid: number, procRoot = "/proc"): Promise<number | undefined> {
  const own = await readOrUndefined(join(procRoot, String(pid), "status"));
  const ownRss = own === undefined ? undefined : parseVmRssBytes(own);
  if (ownRss === undefined) return undefined;
  let names: string[];
  try {
    names = (await readdir(procRoot)).filter((n) => /^\d+$/.test(n));
  } catch {
    return ownRss;
  }
  const children = new Map<number, number[]>();
  await Promise.all(
    names.map(async (name) => {
      const stat = await readOrUndefined(join(procRoot, name, "stat"));
      const ppid = stat === undefined ? undefined : parsePpid(stat);
      if (ppid === undefined) return;
      const list = children.get(ppid) ?? [];
      list.push(Number(name));
      children.set(ppid, list);
    }),
  );
  let total = ownRss;
  const seen = new Set([pid]);
  const queue = [...(children.get(pid) ?? [])];
  while (queue.length > 0) {
    const child = queue.shift()!;
    if (seen.has(child)) continue;
    seen.add(child);
    const status = await readOrUndefined(join(procRoot, String(child), "status"));
    total += (status === undefined ? undefined : parseVmRssBytes(status)) ?? 0;
    queue.push(...(children.get(child) ?? []));
  }
  return total;
}

/**
 * What a runtime process holds beyond the memory its models declare: its resident memory less the declared memory of
 * the models resident in it, never below 0. The scheduler takes this off the replica's capacity, so that the models'
 * declared memory plus this equals the larger of the two — the process's real memory when the declarations are
 * small (an sklearn iris at `100Ki` in a 200 MB Python), the declarations when they are larger than what the process
 * holds so far — and nothing is counted twice. Undefined when the runtime has no process of its own (ONNX).
 */
export function processOverheadBytes(processBytes: number | undefined, residentModelBytes: number): number | undefined {
  if (processBytes === undefined) return undefined;
  return Math.max(0, processBytes - residentModelBytes);
}
