import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { afterAll, describe, expect, it } from "vitest";
import {
  bucketUri,
  cacheTarget,
  createByteBudget,
  isWithin,
  realPathOf,
  resolveInside,
} from "../../src/artifacts/download-guards.js";

describe("resolveInside", () => {
  const root = "/cache/abc";

  it("joins relative paths that stay inside the folder", () => {
    expect(resolveInside(root, "model.onnx")).toBe("/cache/abc/model.onnx");
    expect(resolveInside(root, "m/1/model.onnx")).toBe("/cache/abc/m/1/model.onnx");
    expect(resolveInside(root, "m//model.onnx")).toBe("/cache/abc/m/model.onnx");
    expect(resolveInside(root, "m/../model.onnx")).toBe("/cache/abc/model.onnx");
    expect(resolveInside(`${root}/`, "./model.onnx")).toBe("/cache/abc/model.onnx");
    expect(resolveInside(root, "..model.onnx")).toBe("/cache/abc/..model.onnx");
  });

  it("refuses paths that climb out, are absolute, name the folder itself or hold a NUL byte", () => {
    for (const bad of [
      "..",
      "../x",
      "m/../../x",
      "m/../../../../../escaped.txt",
      "../abc2/x",
      "/etc/passwd",
      "//etc/passwd",
      "",
      ".",
      "m/..",
      "m\0.onnx",
    ]) {
      expect(resolveInside(root, bad), JSON.stringify(bad)).toBeUndefined();
    }
  });
});

describe("isWithin", () => {
  it("is true for the folder and what is under it, not for a sibling that shares the prefix", () => {
    expect(isWithin("/cache/abc", "/cache/abc")).toBe(true);
    expect(isWithin("/cache/abc", "/cache/abc/m/x")).toBe(true);
    expect(isWithin("/cache/abc/", "/cache/abc/x")).toBe(true);
    expect(isWithin("/cache/abc", "/cache/abc2/x")).toBe(false);
    expect(isWithin("/cache/abc", "/cache")).toBe(false);
    expect(isWithin("/cache/abc", "/cache/abc/../x")).toBe(false);
  });
});

describe("cacheTarget and realPathOf", () => {
  const scratch = mkdtempSync(join(tmpdir(), "tern-guards-"));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  it("refuses a key that climbs out of the folder, naming it", async () => {
    const dir = join(scratch, "a");
    mkdirSync(dir);
    await expect(cacheTarget(dir, "../../escaped.txt", "s3://b/m", "key")).rejects.toMatchObject({
      code: "bad_request",
      message: 'refusing to download s3://b/m: the key "../../escaped.txt" leads outside the model\'s cache folder',
    });
  });

  it("refuses a key that goes through a symlink to outside the folder", async () => {
    const dir = join(scratch, "b");
    const outside = join(scratch, "b-outside");
    mkdirSync(dir);
    mkdirSync(outside);
    symlinkSync(outside, join(dir, "link"));
    await expect(cacheTarget(dir, "link/model.onnx", "s3://b/m", "key")).rejects.toThrow(
      /the key "link\/model.onnx" leads outside/,
    );
    await expect(cacheTarget(dir, "sub/model.onnx", "s3://b/m", "key")).resolves.toBe(join(dir, "sub/model.onnx"));
  });

  it("resolves symlinks of the longest existing part of a path", async () => {
    const real = join(scratch, "real");
    mkdirSync(real);
    symlinkSync(real, join(scratch, "alias"));
    expect(await realPathOf(join(scratch, "alias", "not", "there"))).toBe(join(real, "not", "there"));
  });

  it("treats a file in the middle of a path like a missing folder", async () => {
    const file = join(scratch, "plain-file");
    writeFileSync(file, "x");
    expect(await realPathOf(join(file, "below"))).toBe(join(scratch, "plain-file", "below"));
  });
});

describe("createByteBudget", () => {
  it("stops a stream as soon as the running total passes the limit", async () => {
    let produced = 0;
    const endless = Readable.from(
      (function* () {
        for (;;) {
          produced++;
          yield Buffer.alloc(1024);
        }
      })(),
    );
    const budget = createByteBudget("http://h/m.onnx", 10 * 1024);
    const sink: Buffer[] = [];
    await expect(
      pipeline(endless, budget.stream(), async (source) => {
        for await (const chunk of source) sink.push(chunk as Buffer);
      }),
    ).rejects.toMatchObject({
      code: "too_large",
      message:
        "artifact http://h/m.onnx is larger than the download limit of 10Ki (TERN_ARTIFACT_MAX_BYTES): download stopped",
    });
    expect(Buffer.concat(sink).length).toBeLessThanOrEqual(10 * 1024);
    expect(produced).toBeLessThan(64);
  });

  it("shares one total across several streams (the objects of a folder)", async () => {
    const budget = createByteBudget("s3://b/m", 3000);
    const drain = async (stream: NodeJS.ReadWriteStream) => {
      for await (const _ of stream);
    };
    const a = budget.stream();
    Readable.from([Buffer.alloc(2000)]).pipe(a);
    await drain(a);
    expect(budget.used).toBe(2000);
    const b = budget.stream();
    Readable.from([Buffer.alloc(2000)]).pipe(b);
    await expect(drain(b)).rejects.toMatchObject({ code: "too_large" });
  });
});

describe("bucketUri", () => {
  it("splits an object-store URI into its bucket and its path without trailing slashes", () => {
    expect(bucketUri("s3://models/iris/", "s3", undefined)).toEqual({
      bucket: "models",
      path: "iris",
      credentials: undefined,
    });
    expect(bucketUri("gs://seldon-models/scv2/samples//", "gs", undefined)).toMatchObject({
      bucket: "seldon-models",
      path: "scv2/samples",
    });
    expect(bucketUri("s3://models", "s3", undefined)).toMatchObject({ bucket: "models", path: "" });
  });

  it("refuses a URI without a bucket, and a secret of the other store, naming them", () => {
    expect(() => bucketUri("s3:///iris", "s3", undefined)).toThrow("storageUri s3:///iris names no bucket");
    expect(() => bucketUri("gs://b/m", "gs", { name: "keys", type: "s3" })).toThrow(
      'cannot download gs://b/m: secret "keys" is of type s3, not gcs',
    );
    expect(() => bucketUri("s3://b/m", "s3", { name: "token", type: "gcs" })).toThrow(
      'cannot download s3://b/m: secret "token" is of type gcs, not s3',
    );
    const secret = { name: "keys", type: "s3" as const };
    expect(bucketUri("s3://b/m", "s3", secret).credentials).toBe(secret);
  });
});
