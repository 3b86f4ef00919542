import { TernError, type TernErrorCode } from "@tern/core";

/**
 * Errors of the control package. The AWS SDK's exceptions never leave the ECS adapter as they are: they become a
 * {@link TernError} whose code says what the caller can do (retry, fix config, give up), with AWS's own error name
 * and message kept in the text so a person sees what ECS refused.
 */

/** AWS error names that mean "try again later". */
const RETRIABLE_AWS = new Set([
  "ThrottlingException",
  "Throttling",
  "ServerException",
  "ServiceUnavailableException",
  "RequestLimitExceeded",
  "TimeoutError",
  "RequestTimeout",
]);

/**
 * Turns whatever an AWS SDK call threw into a TernError naming the action: AWS's client-side refusals
 * (`ClientException`, `InvalidParameterException`, an unknown cluster) → `bad_request`, not retriable, with ECS's
 * message; throttling, server errors and network failures → `unavailable`, retriable. A TernError passes through.
 */
export function fromAwsError(err: unknown, action: string): TernError {
  if (err instanceof TernError) return err;
  const e = err as { name?: unknown; message?: unknown; code?: unknown; $metadata?: { httpStatusCode?: number } };
  const name = typeof e.name === "string" ? e.name : "Error";
  const message = typeof e.message === "string" && e.message !== "" ? e.message : String(err);
  const status = e.$metadata?.httpStatusCode;
  const network = typeof e.code === "string" && /^E[A-Z]+$/.test(e.code);
  const retriable = RETRIABLE_AWS.has(name) || network || (status !== undefined && status >= 500);
  let code: TernErrorCode = retriable ? "unavailable" : "bad_request";
  if (name === "ServiceNotFoundException" || name === "ClusterNotFoundException") code = "not_found";
  if (name === "AccessDeniedException") code = "forbidden";
  return new TernError(code, `${action}: ${name}: ${message}`, { cause: err, retriable });
}

/** A short one-line text for an unknown thrown value. */
export function errorText(err: unknown): string {
  if (err instanceof Error) return err.message.split("\n")[0] || err.name;
  return String(err);
}
