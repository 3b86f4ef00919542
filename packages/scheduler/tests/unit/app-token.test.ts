import { afterEach, describe, expect, it, vi } from "vitest";

// Spy on (not replace) node:crypto's comparison, to see what the control API compares: a real timing test would be
// flaky, but what reaches timingSafeEqual decides whether the comparison can leak the token's length.
vi.mock("node:crypto", async (importOriginal) => {
  const crypto = await importOriginal<typeof import("node:crypto")>();
  return { ...crypto, timingSafeEqual: vi.fn(crypto.timingSafeEqual) };
});

const { timingSafeEqual } = await import("node:crypto");
const { createControlApp } = await import("../../src/app.js");
const { createHarness, silentLogger } = await import("./helpers.js");

const harnesses: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  for (const h of harnesses.splice(0)) await h.close();
  vi.mocked(timingSafeEqual).mockClear();
});

async function appWithToken(token: string) {
  const h = await createHarness();
  harnesses.push(h);
  return createControlApp({
    active: () => h.scheduler,
    store: h.store,
    leaseName: "scheduler",
    logger: silentLogger,
    token,
  });
}

describe("bearer token", () => {
  it("compares equal-length digests whatever the length of the token sent", async () => {
    const app = await appWithToken("a-rather-long-secret-token");
    for (const sent of ["x", "a-rather-long-secret-token-and-more", "a-rather-long-secret-tokeN"]) {
      const res = await app.request("/v1/status", { headers: { authorization: `Bearer ${sent}` } });
      expect(res.status).toBe(401);
    }
    const calls = vi.mocked(timingSafeEqual).mock.calls;
    expect(calls).toHaveLength(3);
    for (const [a, b] of calls) {
      expect((a as Uint8Array).byteLength).toBe(32);
      expect((b as Uint8Array).byteLength).toBe(32);
    }
  });

  it("accepts the right token and nothing else", async () => {
    const app = await appWithToken("s3cret");
    const status = async (authorization?: string) =>
      (await app.request("/v1/status", authorization === undefined ? {} : { headers: { authorization } })).status;
    expect(await status("Bearer s3cret")).toBe(200);
    expect(await status("bearer   s3cret")).toBe(200);
    expect(await status()).toBe(401);
    expect(await status("Bearer ")).toBe(401);
    expect(await status("Basic s3cret")).toBe(401);
    expect(await status("Bearer s3cret2")).toBe(401);
    expect(await status("Bearer s3cre")).toBe(401);
  });
});
