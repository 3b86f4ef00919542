import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CreateBucketCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import {
  createArtifactFetcher,
  createModelRegistry,
  createOnnxRuntime,
  createS3Source,
  createSecretsDir,
} from "@tern/agent";
import type { ModelStatus } from "@tern/core";
import { waitFor } from "@tern/devstack";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AgentProcess, IRIS_ROWS, inferIris, killAll, startAgentProcess } from "../agent/agent-process.js";
import { type Emulator, startMoto } from "../helpers/emulators.js";
import { serverManifest } from "../helpers/manifests.js";
import { repoRoot } from "../helpers/platform-process.js";
import { runPython } from "../helpers/python.js";
import { dynamodbEndpoint } from "../helpers/services.js";
import {
  applyManifest,
  getJson,
  type SchedulerProcess,
  startSchedulerProcess,
  waitActive,
} from "../scheduler/scheduler-process.js";

// s3:// artifacts against moto's server with IAM enforced: the buckets and objects are written with the AWS SDK the
// agent uses, the users (an admin, a reader of one bucket) are made with moto's boto3. The artifacts are the ONNX
// sample models, so the agent's runtime serves what it downloads.

const REGION = "us-east-1";
const IRIS = readFileSync(join(repoRoot, "samples/models/iris/model.onnx"));
const OPEN = "tern-models";
const PRIVATE = "tern-private";
const suffix = `${Date.now().toString(36)}-${process.pid}`;

interface Keys {
  accessKeyId: string;
  secretAccessKey: string;
}

/** Creates IAM users with inline policies (`resource` allowed `s3:*`) and prints their access keys as JSON. */
const SEED_USERS = `
import json, sys, boto3
cfg = json.load(sys.stdin)
iam = boto3.client("iam", endpoint_url=cfg["endpoint"], region_name="${REGION}", aws_access_key_id="seed", aws_secret_access_key="seed")
out = {}
for user, resources in cfg["users"].items():
    iam.create_user(UserName=user)
    statement = [{"Effect": "Allow", "Action": "s3:*", "Resource": resources}] if resources else []
    iam.put_user_policy(UserName=user, PolicyName="s3", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statement or [{"Effect": "Deny", "Action": "s3:*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    out[user] = {"accessKeyId": key["AccessKeyId"], "secretAccessKey": key["SecretAccessKey"]}
print(json.dumps(out))
`;

