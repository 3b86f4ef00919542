import { randomUUID } from "node:crypto";
import {
  INFERENCE_HEADER_CONTENT_LENGTH,
  PIPELINE_REQUEST_ID_HEADER,
  REPLICA_MISS_HEADER,
  REQUEST_ID_HEADER,
  type ReplicaEndpoint,
  type RouteTable,
  SELDON_MODEL_HEADER,
  SELDON_ROUTE_HEADER,
} from "@tern/core";
import { type Context, Hono } from "hono";
import type { Logger } from "pino";
import type { ApiKeyCheck } from "./api-keys.js";
import { type Balancer, createBalancer } from "./balancer.js";
import { codeOf, GatewayError, httpStatusOf, UpstreamError } from "./errors.js";
import { type GatewayMetrics, noopMetrics } from "./metrics.js";
import { isAsleep, type ModelWaker } from "./model-waker.js";
import type { PipelineFront } from "./pipeline-front.js";
import { httpStatusForErrorRecord, pipelineRequestFromRest, pipelineResponseRest } from "./pipeline-json.js";
import { type ModelTensorLists, readPipelineMetadata, stepMetadataUnavailable } from "./pipeline-metadata.js";
import { type MirrorSlots, mirrorPipeline } from "./pipeline-mirror.js";
import type { RouteSource } from "./route-source.js";
import {
  chosenPipeline,
  isPipelineExperiment,
  isServedPipeline,
  parseSeldonModelHeader,
  type RouteDecision,
  resolveModelDirect,
  resolvePipelineRoute,
  resolveRoute,
  servedPipeline,
  type Target,
} from "./routing.js";
import type { Upstream, UpstreamRequest, UpstreamResponse } from "./upstream.js";

/** Behaviour switches of the app; parsed from the environment by `config.ts` at the entry. */
export interface AppConfig {
  /** Every request ends by then: 504 when the agent has not answered. @default 60000 */
  deadlineMs?: number;
  /** Larger request bodies get 413. @default 10485760 (10 MiB) */
  bodyLimitBytes?: number;
  /** Reject malformed JSON bodies at the gateway (400) instead of letting the agent answer. @default false */
  validateJson?: boolean;
  /** Mirror copies in flight at once; more are dropped, never queued. @default 64 */
  maxMirrorsInFlight?: number;
  /** Name reported by `GET /v2`. @default "tern-gateway" */
  serverName?: string;
  /** A pipeline request ends by then: 504 naming its request id. @default deadlineMs */
  pipelineDeadlineMs?: number;
}

export interface AppDeps {
  routes: RouteSource;
  upstream: Upstream;
  logger: Logger;
  config?: AppConfig;
  /** When set, every route but the health checks requires a valid API key. */
  apiKeys?: ApiKeyCheck;
  metrics?: GatewayMetrics;
  /** Uniform in [0, 1); experiments draw from it. @default Math.random */
  random?: () => number;
  /** Milliseconds, monotonic; for latency metrics. @default performance.now */
  now?: () => number;
  /** Node entry only: serves `GET /metrics` (Prometheus text). */
  metricsText?: () => Promise<{ contentType: string; body: string }>;
  balancer?: Balancer;
  /**
   * Node entry with Kafka only: serves `POST /v2/pipelines/{p}/infer` (REST JSON or binary tensors) over the pipeline's topics. Without
   * it pipelines answer 503.
   */
  pipelines?: PipelineFront;
  /** Wakes a model scaled to zero when a request for it arrives (Node entry; Lambda: see lambda-app.ts). Without it: 503. */
  waker?: ModelWaker;
}

/** Request headers passed to agents; `authorization` never is (keys are the gateway's, not the agent's). */
const FORWARD_REQUEST_HEADERS = [
  "content-type",
  "accept",
  "inference-header-content-length",
  REQUEST_ID_HEADER,
  "traceparent",
];
/** Response headers passed back; hop-by-hop and length headers are the server's own business. */
const FORWARD_RESPONSE_HEADERS = ["content-type", "inference-header-content-length", REQUEST_ID_HEADER];

type Op = "infer" | "ready" | "metadata";
type PipelineTarget = Extract<Target, { kind: "pipeline" | "experiment" }>;

/**
 * The gateway as one Hono app: OIP REST in, agents' OIP REST out. Entries (`server.ts`, `lambda.ts`) only build its
 * dependencies; nothing here reads the environment.
 */
