import { createHash, timingSafeEqual } from "node:crypto";
import {
  type AgentAssignments,
  type AgentEvent,
  type AgentHeartbeat,
  type AgentRegistration,
  agentEventSchema,
  agentHeartbeatSchema,
  agentRegistrationSchema,
  type LeaseState,
  parseManifestsOrThrow,
  type StateStore,
  TernError,
} from "@tern/core";
import { type Context, Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import { streamSSE } from "hono/streaming";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { Logger } from "pino";
import type { z } from "zod";
import { loadState } from "./persistence.js";
import type { Scheduler, WatchEvent } from "./scheduler.js";
import { createSsePump, streamAssignments } from "./sse-pump.js";
import { listStatuses, parseKind, pipelineSpecView, resourceStatus } from "./views.js";
import { createWorkerRoutes } from "./worker-routes.js";

/** What the control API needs. Routes never read `process.env`. */
export interface ControlAppDeps {
  /** The active scheduler, or undefined while this process stands by (then writes answer 503). */
  active(): Scheduler | undefined;
  /** The state store: a standby serves reads from it. */
  store: StateStore;
  /** Name of the leader lease, to say who leads in 503 answers. */
  leaseName: string;
  /** When set, every `/v1` request needs `Authorization: Bearer <token>`. */
  token?: string;
  logger: Logger;
  /** Interval of `: heartbeat` comments on idle streams. @default 15000 */
  streamHeartbeatMs?: number;
  /** Largest accepted request body. @default 4 MiB */
  maxBodyBytes?: number;
}

/**
 * The scheduler's control API (DESIGN §4): apply/delete/get/list for each kind, status, the route table, a watch
 * stream of every change with its revision, and the agent endpoints of `agent-protocol.ts`. Errors are
 * `{"error": "..."}`, mapped from error codes in one place.
 */
export function createControlApp(deps: ControlAppDeps): Hono {
  const { logger } = deps;
  const heartbeatMs = deps.streamHeartbeatMs ?? 15_000;
  const tokenDigest = deps.token === undefined ? undefined : sha256(deps.token);
  const app = new Hono();

  app.onError((err, c) => {
    if (err instanceof HTTPException) return err.res ? err.getResponse() : c.json({ error: err.message }, err.status);
    const code = (err as { code?: unknown }).code;
    const status = statusFor(code);
    if (status === 500) {
      logger.error({ err }, "control API request failed");
      return c.json({ error: "internal error" }, 500);
    }
    const body: Record<string, unknown> = { error: err.message };
    const problems = (err as { problems?: unknown }).problems;
    if (code === "manifest.invalid" && Array.isArray(problems)) body.problems = problems;
    return c.json(body, status);
  });
  app.notFound((c) => c.json({ error: `no route for ${c.req.method} ${c.req.path}` }, 404));

  // Unauthenticated liveness for probes: says nothing about the state.
  app.get("/healthz", (c) => c.json({ status: "ok", active: deps.active() !== undefined }));

  // Browsers put Origin on every request but same-origin GETs (and on every POST, even a bodyless no-cors one such as
  // a drain); our clients never send it. No page may drive the control API, whatever it sends.
  app.use("/v1/*", async (c, next) => {
    if (c.req.header("origin") !== undefined) {
      return c.json({ error: "the control API is not for browsers: requests carrying Origin are refused" }, 403);
    }
    await next();
  });
  app.use("/v1/*", async (c, next) => {
    if (tokenDigest !== undefined && !validBearer(c.req.header("authorization"), tokenDigest)) {
      c.header("WWW-Authenticate", 'Bearer realm="tern-scheduler"');
      return c.json({ error: "missing or wrong bearer token (set TERN_SCHEDULER_TOKEN)" }, 401);
    }
    await next();
  });
  app.use(
    "/v1/*",
    bodyLimit({
      maxSize: deps.maxBodyBytes ?? 4 * 1024 * 1024,
      onError: (c) => c.json({ error: "request body too large" }, 413),
    }),
  );

  // Bodies must name a type a web page cannot send without a CORS preflight (text/plain, forms are what it can send),
  // so no page the operator visits can change a scheduler that listens on loopback without a token.
  app.on(["POST", "PUT", "PATCH", "DELETE"], "/v1/*", async (c, next) => {
    const accepted = c.req.path === "/v1/apply" ? MANIFEST_TYPES : JSON_TYPES;
    const type = c.req.header("content-type");
    if (type === undefined ? await hasBody(c) : !accepted.includes(mediaType(type))) {
      const named = type === undefined ? "a body without content type" : `content type ${JSON.stringify(type)}`;
      return c.json(
        { error: `${c.req.method} ${c.req.path} takes ${accepted.slice(0, 2).join(" or ")}: ${named} is refused` },
        415,
      );
    }
    await next();
  });

  /** The active scheduler, or a 503 naming the leader. */
  async function writer(c: Context): Promise<Scheduler> {
    const active = deps.active();
    if (active !== undefined) return active;
    const lease = await deps.store.readLease(deps.leaseName).catch(() => undefined);
    throw new HTTPException(503, {
      res: c.json({ error: "not the active scheduler", leader: leaderInfo(lease) }, 503),
    });
  }

  app.get("/v1/status", async (c) => {
    const active = deps.active();
    const lease = await deps.store.readLease(deps.leaseName).catch(() => undefined);
    const revision = active?.revision ?? (await loadState(deps.store)).revision;
    return c.json({ active: active !== undefined, leader: leaderInfo(lease), revision });
  });

  app.post("/v1/apply", async (c) => {
    const text = await c.req.text();
    if (text.trim() === "") throw new TernError("bad_request", "the body holds no manifest (send YAML or JSON)");
    const resources = parseManifestsOrThrow(text);
    if (resources.length === 0) throw new TernError("bad_request", "the body holds no manifest (send YAML or JSON)");
    const scheduler = await writer(c);
    const results = await scheduler.apply(resources);
    return c.json({ results, revision: scheduler.revision });
  });

  app.get("/v1/routes", async (c) => {
    const active = deps.active();
    if (active !== undefined) return c.json(active.routes());
    const loaded = await loadState(deps.store);
    return c.json(loaded.routes ?? { revision: loaded.revision, models: {}, pipelines: {}, experiments: {} });
  });

  app.get("/v1/watch", async (c) => {
    const scheduler = await writer(c);
    const raw = c.req.query("fromRevision");
    let from: number | undefined;
    if (raw !== undefined && raw !== "") {
      from = Number(raw);
      if (!Number.isSafeInteger(from) || from < 0) {
        throw new TernError("bad_request", `fromRevision must be a non-negative integer (got ${JSON.stringify(raw)})`);
      }
    }
    return streamSSE(c, async (stream) => {
      const pump = createSsePump<WatchEvent>(stream, heartbeatMs);
      const sub = scheduler.watch(from, { event: pump.push, close: pump.end });
      stream.onAbort(() => {
        sub.unsubscribe();
        pump.end();
      });
      if (sub.reset) {
        await stream.writeSSE({
          event: "reset",
          id: String(sub.revision),
          data: JSON.stringify({
            revision: sub.revision,
            reason: `revision ${from} is outside the kept history: list again, then watch from ${sub.revision}`,
          }),
        });
      }
      await pump.run((e) => stream.writeSSE({ event: "change", id: String(e.revision), data: JSON.stringify(e) }));
      sub.unsubscribe();
    });
  });

  // --- agents (agent-protocol.ts) ---

  app.post("/v1/agents", async (c) => {
    const body = parseBody(agentRegistrationSchema, await jsonBody(c), "agent registration");
    const scheduler = await writer(c);
    return c.json(await scheduler.registerAgent(body as AgentRegistration));
  });

  app.post("/v1/agents/:server/:replica/heartbeat", async (c) => {
    const { server, replica } = agentPath(c);
    // The body (per-model traffic for autoscaling, the runtime process's memory) is optional: a bare heartbeat says
    // only "alive".
    const text = await c.req.text();
    const traffic =
      text.trim() === ""
        ? undefined
        : (parseBody(agentHeartbeatSchema, parseJson(text), "heartbeat") as AgentHeartbeat);
    const scheduler = await writer(c);
    if (!scheduler.heartbeat(server, replica, traffic)) throw unknownAgent(server, replica);
    if (traffic?.processBytes !== undefined) {
      await scheduler.reportProcessMemory(server, replica, traffic.processBytes);
    }
    return c.body(null, 204);
  });

  app.get("/v1/agents/:server/:replica/assignments", async (c) => {
    const { server, replica } = agentPath(c);
    const scheduler = await writer(c);
    if (scheduler.agentView(server, replica) === undefined) throw unknownAgent(server, replica);
    return streamAssignments<AgentAssignments>(c, heartbeatMs, (listener) =>
      scheduler.watchAssignments(server, replica, listener),
    );
  });

  app.post("/v1/agents/:server/:replica/events", async (c) => {
    const { server, replica } = agentPath(c);
    const body = parseBody(agentEventSchema, await jsonBody(c), "agent event");
    const scheduler = await writer(c);
    await scheduler.reportEvent(server, replica, body as AgentEvent);
    return c.body(null, 204);
  });

  app.post("/v1/agents/:server/:replica/drain", async (c) => {
    const { server, replica } = agentPath(c);
    const scheduler = await writer(c);
    await scheduler.drainAgent(server, replica);
    return c.json({ draining: true }, 202);
  });

  app.get("/v1/agents/:server/:replica", async (c) => {
    const { server, replica } = agentPath(c);
    const scheduler = await writer(c);
    const view = scheduler.agentView(server, replica);
    if (view === undefined) throw unknownAgent(server, replica);
    return c.json(view);
  });

  app.delete("/v1/agents/:server/:replica", async (c) => {
    const { server, replica } = agentPath(c);
    const scheduler = await writer(c);
    await scheduler.removeAgent(server, replica);
    return c.body(null, 204);
  });

  app.route("/v1/workers", createWorkerRoutes({ writer, streamHeartbeatMs: heartbeatMs }));

  // --- resources ---

  app.get("/v1/:kind", async (c) => {
    const kind = parseKind(c.req.param("kind"));
    const active = deps.active();
    const items = active !== undefined ? active.list(kind) : listStatuses((await loadState(deps.store)).state, kind);
    return c.json({ items });
  });

  // A gateway got a request for a model scaled to zero: it asks for one replica, then waits for the route.
  // Idempotent: any number of calls while the model wants replicas change nothing (docs/autoscaling.md).
  app.post("/v1/models/:name/activate", async (c) => {
    const scheduler = await writer(c);
    const result = await scheduler.activateModel(c.req.param("name"));
    return c.json(result, result.activated ? 202 : 200);
  });

  // A dataflow worker fetches the spec of a pipeline it owns when its assignment names a new version.
  app.get("/v1/pipelines/:name/spec", async (c) => {
    const name = c.req.param("name");
    const active = deps.active();
    const state = active !== undefined ? active.snapshot() : (await loadState(deps.store)).state;
    const view = pipelineSpecView(state, name);
    if (view === undefined) throw new TernError("not_found", `Pipeline ${name} not found`);
    return c.json(view);
  });

  app.get("/v1/:kind/:name", async (c) => {
    const kind = parseKind(c.req.param("kind"));
    const name = c.req.param("name");
    const active = deps.active();
    const status =
      active !== undefined ? active.get(kind, name) : resourceStatus((await loadState(deps.store)).state, kind, name);
    if (status === undefined) throw new TernError("not_found", `${kind} ${name} not found`);
    return c.json(status);
  });

  app.delete("/v1/:kind/:name", async (c) => {
    const kind = parseKind(c.req.param("kind"));
    const name = c.req.param("name");
    const scheduler = await writer(c);
    await scheduler.remove(kind, name);
    return c.json({ kind, name, deleted: true, revision: scheduler.revision });
  });

  return app;
}

function statusFor(code: unknown): ContentfulStatusCode {
  switch (code) {
    case "manifest.invalid":
    case "manifest.parse":
    case "bad_request":
    case "config.invalid":
      return 400;
    case "not_found":
      return 404;
    case "conflict":
      return 409;
    case "unavailable":
    case "lease.lost":
      return 503;
    case "timeout":
      return 504;
    case "unsupported":
      return 422;
    default:
      return 500;
  }
}

/** Body types of `/v1/apply` (YAML is a superset of JSON); the first two are named in 415 answers. */
const MANIFEST_TYPES = ["application/json", "application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"];
/** Body types of every other route. */
const JSON_TYPES = ["application/json"];

/** `Application/JSON; charset=utf-8` → `application/json`. */
function mediaType(header: string): string {
  return header.split(";", 1)[0]!.trim().toLowerCase();
}

/** Whether the request carries body bytes; reads the body only when no header says (it stays readable). */
async function hasBody(c: Context): Promise<boolean> {
  const length = c.req.header("content-length");
  if (length !== undefined) return Number(length.trim()) !== 0;
  if (c.req.header("transfer-encoding") !== undefined) return true;
  if (c.req.raw.body === null) return false;
  return (await c.req.arrayBuffer()).byteLength > 0;
}

function leaderInfo(lease: LeaseState | undefined): { holder: string; expiresAt: number } | null {
  if (lease === undefined || lease.expiresAt < Date.now()) return null;
  return { holder: lease.holder, expiresAt: lease.expiresAt };
}

/**
 * Compares SHA-256 digests, not the tokens: timingSafeEqual needs equal lengths, and returning early on a length
 * mismatch would tell a caller timing the answers how long the token is.
 */
function validBearer(header: string | undefined, expectedDigest: Buffer): boolean {
  if (header === undefined) return false;
  const match = /^Bearer\s+(.+)$/i.exec(header.trim());
  if (match === null) return false;
  return timingSafeEqual(sha256(match[1]!), expectedDigest);
}

function sha256(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}

async function jsonBody(c: Context): Promise<unknown> {
  return parseJson(await c.req.text());
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new TernError("bad_request", "the body must be JSON");
  }
}

function parseBody<S extends z.ZodType>(schema: S, body: unknown, what: string): z.infer<S> {
  const result = schema.safeParse(body);
  if (result.success) return result.data;
  const lines = result.error.issues.map((i) => `${i.path.join(".") || "(body)"}: ${i.message}`);
  throw new TernError("bad_request", `invalid ${what}: ${lines.join("; ")}`);
}

function agentPath(c: Context): { server: string; replica: number } {
  const server = c.req.param("server") ?? "";
  const raw = c.req.param("replica") ?? "";
  const replica = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(replica)) {
    throw new TernError("bad_request", `replica must be a non-negative integer (got ${JSON.stringify(raw)})`);
  }
  return { server, replica };
}

function unknownAgent(server: string, replica: number): TernError {
  return new TernError("not_found", `unknown agent ${server}/${replica}: register again`);
}
