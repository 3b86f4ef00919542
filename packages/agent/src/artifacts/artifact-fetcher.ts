import { createHash } from "node:crypto";
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { isAbsolute, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { TernError } from "@tern/core";
import { DEFAULT_ARTIFACT_MAX_BYTES, isWithin, outsideCache, realPathWithin } from "./download-guards.js";
import type { SecretsSource, StorageCredentials } from "./secrets.js";

export type { StorageCredentials } from "./secrets.js";

/** A model artifact on local disk, ready for a runtime to load. */
export interface Artifact {
  /** The model file to load (e.g. `.../model.onnx`). */
  path: string;
  sizeBytes: number;
}

/** Copies one remote storage URI into `targetDir` (a file, or a folder's files keeping their relative paths). */
export interface ArtifactSource {
  /** URI schemes this source handles, without `://` (e.g. `["s3"]`). */
  readonly schemes: readonly string[];
  /**
   * Downloads into `targetDir` (which exists and is empty); returns the local path that mirrors the URI. Every path
   * written must pass `cacheTarget` and every byte a `createByteBudget` of `limits.maxBytes` (see download-guards.ts).
   * `credentials`, from the model's `secretName`, replace the source's own (a source refuses a secret of another type).
   */
  download(
    storageUri: string,
    targetDir: string,
    limits: DownloadLimits,
    credentials?: StorageCredentials,
  ): Promise<string>;
}

export interface DownloadLimits {
  /** Most bytes one artifact (all its files together) may have; the download stops as soon as it passes this. */
  maxBytes: number;
}

/** Fetches a `storageUri` to local disk. */
export interface ArtifactFetcher {
  /** `secretName` (the Model's) selects the credentials of a remote download; local paths ignore it. */
  fetch(storageUri: string, options?: { secretName?: string }): Promise<Artifact>;
}

export interface ArtifactFetcherOptions {
  /** Where remote artifacts are downloaded; one sub-folder per storage URI. */
  cacheDir: string;
  /**
   * Relative `file://` paths (`file://samples/models/iris`, `file://./samples/...`) resolve against this folder.
   * @default process.cwd()
   */
  fileBaseDir?: string;
  /**
   * Folders local artifacts (`file://`, bare paths) may come from; anything else fails to load. Absolute paths.
   * @default defaultArtifactRoots()
   */
  localRoots?: string[];
  /** Most bytes one remote artifact may have (TERN_ARTIFACT_MAX_BYTES). @default 1 GiB */
  maxBytes?: number;
  /** Remote sources (http(s), s3, gs); `file://` is built in. */
  sources?: ArtifactSource[];
  /** Where a Model's `secretName` is read (TERN_SECRETS_DIR). Unset: a model with a `secretName` fails to load. */
  secrets?: SecretsSource;
  /** The model file name looked for in a folder. @default "model.onnx" */
  modelFileName?: string;
  /** The extension of model files, used when a folder has no `modelFileName`. @default ".onnx" */
  modelExtension?: string;
}

/** The repository's `samples/` folder, found from this file so that it does not depend on the working directory. */
const SAMPLES_DIR = fileURLToPath(new URL("../../../../samples", import.meta.url));

/** Where local artifacts may come from when TERN_ARTIFACT_ROOTS is unset: the samples folder and `<cwd>/models`. */
export function defaultArtifactRoots(cwd: string = process.cwd()): string[] {
  return [SAMPLES_DIR, resolve(cwd, "models")];
}

/** Splits `scheme://rest`; undefined when the URI has no scheme. */
export function uriScheme(storageUri: string): string | undefined {
  const m = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(storageUri);
  return m?.[1]?.toLowerCase();
}

/**
 * Resolves a `file://` URI to a local path. `file:///abs/path` is absolute; anything else after `file://` is taken as
 * a path relative to `baseDir` (URL hosts make no sense for local files, and `file://./x` is what people write).
 */
export function filePathFromUri(storageUri: string, baseDir: string): string {
  const rest = decodeURIComponent(storageUri.replace(/^file:\/\//i, ""));
  if (rest === "") throw new TernError("bad_request", `storageUri ${storageUri} names no path`);
  return isAbsolute(rest) ? rest : resolve(baseDir, rest);
}

/** Finds the model file for a local path: the file itself, or in a folder `modelFileName` or its single model file. */
export async function resolveModelFile(
  localPath: string,
  storageUri: string,
  modelFileName = "model.onnx",
  modelExtension = ".onnx",
): Promise<Artifact> {
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(localPath);
  } catch {
    throw new TernError(
      "not_found",
      `model artifact not found: ${localPath} does not exist (storageUri ${storageUri})`,
    );
  }
  if (info.isFile()) return { path: localPath, sizeBytes: info.size };
  if (!info.isDirectory())
    throw new TernError("bad_request", `${localPath} is neither a file nor a folder (storageUri ${storageUri})`);
  const entries = await readdir(localPath);
  const candidate = entries.includes(modelFileName) ? modelFileName : undefined;
  const models = entries.filter((e) => e.toLowerCase().endsWith(modelExtension)).sort();
  const chosen = candidate ?? (models.length === 1 ? models[0] : undefined);
  if (chosen === undefined) {
    const found = entries.length === 0 ? "it is empty" : `it holds ${entries.slice(0, 10).join(", ")}`;
    throw new TernError(
      "not_found",
      models.length > 1
        ? `model folder ${localPath} holds several ${modelExtension} files (${models.join(", ")}) and no ${modelFileName}: point storageUri at one file`
        : `no ${modelFileName} in model folder ${localPath} (${found}; storageUri ${storageUri})`,
    );
  }
  const path = join(localPath, chosen);
  const fileInfo = await stat(path);
  return { path, sizeBytes: fileInfo.size };
}

/** `["file", "s3", "http", "https"]` → `file://, s3:// or http(s)://`. */
function describeSchemes(schemes: string[]): string {
  const set = new Set(schemes);
  const parts: string[] = [];
  for (const s of ["file", "s3", "gs"]) if (set.delete(s)) parts.push(`${s}://`);
  const web = set.has("http") && set.has("https");
  for (const s of set) if (!(web && (s === "http" || s === "https"))) parts.push(`${s}://`);
  if (web) parts.push("http(s)://");
  return parts.length < 2 ? parts.join("") : `${parts.slice(0, -1).join(", ")} or ${parts.at(-1)}`;
}

/** Creates the fetcher: local paths read in place (inside the roots), remote schemes downloaded once into the cache. */
export function createArtifactFetcher(options: ArtifactFetcherOptions): ArtifactFetcher {
  const baseDir = options.fileBaseDir ?? process.cwd();
  const roots = (options.localRoots ?? defaultArtifactRoots()).map((r) => resolve(r));
  const limits: DownloadLimits = { maxBytes: options.maxBytes ?? DEFAULT_ARTIFACT_MAX_BYTES };
  const sources = new Map<string, ArtifactSource>();
  for (const source of options.sources ?? []) for (const scheme of source.schemes) sources.set(scheme, source);
  const supported = describeSchemes(["file", ...sources.keys()]);
  const fileName = options.modelFileName ?? "model.onnx";
  const extension = options.modelExtension ?? ".onnx";
  // One download per URI at a time: concurrent loads of the same artifact share it.
  const inFlight = new Map<string, Promise<Artifact>>();

  // The reason names the roots and nothing else: no listing, not even whether the path exists.
  const outsideRoots = (storageUri: string) =>
    new TernError(
      "bad_request",
      `storageUri ${storageUri} is outside the artifact roots (${roots.join(", ")}): local models load only from there (TERN_ARTIFACT_ROOTS)`,
    );

  async function fetchLocal(localPath: string, storageUri: string): Promise<Artifact> {
    // Lexically first (`..` climbing out), then with symlinks resolved (a link inside a root that leads out of it),
    // and once more for the model file picked inside a folder (which may itself be such a link).
    if (!roots.some((root) => isWithin(root, localPath))) throw outsideRoots(storageUri);
    if (!(await realPathWithin(roots, localPath))) throw outsideRoots(storageUri);
    const artifact = await resolveModelFile(localPath, storageUri, fileName, extension);
    if (!(await realPathWithin(roots, artifact.path))) throw outsideRoots(storageUri);
    return artifact;
  }

  async function fetchRemote(storageUri: string, source: ArtifactSource, secretName?: string): Promise<Artifact> {
    // The secret is part of the cache key: a model is never served bytes another model's credentials fetched.
    const key = createHash("sha256")
      .update(secretName === undefined ? storageUri : `${storageUri}\u0000${secretName}`)
      .digest("hex")
      .slice(0, 24);
    const dir = join(options.cacheDir, key);
    const marker = join(dir, ".complete");
    try {
      const localPath = (await readFile(marker, "utf8")).trim();
      if (!isWithin(dir, localPath)) throw new Error("marker points outside its folder");
      return await resolveModelFile(localPath, storageUri, fileName, extension);
    } catch {
      // Not cached (or the cache is damaged): download afresh.
    }
    let credentials: StorageCredentials | undefined;
    if (secretName !== undefined) {
      if (options.secrets === undefined)
        throw new TernError(
          "not_found",
          `secret "${secretName}" (secretName for ${storageUri}) cannot be read: no secrets folder is configured (TERN_SECRETS_DIR)`,
        );
      credentials = await options.secrets.get(secretName, storageUri);
    }
    const staging = `${dir}.tmp-${process.pid}-${Date.now()}`;
    await mkdir(staging, { recursive: true });
    try {
      const downloaded = await source.download(storageUri, staging, limits, credentials);
      if (!isWithin(staging, downloaded)) throw outsideCache(storageUri, "path", downloaded);
      await rm(dir, { recursive: true, force: true });
      await rename(staging, dir);
      const localPath = join(dir, relative(staging, downloaded));
      // Written last: a crash mid-download never leaves a folder that looks complete.
      await writeFile(marker, localPath);
      return await resolveModelFile(localPath, storageUri, fileName, extension);
    } catch (err) {
      await rm(staging, { recursive: true, force: true });
      throw err;
    }
  }

  return {
    async fetch(storageUri: string, fetchOptions: { secretName?: string } = {}): Promise<Artifact> {
      const scheme = uriScheme(storageUri);
      // A bare path (`/mnt/models/iris`, as Seldon allows) is a local path like `file://`.
      if (scheme === undefined) return fetchLocal(resolve(baseDir, storageUri), storageUri);
      if (scheme === "file") return fetchLocal(filePathFromUri(storageUri, baseDir), storageUri);
      const source = sources.get(scheme);
      if (source === undefined) {
        throw new TernError(
          "unsupported",
          `unsupported storage scheme "${scheme}" in storageUri ${storageUri}: use ${supported}`,
        );
      }
      const { secretName } = fetchOptions;
      const flight = secretName === undefined ? storageUri : `${storageUri}\u0000${secretName}`;
      const pending = inFlight.get(flight);
      if (pending) return pending;
      const p = fetchRemote(storageUri, source, secretName).finally(() => inFlight.delete(flight));
      inFlight.set(flight, p);
      return p;
    },
  };
}