export function createApp(deps: AppDeps): Hono {
  const config = deps.config ?? {};
  const deadlineMs = config.deadlineMs ?? 60_000;
  const bodyLimit = config.bodyLimitBytes ?? 10 * 1024 * 1024;
  const validateJson = config.validateJson ?? false;
  const maxMirrors = config.maxMirrorsInFlight ?? 64;
  const serverName = config.serverName ?? "tern-gateway";
  const pipelineDeadlineMs = config.pipelineDeadlineMs ?? deadlineMs;
  const metrics = deps.metrics ?? noopMetrics;
  const random = deps.random ?? Math.random;
  const now = deps.now ?? (() => performance.now());
  const balancer = deps.balancer ?? createBalancer();
  const { upstream, logger, routes } = deps;
  const mirrors: MirrorSlots = { inFlight: 0, max: maxMirrors };

  const app = new Hono();

  app.onError((err, c) => {
    const status = httpStatusOf(err);
    if (status >= 500 && codeOf(err) === undefined) {
      logger.error({ err, path: c.req.path }, "unexpected gateway error");
      return c.json({ error: "internal error" }, 500);
    }
    if (status === 401) c.header("www-authenticate", 'Bearer realm="tern"');
    return c.json({ error: err.message }, status as 400);
  });
  app.notFound((c) => c.json({ error: `no route for ${c.req.method} ${c.req.path}` }, 404));

  app.get("/v2/health/live", (c) => c.json({ live: true }));
  app.get("/v2/health/ready", async (c) => {
    const table = await tableOrUndefined();
    return table ? c.json({ ready: true }) : c.json({ ready: false, error: "gateway has no route table yet" }, 503);
  });
  if (deps.metricsText) {
    const metricsText = deps.metricsText;
    app.get("/metrics", async (c) => {
      const { contentType, body } = await metricsText();
      return c.body(body, 200, { "content-type": contentType });
    });
  }

  if (deps.apiKeys) {
    const check = deps.apiKeys;
    app.use("/v2/*", async (c, next) => {
      check(c.req.header("authorization"));
      await next();
    });
  }

  app.get("/v2", (c) => c.json({ name: serverName, version: "0.1.0", extensions: ["binary_tensor_data"] }));

  // Models. The seldon-model header, when present, routes instead of the path's name.
  for (const [suffix, op] of [
    ["", "metadata"],
    ["/ready", "ready"],
    ["/infer", "infer"],
  ] as const) {
    const method = op === "infer" ? "post" : "get";
    app[method](`/v2/models/:model${suffix}`, (c) => {
      const target = modelTarget(c, c.req.param("model"));
      return dispatch(c, target, op);
    });
    app[method](`/v2/models/:model/versions/:version${suffix}`, (c) => {
      const version = Number(c.req.param("version"));
      if (!Number.isSafeInteger(version) || version < 1) {
        throw new GatewayError(
          "bad_request",
          `model version ${JSON.stringify(c.req.param("version"))} is not a positive integer`,
        );
      }
      return forward(c, modelTarget(c, c.req.param("model"), version), op);
    });
    app[method](`/v2/pipelines/:pipeline${suffix}`, (c) => {
      const target = headerTarget(c) ?? { kind: "pipeline", name: c.req.param("pipeline") };
      return dispatch(c, target, op);
    });
  }

  return app;

  function headerTarget(c: Context): Target | undefined {
    return parseSeldonModelHeader(c.req.header(SELDON_MODEL_HEADER));
  }

  function modelTarget(c: Context, name: string, version?: number): Target {
    const header = headerTarget(c);
    if (header) return header.kind === "model" && version !== undefined ? { ...header, version } : header;
    return version === undefined ? { kind: "model", name } : { kind: "model", name, version };
  }

  async function tableOrUndefined() {
    try {
      return await routes.table();
    } catch (err) {
      logger.warn({ err }, "route source failed");
      return undefined;
    }
  }

  /** Pipelines, and experiments of pipelines, go to the pipeline routes; everything else to a model's replica. */
  async function dispatch(c: Context, target: Target, op: Op): Promise<Response> {
    if (target.kind === "pipeline") return pipelineOp(c, target, op);
    if (target.kind === "experiment") {
      // Which kind of experiment it is is in the table; a failing source is forward's to report.
      const pending = routes.table();
      const table = pending instanceof Promise ? await pending.catch(() => undefined) : pending;
      if (table && isPipelineExperiment(table, target)) return pipelineOp(c, target, op);
    }
    return forward(c, target, op);
  }

  function pipelineOp(c: Context, target: PipelineTarget, op: Op): Promise<Response> {
    if (op === "ready") return pipelineReady(c, target);
    if (op === "metadata") return pipelineMeta(c, target);
    if (deps.pipelines) return pipelineInfer(c, target, deps.pipelines);
    return forward(c, target, op);
  }

  /** The table, the pipeline that serves the request (an experiment may choose it) and its route. */
  async function pipelineRoute(c: Context, target: PipelineTarget, op: Op, deadline: number) {
    const pending = routes.table();
    const table = pending instanceof Promise ? await beforeDeadline(pending, deadline) : pending;
    if (!table) throw new GatewayError("unavailable", "gateway has no route table yet", { retriable: true });
    const decision = resolvePipelineRoute(table, target, {
      op,
      stickyRoute: c.req.header(SELDON_ROUTE_HEADER),
      random,
    });
    return { table, decision, route: chosenPipeline(table, decision) };
  }

  /**
   * `GET …/ready` of a pipeline: 200 while this gateway can serve it (it has a pipeline front, the pipeline is
   * PipelineReady or PipelineRebalancing); otherwise 424, as Seldon's pipeline gateway answers (the OIP says a 4xx).
   */
  async function pipelineReady(c: Context, target: PipelineTarget): Promise<Response> {
    const started = now();
    let status = 500;
    let label = "";
    try {
      const { route } = await pipelineRoute(c, target, "ready", Date.now() + deadlineMs);
      const pipeline = route.name;
      label = `${pipeline}.pipeline`;
      let reason: string | undefined;
      if (!deps.pipelines) reason = `pipeline ${pipeline} is not served by this gateway (it has no pipeline front)`;
      else if (!isServedPipeline(route)) {
        reason = `pipeline ${pipeline} is not ready (state ${route.state})`;
      }
      status = reason === undefined ? 200 : 424;
      return reason === undefined
        ? c.json({ name: pipeline, ready: true })
        : c.json({ name: pipeline, ready: false, error: reason }, 424);
    } catch (err) {
      status = httpStatusOf(err);
      throw err;
    } finally {
      metrics.request(label, "ready", status, (now() - started) / 1000);
    }
  }

  /**
   * `GET /v2/pipelines/{p}`: the pipeline's inputs and outputs, from its spec (the route's `io`) and its step models'
   * own metadata, read from a replica of each (in parallel, within the deadline). Answered in any pipeline state.
   */
  async function pipelineMeta(c: Context, target: PipelineTarget): Promise<Response> {
    const started = now();
    const deadline = Date.now() + deadlineMs;
    let status = 500;
    let label = "";
    try {
      const { table, route } = await pipelineRoute(c, target, "metadata", deadline);
      label = `${route.name}.pipeline`;
      const metadata = await readPipelineMetadata(route, (model) => modelMetadata(table, route.name, model, deadline));
      status = 200;
      return c.json(metadata);
    } catch (err) {
      status = httpStatusOf(err);
      throw err;
    } finally {
      metrics.request(label, "metadata", status, (now() - started) / 1000);
    }
  }

  /** A step model's OIP metadata for a pipeline's; any failure is the pipeline's 503 naming the model. */
  async function modelMetadata(
    table: RouteTable,
    pipeline: string,
    model: string,
    deadline: number,
  ): Promise<ModelTensorLists> {
    const fail = (why: string, cause?: unknown) => stepMetadataUnavailable(pipeline, model, why, cause);
    let res: UpstreamResponse;
    try {
      const decision = resolveModelDirect(table, model);
      res = await callWithRetry(
        decision,
        table,
        upstreamPath(decision, "metadata"),
        { accept: "application/json" },
        undefined,
        "GET",
        deadline,
      );
    } catch (err) {
      if (codeOf(err) === "timeout") throw err;
      throw fail(
        err instanceof GatewayError && err.code === "not_found" ? "it is not deployed" : "no replica answered",
        err,
      );
    }
    if (res.status !== 200) throw fail(`its replica answered ${res.status}`);
    try {
      const parsed = JSON.parse(Buffer.from(res.body).toString("utf8")) as ModelTensorLists;
      return {
        inputs: Array.isArray(parsed.inputs) ? parsed.inputs : [],
        outputs: Array.isArray(parsed.outputs) ? parsed.outputs : [],
      };
    } catch (err) {
      throw fail("its replica's answer is not JSON", err);
    }
  }

  /**
   * A pipeline request over Kafka: the gateway makes the request id (the caller's `x-request-id` travels as a header
   * and comes back, never as the key), produces the request and waits for the answer until the pipeline deadline.
   */
  async function pipelineInfer(c: Context, target: PipelineTarget, front: PipelineFront): Promise<Response> {
    const started = now();
    const deadline = Date.now() + pipelineDeadlineMs;
    let status = 500;
    let label = "";
    try {
      const body = await readBody(c.req.raw);
      const { table, decision, route } = await pipelineRoute(c, target, "infer", deadline);
      const pipeline = route.name;
      label = `${pipeline}.pipeline`;
      servedPipeline(route);
      const request = pipelineRequestFromRest(c.req.raw.headers, body);
      const requestId = randomUUID();
      const callerId = c.req.header(REQUEST_ID_HEADER);
      const carried = recordHeaders(c.req.raw.headers);
      if (decision.mirror) {
        mirrorPipeline(table, decision.mirror, request.inputs, carried, {
          front,
          slots: mirrors,
          metrics,
          logger,
          deadline,
        });
      }
      const reply = await front.infer(pipeline, request.inputs, { requestId, deadline, headers: carried });
      const headers = {
        [REQUEST_ID_HEADER]: callerId ?? requestId,
        [PIPELINE_REQUEST_ID_HEADER]: requestId,
        [SELDON_ROUTE_HEADER]: decision.route,
      };
      if (!reply.ok) {
        status = httpStatusForErrorRecord(reply.status);
        return c.json({ error: reply.message }, status as 400, headers);
      }
      status = 200;
      const answer = pipelineResponseRest(pipeline, requestId, reply.outputs, request);
      if (answer.kind === "json") return c.json(answer.json, 200, headers);
      return c.body(answer.body as Uint8Array<ArrayBuffer>, 200, {
        ...headers,
        "content-type": "application/octet-stream",
        [INFERENCE_HEADER_CONTENT_LENGTH]: String(answer.jsonLength),
      });
    } catch (err) {
      status = httpStatusOf(err);
      throw err;
    } finally {
      metrics.request(label, "infer", status, (now() - started) / 1000);
    }
  }

  async function forward(c: Context, target: Target, op: Op): Promise<Response> {
    const started = now();
    // One deadline for the whole request: the route table read (Lambda: DynamoDB) and both upstream attempts.
    const deadline = Date.now() + deadlineMs;
    let model = "";
    let status = 500;
    try {
      // The body is checked before routing so that a too-large or malformed body gets the same answer for any model.
      const body = op === "infer" ? await readBody(c.req.raw) : undefined;
      if (body && validateJson) checkJson(c.req.raw.headers, body);
      const pending = routes.table();
      // Most sources answer synchronously; awaiting a plain value would still cost a turn of the microtask queue.
      let table = pending instanceof Promise ? await beforeDeadline(pending, deadline) : pending;
      if (!table) throw new GatewayError("unavailable", "gateway has no route table yet", { retriable: true });
      // A model scaled to zero is woken and the request waits for it (docs/autoscaling.md); a ready probe is answered
      // as the model is (not ready), as gRPC ModelReady is: probing must not load it.
      if (deps.waker && op !== "ready" && target.kind === "model" && isAsleep(table, target.name)) {
        table = await deps.waker.wake(target.name, routes, deadline);
      }
      const decision = resolveRoute(table, target, { op, stickyRoute: c.req.header(SELDON_ROUTE_HEADER), random });
      model = decision.model;
      const headers = forwardHeaders(c.req.raw.headers);
      const path = upstreamPath(decision, op);
      if (decision.mirror && body) mirror(decision.mirror.model, decision.mirror.endpoints, path, headers, body);
      const method = op === "infer" ? "POST" : "GET";
      const res = await callWithRetry(decision, table, path, headers, body, method, deadline);
      status = res.status;
      return toResponse(res, decision.route);
    } catch (err) {
      status = httpStatusOf(err);
      throw err;
    } finally {
      metrics.request(model, op, status, (now() - started) / 1000);
    }
  }

  async function callWithRetry(
    decision: RouteDecision,
    table: RouteTable,
    path: string,
    headers: Record<string, string>,
    body: Uint8Array | undefined,
    method: "GET" | "POST",
    deadline: number,
  ): Promise<UpstreamResponse> {
    // One deadline for both attempts; each call's timer gets what is left of it.
    const first = balancer.pick(decision.model, decision.endpoints)!;
    try {
      let res: UpstreamResponse;
      try {
        res = await callOne(first, decision.model, path, headers, body, method, deadline);
      } catch (err) {
        if (!(err instanceof UpstreamError) || !err.connectFailed) throw err;
        const second = balancer.pick(decision.model, decision.endpoints, first);
        if (!second) throw err;
        logger.debug({ model: decision.model, failed: first.http, retry: second.http }, "retrying on another replica");
        return await callOne(second, decision.model, path, headers, body, method, deadline);
      }
      // The replica no longer holds the model (scaled down, or an old version unloaded) and our route table has not
      // caught up yet: the request never ran, so another replica may take it. A 503 is the agent saying it cannot
      // serve the model right now (its MLServer died or is reloading the model): another replica may take it too,
      // as an UNAVAILABLE is retried over gRPC.
      const miss = res.status === 404 && res.headers[REPLICA_MISS_HEADER] !== undefined;
      if (miss || res.status === 503) {
        const second = balancer.pick(decision.model, decision.endpoints, first);
        if (second) {
          metrics.upstreamError(decision.model, miss ? "replica_miss" : "unavailable");
          logger.debug(
            { model: decision.model, failed: first.http, status: res.status, retry: second.http },
            miss ? "replica no longer holds the model" : "replica unavailable",
          );
          return await callOne(second, decision.model, path, headers, body, method, deadline);
        }
        // The last listed replica just unloaded it: an autoscaled model going to zero under this request (the
        // scale-down race). Once the route table shows that, the model is woken and the request tried once more.
        if (deps.waker && method === "POST") {
          const next = await deps.waker.afterMiss(decision.model, table.models[decision.model], routes, deadline);
          const retry = next && retryEndpoint(next, decision);
          if (retry) {
            metrics.upstreamError(decision.model, "replica_miss");
            logger.debug(
              { model: decision.model, missed: first.http, retry: retry.http },
              "replica miss on the last replica",
            );
            return await callOne(retry, decision.model, path, headers, body, method, deadline);
          }
        }
      }
      return res;
    } catch (err) {
      if (err instanceof UpstreamError) {
        if (err.code === "timeout") {
          throw new GatewayError("timeout", `model ${decision.model} did not answer within ${deadlineMs} ms`, {
            cause: err,
          });
        }
        // The upstream message can name the agent's URL: it goes to the log, never to the caller.
        logger.warn({ model: decision.model, err: err.message }, "no replica answered");
        throw new GatewayError(
          "unavailable",
          `model ${decision.model} is unavailable: the call to its replica failed`,
          {
            cause: err,
            retriable: true,
          },
        );
      }
      throw err;
    }
  }

  /** Where a request goes after a replica miss, by the model's own route in `table` (the decision's version, if any). */
  function retryEndpoint(table: RouteTable, decision: RouteDecision): ReplicaEndpoint | undefined {
    const endpoints = resolveModelDirect(table, decision.model).endpoints.filter(
      (e) => decision.version === undefined || e.version === decision.version,
    );
    return balancer.pick(decision.model, endpoints);
  }

  async function callOne(
    endpoint: ReplicaEndpoint,
    model: string,
    path: string,
    headers: Record<string, string>,
    body: Uint8Array | undefined,
    method: "GET" | "POST",
    deadline: number,
  ): Promise<UpstreamResponse> {
    const end = balancer.begin(endpoint);
    try {
      const request: UpstreamRequest = { method, url: endpoint.http + path, headers, deadline };
      if (body) request.body = body;
      return await upstream.call(request);
    } catch (err) {
      const kind =
        err instanceof UpstreamError
          ? err.code === "timeout"
            ? "timeout"
            : err.connectFailed
              ? "connect"
              : "other"
          : "other";
      metrics.upstreamError(model, kind);
      throw err;
    } finally {
      end();
    }
  }

  /** Fire-and-forget copy: bounded, never awaited, its outcome only counted. */
  function mirror(
    model: string,
    endpoints: readonly ReplicaEndpoint[],
    callerPath: string,
    headers: Record<string, string>,
    body: Uint8Array,
  ): void {
    if (mirrors.inFlight >= mirrors.max) {
      metrics.mirror("dropped");
      return;
    }
    const endpoint = balancer.pick(model, endpoints);
    if (!endpoint) return;
    mirrors.inFlight++;
    metrics.mirror("sent");
    const path = callerPath.replace(/^\/v2\/models\/[^/]+/, `/v2/models/${model}`);
    const end = balancer.begin(endpoint);
    upstream
      .call({ method: "POST", url: endpoint.http + path, headers, body, deadline: Date.now() + deadlineMs })
      .catch((err: unknown) => {
        metrics.mirror("failed");
        logger.debug({ err, model }, "mirror call failed");
      })
      .finally(() => {
        end();
        mirrors.inFlight--;
      });
  }

  async function readBody(request: Request): Promise<Uint8Array> {
    const declared = request.headers.get("content-length");
    if (declared !== null && Number(declared) > bodyLimit) throw tooLarge();
    if (declared !== null) {
      // arrayBuffer() has a fast path in @hono/node-server; touching `request.body` would build a full undici Request.
      const buf = new Uint8Array(await request.arrayBuffer());
      if (buf.byteLength > bodyLimit) throw tooLarge();
      return buf;
    }
    if (!request.body) return new Uint8Array(0);
    // No declared length (chunked): count as it arrives and stop reading past the limit.
    const reader = request.body.getReader();
    const chunks: Uint8Array[] = [];
    let size = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > bodyLimit) {
        await reader.cancel();
        throw tooLarge();
      }
      chunks.push(value);
    }
    return Buffer.concat(chunks);
  }

  /** The route table, or a 504 once the request's deadline passes (a slow source must not hold the request). */
  function beforeDeadline<T>(pending: Promise<T>, deadline: number): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new GatewayError("timeout", `the route table did not come within ${deadlineMs} ms`)),
        Math.min(Math.max(0, deadline - Date.now()), 2 ** 31 - 1),
      );
    });
    return Promise.race([pending, expired]).finally(() => clearTimeout(timer));
  }

  function tooLarge(): GatewayError {
    return new GatewayError("too_large", `request body is larger than the limit of ${bodyLimit} bytes`);
  }
}