describe("s3:// artifacts (moto server, IAM enforced)", () => {
  const scratch = mkdtempSync(join(tmpdir(), "tern-s3-"));
  const secretsDir = join(scratch, "secrets");
  const savedEnv = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
  let moto: Emulator & { python: string };
  let users: Record<"admin" | "reader", Keys>;

  beforeAll(async () => {
    moto = await startMoto();
    users = JSON.parse(
      await runPython(
        moto.python,
        ["-c", SEED_USERS],
        JSON.stringify({
          endpoint: moto.url,
          users: { admin: ["*"], reader: [`arn:aws:s3:::${OPEN}`, `arn:aws:s3:::${OPEN}/*`] },
        }),
      ),
    );
    const s3 = new S3Client({ region: REGION, endpoint: moto.url, forcePathStyle: true, credentials: users.admin });
    try {
      for (const bucket of [OPEN, PRIVATE]) await s3.send(new CreateBucketCommand({ Bucket: bucket }));
      const put = (Bucket: string, Key: string, Body: Buffer | string) =>
        s3.send(new PutObjectCommand({ Bucket, Key, Body }));
      await put(OPEN, "iris/model.onnx", IRIS);
      await put(OPEN, "iris/model-settings.json", JSON.stringify({ name: "iris", implementation: "onnx" }));
      await put(OPEN, "iris/extra/notes.txt", "kept with its folder");
      await put(OPEN, "iris-v2/model.onnx", "a sibling, not part of iris/");
      // A key that climbs out of whatever folder it is downloaded into.
      await put(OPEN, "evil/model.onnx", IRIS);
      await put(OPEN, "evil/../../../../escaped.txt", "escaped");
      await put(PRIVATE, "iris/model.onnx", IRIS);
    } finally {
      s3.destroy();
    }
    // From here on moto checks every request's signature and the caller's IAM policy.
    const reset = await fetch(`${moto.url}/moto-api/reset-auth`, {
      method: "POST",
      body: "0",
      signal: AbortSignal.timeout(5000),
    });
    expect(reset.status).toBe(200);
    // The agent's default credential chain (environment) is the admin; secrets name other users.
    process.env.AWS_ACCESS_KEY_ID = users.admin.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = users.admin.secretAccessKey;
    mkdirSync(secretsDir);
    const secret = (keys: Keys) =>
      JSON.stringify({
        type: "s3",
        parameters: { access_key_id: keys.accessKeyId, secret_access_key: keys.secretAccessKey },
      });
    writeFileSync(join(secretsDir, "reader"), secret(users.reader));
    writeFileSync(join(secretsDir, "forged"), secret({ accessKeyId: "AKIAFORGED0000000000", secretAccessKey: "x" }));
  }, 900_000);

  afterAll(async () => {
    await moto?.stop();
    for (const [name, value] of [
      ["AWS_ACCESS_KEY_ID", savedEnv.id],
      ["AWS_SECRET_ACCESS_KEY", savedEnv.secret],
    ] as const) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
    rmSync(scratch, { recursive: true, force: true });
  });

  /** The agent's registry whose fetcher reads s3:// from moto, with the secrets folder. */
  function agentModels(name: string, options: { maxBytes?: number } = {}) {
    const cacheDir = join(scratch, `cache-${name}`);
    const models = createModelRegistry({
      runtime: createOnnxRuntime(),
      fetcher: createArtifactFetcher({
        cacheDir,
        ...(options.maxBytes === undefined ? {} : { maxBytes: options.maxBytes }),
        sources: [createS3Source({ region: REGION, endpoint: moto.url, timeoutMs: 10_000 })],
        secrets: createSecretsDir(secretsDir),
      }),
      capacityBytes: 64 << 20,
    });
    return { models, cacheDir };
  }

  it("downloads a folder keeping relative paths (and not the sibling with the same start), or one object", async () => {
    const { models, cacheDir } = agentModels("folder");
    try {
      const r = await models.load({ model: "iris", version: 1, storageUri: `s3://${OPEN}/iris` });
      expect(r.state, r.reason).toBe("Available");
      const [entry] = readdirSync(cacheDir);
      const files = readdirSync(join(cacheDir, entry!), { recursive: true }).map(String).sort();
      expect(files).toEqual([".complete", "extra", "extra/notes.txt", "model-settings.json", "model.onnx"]);
      const one = await models.load({ model: "one", version: 1, storageUri: `s3://${OPEN}/iris/model.onnx` });
      expect(one.state, one.reason).toBe("Available");
    } finally {
      await models.close();
    }
  });

  it("fails a missing key and a missing bucket with LoadFailed naming the URI", async () => {
    const { models } = agentModels("missing");
    try {
      const key = `s3://${OPEN}/nothing-here`;
      expect(await models.load({ model: "a", version: 1, storageUri: key })).toMatchObject({
        state: "LoadFailed",
        reason: `model artifact not found: nothing at ${key}`,
      });
      const bucket = "s3://tern-no-such-bucket/iris";
      expect(await models.load({ model: "b", version: 1, storageUri: bucket })).toMatchObject({
        state: "LoadFailed",
        reason: `model artifact not found: ${bucket} (NoSuchBucket)`,
      });
    } finally {
      await models.close();
    }
  });

  it("refuses a listed key that climbs out of the cache folder, naming it, before downloading anything", async () => {
    const { models, cacheDir } = agentModels("traversal");
    try {
      const uri = `s3://${OPEN}/evil`;
      expect(await models.load({ model: "evil", version: 1, storageUri: uri })).toMatchObject({
        state: "LoadFailed",
        reason: `refusing to download ${uri}: the key "evil/../../../../escaped.txt" leads outside the model's cache folder`,
      });
      expect(readdirSync(cacheDir)).toEqual([]);
      expect(readdirSync(scratch).filter((f) => f.includes("escaped"))).toEqual([]);
    } finally {
      await models.close();
    }
  });

  it("refuses a folder whose objects together pass the size limit, though each fits", async () => {
    const { models, cacheDir } = agentModels("folder-limit", { maxBytes: IRIS.length + 10 });
    try {
      const uri = `s3://${OPEN}/iris`;
      const r = await models.load({ model: "iris", version: 1, storageUri: uri });
      expect(r.state).toBe("LoadFailed");
      expect(r.reason).toMatch(
        new RegExp(
          `^artifact ${uri} is \\d+ bytes, more than the download limit of ${IRIS.length + 10} bytes \\(TERN_ARTIFACT_MAX_BYTES\\)$`,
        ),
      );
      expect(readdirSync(cacheDir)).toEqual([]);
    } finally {
      await models.close();
    }
  });

  it("refuses an object above the size limit before downloading it, leaving nothing in the cache", async () => {
    const { models, cacheDir } = agentModels("limit", { maxBytes: 100 });
    try {
      const uri = `s3://${OPEN}/iris/model.onnx`;
      expect(await models.load({ model: "iris", version: 1, storageUri: uri })).toMatchObject({
        state: "LoadFailed",
        reason: `artifact ${uri} is ${IRIS.length} bytes, more than the download limit of 100 bytes (TERN_ARTIFACT_MAX_BYTES)`,
      });
      expect(readdirSync(cacheDir)).toEqual([]);
    } finally {
      await models.close();
    }
  });

  it("a secretName replaces the default credentials: its user reads its bucket, and a bucket it may not read refuses", async () => {
    const { models } = agentModels("secret");
    try {
      const open = await models.load({ model: "a", version: 1, storageUri: `s3://${OPEN}/iris`, secretName: "reader" });
      expect(open.state, open.reason).toBe("Available");
      // The default chain (the admin) reads the private bucket; the reader's secret may not.
      const privateUri = `s3://${PRIVATE}/iris`;
      const admin = await models.load({ model: "b", version: 1, storageUri: privateUri });
      expect(admin.state, admin.reason).toBe("Available");
      expect(await models.load({ model: "c", version: 1, storageUri: privateUri, secretName: "reader" })).toMatchObject(
        {
          state: "LoadFailed",
          reason: `cannot download ${privateUri}: bucket ${PRIVATE} refused access (AccessDenied, with secret "reader")`,
        },
      );
      const forged = await models.load({ model: "d", version: 1, storageUri: privateUri, secretName: "forged" });
      expect(forged.state).toBe("LoadFailed");
      expect(forged.reason).toMatch(
        new RegExp(
          `^cannot download ${privateUri}: bucket ${PRIVATE} refused access \\(\\w+, with secret "forged"\\)$`,
        ),
      );
      expect(await models.load({ model: "e", version: 1, storageUri: privateUri, secretName: "absent" })).toMatchObject(
        {
          state: "LoadFailed",
          reason: `secret "absent" (secretName for ${privateUri}) not found in TERN_SECRETS_DIR (${secretsDir})`,
        },
      );
    } finally {
      await models.close();
    }
  });

  describe("through the scheduler", () => {
    const schedulers: SchedulerProcess[] = [];
    const agents: AgentProcess[] = [];
    afterAll(() => killAll(agents, schedulers));

    it("a Model with an s3:// storageUri and a secretName becomes available on an agent and answers iris", async () => {
      const scheduler = await startSchedulerProcess({
        id: "s3-it",
        table: `tern-s3-it-${suffix}`,
        dynamodbEndpoint: dynamodbEndpoint(),
      });
      schedulers.push(scheduler);
      await waitActive(scheduler.url);
      const model = `apiVersion: mlops.seldon.io/v1alpha1
kind: Model
metadata: {name: iris}
spec:
  storageUri: "s3://${OPEN}/iris"
  secretName: reader
  requirements: [onnx]
  memory: 100Ki
`;
      expect((await applyManifest(scheduler.url, `${serverManifest("s3srv", 1)}---\n${model}`)).status).toBe(200);
      // The agent's own credentials are forged: only the secret can read the bucket.
      agents.push(
        await startAgentProcess({
          schedulerUrl: scheduler.url,
          server: "s3srv",
          replica: 0,
          env: {
            TERN_AGENT_S3_ENDPOINT: moto.url,
            TERN_SECRETS_DIR: secretsDir,
            TERN_AGENT_CACHE_DIR: join(scratch, "cache-agent"),
            AWS_ACCESS_KEY_ID: "AKIAFORGED0000000000",
            AWS_SECRET_ACCESS_KEY: "x",
          },
        }),
      );
      const agent = agents[0]!;
      await waitFor(
        async () => {
          const s = await getJson<ModelStatus>(`${scheduler.url}/v1/models/iris`);
          return s?.state === "ModelAvailable" ? s : undefined;
        },
        { timeoutMs: 30_000, intervalMs: 200, description: "iris from s3:// available" },
      );
      for (const row of IRIS_ROWS) {
        expect(await inferIris(agent.http, row.features), agent.output()).toEqual({ status: 200, label: row.label });
      }
    });
  });
});
