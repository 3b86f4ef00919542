import { realpath } from "node:fs/promises";
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from "node:path";

// Where artifacts may be read from and written to. One module, so that the fetcher and every source share one check
// rather than each carrying its own copy.

/** True when `path` is `root` itself or lies under it. Lexical: both are resolved, symlinks are not followed. */
export function isWithin(root: string, path: string): boolean {
  const rel = relative(resolve(root), resolve(path));
  return rel === "" || (!isAbsolute(rel) && rel !== ".." && !rel.startsWith(`..${sep}`));
}

/**
 * The real path of `path` when part of it does not exist yet: its longest existing prefix with symlinks resolved,
 * followed by the rest as given. A new file written there lands where this says.
 */
export async function realPathOf(path: string): Promise<string> {
  const rest: string[] = [];
  let current = resolve(path);
  for (;;) {
    try {
      return join(await realpath(current), ...rest.reverse());
    } catch (err) {
      const parent = dirname(current);
      const code = (err as NodeJS.ErrnoException).code;
      // ENOTDIR: a file where a folder was expected; what lies below it does not exist either.
      if ((code !== "ENOENT" && code !== "ENOTDIR") || parent === current) throw err;
      rest.push(basename(current));
      current = parent;
    }
  }
}

/** True when `path`, with its symlinks resolved, lies in one of `roots` (with theirs resolved). */
export async function realPathWithin(roots: readonly string[], path: string): Promise<boolean> {
  const real = await realPathOf(path);
  for (const root of roots) if (isWithin(await realPathOf(root), real)) return true;
  return false;
}
