import http from "node:http";
import https from "node:https";

/**
 * Raised by an upstream caller when no response came back. `connectFailed` is true only when the connection was
 * refused or reset before any response byte: then another replica may be tried.
 */
export class UpstreamError extends Error {
  readonly code: "unavailable" | "timeout";
  readonly connectFailed: boolean;
  readonly retriable: boolean;

  constructor(code: "unavailable" | "timeout", message: string, connectFailed: boolean, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "UpstreamError";
    this.code = code;
    this.connectFailed = connectFailed;
    this.retriable = connectFailed;
  }
}

/** One call to an upstream's REST server (the gateway's to an agent, an agent's to its MLServer). */
export interface UpstreamRequest {
  method: "GET" | "POST";
  /** Absolute URL: the endpoint's base URL plus the OIP path. */
  url: string;
  headers: Record<string, string>;
  body?: Uint8Array;
  /**
   * When the call is abandoned (`Date.now()` milliseconds): it then ends with an UpstreamError of code `timeout`.
   * A deadline rather than an AbortSignal because listening on a signal costs more than the rest of the call's
   * bookkeeping on Node 20 (see bench/results/inference.md).
   */
  deadline: number;
  /**
   * On a connection of its own (closed after the answer) instead of a pooled keep-alive one: for a retry after a
   * pooled socket was found closed by the server, where the pool's next idle socket may be closing too.
   */
  freshConnection?: boolean;
}

export interface UpstreamResponse {
  status: number;
  /** Lower-case header names, as node:http gives them. */
  headers: Record<string, string | string[] | undefined>;
  body: Uint8Array;
}

/** The port the gateway calls agents through, and an agent its MLServer. Rejects only with {@link UpstreamError}. */
export interface Upstream {
  call(request: UpstreamRequest): Promise<UpstreamResponse>;
  close(): Promise<void>;
}

export interface HttpUpstreamOptions {
  /** Idle keep-alive sockets kept per upstream. @default 64 */
  maxFreeSockets?: number;
  /**
   * Closes a keep-alive socket idle this long, ms: set it below the server's own idle timeout where the server does
   * not announce it (`Keep-Alive: timeout=N`, which is honoured anyway), so that a call does not meet a socket the
   * server is closing. Also the socket timeout while a call waits; a call still ends only at its deadline. @default none
   */
  idleSocketTimeoutMs?: number;
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

/** Where an agent's base URL points, parsed once per base URL instead of once per call. */
interface Origin {
  secure: boolean;
  hostname: string;
  port: string;
}

/** setTimeout's largest delay; a longer one would fire after 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Distinct agent base URLs remembered; past it the cache starts again (endpoints churn as agents come and go). */
const MAX_ORIGINS = 1024;

/**
 * node:http with keep-alive agents. Chosen over the global fetch because it is measurably cheaper per call on Node 20
 * (see docs/gateway.md, "Hot path"), and Node 20's fetch cannot be given a keep-alive dispatcher without the undici
 * package. The request is built from an options object with a cached parse of the agent's base URL, and the
 * deadline is one timer: passing the URL string (parsed on every call) and listening on an AbortSignal each cost
 * tens of microseconds of CPU per request under load (bench/results/inference.md).
 */
export function createHttpUpstream(options: HttpUpstreamOptions = {}): Upstream {
  const agentOptions: http.AgentOptions = {
    keepAlive: true,
    maxFreeSockets: options.maxFreeSockets ?? 64,
    scheduling: "lifo",
    ...(options.idleSocketTimeoutMs === undefined ? {} : { timeout: options.idleSocketTimeoutMs }),
  };
  const httpAgent = new http.Agent(agentOptions);
  const httpsAgent = new https.Agent(agentOptions);
  const origins = new Map<string, Origin>();

  function originOf(base: string): Origin {
    let origin = origins.get(base);
    if (origin) return origin;
    const url = new URL(base);
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new TypeError(`unsupported protocol ${url.protocol} in ${base}`);
    }
    const secure = url.protocol === "https:";
    // URL keeps IPv6 literals bracketed; node:http wants them bare.
    const hostname = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
    origin = { secure, hostname, port: url.port || (secure ? "443" : "80") };
    if (origins.size >= MAX_ORIGINS) origins.clear();
    origins.set(base, origin);
    return origin;
  }

  return {
    call(request) {
      return new Promise<UpstreamResponse>((resolve, reject) => {
        const remaining = request.deadline - Date.now();
        if (remaining <= 0) {
          reject(new UpstreamError("timeout", "deadline passed before the call", false));
          return;
        }
        // The path starts at the first "/" after the scheme's "//"; everything before it is the base URL.
        const schemeEnd = request.url.indexOf("//");
        const pathStart = schemeEnd < 0 ? -1 : request.url.indexOf("/", schemeEnd + 2);
        let origin: Origin;
        try {
          origin = originOf(pathStart < 0 ? request.url : request.url.slice(0, pathStart));
        } catch (err) {
          reject(
            new UpstreamError("unavailable", `bad agent URL ${request.url}: ${(err as Error).message}`, false, err),
          );
          return;
        }
        const headers: Record<string, string | number> = { ...request.headers };
        if (request.body) headers["content-length"] = request.body.byteLength;
        let responded = false;
        let settled = false;
        let timedOut = false;
        let timer: ReturnType<typeof setTimeout> | undefined;
        const fail = (err: UpstreamError) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          reject(err);
        };
        const req = (origin.secure ? https : http).request(
          {
            hostname: origin.hostname,
            port: origin.port,
            path: pathStart < 0 ? "/" : request.url.slice(pathStart),
            method: request.method,
            headers,
            agent: request.freshConnection ? false : origin.secure ? httpsAgent : httpAgent,
          },
          (res) => {
            responded = true;
            const chunks: Buffer[] = [];
            res.on("data", (chunk: Buffer) => chunks.push(chunk));
            res.on("end", () => {
              if (settled) return;
              settled = true;
              clearTimeout(timer);
              resolve({
                status: res.statusCode ?? 502,
                headers: res.headers,
                body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks),
              });
            });
            res.on("error", (err) => fail(classify(err, true, timedOut)));
          },
        );
        timer = setTimeout(
          () => {
            timedOut = true;
            req.destroy();
            fail(new UpstreamError("timeout", "deadline passed", false));
          },
          Math.min(remaining, MAX_TIMER_MS),
        );
        req.on("error", (err) => fail(classify(err, responded, timedOut)));
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

function classify(err: Error, responded: boolean, timedOut: boolean): UpstreamError {
  if (timedOut) return new UpstreamError("timeout", "deadline passed", false, err);
  const code = (err as NodeJS.ErrnoException).code ?? "";
  const connectFailed = !responded && CONNECT_ERRORS.has(code);
  return new UpstreamError("unavailable", `agent call failed: ${code || err.message}`, connectFailed, err);
}
