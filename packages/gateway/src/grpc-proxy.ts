import { randomUUID } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import {
  type PipelineRoute,
  REPLICA_MISS_HEADER,
  type ReplicaEndpoint,
  type RouteTable,
  SELDON_MODEL_HEADER,
  SELDON_ROUTE_HEADER,
} from "@tern/core";
import type { Logger } from "pino";
import type { ApiKeyCheck } from "./api-keys.js";
import { recordHeaders } from "./app.js";
import { type Balancer, createBalancer } from "./balancer.js";
import { codeOf, GatewayError } from "./errors.js";
import { inferPipelineGrpc, pipelineMetadataGrpc } from "./grpc-pipeline.js";
import { createGrpcUpstream, type GrpcCallResult } from "./grpc-upstream.js";
import { type GatewayMetrics, noopMetrics } from "./metrics.js";
import { isAsleep, type ModelWaker } from "./model-waker.js";
import type { PipelineFront } from "./pipeline-front.js";
import { type MirrorSlots, mirrorPipeline } from "./pipeline-mirror.js";
import { encodeFields, readNameAndVersion, withNameAndVersion } from "./protobuf-fields.js";
import type { RouteSource } from "./route-source.js";
import {
  chosenPipeline,
  isPipelineExperiment,
  isServedPipeline,
  type PipelineRouteDecision,
  parseSeldonModelHeader,
  resolveModelDirect,
  resolvePipelineRoute,
  resolveRoute,
  servedPipeline,
  type Target,
} from "./routing.js";

const SERVICE = "inference.GRPCInferenceService";

export interface GrpcProxyOptions {
  routes: RouteSource;
  logger: Logger;
  /** @default 60000 */
  deadlineMs?: number;
  /** Largest message accepted either way. @default 10485760 */
  maxMessageBytes?: number;
  apiKeys?: ApiKeyCheck;
  metrics?: GatewayMetrics;
  random?: () => number;
  /** @default 64 */
  maxMirrorsInFlight?: number;
  balancer?: Balancer;
  /**
   * Node entry with Kafka only: serves ModelInfer with `seldon-model: <p>.pipeline` or `<e>.experiment` (an experiment
   * of pipelines) over the pipeline's topics. Without it such a ModelInfer answers UNAVAILABLE and ModelReady not ready;
   * ModelMetadata of a pipeline needs no front.
   */
  pipelines?: PipelineFront;
  /** A pipeline request ends by then: DEADLINE_EXCEEDED naming its request id. @default deadlineMs */
  pipelineDeadlineMs?: number;
  /** Makes the gateway's id of a pipeline request. @default crypto.randomUUID */
  newRequestId?: () => string;
  /**
   * Node entry: ModelInfer for a model scaled to zero wakes it and waits within the call's deadline, like REST
   * (ModelReady and ModelMetadata never wake a model). Without it such a call answers UNAVAILABLE.
   */
  waker?: ModelWaker;
}

export interface GrpcProxy {
  /** Binds `host:port` (port 0: ephemeral) and returns the bound port. */
  listen(host: string, port: number): Promise<number>;
  close(): Promise<void>;
}

type Op = "infer" | "ready" | "metadata";
const MODEL_METHODS: Record<string, Op> = { ModelInfer: "infer", ModelReady: "ready", ModelMetadata: "metadata" };

const identity = (b: Buffer) => b;

/**
 * The OIP gRPC service as a proxy: model-level calls are routed like REST (model_name, or the `seldon-model` metadata
 * key) and forwarded as raw bytes to the agent's gRPC endpoint; only the name and version fields are ever rewritten
 * (experiments). Calls naming a pipeline (`seldon-model: <p>.pipeline`) or an experiment of pipelines go over Kafka
 * instead (grpc-pipeline.ts), to the pipeline REST would choose (routing.ts).
 * Server-level calls are answered here. Errors map to gRPC codes like REST maps them to statuses.
 */
