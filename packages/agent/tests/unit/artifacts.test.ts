import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createArtifactFetcher, defaultArtifactRoots, filePathFromUri } from "../../src/artifacts/artifact-fetcher.js";
import { createGcsSource } from "../../src/artifacts/gcs-source.js";
import { createHttpSource } from "../../src/artifacts/http-source.js";
import { createS3Source } from "../../src/artifacts/s3-source.js";
import { createTestStack, REPO_ROOT, sampleUri, waitFor } from "./helpers.js";

const scratch = mkdtempSync(join(tmpdir(), "tern-artifacts-"));
const irisBytes = () =>
  import("node:fs").then((fs) => fs.readFileSync(join(REPO_ROOT, "samples/models/iris/model.onnx")));

/** A fake S3 client at the level the SDK's `send` is called: a listing, and one body per key. */
function fakeS3(objects: Record<string, { size?: number; body: () => Readable }>) {
  const fetched: string[] = [];
  const send = async (command: { constructor: { name: string }; input: { Key?: string; Prefix?: string } }) => {
    if (command.constructor.name === "ListObjectsV2Command") {
      const prefix = command.input.Prefix ?? "";
      const contents = Object.entries(objects)
        .filter(([key]) => key.startsWith(prefix))
        .map(([Key, o]) => ({ Key, ...(o.size === undefined ? {} : { Size: o.size }) }));
      return { Contents: contents, IsTruncated: false };
    }
    const key = command.input.Key ?? "";
    fetched.push(key);
    const object = objects[key];
    if (!object) throw Object.assign(new Error("no such key"), { name: "NoSuchKey" });
    return { Body: object.body() };
  };
  return { client: { send } as never, fetched };
}

/** Every file or folder under `dir`, relative to it. */
function walk(dir: string, prefix = ""): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory()
      ? [`${prefix}${e.name}/`, ...walk(join(dir, e.name), `${prefix}${e.name}/`)]
      : [`${prefix}${e.name}`],
  );
}

