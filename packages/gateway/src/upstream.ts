import http from "node:http";
import https from "node:https";
import { UpstreamError } from "./errors.js";

/** One call to an agent's OIP REST server. */
export interface UpstreamRequest {
  method: "GET" | "POST";
  /** Absolute URL: the endpoint's base URL plus the OIP path. */
  url: string;
  headers: Record<string, string>;
  body?: Uint8Array;
  /** Aborting it ends the call with an UpstreamError of code `timeout`. */
  signal: AbortSignal;
}

export interface UpstreamResponse {
  status: number;
  /** Lower-case header names, as node:http gives them. */
  headers: Record<string, string | string[] | undefined>;
  body: Uint8Array;
}

/** The port the gateway calls agents through. Rejects only with {@link UpstreamError}. */
export interface Upstream {
  call(request: UpstreamRequest): Promise<UpstreamResponse>;
  close(): Promise<void>;
}

export interface HttpUpstreamOptions {
  /** Idle keep-alive sockets kept per agent. @default 64 */
  maxFreeSockets?: number;
}

/** Socket errors that mean "nothing reached the agent, or it died before answering": safe to try another replica. */
const CONNECT_ERRORS = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
]);

/**
 * node:http with keep-alive agents. Chosen over the global fetch because it is measurably cheaper per call on Node 20
 * (see docs/gateway.md, "Hot path"), and Node 20's fetch cannot be given a keep-alive dispatcher without the undici
 * package.
 */
export function createHttpUpstream(options: HttpUpstreamOptions = {}): Upstream {
  const agentOptions: http.AgentOptions = {
    keepAlive: true,
    maxFreeSockets: options.maxFreeSockets ?? 64,
    scheduling: "lifo",
  };
  const httpAgent = new http.Agent(agentOptions);
  const httpsAgent = new https.Agent(agentOptions);

  return {
    call(request) {
      return new Promise<UpstreamResponse>((resolve, reject) => {
        if (request.signal.aborted) {
          reject(new UpstreamError("timeout", "deadline passed before the call", false));
          return;
        }
        const secure = request.url.startsWith("https:");
        const headers: Record<string, string | number> = { ...request.headers };
        if (request.body) headers["content-length"] = request.body.byteLength;
        let responded = false;
        let settled = false;
        const fail = (err: UpstreamError) => {
          if (settled) return;
          settled = true;
          request.signal.removeEventListener("abort", onAbort);
          reject(err);
        };
        const req = (secure ? https : http).request(
          request.url,
          { method: request.method, headers, agent: secure ? httpsAgent : httpAgent },
          (res) => {
            responded = true;
            const chunks: Buffer[] = [];
            res.on("data", (chunk: Buffer) => chunks.push(chunk));
            res.on("end", () => {
              if (settled) return;
              settled = true;
              request.signal.removeEventListener("abort", onAbort);
              resolve({
                status: res.statusCode ?? 502,
                headers: res.headers,
                body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks),
              });
            });
            res.on("error", (err) => fail(classify(err, true, request.signal)));
          },
        );
        const onAbort = () => {
          req.destroy();
          fail(new UpstreamError("timeout", "deadline passed", false));
        };
        request.signal.addEventListener("abort", onAbort, { once: true });
        req.on("error", (err) => fail(classify(err, responded, request.signal)));
        if (request.body) req.end(request.body);
        else req.end();
      });
    },
    async close() {
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  };
}

function classify(err: Error, responded: boolean, signal: AbortSignal): UpstreamError {
  if (signal.aborted) return new UpstreamError("timeout", "deadline passed", false, err);
  const code = (err as NodeJS.ErrnoException).code ?? "";
  const connectFailed = !responded && CONNECT_ERRORS.has(code);
  return new UpstreamError("unavailable", `agent call failed: ${code || err.message}`, connectFailed, err);
}
