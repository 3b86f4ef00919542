import { createWriteStream } from "node:fs";
import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { hasCode, TernError } from "@tern/core";
import type { ArtifactSource, DownloadLimits, StorageCredentials } from "./artifact-fetcher.js";
import { type ByteBudget, bucketUri, cacheTarget, createByteBudget, declaredTooLarge } from "./download-guards.js";

// gs:// over Google Cloud Storage's JSON API with plain fetch: list the objects under a prefix (page by page), then
// download each with `alt=media`. Public objects need no credentials; a secret of type gcs adds a bearer token.

/** Google's endpoint; TERN_GCS_ENDPOINT points elsewhere (fake-gcs-server in the tests). */
export const DEFAULT_GCS_ENDPOINT = "https://storage.googleapis.com";

export interface GcsSourceOptions {
  /** Base URL of the JSON API (without `/storage/v1`). @default https://storage.googleapis.com */
  endpoint?: string;
  /** Deadline for a whole download (listing and every object). @default 60000 */
  timeoutMs?: number;
  /** Objects per listing page (`maxResults`); unset lets the server choose (1 000 at Google). */
  pageSize?: number;
}

interface GcsObject {
  name: string;
  size: number;
}

interface ListPage {
  items?: Array<{ name?: unknown; size?: unknown }>;
  nextPageToken?: unknown;
}

/**
 * Downloads `gs://bucket/path` artifacts: the object itself when `path` names one, otherwise every object under
 * `path/` (a model folder, as Seldon's `gs://seldon-models/scv2/samples/mlserver_1.2.3/iris-sklearn`), keeping
 * relative paths.
 */
export function createGcsSource(options: GcsSourceOptions = {}): ArtifactSource {
  const endpoint = (options.endpoint ?? DEFAULT_GCS_ENDPOINT).replace(/\/+$/, "");
  const timeoutMs = options.timeoutMs ?? 60_000;

  return {
    schemes: ["gs"],
    async download(
      storageUri: string,
      targetDir: string,
      limits: DownloadLimits,
      credentials?: StorageCredentials,
    ): Promise<string> {
      const { bucket, path } = bucketUri(storageUri, "gs", credentials);
      const prefix = path === "" ? "" : `${path}/`;
      const signal = AbortSignal.timeout(timeoutMs);
      const headers: Record<string, string> =
        credentials?.type === "gcs" ? { authorization: `Bearer ${credentials.accessToken}` } : {};
      const bucketUrl = `${endpoint}/storage/v1/b/${encodeURIComponent(bucket)}/o`;

      async function call(url: string, what: string): Promise<Response> {
        let response: Response;
        try {
          response = await fetch(url, { headers, signal });
        } catch (err) {
          throw networkError(storageUri, timeoutMs, err);
        }
        if (response.ok && response.body !== null) return response;
        const detail = await errorMessage(response);
        await response.body?.cancel().catch(() => {});
        if (response.status === 404)
          throw new TernError("not_found", `model artifact not found: ${storageUri} (${what}: HTTP 404${detail})`);
        if (response.status === 401 || response.status === 403)
          throw new TernError(
            "forbidden",
            `cannot download ${storageUri}: bucket ${bucket} refused access (HTTP ${response.status}${detail})`,
          );
        throw new TernError("unavailable", `cannot download ${storageUri}: ${what}: HTTP ${response.status}${detail}`, {
          retriable: response.status >= 500 || response.status === 429,
        });
      }

      async function list(): Promise<{ exact?: GcsObject; folder: GcsObject[] }> {
        let exact: GcsObject | undefined;
        const folder: GcsObject[] = [];
        let token: string | undefined;
        do {
          const query = new URLSearchParams({ prefix: path, fields: "items(name,size),nextPageToken" });
          if (token !== undefined) query.set("pageToken", token);
          if (options.pageSize !== undefined) query.set("maxResults", String(options.pageSize));
          const response = await call(`${bucketUrl}?${query}`, `listing bucket ${bucket}`);
          let page: ListPage;
          try {
            page = (await response.json()) as ListPage;
          } catch (err) {
            throw networkError(storageUri, timeoutMs, err);
          }
          for (const item of page.items ?? []) {
            if (typeof item.name !== "string") continue;
            const size = Number(item.size ?? 0);
            const object = { name: item.name, size: Number.isFinite(size) ? size : 0 };
            if (item.name === path) exact = object;
            else if (item.name.startsWith(prefix) && !item.name.endsWith("/")) folder.push(object);
          }
          token = typeof page.nextPageToken === "string" && page.nextPageToken !== "" ? page.nextPageToken : undefined;
        } while (token !== undefined);
        return { ...(exact === undefined ? {} : { exact }), folder };
      }

      async function get(object: GcsObject, target: string, budget: ByteBudget): Promise<void> {
        const response = await call(`${bucketUrl}/${encodeURIComponent(object.name)}?alt=media`, object.name);
        await mkdir(dirname(target), { recursive: true });
        try {
          await pipeline(
            Readable.fromWeb(response.body as import("node:stream/web").ReadableStream),
            budget.stream(),
            // "wx": never through a file (or symlink) that is already there.
            createWriteStream(target, { flags: "wx" }),
          );
        } catch (err) {
          if (hasCode(err, "too_large")) throw err;
          throw networkError(storageUri, timeoutMs, err);
        }
      }

      const { exact, folder } = await list();
      // Every name and the listed sizes are checked before the first byte is fetched; the budget then holds the
      // bodies to the limit whatever the listing said. A failure leaves partial files to the fetcher, which removes
      // the whole staging folder.
      const budget = createByteBudget(storageUri, limits.maxBytes);
      if (exact !== undefined) {
        const name = path.slice(path.lastIndexOf("/") + 1);
        const target = await cacheTarget(targetDir, name, storageUri, "key", path);
        if (exact.size > limits.maxBytes) throw declaredTooLarge(storageUri, exact.size, limits.maxBytes);
        await get(exact, target, budget);
        return target;
      }
      if (folder.length === 0) throw new TernError("not_found", `model artifact not found: nothing at ${storageUri}`);
      const targets: Array<[GcsObject, string]> = [];
      for (const object of folder)
        targets.push([
          object,
          await cacheTarget(targetDir, object.name.slice(prefix.length), storageUri, "key", object.name),
        ]);
      const total = folder.reduce((sum, o) => sum + o.size, 0);
      if (total > limits.maxBytes) throw declaredTooLarge(storageUri, total, limits.maxBytes);
      for (const [object, target] of targets) await get(object, target, budget);
      return targetDir;
    },
  };
}

/** The JSON API's `{"error": {"message": ...}}`, as `: message`, or nothing. */
async function errorMessage(response: Response): Promise<string> {
  try {
    const text = (await response.text()).slice(0, 2000);
    try {
      const message = (JSON.parse(text) as { error?: { message?: unknown } }).error?.message;
      if (typeof message === "string" && message !== "") return `: ${message.slice(0, 200)}`;
    } catch {
      // not JSON
    }
    const line = text.trim().split("\n")[0] ?? "";
    return line === "" ? "" : `: ${line.slice(0, 200)}`;
  } catch {
    return "";
  }
}

function networkError(storageUri: string, timeoutMs: number, err: unknown): TernError {
  const name = err instanceof Error ? err.name : "";
  if (name === "TimeoutError" || name === "AbortError")
    return new TernError("timeout", `download of ${storageUri} did not finish within ${timeoutMs} ms`, {
      cause: err,
      retriable: true,
    });
  const message = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
  return new TernError("unavailable", `cannot download ${storageUri}: ${message}`, { cause: err, retriable: true });
}