describe("artifacts", () => {
  const stack = createTestStack({ artifactRoots: [join(REPO_ROOT, "samples"), scratch] });
  afterAll(async () => {
    await stack.models.close();
    rmSync(scratch, { recursive: true, force: true });
  });

  it("resolves relative file:// URIs against the base folder and absolute ones as given", () => {
    expect(filePathFromUri("file://samples/models/iris", "/repo")).toBe("/repo/samples/models/iris");
    expect(filePathFromUri("file://./samples/models/iris", "/repo")).toBe("/repo/samples/models/iris");
    expect(filePathFromUri("file:///opt/models/iris", "/repo")).toBe("/opt/models/iris");
  });

  it("loads a folder's model.onnx, a folder's single .onnx file, or a file", async () => {
    const single = join(scratch, "single");
    mkdirSync(single);
    writeFileSync(join(single, "classifier.onnx"), await irisBytes());
    for (const [i, uri] of [sampleUri("iris"), `file://${single}`, `file://${single}/classifier.onnx`].entries()) {
      const r = await stack.models.load({ model: `m${i}`, version: 1, storageUri: uri });
      expect(r.state, `${uri}: ${r.reason}`).toBe("Available");
    }
  });

  it("fails with a clear LoadFailed reason for a missing file", async () => {
    const r = await stack.models.load({
      model: "missing",
      version: 1,
      storageUri: "file://samples/models/nothing-here",
    });
    expect(r.state).toBe("LoadFailed");
    expect(r.reason).toMatch(
      /^model artifact not found: .*samples\/models\/nothing-here does not exist \(storageUri file:\/\/samples\/models\/nothing-here\)$/,
    );
    expect(stack.events).toContainEqual({ model: "missing", version: 1, state: "LoadFailed", reason: r.reason });
  });

  it("fails with a clear reason for a folder without a model", async () => {
    const empty = join(scratch, "empty");
    mkdirSync(empty);
    writeFileSync(join(empty, "README.md"), "no model");
    const r = await stack.models.load({ model: "empty", version: 1, storageUri: `file://${empty}` });
    expect(r.reason).toMatch(/no model.onnx in model folder .*empty \(it holds README.md/);
  });

  it("fails with a clear reason for a corrupt model", async () => {
    const dir = join(scratch, "corrupt");
    mkdirSync(dir);
    writeFileSync(join(dir, "model.onnx"), "this is not an onnx protobuf at all");
    const r = await stack.models.load({ model: "corrupt", version: 1, storageUri: `file://${dir}` });
    expect(r.state).toBe("LoadFailed");
    expect(r.reason).toMatch(
      /^corrupt or unsupported ONNX model .*corrupt\/model.onnx: onnxruntime could not load it \(/,
    );
  });

  it("fails an unknown scheme with an unsupported-scheme reason that lists the supported ones", async () => {
    const fetcher = createArtifactFetcher({
      cacheDir: scratch,
      sources: [
        createHttpSource(),
        createS3Source({ client: { send: async () => ({}) } as never }),
        createGcsSource({ endpoint: "http://127.0.0.1:9" }),
      ],
    });
    const s = createTestStack();
    const uri = "azure://seldon-models/scv2/samples/mlserver_1.2.3/iris-sklearn";
    await expect(fetcher.fetch(uri)).rejects.toThrow(
      `unsupported storage scheme "azure" in storageUri ${uri}: use file://, s3://, gs:// or http(s)://`,
    );
    const r = await s.models.load({ model: "azure", version: 1, storageUri: uri });
    expect(r.state).toBe("LoadFailed");
    expect(r.reason).toMatch(/unsupported storage scheme "azure"/);
  });

  describe("http(s)://", () => {
    let base = "";
    let hits = 0;
    const bigWrites: Array<{ url: string; written: number; total: number }> = [];
    const server = createServer((req, res) => {
      hits++;
      if (req.url === "/models/iris.onnx") {
        void irisBytes().then((b) => res.end(b));
      } else if (req.url === "/big.onnx" || req.url === "/declared.onnx") {
        // 64 MiB in 64 KiB chunks, respecting back-pressure; records how much was written when the client went away.
        const total = 64 << 20;
        const chunk = Buffer.alloc(64 << 10, 7);
        let written = 0;
        if (req.url === "/declared.onnx") res.setHeader("content-length", total);
        res.on("close", () => bigWrites.push({ url: req.url ?? "", written, total }));
        const pump = () => {
          while (written < total && !res.destroyed) {
            written += chunk.length;
            if (!res.write(chunk)) return void res.once("drain", pump);
          }
          if (!res.destroyed) res.end();
        };
        pump();
      } else if (req.url === "/slow.onnx") {
        setTimeout(() => res.end("late"), 2000);
      } else {
        res.statusCode = 404;
        res.end();
      }
    });
    beforeAll(async () => {
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    afterAll(async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    });

    it("downloads once into the cache and reuses it", async () => {
      const fetcher = createArtifactFetcher({
        cacheDir: join(scratch, "cache"),
        sources: [createHttpSource({ timeoutMs: 5000 })],
      });
      const a = await fetcher.fetch(`${base}/models/iris.onnx`);
      const before = hits;
      const b = await fetcher.fetch(`${base}/models/iris.onnx`);
      expect(b).toEqual(a);
      expect(hits).toBe(before);
      expect(a.path.startsWith(join(scratch, "cache"))).toBe(true);
      expect(a.sizeBytes).toBe((await irisBytes()).length);
    });

    it("reports HTTP errors and timeouts", async () => {
      const fetcher = createArtifactFetcher({
        cacheDir: join(scratch, "cache2"),
        sources: [createHttpSource({ timeoutMs: 200 })],
      });
      await expect(fetcher.fetch(`${base}/nope.onnx`)).rejects.toThrow(/cannot download .*\/nope.onnx: HTTP 404/);
      await expect(fetcher.fetch(`${base}/slow.onnx`)).rejects.toThrow(/did not finish within 200 ms/);
    });

    it("stops a download as soon as it passes the size limit and leaves no partial file", async () => {
      const cacheDir = join(scratch, "cache-limit");
      const fetcher = createArtifactFetcher({
        cacheDir,
        maxBytes: 256 << 10,
        sources: [createHttpSource({ timeoutMs: 10_000 })],
      });
      await expect(fetcher.fetch(`${base}/big.onnx`)).rejects.toMatchObject({
        code: "too_large",
        message: `artifact ${base}/big.onnx is larger than the download limit of 256Ki (TERN_ARTIFACT_MAX_BYTES): download stopped`,
      });
      expect(walk(cacheDir)).toEqual([]);
      await waitFor(() => bigWrites.find((w) => w.url === "/big.onnx"), "the server to see the download stop");
      const seen = bigWrites.find((w) => w.url === "/big.onnx")!;
      expect(seen.written).toBeLessThan(seen.total);
    });

    it("refuses a download whose declared length is above the limit before reading it", async () => {
      const cacheDir = join(scratch, "cache-declared");
      const fetcher = createArtifactFetcher({
        cacheDir,
        maxBytes: 1 << 20,
        sources: [createHttpSource({ timeoutMs: 10_000 })],
      });
      await expect(fetcher.fetch(`${base}/declared.onnx`)).rejects.toMatchObject({
        code: "too_large",
        message: `artifact ${base}/declared.onnx is ${64 << 20} bytes, more than the download limit of 1Mi (TERN_ARTIFACT_MAX_BYTES)`,
      });
      expect(walk(cacheDir)).toEqual([]);
    });

    it("refuses a source whose result lies outside the download folder", async () => {
      const cacheDir = join(scratch, "cache-rogue");
      const fetcher = createArtifactFetcher({
        cacheDir,
        sources: [{ schemes: ["rogue"], download: async () => join(scratch, "single") }],
      });
      await expect(fetcher.fetch("rogue://x")).rejects.toThrow(
        /^refusing to download rogue:\/\/x: the path ".*single" leads outside the model's cache folder$/,
      );
    });
  });

  describe("gs:// answers fake-gcs-server cannot give", () => {
    // fake-gcs-server (test/artifacts/gcs.test.ts) has no access control and always sends what it lists: a refusal
    // and a body longer than its listed size are Cloud Storage's wire answers played by a local server.
    let base = "";
    const server = createServer((req, res) => {
      const url = new URL(req.url ?? "/", "http://x");
      if (url.pathname === "/storage/v1/b/private/o") {
        res.statusCode = 403;
        res.setHeader("content-type", "application/json");
        res.end(
          JSON.stringify({
            error: { code: 403, message: "Anonymous caller does not have storage.objects.list access." },
          }),
        );
      } else if (url.pathname === "/storage/v1/b/silent/o") {
        // Never answers: only the download's deadline ends the wait.
      } else if (url.pathname === "/storage/v1/b/liar/o") {
        res.setHeader("content-type", "application/json");
        res.end(JSON.stringify({ items: [{ name: "m/model.onnx", size: "10" }] }));
      } else if (url.pathname === "/storage/v1/b/liar/o/m%2Fmodel.onnx") {
        const chunk = Buffer.alloc(64 << 10, 1);
        const pump = () => {
          while (!res.destroyed) if (!res.write(chunk)) return void res.once("drain", pump);
        };
        pump();
      } else {
        res.statusCode = 404;
        res.end();
      }
    });
    beforeAll(async () => {
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    afterAll(async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    });

    it("names the URI and the bucket when the bucket refuses (403)", async () => {
      const fetcher = createArtifactFetcher({
        cacheDir: join(scratch, "gcs-403"),
        sources: [createGcsSource({ endpoint: base })],
      });
      await expect(fetcher.fetch("gs://private/iris")).rejects.toMatchObject({
        code: "forbidden",
        message:
          "cannot download gs://private/iris: bucket private refused access (HTTP 403: Anonymous caller does not have storage.objects.list access.)",
      });
    });

    it("gives up on a store that does not answer at the download's deadline", async () => {
      const fetcher = createArtifactFetcher({
        cacheDir: join(scratch, "gcs-silent"),
        sources: [createGcsSource({ endpoint: base, timeoutMs: 300 })],
      });
      await expect(fetcher.fetch("gs://silent/m")).rejects.toMatchObject({
        code: "timeout",
        message: "download of gs://silent/m did not finish within 300 ms",
      });
    });

    it("stops a body that runs past the limit and removes what was written", async () => {
      const cacheDir = join(scratch, "gcs-endless");
      const fetcher = createArtifactFetcher({
        cacheDir,
        maxBytes: 1 << 20,
        sources: [createGcsSource({ endpoint: base })],
      });
      await expect(fetcher.fetch("gs://liar/m")).rejects.toMatchObject({
        code: "too_large",
        message:
          "artifact gs://liar/m is larger than the download limit of 1Mi (TERN_ARTIFACT_MAX_BYTES): download stopped",
      });
      expect(walk(cacheDir)).toEqual([]);
    });
  });

  // The S3 source against moto (folders, missing keys and buckets, refusals, size limits, keys that climb out, credentials):
  // test/artifacts/s3.test.ts. What moto cannot be made to do stays here: a key S3 would store but no path can hold,
  // and a body longer than its listing says.
  describe("s3:// (through the S3 client)", () => {
    it("refuses an exact key whose last segment climbs out", async () => {
      const s3 = fakeS3({ "m/..": { body: () => Readable.from([Buffer.from("x")]) } });
      const fetcher = createArtifactFetcher({
        cacheDir: join(scratch, "s3-dotdot"),
        sources: [createS3Source({ client: s3.client })],
      });
      await expect(fetcher.fetch("s3://bucket/m/..")).rejects.toThrow(/the key "m\/\.\." leads outside/);
      expect(s3.fetched).toEqual([]);
    });

    it("stops a body that runs past the limit and removes what was written", async () => {
      let produced = 0;
      const endless = () =>
        Readable.from(
          (function* () {
            for (;;) {
              produced++;
              yield Buffer.alloc(16 << 10);
            }
          })(),
        );
      const s3 = fakeS3({ "m/model.onnx": { size: 10, body: endless } });
      const cacheDir = join(scratch, "s3-endless");
      const fetcher = createArtifactFetcher({
        cacheDir,
        maxBytes: 1 << 20,
        sources: [createS3Source({ client: s3.client })],
      });
      await expect(fetcher.fetch("s3://bucket/m")).rejects.toMatchObject({
        code: "too_large",
        message:
          "artifact s3://bucket/m is larger than the download limit of 1Mi (TERN_ARTIFACT_MAX_BYTES): download stopped",
      });
      expect(produced).toBeLessThan(200);
      expect(walk(cacheDir)).toEqual([]);
    });
  });

  describe("local artifact roots", () => {
    const base = join(scratch, "roots");
    const root = join(base, "models");
    const outside = join(base, "outside");
    const roots = createTestStack({ artifactRoots: [root] });
    afterAll(() => roots.models.close());
    beforeAll(async () => {
      const bytes = await irisBytes();
      for (const dir of [join(root, "iris"), join(root, "linked"), outside]) mkdirSync(dir, { recursive: true });
      writeFileSync(join(root, "iris", "model.onnx"), bytes);
      writeFileSync(join(outside, "model.onnx"), bytes);
      writeFileSync(join(outside, "secret-notes.txt"), "not for the reason");
      symlinkSync(outside, join(root, "escape"));
      symlinkSync(join(outside, "model.onnx"), join(root, "linked", "model.onnx"));
    });
    const refusal = (uri: string) =>
      `storageUri ${uri} is outside the artifact roots (${root}): local models load only from there (TERN_ARTIFACT_ROOTS)`;

    it("refuses file:///etc with a reason that names the roots and lists nothing", async () => {
      const r = await roots.models.load({ model: "etc", version: 1, storageUri: "file:///etc" });
      expect(r.state).toBe("LoadFailed");
      expect(r.reason).toBe(refusal("file:///etc"));
    });

    it("refuses a path that climbs out of a root", async () => {
      const uri = `file://${root}/../outside`;
      const r = await roots.models.load({ model: "climb", version: 1, storageUri: uri });
      expect(r.reason).toBe(refusal(uri));
    });

    it("refuses symlinks inside a root that lead outside it (a folder, a model file)", async () => {
      for (const [i, uri] of [
        `file://${root}/escape`,
        `file://${root}/escape/nothing`,
        `file://${root}/linked`,
      ].entries()) {
        const r = await roots.models.load({ model: `link${i}`, version: 1, storageUri: uri });
        expect(r.reason, uri).toBe(refusal(uri));
      }
    });

    it("takes a bare path as a local path under the same rule", async () => {
      const inside = await roots.models.load({ model: "bare", version: 1, storageUri: join(root, "iris") });
      expect(inside.state, inside.reason).toBe("Available");
      const r = await roots.models.load({ model: "bare-out", version: 1, storageUri: outside });
      expect(r.reason).toBe(refusal(outside));
    });

    it("allows the samples folder and the working directory's models/ by default", async () => {
      expect(defaultArtifactRoots("/srv/agent")).toEqual([join(REPO_ROOT, "samples"), "/srv/agent/models"]);
      const fetcher = createArtifactFetcher({ cacheDir: join(scratch, "default-cache"), fileBaseDir: REPO_ROOT });
      await expect(fetcher.fetch(sampleUri("iris"))).resolves.toMatchObject({
        path: join(REPO_ROOT, "samples/models/iris/model.onnx"),
      });
      await expect(fetcher.fetch(`file://${outside}`)).rejects.toThrow(
        `storageUri file://${outside} is outside the artifact roots (${join(REPO_ROOT, "samples")}, ${join(process.cwd(), "models")})`,
      );
    });
  });
});
