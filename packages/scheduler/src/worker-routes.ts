import {
  checkWorkerPath,
  TernError,
  type WorkerAssignments,
  type WorkerKind,
  type WorkerReport,
  workerRegistrationSchema,
  workerReportSchema,
} from "@tern/core";
import { type Context, Hono } from "hono";
import type { Scheduler } from "./scheduler.js";
import { streamAssignments } from "./sse-pump.js";

/** What the worker routes need from the control app that mounts them (at `/v1/workers`). */
export interface WorkerRoutesDeps {
  /** The active scheduler, or a thrown 503 naming the leader (the control app's own). */
  writer(c: Context): Promise<Scheduler>;
  /** Interval of `: heartbeat` comments on idle streams. @default 15000 */
  streamHeartbeatMs?: number;
}

/**
 * The data-plane workers' endpoints (`worker-protocol.ts` in core): register, heartbeat, the assignments stream,
 * view, leave, and the per-kind status `tern list modelgateways` shows. Mounted by the control app, whose middleware
 * (auth, body limit) and error mapping apply. Worker state lives in the active scheduler's memory (heartbeats) and
 * its stored state; a standby answers 503 naming the leader.
 */
export function createWorkerRoutes(deps: WorkerRoutesDeps): Hono {
  const heartbeatMs = deps.streamHeartbeatMs ?? 15_000;
  const app = new Hono();

  app.post("/", async (c) => {
    const text = await c.req.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new TernError("bad_request", "the body must be JSON");
    }
    const parsed = workerRegistrationSchema.safeParse(body);
    if (!parsed.success) {
      const lines = parsed.error.issues.map((i) => `${i.path.join(".") || "(body)"}: ${i.message}`);
      throw new TernError("bad_request", `invalid worker registration: ${lines.join("; ")}`);
    }
    const scheduler = await deps.writer(c);
    return c.json(await scheduler.workers.register(parsed.data));
  });

  app.get("/:kind", async (c) => {
    const kind = kindOf(c.req.param("kind"));
    const scheduler = await deps.writer(c);
    return c.json(scheduler.workers.status(kind));
  });

  // The body is empty (model gateways, older workers) or a WorkerReport: what a dataflow worker runs now.
  app.post("/:kind/:id/heartbeat", async (c) => {
    const { kind, id } = pathOf(c);
    const text = await c.req.text();
    let report: WorkerReport | undefined;
    if (text.trim() !== "") {
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        throw new TernError("bad_request", "the heartbeat body must be empty or a JSON worker report");
      }
      const parsed = workerReportSchema.safeParse(body);
      if (!parsed.success) {
        const lines = parsed.error.issues.map((i) => `${i.path.join(".") || "(body)"}: ${i.message}`);
        throw new TernError("bad_request", `invalid worker report: ${lines.join("; ")}`);
      }
      report = parsed.data;
    }
    const scheduler = await deps.writer(c);
    const known =
      report === undefined ? scheduler.workers.heartbeat(kind, id) : await scheduler.workers.report(kind, id, report);
    if (!known) throw unknownWorker(kind, id);
    return c.body(null, 204);
  });

  app.get("/:kind/:id/assignments", async (c) => {
    const { kind, id } = pathOf(c);
    const scheduler = await deps.writer(c);
    if (scheduler.workers.view(kind, id) === undefined) throw unknownWorker(kind, id);
    return streamAssignments<WorkerAssignments>(c, heartbeatMs, (listener) =>
      scheduler.workers.watch(kind, id, listener),
    );
  });

  app.get("/:kind/:id", async (c) => {
    const { kind, id } = pathOf(c);
    const scheduler = await deps.writer(c);
    const view = scheduler.workers.view(kind, id);
    if (view === undefined) throw unknownWorker(kind, id);
    return c.json(view);
  });

  app.delete("/:kind/:id", async (c) => {
    const { kind, id } = pathOf(c);
    const scheduler = await deps.writer(c);
    await scheduler.workers.remove(kind, id);
    return c.body(null, 204);
  });

  return app;
}

function kindOf(kind: string): WorkerKind {
  const problem = checkWorkerPath(kind, "x");
  if (problem !== undefined) throw new TernError("bad_request", problem);
  return kind as WorkerKind;
}

function pathOf(c: Context): { kind: WorkerKind; id: string } {
  const kind = c.req.param("kind") ?? "";
  const id = c.req.param("id") ?? "";
  const problem = checkWorkerPath(kind, id);
  if (problem !== undefined) throw new TernError("bad_request", problem);
  return { kind: kind as WorkerKind, id };
}

function unknownWorker(kind: string, id: string): TernError {
  return new TernError("not_found", `unknown worker ${kind}/${id}: register again`);
}