export function createGrpcProxy(options: GrpcProxyOptions): GrpcProxy {
  const deadlineMs = options.deadlineMs ?? 60_000;
  const maxBytes = options.maxMessageBytes ?? 10 * 1024 * 1024;
  const metrics = options.metrics ?? noopMetrics;
  const random = options.random ?? Math.random;
  const maxMirrors = options.maxMirrorsInFlight ?? 64;
  const balancer = options.balancer ?? createBalancer();
  const pipelineDeadlineMs = options.pipelineDeadlineMs ?? deadlineMs;
  const newRequestId = options.newRequestId ?? randomUUID;
  const { logger, routes } = options;
  const mirrors: MirrorSlots = { inFlight: 0, max: maxMirrors };
  const channelOptions = { "grpc.max_receive_message_length": maxBytes, "grpc.max_send_message_length": maxBytes };
  const server = new grpc.Server(channelOptions);
  const upstream = createGrpcUpstream({ balancer, maxMessageBytes: maxBytes, metrics });

  async function handleModel(method: string, op: Op, call: grpc.ServerUnaryCall<Buffer, Buffer>): Promise<Buffer> {
    const started = performance.now();
    let model = "";
    let code = grpc.status.OK;
    try {
      options.apiKeys?.(firstString(call.metadata, "authorization"));
      let fields: { name: string; version: string };
      try {
        fields = readNameAndVersion(call.request);
      } catch (err) {
        throw new GatewayError("bad_request", `request is not a valid ${method} message: ${(err as Error).message}`);
      }
      const target = targetOf(call.metadata, fields);
      // One deadline for the whole call: waking a model scaled to zero and the upstream attempts.
      const deadline = Math.min(Date.now() + deadlineMs, callerDeadline(call));
      let table = await routes.table();
      if (!table) throw new GatewayError("unavailable", "gateway has no route table yet", { retriable: true });
      // Pipelines and experiments of pipelines; without a pipeline front, ModelInfer answers as before (UNAVAILABLE).
      if (
        (target.kind === "pipeline" || isPipelineExperiment(table, target)) &&
        (op !== "infer" || options.pipelines)
      ) {
        const decision = resolvePipelineRoute(table, target, {
          op,
          stickyRoute: firstString(call.metadata, SELDON_ROUTE_HEADER),
          random,
        });
        const route = chosenPipeline(table, decision);
        model = `${route.name}.pipeline`;
        return await handlePipeline(op, route, decision, table, call, deadline);
      }
      // Only inference wakes a model scaled to zero: ModelReady answers what is true now (docs/autoscaling.md).
      if (options.waker && op === "infer" && target.kind === "model" && isAsleep(table, target.name)) {
        model = target.name;
        table = await options.waker.wake(target.name, routes, deadline);
      }
      const decision = resolveRoute(table, target, {
        op,
        stickyRoute: firstString(call.metadata, SELDON_ROUTE_HEADER),
        random,
      });
      model = decision.model;
      const endpoints = decision.endpoints.filter((e) => e.grpc);
      if (endpoints.length === 0) {
        throw new GatewayError("unavailable", `model ${model} has no replica serving gRPC`, { retriable: true });
      }
      const version = decision.version === undefined ? "" : String(decision.version);
      const body =
        fields.name === model && fields.version === version
          ? call.request
          : withNameAndVersion(call.request, model, version);
      if (decision.mirror && op === "infer") mirror(decision.mirror.model, decision.mirror.endpoints, body, deadline);

      const route = new grpc.Metadata();
      route.set(SELDON_ROUTE_HEADER, decision.route);
      call.sendMetadata(route);

      let result = await upstream.call(model, endpoints, method, body, deadline);
      // The scale-down race (see REST's forward): the last replica unloaded the model under this call.
      if (options.waker && op === "infer" && isReplicaMiss(result)) {
        const next = await options.waker.afterMiss(model, table.models[model], routes, deadline);
        const retry =
          next && resolveModelDirect(next, model).endpoints.filter((e) => e.grpc && sameVersion(e, version));
        if (retry && retry.length > 0) {
          metrics.upstreamError(model, "replica_miss");
          result = await upstream.call(model, retry, method, body, deadline);
        }
      }
      if ("error" in result) {
        code = result.error.code;
        if (code === grpc.status.DEADLINE_EXCEEDED) {
          metrics.upstreamError(model, "timeout");
          throw new GatewayError("timeout", `model ${model} did not answer within ${deadlineMs} ms`);
        }
        if (code === grpc.status.UNAVAILABLE) {
          // grpc-js fills these details itself ("connect ECONNREFUSED 10.0.3.7:9501"): log them, answer without them.
          logger.warn({ model, details: result.error.details }, "no replica answered (gRPC)");
          throw new GatewayError("unavailable", `model ${model} is unavailable: the call to its replica failed`, {
            retriable: true,
          });
        }
        throw result.error;
      }
      return result.value;
    } catch (err) {
      code = grpcCodeOf(err);
      throw err;
    } finally {
      metrics.request(model, `grpc_${op}`, code, (performance.now() - started) / 1000);
    }
  }

  /**
   * A model-level call for a pipeline (named, or chosen by an experiment). ModelReady answers from the route table
   * (ready while the pipeline is served by this gateway's front); ModelMetadata what REST's `GET /v2/pipelines/{p}`
   * answers; ModelInfer goes over Kafka through the pipeline front, its experiment's mirror getting a copy.
   */
  async function handlePipeline(
    op: Op,
    route: PipelineRoute,
    decision: PipelineRouteDecision,
    table: RouteTable,
    call: grpc.ServerUnaryCall<Buffer, Buffer>,
    deadline: number,
  ): Promise<Buffer> {
    const front = options.pipelines;
    if (op === "ready") return encodeFields([[1, front !== undefined && isServedPipeline(route)]]);
    if (op === "metadata") return pipelineMetadataGrpc(upstream, table, route, deadline);
    if (!front) throw new GatewayError("unavailable", `pipeline ${route.name} is not served by this gateway`);
    servedPipeline(route);
    // The same rule as REST's x-* headers; binary (`-bin`) metadata is not carried.
    const text = Object.entries(call.metadata.getMap()).filter((e): e is [string, string] => typeof e[1] === "string");
    const headers = recordHeaders(new Headers(text));
    const pipelineDeadline = Math.min(Date.now() + pipelineDeadlineMs, callerDeadline(call));
    const mirrorTo = decision.mirror;
    return inferPipelineGrpc(front, route.name, call.request, {
      deadline: pipelineDeadline,
      requestId: newRequestId(),
      headers,
      route: decision.route,
      sendMetadata: (metadata) => call.sendMetadata(metadata),
      ...(mirrorTo === undefined
        ? {}
        : {
            mirror: (inputs) =>
              mirrorPipeline(table, mirrorTo, inputs, headers, {
                front,
                slots: mirrors,
                metrics,
                logger,
                deadline: pipelineDeadline,
              }),
          }),
    });
  }

  function mirror(model: string, endpoints: readonly ReplicaEndpoint[], request: Buffer, deadline: number): void {
    const withGrpc = endpoints.filter((e) => e.grpc);
    if (mirrors.inFlight >= mirrors.max) {
      metrics.mirror("dropped");
      return;
    }
    const endpoint = balancer.pick(model, withGrpc);
    if (!endpoint) return;
    mirrors.inFlight++;
    metrics.mirror("sent");
    const body = withNameAndVersion(request, model, "");
    void upstream.callOnce(endpoint, "ModelInfer", body, deadline).then((r) => {
      mirrors.inFlight--;
      if ("error" in r) metrics.mirror("failed");
    });
  }

  const handlers: grpc.UntypedServiceImplementation = {};
  const definition: Record<string, grpc.MethodDefinition<Buffer, Buffer>> = {};
  const method = (name: string) => ({
    path: `/${SERVICE}/${name}`,
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  });
  for (const [name, op] of Object.entries(MODEL_METHODS)) {
    definition[name] = method(name);
    handlers[name] = (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      handleModel(name, op, call).then(
        (value) => callback(null, value),
        (err: unknown) => callback(toServiceError(err, logger)),
      );
    };
  }
  const local = (name: string, answer: () => Promise<Buffer>, needsKey: boolean) => {
    definition[name] = method(name);
    handlers[name] = (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      (async () => {
        if (needsKey) options.apiKeys?.(firstString(call.metadata, "authorization"));
        return answer();
      })().then(
        (value) => callback(null, value),
        (err: unknown) => callback(toServiceError(err, logger)),
      );
    };
  };
  local("ServerLive", async () => encodeFields([[1, true]]), false);
  local(
    "ServerReady",
    async () => {
      const table = await Promise.resolve(routes.table()).catch(() => undefined);
      return encodeFields([[1, table !== undefined]]);
    },
    false,
  );
  local(
    "ServerMetadata",
    async () =>
      encodeFields([
        [1, "tern-gateway"],
        [2, "0.1.0"],
        [3, []],
      ]),
    true,
  );
  server.addService(definition, handlers);

  return {
    listen(host, port) {
      return new Promise((resolve, reject) => {
        server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) =>
          err ? reject(err) : resolve(bound),
        );
      });
    },
    async close() {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2000);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      upstream.close();
    },
  };
}

