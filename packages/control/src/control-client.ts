import { type DeploymentStrategy, readSseStream, type SseMessage, TernError } from "@tern/core";

/**
 * The few calls of the scheduler's control API (docs/control-api.md) the dev stack makes: list servers, follow the
 * watch stream, apply manifests, read a model. Every call has a deadline; errors carry the API's `{"error"}` text.
 */

/** The fields of a `ServerStatus` the controllers use. */
export interface ServerSummary {
  name: string;
  serverConfig: string;
  capabilities: string[];
  state: string;
  reason?: string;
  replicas: number;
  /** The manifest's, when it has one (the ECS controller applies it). */
  deploymentStrategy?: DeploymentStrategy;
}

/** The fields of a `ModelStatus` the dev stack prints. */
export interface ModelSummary {
  name: string;
  state: string;
  reason?: string;
  replicas: number;
  availableReplicas: number;
}

/** One server-sent event of `GET /v1/watch`: `change` (with the kinds it touched) or `reset`. */
export interface WatchEvent {
  event: string;
  id?: string;
  /** Kinds of the changes in a `change` event (`server`, `model`, `replica`, ...). */
  kinds: string[];
}

export interface ControlClientOptions {
  /** e.g. `http://127.0.0.1:9004` */
  url: string;
  /** Sent as `Authorization: Bearer <token>` (TERN_SCHEDULER_TOKEN). */
  token?: string;
  /** @default 5000 */
  timeoutMs?: number;
}

export interface ControlClient {
  readonly url: string;
  listServers(): Promise<ServerSummary[]>;
  /** Undefined when there is no such model. */
  getModel(name: string): Promise<ModelSummary | undefined>;
  /** `POST /v1/apply` with YAML; returns the per-resource results. */
  apply(yaml: string): Promise<Array<{ kind: string; name: string; action: string }>>;
  /**
   * Follows `GET /v1/watch` (live changes only) until the stream ends, `signal` aborts, or no byte (event or heartbeat
   * comment) arrives for `idleTimeoutMs`. `onOpen` runs once the stream is established, `onEvent` for every event.
   */
  watch(options: {
    signal: AbortSignal;
    idleTimeoutMs: number;
    onOpen: () => void;
    onEvent: (event: WatchEvent) => void;
  }): Promise<void>;
}

export function createControlClient(options: ControlClientOptions): ControlClient {
  const url = options.url.replace(/\/+$/, "");
  const timeoutMs = options.timeoutMs ?? 5000;
  const headers: Record<string, string> = options.token ? { authorization: `Bearer ${options.token}` } : {};

  async function call(method: string, path: string, body?: string): Promise<Response> {
    try {
      return await fetch(`${url}${path}`, {
        method,
        headers: body === undefined ? headers : { ...headers, "content-type": "application/yaml" },
        ...(body === undefined ? {} : { body }),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      const timedOut = (err as Error).name === "TimeoutError";
      throw new TernError(
        timedOut ? "timeout" : "unavailable",
        `scheduler at ${url}: ${method} ${path} ${timedOut ? `took over ${timeoutMs} ms` : `failed: ${causeText(err)}`}`,
        { cause: err, retriable: true },
      );
    }
  }

  async function json<T>(res: Response, what: string): Promise<T> {
    const text = await res.text();
    if (!res.ok) {
      let message = text;
      try {
        message = (JSON.parse(text) as { error?: string }).error ?? text;
      } catch {
        // Not JSON: quote the text as it came.
      }
      throw new TernError(
        res.status === 503 ? "unavailable" : res.status === 400 ? "bad_request" : "internal",
        `scheduler at ${url}: ${what}: HTTP ${res.status}: ${message}`,
        { retriable: res.status === 503 },
      );
    }
    return JSON.parse(text) as T;
  }

  return {
    url,
    async listServers() {
      const body = await json<{ items: ServerSummary[] }>(await call("GET", "/v1/servers"), "list servers");
      return body.items;
    },
    async getModel(name) {
      const res = await call("GET", `/v1/models/${encodeURIComponent(name)}`);
      if (res.status === 404) {
        await res.body?.cancel();
        return undefined;
      }
      return json<ModelSummary>(res, `get model ${name}`);
    },
    async apply(yaml) {
      const body = await json<{ results: Array<{ kind: string; name: string; action: string }> }>(
        await call("POST", "/v1/apply", yaml),
        "apply",
      );
      return body.results;
    },
    async watch({ signal, idleTimeoutMs, onOpen, onEvent }) {
      const local = new AbortController();
      const abort = (): void => local.abort(signal.reason);
      signal.addEventListener("abort", abort, { once: true });
      let idle: NodeJS.Timeout | undefined;
      const touch = (): void => {
        clearTimeout(idle);
        idle = setTimeout(() => local.abort(new TernError("timeout", "watch stream idle")), idleTimeoutMs);
      };
      try {
        touch();
        let res: Response;
        try {
          res = await fetch(`${url}/v1/watch`, { headers, signal: local.signal });
        } catch (err) {
          throw new TernError("unavailable", `scheduler at ${url}: watch failed: ${causeText(err)}`, {
            cause: err,
            retriable: true,
          });
        }
        if (!res.ok || res.body === null) await json(res, "watch");
        onOpen();
        // Ends with the stream; an abort (ours or the caller's) rejects the pending read.
        await readSseStream(res.body as ReadableStream<Uint8Array>, {
          onChunk: touch,
          message: (message) => onEvent(toWatchEvent(message)),
        });
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof TernError) throw err;
        throw new TernError("unavailable", `scheduler at ${url}: watch stream broke: ${causeText(err)}`, {
          cause: err,
          retriable: true,
        });
      } finally {
        clearTimeout(idle);
        signal.removeEventListener("abort", abort);
        local.abort();
      }
    },
  };
}

/** The kinds of change a watch event carries; an event whose data is not JSON touches no known kind. */
export function toWatchEvent({ event, id, data }: SseMessage): WatchEvent {
  let kinds: string[] = [];
  try {
    const parsed = JSON.parse(data) as { changes?: Array<{ kind?: unknown }> };
    kinds = (parsed.changes ?? []).map((c) => String(c.kind));
  } catch {
    // A payload we cannot read still counts as "something changed".
  }
  return id === undefined ? { event, kinds } : { event, id, kinds };
}

function causeText(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (err instanceof Error ? err.message : String(err));
}
