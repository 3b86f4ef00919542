import { afterEach, describe, expect, it } from "vitest";
import { createControlApp } from "../../src/app.js";
import { resolveCapabilities } from "../../src/server-types.js";
import { createHarness, type Harness, silentLogger } from "./helpers.js";

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe("server types offer exactly what their runtime serves", () => {
  it("offers on mlserver the runtimes Tern installs into its MLServer, nothing Seldon lists that Tern lacks", () => {
    const caps = resolveCapabilities({ serverConfig: "mlserver", replicas: 1 } as never);
    expect(caps).toEqual({ ok: true, capabilities: ["mlserver", "sklearn", "xgboost", "lightgbm"] });
  });

  it("fails a triton Server with a reason saying Triton is not part of this installation", () => {
    const caps = resolveCapabilities({ serverConfig: "triton", replicas: 1 } as never);
    expect(caps.ok).toBe(false);
    expect(!caps.ok && caps.reason).toContain("Triton is not part of this installation");
  });

  it("still runs a triton Server whose manifest lists its own capabilities", () => {
    const caps = resolveCapabilities({ serverConfig: "triton", replicas: 1, capabilities: ["onnx"] } as never);
    expect(caps).toEqual({ ok: true, capabilities: ["onnx"] });
  });

  it("reports an applied triton Server ServerFailed with that reason", async () => {
    h = await createHarness();
    const app = createControlApp({
      active: () => h!.scheduler,
      store: h.store,
      leaseName: "scheduler",
      logger: silentLogger,
    });
    const res = await app.request("/v1/apply", {
      method: "POST",
      headers: { "content-type": "application/yaml" },
      body: "apiVersion: mlops.seldon.io/v1alpha1\nkind: Server\nmetadata: {name: t}\nspec: {serverConfig: triton, replicas: 1}\n",
    });
    expect(res.status).toBe(200);
    const status = (await (await app.request("/v1/servers/t")).json()) as { state: string; reason?: string };
    expect(status.state).toBe("ServerFailed");
    expect(status.reason).toContain("Triton is not part of this installation");
  });
});
