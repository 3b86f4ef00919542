/** What `handle(app)` from `hono/aws-lambda` resolves with for an API Gateway v2 event. */
export interface LambdaResult {
  statusCode: number;
  headers?: Record<string, string>;
  body: string;
  isBase64Encoded: boolean;
}
export type LambdaHandler = (event: unknown, context: unknown) => Promise<LambdaResult>;

let requestCounter = 0;

/** A synthetic API Gateway HTTP API (payload 2.0) event, as the Lambda integration sends it. */
export function apiGatewayV2Event(
  method: string,
  path: string,
  options: { headers?: Record<string, string>; body?: string | Uint8Array } = {},
) {
  const domainName = "e2e.execute-api.us-east-1.amazonaws.com";
  const binary = options.body instanceof Uint8Array;
  return {
    version: "2.0",
    routeKey: "$default",
    rawPath: path,
    rawQueryString: "",
    headers: { host: domainName, "user-agent": "tern-e2e", ...options.headers },
    requestContext: {
      accountId: "123456789012",
      apiId: "e2e",
      domainName,
      domainPrefix: "e2e",
      http: { method, path, protocol: "HTTP/1.1", sourceIp: "127.0.0.1", userAgent: "tern-e2e" },
      requestId: `e2e-${++requestCounter}`,
      routeKey: "$default",
      stage: "$default",
      time: new Date().toISOString(),
      timeEpoch: Date.now(),
    },
    ...(options.body === undefined
      ? { isBase64Encoded: false }
      : binary
        ? { body: Buffer.from(options.body as Uint8Array).toString("base64"), isBase64Encoded: true }
        : { body: options.body, isBase64Encoded: false }),
  };
}

/** The body of a Lambda result as text (base64-decoded when the entry sent it so). */
export function lambdaBodyText(result: LambdaResult): string {
  return result.isBase64Encoded ? Buffer.from(result.body, "base64").toString("utf8") : result.body;
}
