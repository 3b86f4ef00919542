import type { ServerSpec } from "@tern/core";

/**
 * The server types a `Server.spec.serverConfig` may name. A type fixes the runtime an agent runs and the
 * capabilities a model's `requirements` are matched against.
 *
 * The `mlserver` and `triton` lists are the defaults Seldon Core v2 documents for its two server farms
 * (docs.seldon.ai, "Servers": the `SELDON_SERVER_CAPABILITIES` of each), so Seldon manifests schedule the same way.
 * `tern-onnx` is Tern's built-in onnxruntime-node runtime and offers `onnx` only.
 */
export interface ServerType {
  name: string;
  capabilities: readonly string[];
  /** Memory per replica when the agent does not report its own (it normally does). */
  defaultMemoryBytes: number;
}

const GiB = 1024 ** 3;

export const SERVER_TYPES: Readonly<Record<string, ServerType>> = {
  "tern-onnx": { name: "tern-onnx", capabilities: ["onnx"], defaultMemoryBytes: 1 * GiB },
  mlserver: {
    name: "mlserver",
    capabilities: [
      "mlserver",
      "alibi-detect",
      "alibi-explain",
      "huggingface",
      "lightgbm",
      "mlflow",
      "python",
      "sklearn",
      "spark-mlib",
      "xgboost",
    ],
    defaultMemoryBytes: 1 * GiB,
  },
  triton: {
    name: "triton",
    capabilities: ["triton", "dali", "fil", "onnx", "openvino", "python", "pytorch", "tensorflow", "tensorrt"],
    defaultMemoryBytes: 1 * GiB,
  },
};

/** The outcome of resolving a Server's capabilities. */
export type ResolvedCapabilities = { ok: true; capabilities: string[] } | { ok: false; reason: string };

/**
 * A Server's effective capabilities: `capabilities` replaces the type's list, `extraCapabilities` adds to it.
 *
 * An unknown `serverConfig` is not a manifest error (Seldon lets clusters define their own ServerConfigs), so the
 * Server is accepted; but unless it lists its own `capabilities` nothing can be matched against it, and it is
 * reported failed with a reason naming the known types. With explicit `capabilities` it works like any other.
 */
export function resolveCapabilities(spec: ServerSpec): ResolvedCapabilities {
  const type = SERVER_TYPES[spec.serverConfig];
  let base: readonly string[];
  if (spec.capabilities !== undefined && spec.capabilities.length > 0) {
    base = spec.capabilities;
  } else if (type !== undefined) {
    base = type.capabilities;
  } else {
    return {
      ok: false,
      reason: `unknown serverConfig "${spec.serverConfig}" (known: ${Object.keys(SERVER_TYPES).join(", ")}); set spec.capabilities to use a custom server type`,
    };
  }
  const all = new Set([...base, ...(spec.extraCapabilities ?? [])]);
  return { ok: true, capabilities: [...all] };
}
