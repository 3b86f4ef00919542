import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { isWithin, realPathOf } from "../../src/artifacts/download-guards.js";

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

describe("realPathOf", () => {
  const scratch = mkdtempSync(join(tmpdir(), "tern-guards-"));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

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