/**
 * The caller's headers a pipeline request carries on its Kafka record (DESIGN §3): every `x-*` header (its
 * `x-request-id` among them), except the gateway's own `x-tern-*`. The dataflow carries them to every record the
 * request causes, so a step's model and the answer see them too.
 */
export function recordHeaders(incoming: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  incoming.forEach((value, name) => {
    if (name.startsWith("x-") && !name.startsWith("x-tern-")) out[name] = value;
  });
  return out;
}

function upstreamPath(decision: RouteDecision, op: Op): string {
  const version = decision.version === undefined ? "" : `/versions/${decision.version}`;
  const suffix = op === "infer" ? "/infer" : op === "ready" ? "/ready" : "";
  return `/v2/models/${encodeURIComponent(decision.model)}${version}${suffix}`;
}

function forwardHeaders(incoming: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of FORWARD_REQUEST_HEADERS) {
    const value = incoming.get(name);
    if (value !== null) out[name] = value;
  }
  return out;
}

function toResponse(res: UpstreamResponse, route: string): Response {
  // A plain object, not a Headers: @hono/node-server writes it as it is instead of copying a Headers out again.
  const headers: Record<string, string> = {};
  for (const name of FORWARD_RESPONSE_HEADERS) {
    const value = res.headers[name];
    if (typeof value === "string") headers[name] = value;
  }
  headers[SELDON_ROUTE_HEADER] = route;
  const body = res.status === 204 || res.status === 304 ? null : (res.body as Uint8Array<ArrayBuffer>);
  return new Response(body, { status: res.status, headers });
}

/**
 * JSON check for `validateJson`: binary-extension bodies carry a JSON header of `Inference-Header-Content-Length`
 * bytes followed by raw tensor data, so only that prefix is parsed.
 */
function checkJson(headers: Headers, body: Uint8Array): void {
  const type = headers.get("content-type") ?? "application/json";
  if (!type.includes("json") && !headers.has("inference-header-content-length")) return;
  const headerLength = headers.get("inference-header-content-length");
  let jsonBytes = body;
  if (headerLength !== null) {
    const n = Number(headerLength);
    if (!Number.isSafeInteger(n) || n < 0 || n > body.byteLength) {
      throw new GatewayError(
        "bad_request",
        `Inference-Header-Content-Length ${JSON.stringify(headerLength)} does not fit the body of ${body.byteLength} bytes`,
      );
    }
    jsonBytes = body.subarray(0, n);
  }
  try {
    JSON.parse(Buffer.from(jsonBytes.buffer, jsonBytes.byteOffset, jsonBytes.byteLength).toString("utf8"));
  } catch (err) {
    throw new GatewayError("bad_request", `request body is not valid JSON: ${(err as Error).message}`);
  }
}