/** NOT_FOUND with the replica-miss trailer: the replica does not hold the model, so the call never ran. */
function isReplicaMiss(result: GrpcCallResult): boolean {
  return (
    "error" in result &&
    result.error.code === grpc.status.NOT_FOUND &&
    result.error.metadata?.get(REPLICA_MISS_HEADER)[0] !== undefined
  );
}

/** `version` is the request's rewritten version field: "" for the route's own version. */
function sameVersion(endpoint: ReplicaEndpoint, version: string): boolean {
  return version === "" || String(endpoint.version) === version;
}

function targetOf(metadata: grpc.Metadata, fields: { name: string; version: string }): Target {
  const header = parseSeldonModelHeader(firstString(metadata, SELDON_MODEL_HEADER));
  const version = fields.version === "" ? undefined : Number(fields.version);
  if (version !== undefined && (!Number.isSafeInteger(version) || version < 1)) {
    throw new GatewayError("bad_request", `model version ${JSON.stringify(fields.version)} is not a positive integer`);
  }
  if (header) return header.kind === "model" && version !== undefined ? { ...header, version } : header;
  if (fields.name === "") throw new GatewayError("bad_request", "model name is empty");
  return version === undefined ? { kind: "model", name: fields.name } : { kind: "model", name: fields.name, version };
}

