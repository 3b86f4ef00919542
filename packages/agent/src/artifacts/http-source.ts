import { createWriteStream } from "node:fs";
import { rm } from "node:fs/promises";
import { basename } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { hasCode, TernError } from "@tern/core";
import type { ArtifactSource, DownloadLimits } from "./artifact-fetcher.js";
import { cacheTarget, createByteBudget, declaredTooLarge } from "./download-guards.js";

export interface HttpSourceOptions {
  /** Deadline for the whole download. @default 30000 */
  timeoutMs?: number;
  /** The file name used when the URL path has none that ends in the model extension. @default "model.onnx" */
  modelFileName?: string;
}

/** Downloads `http://` and `https://` artifacts (a single file) with a deadline and a size limit. */
export function createHttpSource(options: HttpSourceOptions = {}): ArtifactSource {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const fallbackName = options.modelFileName ?? "model.onnx";
  return {
    schemes: ["http", "https"],
    async download(storageUri: string, targetDir: string, limits: DownloadLimits): Promise<string> {
      const last = basename(new URL(storageUri).pathname);
      const name = last.includes(".") ? last : fallbackName;
      const target = await cacheTarget(targetDir, name, storageUri, "path");
      let response: Response;
      try {
        response = await fetch(storageUri, { signal: AbortSignal.timeout(timeoutMs) });
      } catch (err) {
        const timedOut = err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError");
        throw new TernError(
          timedOut ? "timeout" : "unavailable",
          timedOut
            ? `download of ${storageUri} did not finish within ${timeoutMs} ms`
            : `cannot download ${storageUri}: ${err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err)}`,
          { cause: err, retriable: true },
        );
      }
      if (!response.ok || response.body === null) {
        throw new TernError(
          response.status === 404 ? "not_found" : "unavailable",
          `cannot download ${storageUri}: HTTP ${response.status} ${response.statusText}`.trim(),
          { retriable: response.status >= 500 },
        );
      }
      const declared = Number(response.headers.get("content-length") ?? Number.NaN);
      if (declared > limits.maxBytes) {
        await response.body.cancel().catch(() => {});
        throw declaredTooLarge(storageUri, declared, limits.maxBytes);
      }
      try {
        await pipeline(
          Readable.fromWeb(response.body as import("node:stream/web").ReadableStream),
          createByteBudget(storageUri, limits.maxBytes).stream(),
          // "wx": never through a file (or symlink) that is already there.
          createWriteStream(target, { flags: "wx" }),
        );
      } catch (err) {
        await rm(target, { force: true });
        if (hasCode(err, "too_large")) throw err;
        throw new TernError(
          "unavailable",
          `download of ${storageUri} broke off: ${err instanceof Error ? err.message : String(err)}`,
          {
            cause: err,
            retriable: true,
          },
        );
      }
      return target;
    },
  };
}
