import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createArtifactFetcher, defaultArtifactRoots, filePathFromUri } from "../../src/artifacts/artifact-fetcher.js";
import { createHttpSource } from "../../src/artifacts/http-source.js";
import { createS3Source } from "../../src/artifacts/s3-source.js";
import { createTestStack, REPO_ROOT, sampleUri } from "./helpers.js";

const scratch = mkdtempSync(join(tmpdir(), "tern-artifacts-"));
const irisBytes = () =>
  import("node:fs").then((fs) => fs.readFileSync(join(REPO_ROOT, "samples/models/iris/model.onnx")));

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

  it("fails gs:// with an unsupported-scheme reason that lists the supported ones", async () => {
    const fetcher = createArtifactFetcher({
      cacheDir: scratch,
      sources: [createHttpSource(), createS3Source({ client: { send: async () => ({}) } as never })],
    });
    const s = createTestStack();
    const uri = "gs://seldon-models/scv2/samples/mlserver_1.2.3/iris-sklearn";
    await expect(fetcher.fetch(uri)).rejects.toThrow(
      `unsupported storage scheme "gs" in storageUri ${uri}: use file://, s3:// or http(s)://`,
    );
    const r = await s.models.load({ model: "gs", version: 1, storageUri: uri });
    expect(r.state).toBe("LoadFailed");
    expect(r.reason).toMatch(/unsupported storage scheme "gs"/);
  });

  describe("http(s)://", () => {
    let base = "";
    let hits = 0;
    const server = createServer((req, res) => {
      hits++;
      if (req.url === "/models/iris.onnx") {
        void irisBytes().then((b) => res.end(b));
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

  it("downloads an s3:// folder through the S3 client", async () => {
    const bytes = await irisBytes();
    const send = async (command: { constructor: { name: string }; input: { Key?: string; Prefix?: string } }) => {
      if (command.constructor.name === "ListObjectsV2Command")
        return { Contents: [{ Key: "models/iris/model.onnx" }, { Key: "models/iris/README" }], IsTruncated: false };
      if (command.input.Key === "models/iris/model.onnx")
        return { Body: (await import("node:stream")).Readable.from([bytes]) };
      return { Body: (await import("node:stream")).Readable.from([Buffer.from("readme")]) };
    };
    const fetcher = createArtifactFetcher({
      cacheDir: join(scratch, "s3"),
      sources: [createS3Source({ client: { send } as never })],
    });
    const a = await fetcher.fetch("s3://bucket/models/iris");
    expect(a.path.endsWith("model.onnx")).toBe(true);
    expect(a.sizeBytes).toBe(bytes.length);
  });
});
