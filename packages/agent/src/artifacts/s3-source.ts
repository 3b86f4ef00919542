import { createWriteStream } from "node:fs";
import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { S3Client } from "@aws-sdk/client-s3";
import { TernError } from "@tern/core";
import type { ArtifactSource, DownloadLimits, StorageCredentials } from "./artifact-fetcher.js";
import { type ByteBudget, bucketUri, cacheTarget, createByteBudget, declaredTooLarge } from "./download-guards.js";

// The only file that imports @aws-sdk/client-s3. It is loaded on first use: most agents never see an s3:// URI,
// and the SDK costs startup time (and prints a Node-version notice on Node 20).

export interface S3SourceOptions {
  region?: string;
  /** For S3-compatible stores (MinIO, LocalStack). Path-style addressing is used when set. */
  endpoint?: string;
  /** Injected for tests; otherwise one is created from region/endpoint and the default credential chain. */
  client?: Pick<S3Client, "send">;
  /** Deadline for a whole download (listing and every object). @default 60000 */
  timeoutMs?: number;
}

/**
 * Downloads `s3://bucket/key` artifacts: the object itself when `key` names one, otherwise every object under
 * `key/` (a model folder), keeping relative paths.
 */
export function createS3Source(options: S3SourceOptions = {}): ArtifactSource {
  let sdk: Promise<typeof import("@aws-sdk/client-s3")> | undefined;
  let client: Pick<S3Client, "send"> | undefined = options.client;
  async function getSdk() {
    sdk ??= import("@aws-sdk/client-s3");
    const mod = await sdk;
    client ??= new mod.S3Client({
      region: options.region,
      ...(options.endpoint ? { endpoint: options.endpoint, forcePathStyle: true } : {}),
    });
    return { mod, client };
  }
  /** A client of its own for a download with a model's secret (its endpoint and region win over the agent's). */
  async function clientFor(credentials: StorageCredentials & { type: "s3" }) {
    sdk ??= import("@aws-sdk/client-s3");
    const mod = await sdk;
    const endpoint = credentials.endpoint ?? options.endpoint;
    const own = new mod.S3Client({
      region: credentials.region ?? options.region,
      ...(endpoint ? { endpoint, forcePathStyle: true } : {}),
      credentials: {
        accessKeyId: credentials.accessKeyId,
        secretAccessKey: credentials.secretAccessKey,
        ...(credentials.sessionToken === undefined ? {} : { sessionToken: credentials.sessionToken }),
      },
    });
    return { mod, client: own, destroy: () => own.destroy() };
  }
  const timeoutMs = options.timeoutMs ?? 60_000;

  async function getObject(
    sdk: { mod: typeof import("@aws-sdk/client-s3"); client: Pick<S3Client, "send"> },
    bucket: string,
    key: string,
    target: string,
    budget: ByteBudget,
    signal: AbortSignal,
  ): Promise<void> {
    const { mod, client } = sdk;
    const out = await client.send(new mod.GetObjectCommand({ Bucket: bucket, Key: key }), { abortSignal: signal });
    if (!out.Body) throw new TernError("not_found", `s3://${bucket}/${key} has no body`);
    await mkdir(dirname(target), { recursive: true });
    // "wx": never through a file (or symlink) that is already there.
    await pipeline(out.Body as Readable, budget.stream(), createWriteStream(target, { flags: "wx" }));
  }

  return {
    schemes: ["s3"],
    async download(
      storageUri: string,
      targetDir: string,
      limits: DownloadLimits,
      credentials?: StorageCredentials,
    ): Promise<string> {
      const { bucket, path: key, credentials: secret } = bucketUri(storageUri, "s3", credentials);
      const signal = AbortSignal.timeout(timeoutMs);
      const own = secret === undefined ? undefined : await clientFor(secret);
      try {
        const prefix = key === "" ? "" : `${key}/`;
        const keys: string[] = [];
        let exact = false;
        let exactSize = 0;
        let folderSize = 0;
        let token: string | undefined;
        const sdk = own ?? (await getSdk());
        const { mod, client } = sdk;
        do {
          const page = await client.send(
            new mod.ListObjectsV2Command({ Bucket: bucket, Prefix: key, ContinuationToken: token }),
            { abortSignal: signal },
          );
          for (const obj of page.Contents ?? []) {
            if (obj.Key === key) {
              exact = true;
              exactSize = obj.Size ?? 0;
            } else if (obj.Key?.startsWith(prefix) && !obj.Key.endsWith("/")) {
              keys.push(obj.Key);
              folderSize += obj.Size ?? 0;
            }
          }
          token = page.IsTruncated ? page.NextContinuationToken : undefined;
        } while (token);
        // Every key and the listed sizes are checked before the first byte is fetched; the budget then holds the
        // bodies to the limit whatever the listing said.
        const budget = createByteBudget(storageUri, limits.maxBytes);
        if (exact) {
          const target = await cacheTarget(targetDir, key.slice(key.lastIndexOf("/") + 1), storageUri, "key", key);
          if (exactSize > limits.maxBytes) throw declaredTooLarge(storageUri, exactSize, limits.maxBytes);
          await getObject(sdk, bucket, key, target, budget, signal);
          return target;
        }
        if (keys.length === 0) throw new TernError("not_found", `model artifact not found: nothing at ${storageUri}`);
        const targets: Array<[string, string]> = [];
        for (const k of keys)
          targets.push([k, await cacheTarget(targetDir, k.slice(prefix.length), storageUri, "key", k)]);
        if (folderSize > limits.maxBytes) throw declaredTooLarge(storageUri, folderSize, limits.maxBytes);
        for (const [k, target] of targets) await getObject(sdk, bucket, k, target, budget, signal);
        return targetDir;
      } catch (err) {
        if (err instanceof TernError) throw err;
        const name = err instanceof Error ? err.name : "";
        if (name === "TimeoutError" || name === "AbortError")
          throw new TernError("timeout", `download of ${storageUri} did not finish within ${timeoutMs} ms`, {
            cause: err,
            retriable: true,
          });
        if (name === "NoSuchBucket" || name === "NoSuchKey")
          throw new TernError("not_found", `model artifact not found: ${storageUri} (${name})`, { cause: err });
        const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
        if (status === 401 || status === 403)
          throw new TernError(
            "forbidden",
            `cannot download ${storageUri}: bucket ${bucket} refused access (${name || `HTTP ${status}`}${credentials ? `, with secret "${credentials.name}"` : ""})`,
            { cause: err },
          );
        throw new TernError(
          "unavailable",
          `cannot download ${storageUri}: ${err instanceof Error ? err.message : String(err)}`,
          {
            cause: err,
            retriable: true,
          },
        );
      } finally {
        own?.destroy();
      }
    },
  };
}
