import { TernError, type TernErrorCode } from "@tern/core";

/** `not_found` because this replica does not hold the model (now); another replica may. See REPLICA_MISS_HEADER. */
export class ReplicaMissError extends TernError {
  constructor(model: string) {
    super("not_found", `model ${model} is not loaded on this server replica`);
  }
}

/** HTTP status for each error code the agent raises; anything else is a 500 without details. */
export function httpStatusFor(code: string | undefined): 400 | 404 | 413 | 500 | 501 | 503 | 504 {
  switch (code as TernErrorCode | undefined) {
    case "bad_request":
      return 400;
    case "not_found":
      return 404;
    case "unavailable":
      return 503;
    case "timeout":
      return 504;
    case "unsupported":
      return 501;
    default:
      return 500;
  }
}

/** The same mapping for gRPC (values of `@grpc/grpc-js` `status`). */
export function grpcStatusFor(code: string | undefined): number {
  switch (code as TernErrorCode | undefined) {
    case "bad_request":
      return 3; // INVALID_ARGUMENT
    case "not_found":
      return 5; // NOT_FOUND
    case "unavailable":
      return 14; // UNAVAILABLE
    case "timeout":
      return 4; // DEADLINE_EXCEEDED
    case "unsupported":
      return 12; // UNIMPLEMENTED
    default:
      return 13; // INTERNAL
  }
}

/** The stable code of an error, if it carries one. */
export function codeOf(err: unknown): string | undefined {
  const code = typeof err === "object" && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === "string" ? code : undefined;
}

/** True for errors whose message was written for the caller (TernErrors); others must not leak their text. */
export function isPublicError(err: unknown): err is Error & { code: string } {
  const code = codeOf(err);
  return err instanceof Error && code !== undefined && code !== "internal" && httpStatusFor(code) !== 500;
}
