/**
 * Builds the gateway's Lambda entry (packages/gateway/src/lambda.ts) into one minified ESM file with esbuild, the way
 * a deployment bundles it, and reports its size by top-level input (an npm package, or a workspace package's src).
 * Used by bench/lambda/run.ts and by the integration test that drives the bundled handler.
 */
import { statSync } from "node:fs";
import { join } from "node:path";
import { build, type Metafile } from "esbuild";
import { REPO_ROOT } from "../lib/processes.js";

export const LAMBDA_ENTRY = "packages/gateway/src/lambda.ts";

/** Bytes of the output by top-level input, largest first. */
export interface BundleInput {
  name: string;
  bytes: number;
}

export interface LambdaBundle {
  /** Absolute path of the bundle (`lambda.mjs` in `outdir`). */
  file: string;
  bytes: number;
  inputs: BundleInput[];
}

export interface BuildLambdaOptions {
  /** Folder for `lambda.mjs`; outside the repository (a scan of the repo's sources must not see the bundle). */
  outdir: string;
  /** esbuild target. @default "node20" (the local Node; the stack deploys nodejs22.x) */
  target?: string;
}

/** `node_modules/@aws-sdk/core/dist-es/x.js` → `@aws-sdk/core`; `packages/core/src/oip.ts` → `packages/core/src`. */
export function topLevelInput(path: string): string {
  const at = path.lastIndexOf("node_modules/");
  if (at >= 0) {
    const [first = "", second = ""] = path.slice(at + "node_modules/".length).split("/");
    return first.startsWith("@") ? `${first}/${second}` : first;
  }
  return path.split("/").slice(0, 3).join("/");
}

export function sizesByInput(metafile: Metafile): BundleInput[] {
  const totals = new Map<string, number>();
  for (const output of Object.values(metafile.outputs)) {
    for (const [path, { bytesInOutput }] of Object.entries(output.inputs)) {
      const name = topLevelInput(path);
      totals.set(name, (totals.get(name) ?? 0) + bytesInOutput);
    }
  }
  return [...totals].map(([name, bytes]) => ({ name, bytes })).sort((a, b) => b.bytes - a.bytes);
}

export async function buildLambdaBundle(options: BuildLambdaOptions): Promise<LambdaBundle> {
  const file = join(options.outdir, "lambda.mjs");
  const result = await build({
    entryPoints: [join(REPO_ROOT, LAMBDA_ENTRY)],
    absWorkingDir: REPO_ROOT,
    bundle: true,
    platform: "node",
    format: "esm",
    target: options.target ?? "node20",
    minify: true,
    metafile: true,
    outfile: file,
    logLevel: "warning",
    // CommonJS dependencies (the AWS SDK, kafkajs) call require() for Node's built-ins; an ESM bundle has none.
    banner: {
      js: 'import { createRequire as __ternCreateRequire } from "node:module";const require = __ternCreateRequire(import.meta.url);',
    },
  });
  return { file, bytes: statSync(file).size, inputs: sizesByInput(result.metafile) };
}
