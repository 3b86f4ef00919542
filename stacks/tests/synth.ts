import { rmSync } from "node:fs";
import { Stack } from "aws-cdk-lib";
import { Template } from "aws-cdk-lib/assertions";
import { App, getStack } from "sst/constructs";
import { initProject } from "sst/project.js";
import sstConfig from "../../sst.config.js";
import { stackEnvSchema } from "../config.js";

/** A 64-hex-digit digest, so the default auth mode (api-key) has a key to check. */
const TEST_KEY_DIGEST = "a".repeat(64);

/**
 * Variables every synthesis starts from: each stack variable unset (a developer's .env, which SST loads, must not
 * change what the tests see) but a key digest, so the default auth mode (api-key) deploys. A test overrides what it
 * asserts on.
 */
const BASE_ENV: Record<string, string | undefined> = {
  ...Object.fromEntries(Object.keys(stackEnvSchema.shape).map((name) => [name, undefined])),
  TERN_GATEWAY_API_KEY_SHA256: TEST_KEY_DIGEST,
};

/**
 * Synthesises the SST app offline (no AWS calls: `sst build` would look up STS and CloudFormation) and returns a
 * function that gives the CloudFormation template of one stack.
 * Each call synthesises the whole app (about 10 s on a busy 2-core machine). `env` is applied after SST loads the `.env*` files
 * (which override) and put back afterwards; `undefined` unsets a variable.
 */
export async function synthesize(
  env: Record<string, string | undefined> = {},
): Promise<<T>(stack: (ctx: never) => T) => Template> {
  process.env.NODE_ENV = "test";
  await initProject({ stage: "test" });
  const saved = new Map<string, string | undefined>();
  for (const [key, value] of Object.entries({ ...BASE_ENV, ...env })) {
    saved.set(key, process.env[key]);
    if (value === undefined) delete process.env[key];
    else process.env[key] = value;
  }
  try {
    const app = new App({
      mode: "deploy",
      stage: "test",
      name: "tern",
      region: "us-east-1",
      account: "123456789012",
    });
    await sstConfig.stacks(app);
    await app.finish();
    // Read every template now, then drop the cloud assembly (tens of MB of staged assets in a temp folder).
    const templates = new Map<Stack, Template>();
    for (const child of app.node.children) {
      if (child instanceof Stack) templates.set(child, Template.fromStack(child));
    }
    rmSync(app.outdir, { recursive: true, force: true });
    return (stack) => templates.get(getStack(stack as never))!;
  } finally {
    for (const [key, value] of saved) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  }
}
