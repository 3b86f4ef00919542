import * as grpc from "@grpc/grpc-js";
import { decodeModelInferRequest, encodeModelInferResponse, REPLICA_MISS_HEADER } from "@tern/core";
import type { Logger } from "pino";
import { codeOf, grpcStatusFor, httpStatusFor, isPublicError, ReplicaMissError } from "../errors.js";
import type { InferenceService } from "../inference/inference-service.js";
import type { AgentMetrics } from "../metrics.js";
import { decodeGrpcRequest, encodeGrpcResponse, withModelInferBytes } from "./grpc-codec.js";
import { loadOipService } from "./oip-proto.js";

export interface GrpcServerDeps {
  service: InferenceService;
  metrics: AgentMetrics;
  logger?: Logger;
  /** Largest accepted message; larger ones fail with RESOURCE_EXHAUSTED. @default 16777216 */
  maxMessageBytes?: number;
}

/** A running (or not yet started) OIP gRPC server. */
export interface AgentGrpcServer {
  /** Binds `host:port` (port 0 = ephemeral) and resolves with the bound port. */
  start(host: string, port: number): Promise<number>;
  /** Stops accepting calls, lets running calls finish within `graceMs`, then cuts them. */
  close(graceMs?: number): Promise<void>;
}

type Unary<Req, Res> = grpc.handleUnaryCall<Req, Res>;

/** The codec writes every byte, so the output need not be zero-filled. */
const NODE_ALLOC = { allocate: (size: number) => Buffer.allocUnsafe(size) };

/** `inference.GRPCInferenceService` over the shared inference service. */
export function createGrpcServer(deps: GrpcServerDeps): AgentGrpcServer {
  const { service, metrics, logger } = deps;
  const max = deps.maxMessageBytes ?? 16 * 1024 * 1024;
  const server = new grpc.Server({ "grpc.max_receive_message_length": max, "grpc.max_send_message_length": max });
  const { service: definition } = loadOipService();

  function toStatus(err: unknown): Partial<grpc.ServiceError> {
    if (isPublicError(err)) {
      const status: Partial<grpc.ServiceError> = {
        code: grpcStatusFor(codeOf(err)),
        details: err.message,
        message: err.message,
      };
      if (err instanceof ReplicaMissError) {
        status.metadata = new grpc.Metadata();
        status.metadata.set(REPLICA_MISS_HEADER, "1");
      }
      return status;
    }
    logger?.error({ err }, "unhandled gRPC error");
    return { code: grpc.status.INTERNAL, details: "internal error", message: "internal error" };
  }

  function unary<Req, Res>(fn: (req: Req) => Res | Promise<Res>): Unary<Req, Res> {
    return (call, callback) => {
      Promise.resolve()
        .then(() => fn(call.request))
        .then(
          (res) => callback(null, res),
          (err: unknown) => callback(toStatus(err) as grpc.ServiceError),
        );
    };
  }

  const handlers: grpc.UntypedServiceImplementation = {
    ServerLive: unary(() => ({ live: service.live() })),
    ServerReady: unary(() => ({ ready: service.ready() })),
    ModelReady: unary((req: { name: string; version: string }) => ({
      ready: service.modelReady(req.name, req.version || undefined),
    })),
    ServerMetadata: unary(() => service.serverMetadata()),
    ModelMetadata: unary((req: { name: string; version: string }) => {
      const m = service.modelMetadata(req.name, req.version || undefined);
      return { ...m, inputs: m.inputs.map(withStringShape), outputs: m.outputs.map(withStringShape) };
    }),
    ModelInfer: unary(async (bytes: Buffer) => {
      const started = performance.now();
      let status = 500;
      let model = "";
      try {
        const req = decodeModelInferRequest(bytes);
        model = req.model_name;
        const request = decodeGrpcRequest(req);
        const result = await service.infer(req.model_name, req.model_version, request);
        status = 200;
        return encodeModelInferResponse(encodeGrpcResponse(req, result), NODE_ALLOC);
      } catch (err) {
        status = isPublicError(err) ? httpStatusFor(codeOf(err)) : 500;
        throw err;
      } finally {
        metrics.observe(service.metricsLabel(model), "grpc", status, (performance.now() - started) / 1000);
      }
    }),
  };
  server.addService(withModelInferBytes(definition), handlers);

  return {
    start(host, port) {
      return new Promise((resolve, reject) => {
        server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) =>
          err ? reject(err) : resolve(bound),
        );
      });
    },
    close(graceMs = 5000) {
      return new Promise((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
  };
}

function withStringShape(t: { name: string; datatype: string; shape: number[] }) {
  return { name: t.name, datatype: t.datatype, shape: t.shape.map(String) };
}
