import http from "node:http";
import type { AddressInfo } from "node:net";
import { REPLICA_MISS_HEADER, type ReplicaEndpoint } from "@tern/core";

/** A request the fake agent received. */
export interface SeenRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export interface FakeAgentOptions {
  /** Identifies the replica in answers. */
  id: string;
  /** Answers after this long (ms). */
  delayMs?: number;
  /** When set, infer requests wait until `release()` is called. */
  hold?: boolean;
  /**
   * Models this replica holds; model requests for any other get 404, marked with REPLICA_MISS_HEADER unless
   * `unmarkedMiss` (like an agent that just unloaded it). Absent: it holds every model.
   */
  holds?: string[];
  unmarkedMiss?: boolean;
  /** Infer requests get 503 with this error (like an agent whose MLServer is restarting). */
  unavailable?: string;
  /** Tensor lists of a model's metadata (`GET /v2/models/{m}`), by model; absent: no `inputs`/`outputs` fields. */
  metadata?: Record<string, { inputs: unknown[]; outputs: unknown[] }>;
}

/**
 * A real HTTP server acting as an OIP agent on an ephemeral loopback port: our test double of the agent. Infer echoes
 * which replica and model answered; a malformed JSON body gets 400 like a real agent; binary bodies are echoed back
 * with their Inference-Header-Content-Length.
 */
export interface FakeAgent {
  id: string;
  url: string;
  seen: SeenRequest[];
  /** Requests received but not answered yet. */
  pending(): number;
  release(): void;
  endpoint(version?: number): ReplicaEndpoint;
  close(): Promise<void>;
}

export async function startFakeAgent(options: FakeAgentOptions): Promise<FakeAgent> {
  const seen: SeenRequest[] = [];
  let held: Array<() => void> = [];
  let hold = options.hold ?? false;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const path = req.url ?? "/";
      seen.push({ method: req.method ?? "", path, headers: req.headers, body });
      const answer = () => respond(options, req, res, path, body);
      if (hold && path.endsWith("/infer")) held.push(answer);
      else if (options.delayMs) setTimeout(answer, options.delayMs);
      else answer();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;
  return {
    id: options.id,
    url,
    seen,
    pending: () => held.length,
    release() {
      hold = false;
      const waiting = held;
      held = [];
      for (const answer of waiting) answer();
    },
    endpoint: (version = 1) => ({
      server: "fake",
      replica: Number(options.id.replace(/\D/g, "")) || 0,
      version,
      http: url,
    }),
    async close() {
      for (const answer of held) answer();
      held = [];
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function respond(
  options: FakeAgentOptions,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  path: string,
  body: Buffer,
): void {
  const id = options.id;
  const match = /^\/v2\/models\/([^/]+)(?:\/versions\/(\d+))?(\/ready|\/infer)?$/.exec(path);
  if (!match) {
    res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ error: `no route ${path}` }));
    return;
  }
  const [, model, version, op] = match;
  const json = (status: number, value: unknown, extra: Record<string, string> = {}) =>
    res.writeHead(status, { "content-type": "application/json", ...extra }).end(JSON.stringify(value));
  if (options.holds && !options.holds.includes(model!)) {
    const marker: Record<string, string> = options.unmarkedMiss ? {} : { [REPLICA_MISS_HEADER]: "1" };
    return void json(404, { error: `model ${model} is not loaded on this server replica` }, marker);
  }
  if (op === "/ready") return void json(200, { name: model, ready: true });
  if (op === "/infer" && options.unavailable) return void json(503, { error: options.unavailable });
  if (!op) {
    const tensors = options.metadata?.[model!] ?? {};
    return void json(200, { name: model, versions: [version ?? "1"], platform: "fake", agent: id, ...tensors });
  }
  const binaryLength = req.headers["inference-header-content-length"];
  if (typeof binaryLength === "string") {
    res
      .writeHead(200, {
        "content-type": "application/octet-stream",
        "inference-header-content-length": binaryLength,
        "x-agent": id,
      })
      .end(body);
    return;
  }
  try {
    const parsed = JSON.parse(body.toString("utf8")) as { id?: string };
    json(200, { model_name: model, model_version: version, agent: id, id: parsed.id, outputs: [] });
  } catch {
    json(400, { error: `agent ${id}: request body is not valid JSON` });
  }
}

/** A loopback port with nothing listening (connections are refused). */
export async function refusedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Polls `check` until it is true or `timeoutMs` passes (then throws). */
export async function waitFor(check: () => boolean, timeoutMs = 5000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
