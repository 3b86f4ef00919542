import type { TernErrorCode } from "@tern/core";

/**
 * Codes the gateway answers with: core's plus `unauthorized` (core has no 401 code). Every code maps to an HTTP status
 * here and to a gRPC status in grpc-proxy.ts.
 */
export type GatewayErrorCode = TernErrorCode | "unauthorized";

export interface GatewayErrorOptions {
  cause?: unknown;
  retriable?: boolean;
}

/** An error the gateway raises on purpose; `code` is stable, the message is safe to show to a caller. */
export class GatewayError extends Error {
  readonly code: GatewayErrorCode;
  readonly retriable: boolean;

  constructor(code: GatewayErrorCode, message: string, options: GatewayErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "GatewayError";
    this.code = code;
    this.retriable = options.retriable ?? false;
  }
}

/** Raised by the HTTP upstream (@tern/http) when no response came back. */
export { UpstreamError } from "@tern/http";

const HTTP_STATUS: Record<GatewayErrorCode, number> = {
  "manifest.invalid": 400,
  "manifest.parse": 400,
  bad_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  too_large: 413,
  "model.corrupt": 500,
  "kafka.partition_mismatch": 503,
  "config.invalid": 500,
  internal: 500,
  "lease.lost": 503,
  unsupported: 501,
  unavailable: 503,
  timeout: 504,
};

/** The HTTP status for an error's code; 500 for anything that is not a Tern or gateway error. */
export function httpStatusOf(err: unknown): number {
  const code = codeOf(err);
  return code === undefined ? 500 : HTTP_STATUS[code];
}

/** The stable code of a Tern/gateway/upstream error, or undefined for anything else. */
export function codeOf(err: unknown): GatewayErrorCode | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" && code in HTTP_STATUS ? (code as GatewayErrorCode) : undefined;
}
