import { realpath } from "node:fs/promises";
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { Transform } from "node:stream";
import { formatQuantity, TernError } from "@tern/core";

// Where artifacts may be read from and written to, and how big a download may grow: local paths stay inside the
// artifact roots, a download's files inside the model's cache folder, its bytes under the limit. One module, so that
// the fetcher and every source share one check rather than each carrying its own copy.

/** The download limit when TERN_ARTIFACT_MAX_BYTES is unset: 1 GiB, the agent's default memory. */
export const DEFAULT_ARTIFACT_MAX_BYTES = 1 << 30;

/** True when `path` is `root` itself or lies under it. Lexical: both are resolved, symlinks are not followed. */
export function isWithin(root: string, path: string): boolean {
  const rel = relative(resolve(root), resolve(path));
  return rel === "" || (!isAbsolute(rel) && rel !== ".." && !rel.startsWith(`..${sep}`));
}

/**
 * `root` joined with `relativePath` when the result stays strictly inside `root`; undefined for absolute paths, paths
 * that climb out (`../x`, `m/../../x`), paths that name `root` itself (`""`, `.`, `m/..`) and paths with a NUL byte.
 * Pure: symlinks are the job of {@link cacheTarget}.
 */
export function resolveInside(root: string, relativePath: string): string | undefined {
  if (relativePath.includes("\0") || isAbsolute(relativePath)) return undefined;
  const target = resolve(root, relativePath);
  return isWithin(root, target) && target !== resolve(root) ? target : undefined;
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

/**
 * Where a source may write `relativePath` (an S3 key below the prefix, a path from an index or archive) inside
 * `targetDir`, the model's download folder. Refuses, naming the key, anything that leads outside it — by `..`, an
 * absolute path, or a symlink on the way.
 */
export async function cacheTarget(
  targetDir: string,
  relativePath: string,
  storageUri: string,
  what: "key" | "path",
  shownAs = relativePath,
): Promise<string> {
  const target = resolveInside(targetDir, relativePath);
  if (target === undefined || !(await realPathWithin([targetDir], target)))
    throw outsideCache(storageUri, what, shownAs);
  return target;
}

export function outsideCache(storageUri: string, what: "key" | "path", shown: string): TernError {
  return new TernError(
    "bad_request",
    `refusing to download ${storageUri}: the ${what} "${shown}" leads outside the model's cache folder`,
  );
}

function describeLimit(maxBytes: number): string {
  const q = formatQuantity(maxBytes);
  return /^\d+$/.test(q) ? `${q} bytes` : q;
}

/** The reason for an artifact whose declared size (Content-Length, the S3 listing) is already above the limit. */
export function declaredTooLarge(storageUri: string, bytes: number, maxBytes: number): TernError {
  return new TernError(
    "too_large",
    `artifact ${storageUri} is ${bytes} bytes, more than the download limit of ${describeLimit(maxBytes)} (TERN_ARTIFACT_MAX_BYTES)`,
  );
}

/** Counts the bytes of one artifact's download, across all its files. */
export interface ByteBudget {
  readonly used: number;
  /** A pass-through stream that fails with `too_large` as soon as the running total passes the limit. */
  stream(): Transform;
}

export function createByteBudget(storageUri: string, maxBytes: number): ByteBudget {
  let used = 0;
  return {
    get used() {
      return used;
    },
    stream() {
      return new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          used += chunk.length;
          if (used > maxBytes) {
            callback(
              new TernError(
                "too_large",
                `artifact ${storageUri} is larger than the download limit of ${describeLimit(maxBytes)} (TERN_ARTIFACT_MAX_BYTES): download stopped`,
              ),
            );
          } else {
            callback(null, chunk);
          }
        },
      });
    },
  };
}

/**
 * Splits an object-store URI (`s3://bucket/key`, `gs://bucket/path`) into its bucket and its path without trailing
 * slashes, and checks that the model's secret, if any, is for this store.
 * @throws TernError `bad_request` naming the URI (no bucket) or the secret (another store's type).
 */
export function bucketUri<C extends { name: string; type: string }, S extends "s3" | "gs">(
  storageUri: string,
  scheme: S,
  credentials: C | undefined,
): { bucket: string; path: string; credentials: Extract<C, { type: S extends "gs" ? "gcs" : "s3" }> | undefined } {
  const m = new RegExp(`^${scheme}://([^/]+)/?(.*)$`, "i").exec(storageUri);
  if (!m?.[1])
    throw new TernError("bad_request", `storageUri ${storageUri} names no bucket (expected ${scheme}://bucket/path)`);
  const type = scheme === "gs" ? "gcs" : "s3";
  if (credentials !== undefined && credentials.type !== type)
    throw new TernError(
      "bad_request",
      `cannot download ${storageUri}: secret "${credentials.name}" is of type ${credentials.type}, not ${type}`,
    );
  return {
    bucket: m[1],
    path: (m[2] ?? "").replace(/\/+$/, ""),
    // Checked just above: the secret, if any, is this store's.
    credentials: credentials as Extract<C, { type: S extends "gs" ? "gcs" : "s3" }> | undefined,
  };
}
