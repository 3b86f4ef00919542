/**
 * Every error Tern raises on purpose carries a stable `code` (match on it, not on the class) and says whether
 * retrying the same call may succeed.
 */
export type TernErrorCode =
  | "manifest.invalid"
  | "manifest.parse"
  | "config.invalid"
  | "not_found"
  | "conflict"
  | "lease.lost"
  | "unsupported"
  | "timeout"
  | "unavailable"
  | "bad_request"
  | "forbidden"
  | "too_large"
  | "model.corrupt"
  | "kafka.partition_mismatch"
  | "internal";

export interface TernErrorOptions {
  cause?: unknown;
  retriable?: boolean;
}

export class TernError extends Error {
  readonly code: TernErrorCode;
  readonly retriable: boolean;

  constructor(code: TernErrorCode, message: string, options: TernErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "TernError";
    this.code = code;
    this.retriable = options.retriable ?? false;
  }
}

/** True when `err` is a Tern error with the given code (works across package copies, unlike `instanceof`). */
export function hasCode(err: unknown, code: TernErrorCode): boolean {
  return typeof err === "object" && err !== null && (err as { code?: unknown }).code === code;
}
