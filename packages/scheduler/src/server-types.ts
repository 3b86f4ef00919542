import type { ServerSpec } from "@tern/core";

/**
 * The server types a `Server.spec.serverConfig` may name. A type fixes the runtime an agent runs and the
 * capabilities a model's `requirements` are matched against: exactly what that runtime serves, never more.
 *
 * - `tern-onnx`: Tern's built-in onnxruntime-node runtime: `onnx`.
 * - `mlserver`: an MLServer process per agent with the runtimes Tern installs (scripts/python/mlserver.txt):
 *   `sklearn`, `xgboost`, `lightgbm`, and `mlserver` (a model that ships its own model-settings.json). Seldon's
 *   default list for its MLServer farm also names mlflow, huggingface, alibi-*, python and spark-mlib: Tern does not
 *   install those runtimes, so a model requiring them is not placed here (it fails to schedule, saying so).
 * - `triton`: accepted so that Seldon manifests validate, but Triton is not part of this installation: such a Server
 *   offers nothing and is reported `ServerFailed` with that reason (`unavailable`). Give it explicit
 *   `spec.capabilities` to run Tern's agents under that name anyway.
 */
export interface ServerType {
  name: string;
  capabilities: readonly string[];
  /** Set when this installation has no runtime for the type: the reason a Server of it is `ServerFailed`. */
  unavailable?: string;
  /** Memory per replica when the agent does not report its own (it normally does). */
  defaultMemoryBytes: number;
}

const GiB = 1024 ** 3;

export const SERVER_TYPES: Readonly<Record<string, ServerType>> = {
  "tern-onnx": { name: "tern-onnx", capabilities: ["onnx"], defaultMemoryBytes: 1 * GiB },
  mlserver: {
    name: "mlserver",
    capabilities: ["mlserver", "sklearn", "xgboost", "lightgbm"],
    defaultMemoryBytes: 1 * GiB,
  },
  triton: {
    name: "triton",
    capabilities: [],
    unavailable:
      'serverConfig "triton": Triton is not part of this installation (Tern runs tern-onnx and mlserver); use serverConfig tern-onnx for ONNX models, or set spec.capabilities',
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
  } else if (type?.unavailable !== undefined) {
    return { ok: false, reason: type.unavailable };
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
