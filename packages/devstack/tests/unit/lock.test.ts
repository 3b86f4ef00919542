import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hasCode } from "@tern/core";
import { afterAll, describe, expect, it } from "vitest";
import { acquireDevStackLock, readLockInfo } from "../../src/lock.js";

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function lockFile(): string {
  const dir = mkdtempSync(join(tmpdir(), "tern-lock-"));
  dirs.push(dir);
  return join(dir, "devstack.pid");
}

describe("acquireDevStackLock", () => {
  it("writes this process's pid and services, and removes the file on release", () => {
    const file = lockFile();
    const lock = acquireDevStackLock(file, { kafka: "localhost:9092" });
    expect(readLockInfo(file)).toMatchObject({ pid: process.pid, services: { kafka: "localhost:9092" } });
    lock.release();
    expect(existsSync(file)).toBe(false);
  });

  it("refuses while another live process holds it, saying which one and what it runs", () => {
    const file = lockFile();
    // pid 1 always exists: it stands for a dev stack running in another terminal.
    writeFileSync(file, JSON.stringify({ pid: 1, startedAt: "earlier", services: { kafka: "localhost:9092" } }));
    let error: unknown;
    try {
      acquireDevStackLock(file, {});
    } catch (err) {
      error = err;
    }
    expect(hasCode(error, "conflict")).toBe(true);
    expect((error as Error).message).toContain("already running (pid 1, started earlier: kafka localhost:9092)");
    expect(readLockInfo(file)?.pid).toBe(1);
  });

  it("replaces a stale pid file left by a stack that died", () => {
    const file = lockFile();
    const dead = spawnSync(process.execPath, ["-e", ""]).pid;
    writeFileSync(file, JSON.stringify({ pid: dead, startedAt: "earlier", services: {} }));
    const lock = acquireDevStackLock(file, {});
    expect(readLockInfo(file)?.pid).toBe(process.pid);
    lock.release();
  });

  it("hands over the children a dead stack recorded, so they can be cleaned up", () => {
    const file = lockFile();
    const first = acquireDevStackLock(file, {});
    first.recordChildren([4242, 4343]);
    // The stack dies without releasing: its pid file now names a dead process.
    const dead = spawnSync(process.execPath, ["-e", ""]).pid;
    writeFileSync(file, JSON.stringify({ ...readLockInfo(file), pid: dead }));
    const second = acquireDevStackLock(file, {});
    expect(second.staleChildren).toEqual([4242, 4343]);
    expect(readLockInfo(file)?.children).toEqual([]);
    second.release();
  });

  it("replaces an unreadable pid file", () => {
    const file = lockFile();
    writeFileSync(file, "not json");
    acquireDevStackLock(file, {}).release();
    expect(existsSync(file)).toBe(false);
  });

  it("does not remove a pid file that another process took over", () => {
    const file = lockFile();
    const lock = acquireDevStackLock(file, {});
    writeFileSync(file, JSON.stringify({ pid: 1, startedAt: "later", services: {} }));
    lock.release();
    expect(JSON.parse(readFileSync(file, "utf8")).pid).toBe(1);
  });
});
