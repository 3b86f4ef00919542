import { IgnoreMode } from "aws-cdk-lib";
import { Platform } from "aws-cdk-lib/aws-ecr-assets";
import * as ecs from "aws-cdk-lib/aws-ecs";
import { useProject } from "sst/project.js";
import type { StackConfig } from "./config.js";

/** The container images, each from its Dockerfile in docker/ (built by `sst deploy`) or a registry URI from config. */
export const IMAGES = {
  control: { file: "docker/control.Dockerfile", uri: "TERN_IMAGE_CONTROL" },
  modelGateway: { file: "docker/model-gateway.Dockerfile", uri: "TERN_IMAGE_MODEL_GATEWAY" },
  agentOnnx: { file: "docker/agent-onnx.Dockerfile", uri: "TERN_IMAGE_AGENT_ONNX" },
  agentMlserver: { file: "docker/agent-mlserver.Dockerfile", uri: "TERN_IMAGE_AGENT_MLSERVER" },
} as const satisfies Record<string, { file: string; uri: keyof StackConfig }>;

/**
 * The build context is the repository root, reduced to what the images need: the workspace manifests and lock file,
 * the packages' sources, the Dockerfiles and the MLServer pins. Without this the asset hash would walk node_modules
 * and .tern, and `docker build` would upload them.
 */
export const BUILD_CONTEXT_EXCLUDE = [
  "*",
  "!package.json",
  "!package-lock.json",
  "!.npmrc",
  "!tsconfig.json",
  "!packages",
  "!docker",
  "!scripts/python/mlserver.txt",
  "**/node_modules",
  "packages/*/tests",
  "**/.tern",
  "**/*.tsbuildinfo",
];

export function containerImage(config: StackConfig, which: keyof typeof IMAGES): ecs.ContainerImage {
  const { file, uri } = IMAGES[which];
  const fromRegistry = config[uri];
  if (fromRegistry) return ecs.ContainerImage.fromRegistry(fromRegistry);
  return ecs.ContainerImage.fromAsset(useProject().paths.root, {
    file,
    exclude: BUILD_CONTEXT_EXCLUDE,
    ignoreMode: IgnoreMode.DOCKER,
    // The MLServer pins are for Linux x86_64 (scripts/python/mlserver.txt); every task runs on it.
    platform: Platform.LINUX_AMD64,
  });
}
