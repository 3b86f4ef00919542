import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createArtifactFetcher, createGcsSource, createModelRegistry, createOnnxRuntime } from "@tern/agent";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IRIS_ROWS, inferIris, startAgentProcess } from "../agent/agent-process.js";
import { type Emulator, startFakeGcs } from "../helpers/emulators.js";
import { repoRoot } from "../helpers/platform-process.js";

// gs:// artifacts against fake-gcs-server, a real implementation of Cloud Storage's JSON API: the bucket folder is
// seeded with Seldon's sample layout, holding the ONNX iris model so that the agent's runtime can serve it.

const BUCKET = "seldon-models";
const FOLDER = "scv2/samples/mlserver_1.2.3/iris-sklearn";
const IRIS = join(repoRoot, "samples/models/iris/model.onnx");
const FOLDER_URI = `gs://${BUCKET}/${FOLDER}`;

describe("gs:// artifacts (fake-gcs-server)", () => {
  const scratch = mkdtempSync(join(tmpdir(), "tern-gcs-"));
  let gcs: Emulator;

  beforeAll(async () => {
    const data = join(scratch, "data");
    const folder = join(data, BUCKET, FOLDER);
    mkdirSync(join(folder, "extra"), { recursive: true });
    copyFileSync(IRIS, join(folder, "model.onnx"));
    // Seldon's bucket keeps a model-settings.json beside the model; a nested file checks that paths are kept.
    writeFileSync(join(folder, "model-settings.json"), JSON.stringify({ name: "iris", implementation: "onnx" }));
    writeFileSync(join(folder, "extra", "notes.txt"), "kept with its folder");
    // A sibling whose name starts like the folder: it is not part of the folder.
    mkdirSync(join(data, BUCKET, `${FOLDER}-v2`), { recursive: true });
    writeFileSync(join(data, BUCKET, `${FOLDER}-v2`, "model.onnx"), "not this one");
    gcs = await startFakeGcs(data);
  }, 900_000);

  afterAll(async () => {
    await gcs?.stop();
    rmSync(scratch, { recursive: true, force: true });
  });

  /** A registry (the agent's, with ONNX Runtime) whose fetcher reads gs:// from the emulator. */
  function agentModels(name: string, options: { maxBytes?: number; pageSize?: number } = {}) {
    const events: Array<{ model: string; state: string; reason?: string }> = [];
    const cacheDir = join(scratch, `cache-${name}`);
    const models = createModelRegistry({
      runtime: createOnnxRuntime(),
      fetcher: createArtifactFetcher({
        cacheDir,
        ...(options.maxBytes === undefined ? {} : { maxBytes: options.maxBytes }),
        sources: [
          createGcsSource({
            endpoint: gcs.url,
            timeoutMs: 10_000,
            ...(options.pageSize === undefined ? {} : { pageSize: options.pageSize }),
          }),
        ],
      }),
      capacityBytes: 64 << 20,
      onStateChange: (e) => events.push(e),
    });
    return { models, events, cacheDir };
  }

  it("downloads a folder by prefix, page after page, keeping relative paths and leaving the sibling folder", async () => {
    const { models, cacheDir } = agentModels("folder", { pageSize: 1 });
    try {
      const r = await models.load({ model: "iris", version: 1, storageUri: FOLDER_URI });
      expect(r.state, r.reason).toBe("Available");
      const [entry] = readdirSync(cacheDir);
      const files = readdirSync(join(cacheDir, entry!), { recursive: true }).map(String).sort();
      expect(files).toEqual([".complete", "extra", "extra/notes.txt", "model-settings.json", "model.onnx"]);
    } finally {
      await models.close();
    }
  });

  it("downloads a single object named by its full path", async () => {
    const { models } = agentModels("object");
    try {
      const r = await models.load({ model: "iris", version: 1, storageUri: `${FOLDER_URI}/model.onnx` });
      expect(r.state, r.reason).toBe("Available");
    } finally {
      await models.close();
    }
  });

  it("fails a missing prefix and a missing bucket with LoadFailed naming the URI", async () => {
    const { models, events } = agentModels("missing");
    try {
      const prefix = `gs://${BUCKET}/scv2/samples/nothing-here`;
      const a = await models.load({ model: "a", version: 1, storageUri: prefix });
      expect(a.state).toBe("LoadFailed");
      expect(a.reason).toBe(`model artifact not found: nothing at ${prefix}`);
      const bucket = "gs://no-such-bucket/iris";
      const b = await models.load({ model: "b", version: 1, storageUri: bucket });
      expect(b.state).toBe("LoadFailed");
      expect(b.reason).toMatch(
        /^model artifact not found: gs:\/\/no-such-bucket\/iris \(listing bucket no-such-bucket: HTTP 404/,
      );
      expect(events.filter((e) => e.state === "LoadFailed").map((e) => e.model)).toEqual(["a", "b"]);
    } finally {
      await models.close();
    }
  });

  it("refuses a folder above the size limit before downloading, and leaves nothing in the cache", async () => {
    const { models, cacheDir } = agentModels("limit", { maxBytes: 100 });
    try {
      const r = await models.load({ model: "iris", version: 1, storageUri: FOLDER_URI });
      expect(r.state).toBe("LoadFailed");
      expect(r.reason).toMatch(
        new RegExp(
          `^artifact ${FOLDER_URI} is \\d+ bytes, more than the download limit of 100 bytes \\(TERN_ARTIFACT_MAX_BYTES\\)$`,
        ),
      );
      expect(readdirSync(cacheDir)).toEqual([]);
    } finally {
      await models.close();
    }
  });

  it("an agent started with TERN_GCS_ENDPOINT loads the gs:// folder and answers iris", async () => {
    const agent = await startAgentProcess({
      schedulerUrl: "http://127.0.0.1:9",
      server: "gcs",
      replica: 0,
      env: {
        TERN_AGENT_STANDALONE: "true",
        TERN_AGENT_PRELOAD: `iris=${FOLDER_URI}`,
        TERN_GCS_ENDPOINT: gcs.url,
        TERN_AGENT_CACHE_DIR: join(scratch, "cache-agent"),
      },
    });
    try {
      for (const row of IRIS_ROWS) {
        expect(await inferIris(agent.http, row.features), agent.output()).toEqual({ status: 200, label: row.label });
      }
    } finally {
      agent.kill("SIGKILL");
      await agent.exited;
    }
  });
});
