import { type ResourceKind, TernError, type WorkerKind, type WorkerKindStatus } from "@tern/core";

/**
 * A small client of the scheduler's control API for the CLI: every call has a deadline, errors carry the API's
 * `{"error"}` message and a stable code, and an unreachable scheduler says where it was looked for.
 */

/** Options of {@link createSchedulerClient}. */
export interface SchedulerClientOptions {
  /** @default "http://127.0.0.1:9004" */
  url?: string;
  /** Sent as `Authorization: Bearer <token>`. */
  token?: string;
  /** Deadline of each request. @default 10000 */
  timeoutMs?: number;
  /** Injected for tests. @default globalThis.fetch */
  fetch?: typeof fetch;
}

/** The error of a failed call: `code` is a TernError code, `status` the HTTP status when there was an answer. */
export class SchedulerClientError extends TernError {
  readonly status: number | undefined;
  readonly body: unknown;

  constructor(code: ConstructorParameters<typeof TernError>[0], message: string, status?: number, body?: unknown) {
    super(code, message, { retriable: code === "unavailable" || code === "timeout" });
    this.name = "SchedulerClientError";
    this.status = status;
    this.body = body;
  }
}

export interface ApplyResponse {
  results: { kind: ResourceKind; name: string; action: string; version?: number }[];
  revision: number;
}

export interface SchedulerClient {
  readonly url: string;
  apply(body: string): Promise<ApplyResponse>;
  remove(kind: ResourceKind, name: string): Promise<void>;
  list<T = Record<string, unknown>>(kind: ResourceKind): Promise<T[]>;
  /** Undefined when the resource does not exist. */
  get<T = Record<string, unknown>>(kind: ResourceKind, name: string): Promise<T | undefined>;
  status(): Promise<{ active: boolean; revision: number; leader: { holder: string } | null }>;
  /** The registered workers of a kind; for model gateways also every bucket. */
  workers(kind: WorkerKind): Promise<WorkerKindStatus>;
}

export const DEFAULT_SCHEDULER_URL = "http://127.0.0.1:9004";

/** The URL path segment of each kind. */
export const KIND_PATHS: Readonly<Record<ResourceKind, string>> = {
  Model: "models",
  Server: "servers",
  Pipeline: "pipelines",
  Experiment: "experiments",
};

const KIND_ALIASES: Readonly<Record<string, ResourceKind>> = {
  model: "Model",
  models: "Model",
  server: "Server",
  servers: "Server",
  pipeline: "Pipeline",
  pipelines: "Pipeline",
  experiment: "Experiment",
  experiments: "Experiment",
};

/** `model`, `models`, `Model` (any case) → `Model`; undefined for anything else. */
export function parseKindArg(text: string): ResourceKind | undefined {
  return KIND_ALIASES[text.toLowerCase()];
}

/** Where the CLI finds the scheduler: TERN_SCHEDULER_URL and TERN_SCHEDULER_TOKEN. */
export function clientFromEnv(
  env: Record<string, string | undefined>,
  options: SchedulerClientOptions = {},
): SchedulerClient {
  const url =
    env.TERN_SCHEDULER_URL !== undefined && env.TERN_SCHEDULER_URL !== "" ? env.TERN_SCHEDULER_URL : undefined;
  const token =
    env.TERN_SCHEDULER_TOKEN !== undefined && env.TERN_SCHEDULER_TOKEN !== "" ? env.TERN_SCHEDULER_TOKEN : undefined;
  return createSchedulerClient({
    ...options,
    ...(url === undefined ? {} : { url }),
    ...(token === undefined ? {} : { token }),
  });
}

export function createSchedulerClient(options: SchedulerClientOptions = {}): SchedulerClient {
  const url = (options.url ?? DEFAULT_SCHEDULER_URL).replace(/\/+$/, "");
  const timeoutMs = options.timeoutMs ?? 10_000;
  const doFetch = options.fetch ?? globalThis.fetch;

  async function call(method: string, path: string, body?: string): Promise<{ status: number; json: unknown }> {
    const headers: Record<string, string> = {};
    if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
    if (body !== undefined) headers["content-type"] = "application/yaml";
    let res: Response;
    try {
      res = await doFetch(`${url}${path}`, {
        method,
        headers,
        ...(body === undefined ? {} : { body }),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      const name = (err as { name?: unknown }).name;
      if (name === "TimeoutError" || name === "AbortError") {
        throw new SchedulerClientError("timeout", `the scheduler at ${url} did not answer within ${timeoutMs} ms`);
      }
      throw new SchedulerClientError(
        "unavailable",
        `cannot reach the scheduler at ${url} (is it running? set TERN_SCHEDULER_URL to point elsewhere)`,
      );
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = text === "" ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (res.status >= 400) {
      const message = (json as { error?: unknown } | undefined)?.error;
      const detail = typeof message === "string" ? message : `HTTP ${res.status}`;
      throw new SchedulerClientError(codeFor(res.status), detail, res.status, json);
    }
    return { status: res.status, json };
  }

  return {
    url,
    async apply(body) {
      return (await call("POST", "/v1/apply", body)).json as ApplyResponse;
    },
    async remove(kind, name) {
      await call("DELETE", `/v1/${KIND_PATHS[kind]}/${encodeURIComponent(name)}`);
    },
    async list<T>(kind: ResourceKind) {
      return ((await call("GET", `/v1/${KIND_PATHS[kind]}`)).json as { items: T[] }).items;
    },
    async get<T>(kind: ResourceKind, name: string) {
      try {
        return (await call("GET", `/v1/${KIND_PATHS[kind]}/${encodeURIComponent(name)}`)).json as T;
      } catch (err) {
        if (err instanceof SchedulerClientError && err.status === 404) return undefined;
        throw err;
      }
    },
    async status() {
      return (await call("GET", "/v1/status")).json as {
        active: boolean;
        revision: number;
        leader: { holder: string } | null;
      };
    },
    async workers(kind) {
      return (await call("GET", `/v1/workers/${kind}`)).json as WorkerKindStatus;
    },
  };
}

function codeFor(status: number): ConstructorParameters<typeof TernError>[0] {
  if (status === 400 || status === 413) return "bad_request";
  if (status === 401 || status === 403) return "bad_request";
  if (status === 404) return "not_found";
  if (status === 409) return "conflict";
  if (status === 503) return "unavailable";
  if (status === 504) return "timeout";
  return "internal";
}
