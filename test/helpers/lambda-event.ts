/**
 * Driving the gateway's Lambda entry in-process: a synthetic API Gateway HTTP API (payload 2.0) event, as the Lambda
 * integration sends it, and the handler's result read back as bytes.
 */

export interface LambdaResult {
  statusCode: number;
  headers?: Record<string, string>;
  body: string;
  isBase64Encoded: boolean;
}
export type LambdaHandler = (event: unknown, context: unknown) => Promise<LambdaResult>;

export interface LambdaEventOptions {
  /** @default "POST" */
  method?: string;
  /** Bytes go base64-encoded with isBase64Encoded, as API Gateway passes a binary body. */
  body?: string | Uint8Array;
  headers?: Record<string, string>;
}

let counter = 0;

export function apiGatewayEvent(path: string, options: LambdaEventOptions = {}) {
  const domainName = "lambda.execute-api.us-east-1.amazonaws.com";
  const binary = options.body instanceof Uint8Array;
  return {
    version: "2.0",
    routeKey: "$default",
    rawPath: path,
    rawQueryString: "",
    headers: { host: domainName, "content-type": "application/json", ...options.headers },
    requestContext: {
      accountId: "123456789012",
      apiId: "lambda",
      domainName,
      domainPrefix: "lambda",
      http: {
        method: options.method ?? "POST",
        path,
        protocol: "HTTP/1.1",
        sourceIp: "127.0.0.1",
        userAgent: "tern-test",
      },
      requestId: `lambda-event-${++counter}`,
      routeKey: "$default",
      stage: "$default",
      time: new Date().toISOString(),
      timeEpoch: Date.now(),
    },
    ...(options.body === undefined
      ? {}
      : {
          body: binary ? Buffer.from(options.body as Uint8Array).toString("base64") : options.body,
          isBase64Encoded: binary,
        }),
  };
}

/** The handler's answer with its body as bytes, whichever way it was encoded. */
export async function invokeLambda(
  handler: LambdaHandler,
  path: string,
  options: LambdaEventOptions = {},
): Promise<{ status: number; headers: Record<string, string>; body: Buffer }> {
  const res = await handler(apiGatewayEvent(path, options), {});
  return {
    status: res.statusCode,
    headers: res.headers ?? {},
    body: Buffer.from(res.body ?? "", res.isBase64Encoded ? "base64" : "utf8"),
  };
}