/** The caller's own deadline in epoch milliseconds (Infinity when it set none). */
function callerDeadline(call: grpc.ServerUnaryCall<Buffer, Buffer>): number {
  const deadline = call.getDeadline();
  if (deadline instanceof Date) return deadline.getTime();
  return Number.isFinite(deadline) ? deadline : Infinity;
}

function firstString(metadata: grpc.Metadata, key: string): string | undefined {
  const value = metadata.get(key)[0];
  return typeof value === "string" ? value : undefined;
}

const GRPC_CODES: Record<string, grpc.status> = {
  bad_request: grpc.status.INVALID_ARGUMENT,
  "manifest.invalid": grpc.status.INVALID_ARGUMENT,
  "manifest.parse": grpc.status.INVALID_ARGUMENT,
  unauthorized: grpc.status.UNAUTHENTICATED,
  not_found: grpc.status.NOT_FOUND,
  conflict: grpc.status.ABORTED,
  too_large: grpc.status.RESOURCE_EXHAUSTED,
  unsupported: grpc.status.UNIMPLEMENTED,
  unavailable: grpc.status.UNAVAILABLE,
  "lease.lost": grpc.status.UNAVAILABLE,
  timeout: grpc.status.DEADLINE_EXCEEDED,
};

function isServiceError(err: unknown): err is grpc.ServiceError {
  return (
    typeof err === "object" && err !== null && typeof (err as { code?: unknown }).code === "number" && "details" in err
  );
}

function grpcCodeOf(err: unknown): grpc.status {
  if (isServiceError(err)) return err.code;
  const code = codeOf(err);
  return code === undefined ? grpc.status.INTERNAL : (GRPC_CODES[code] ?? grpc.status.INTERNAL);
}

/** Agent errors pass through with their code and details; ours get their mapped code; anything else is INTERNAL. */
function toServiceError(err: unknown, logger: Logger): Partial<grpc.StatusObject> {
  if (isServiceError(err)) return { code: err.code, details: err.details };
  const code = grpcCodeOf(err);
  if (codeOf(err) === undefined) {
    logger.error({ err }, "unexpected gateway error (gRPC)");
    return { code, details: "internal error" };
  }
  return { code, details: (err as Error).message };
}
