import { formatFieldPath, TernError } from "@tern/core";

/**
 * Errors of the dataflow's pure core. Compilation reports a bad pipeline as a core {@link TernError} with code
 * `manifest.invalid` and a message starting with the field path, like `tern validate` does. The join state never
 * throws for data: what goes wrong with a request comes back as an `error` decision carrying one of these codes.
 */
export type JoinErrorCode =
  /** An inner (or outer/any with nothing at all) join's window ended before every needed input came. */
  | "join.window_expired"
  /** The stage already held its cap of open requests; the new request was refused, the open ones kept. */
  | "join.capacity"
  /** A step of a cycle was entered more often than `maxStepRevisits` allows for one request. */
  | "join.revisits";

/** A `manifest.invalid` error whose message names the field: `spec.steps[1].tensorMap["a.outputs.y"]: …`. */
export function pipelineInvalid(pipeline: string, path: readonly PropertyKey[], message: string): TernError {
  const field = formatFieldPath(path);
  return new TernError("manifest.invalid", `pipeline ${pipeline}: ${field === "" ? "" : `${field}: `}${message}`);
}
