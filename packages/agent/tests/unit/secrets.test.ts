import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createArtifactFetcher } from "../../src/artifacts/artifact-fetcher.js";
import { createGcsSource } from "../../src/artifacts/gcs-source.js";
import { createS3Source } from "../../src/artifacts/s3-source.js";
import { createSecretsDir, parseSecret } from "../../src/artifacts/secrets.js";

// The S3 side of secretName runs against moto with IAM enforced (test/artifacts/s3.test.ts); here: the secret files
// themselves, and the bearer token a gcs secret adds.

const scratch = mkdtempSync(join(tmpdir(), "tern-secrets-"));
const URI = "s3://models/iris";

describe("secretName", () => {
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  it("reads an rclone-style s3 secret as Seldon's storage secrets hold it", () => {
    const text = JSON.stringify({
      type: "s3",
      name: "s3",
      parameters: {
        provider: "minio",
        env_auth: "false",
        access_key_id: "AK",
        secret_access_key: "SK",
        endpoint: "http://127.0.0.1:9000",
      },
    });
    expect(parseSecret("minio", URI, text)).toEqual({
      type: "s3",
      name: "minio",
      accessKeyId: "AK",
      secretAccessKey: "SK",
      endpoint: "http://127.0.0.1:9000",
    });
  });

  it("reads a gcs secret's access token from rclone's token JSON or a plain access_token", () => {
    const token = JSON.stringify({ access_token: "ya29.x", token_type: "Bearer" });
    expect(parseSecret("g", URI, JSON.stringify({ type: "gcs", parameters: { token } }))).toEqual({
      type: "gcs",
      name: "g",
      accessToken: "ya29.x",
    });
    expect(
      parseSecret("g", URI, JSON.stringify({ type: "google cloud storage", parameters: { access_token: "t" } })),
    ).toEqual({ type: "gcs", name: "g", accessToken: "t" });
  });

  it("names the secret and the missing field, never a value", () => {
    expect(() => parseSecret("s", URI, JSON.stringify({ type: "s3", parameters: { access_key_id: "AK" } }))).toThrow(
      'secret "s" (secretName for s3://models/iris) is not usable: parameters.secret_access_key is missing',
    );
    expect(() => parseSecret("s", URI, "access_key_id=AK")).toThrow(/secret "s" .* is not usable: not JSON/);
    expect(() => parseSecret("s", URI, JSON.stringify({ type: "azureblob" }))).toThrow(
      'is not usable: type "azureblob" is not supported (use "s3" or "gcs")',
    );
  });

  it("fails a missing secret, an unset folder and a name that is a path, naming the secret", async () => {
    const dir = join(scratch, "dir");
    const secrets = createSecretsDir(dir);
    await expect(secrets.get("nope", URI)).rejects.toMatchObject({
      code: "not_found",
      message: `secret "nope" (secretName for ${URI}) not found in TERN_SECRETS_DIR (${dir})`,
    });
    await expect(createSecretsDir(undefined).get("nope", URI)).rejects.toThrow(
      `secret "nope" (secretName for ${URI}) cannot be read: no secrets folder is configured (TERN_SECRETS_DIR)`,
    );
    for (const name of ["../etc/passwd", "a/b", "..", "Upper"])
      await expect(secrets.get(name, URI)).rejects.toMatchObject({ code: "bad_request" });
  });

  it("a fetcher without a secrets source fails a model that names one, before any download", async () => {
    let calls = 0;
    const fetcher = createArtifactFetcher({
      cacheDir: join(scratch, "no-source"),
      sources: [createS3Source({ client: { send: async () => void calls++ } as never })],
    });
    await expect(fetcher.fetch(URI, { secretName: "creds" })).rejects.toThrow(
      `secret "creds" (secretName for ${URI}) cannot be read: no secrets folder is configured (TERN_SECRETS_DIR)`,
    );
    expect(calls).toBe(0);
  });

  describe("gcs bearer token", () => {
    const seen: IncomingHttpHeaders[] = [];
    let base = "";
    const server = createServer((req, res) => {
      seen.push(req.headers);
      res.setHeader("content-type", "application/json");
      if (req.url?.includes("alt=media")) res.end("onnx bytes");
      else res.end(JSON.stringify({ items: [{ name: "m/model.onnx", size: "10" }] }));
    });
    beforeAll(async () => {
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    afterAll(async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    });

    it("sends the secret's token on the listing and the download; refuses an s3 secret for gs://", async () => {
      const dir = join(scratch, "gcs");
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, "gcs-reader"), JSON.stringify({ type: "gcs", parameters: { access_token: "tok" } }));
      writeFileSync(
        join(dir, "s3-keys"),
        JSON.stringify({ type: "s3", parameters: { access_key_id: "a", secret_access_key: "b" } }),
      );
      const fetcher = createArtifactFetcher({
        cacheDir: join(scratch, "gcs-cache"),
        sources: [createGcsSource({ endpoint: base })],
        secrets: createSecretsDir(dir),
      });
      const a = await fetcher.fetch("gs://b/m", { secretName: "gcs-reader" });
      expect(a.path.endsWith("model.onnx")).toBe(true);
      expect(seen.map((h) => h.authorization)).toEqual(["Bearer tok", "Bearer tok"]);
      await expect(fetcher.fetch("gs://b/m", { secretName: "s3-keys" })).rejects.toThrow(
        'cannot download gs://b/m: secret "s3-keys" is of type s3, not gcs',
      );
    });
  });
});
