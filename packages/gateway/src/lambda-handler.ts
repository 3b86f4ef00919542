import { PIPELINE_REQUEST_ID_HEADER, REQUEST_ID_HEADER } from "@tern/core";
import type { Hono } from "hono";
import { handle } from "hono/aws-lambda";
import { LAMBDA_PAYLOAD_LIMIT_BYTES } from "./lambda-config.js";

/** What the handler returns to API Gateway (payload format 2.0), as hono's adapter builds it. */
export interface LambdaResult {
  statusCode: number;
  headers?: Record<string, string>;
  body: string;
  isBase64Encoded: boolean;
  [field: string]: unknown;
}

export type LambdaHandler = (event: unknown, context: unknown) => Promise<LambdaResult>;

/** Headers of a too-large result that the 502 keeps: the caller still learns which request it was. */
const KEPT_HEADERS = new Set([REQUEST_ID_HEADER, PIPELINE_REQUEST_ID_HEADER]);

/** Options of {@link createLambdaHandler}. */
export interface LambdaHandlerOptions {
  /** Largest result (as the JSON Lambda returns) passed through. @default LAMBDA_PAYLOAD_LIMIT_BYTES (6 MiB) */
  responseLimitBytes?: number;
}

/**
 * The Lambda handler of an app: hono's API Gateway adapter, plus one guard. A result larger than a synchronous
 * invocation may return would fail the invocation after the work was done, and the caller would see API Gateway's
 * bare 500; it becomes our 502 naming its size and the limit instead (a binary answer counts base64-encoded, as it
 * travels).
 */
export function createLambdaHandler(app: Hono, options: LambdaHandlerOptions = {}): LambdaHandler {
  const limit = options.responseLimitBytes ?? LAMBDA_PAYLOAD_LIMIT_BYTES;
  const inner = handle(app) as unknown as LambdaHandler;
  return async (event, context) => {
    const result = await inner(event, context);
    const size = Buffer.byteLength(JSON.stringify(result));
    if (size <= limit) return result;
    const error =
      `the response is ${size} bytes, above the ${limit} bytes a Lambda invocation may return (6 MB): ` +
      "ask for fewer or smaller outputs, or call the Node gateway, which has no such limit";
    const kept = Object.entries(result.headers ?? {}).filter(([name]) => KEPT_HEADERS.has(name.toLowerCase()));
    return {
      statusCode: 502,
      headers: { ...Object.fromEntries(kept), "content-type": "application/json" },
      body: JSON.stringify({ error }),
      isBase64Encoded: false,
    };
  };
}
