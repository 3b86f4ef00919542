import * as grpc from "@grpc/grpc-js";
import { REPLICA_MISS_HEADER, type ReplicaEndpoint } from "@tern/core";
import type { Balancer } from "./balancer.js";
import { type GatewayMetrics, noopMetrics } from "./metrics.js";

const SERVICE = "inference.GRPCInferenceService";
const identity = (b: Buffer) => b;

export type GrpcCallResult = { value: Buffer } | { error: grpc.ServiceError };

export interface GrpcUpstreamOptions {
  balancer: Balancer;
  /** Largest message accepted either way. @default 10485760 */
  maxMessageBytes?: number;
  metrics?: GatewayMetrics;
}

/**
 * Unary OIP calls to agents over gRPC, as raw bytes (nothing decoded). Shared by the gateway's gRPC proxy and the
 * model gateway, so both follow the same retry rules.
 */
export interface GrpcUpstream {
  /**
   * Calls one of `endpoints` (fewest in flight) and, when that replica refused the connection (UNAVAILABLE) or no
   * longer holds the model (NOT_FOUND with the replica-miss marker) — the call never ran — one other replica.
   */
  call(
    model: string,
    endpoints: readonly ReplicaEndpoint[],
    method: string,
    body: Buffer,
    deadline: number,
  ): Promise<GrpcCallResult>;
  /** One call to one endpoint, no retry (mirrors). */
  callOnce(endpoint: ReplicaEndpoint, method: string, body: Buffer, deadline: number): Promise<GrpcCallResult>;
  /** Closes every channel. */
  close(): void;
}

export function createGrpcUpstream(options: GrpcUpstreamOptions): GrpcUpstream {
  const maxBytes = options.maxMessageBytes ?? 10 * 1024 * 1024;
  const metrics = options.metrics ?? noopMetrics;
  const { balancer } = options;
  const channelOptions = { "grpc.max_receive_message_length": maxBytes, "grpc.max_send_message_length": maxBytes };
  const clients = new Map<string, grpc.Client>();

  function client(address: string): grpc.Client {
    let c = clients.get(address);
    if (!c) {
      c = new grpc.Client(address, grpc.credentials.createInsecure(), channelOptions);
      clients.set(address, c);
    }
    return c;
  }

  function callOnce(
    endpoint: ReplicaEndpoint,
    method: string,
    body: Buffer,
    deadline: number,
  ): Promise<GrpcCallResult> {
    const end = balancer.begin(endpoint);
    return new Promise((resolve) => {
      client(endpoint.grpc!).makeUnaryRequest(
        `/${SERVICE}/${method}`,
        identity,
        identity,
        body,
        new grpc.Metadata(),
        { deadline },
        (error, value) => {
          end();
          resolve(error ? { error } : { value: value! });
        },
      );
    });
  }

  return {
    callOnce,
    async call(model, endpoints, method, body, deadline) {
      const first = balancer.pick(model, endpoints);
      if (!first) {
        const error = Object.assign(new Error(`model ${model} has no replica serving gRPC`), {
          code: grpc.status.UNAVAILABLE,
          details: `model ${model} has no replica serving gRPC`,
          metadata: new grpc.Metadata(),
        });
        return { error };
      }
      const result = await callOnce(first, method, body, deadline);
      if (!("error" in result)) return result;
      let retry = false;
      if (result.error.code === grpc.status.UNAVAILABLE) {
        metrics.upstreamError(model, "connect");
        retry = true;
      } else if (
        result.error.code === grpc.status.NOT_FOUND &&
        result.error.metadata?.get(REPLICA_MISS_HEADER)[0] !== undefined
      ) {
        metrics.upstreamError(model, "replica_miss");
        retry = true;
      }
      if (!retry) return result;
      const second = balancer.pick(model, endpoints, first);
      return second ? callOnce(second, method, body, deadline) : result;
    },
    close() {
      for (const c of clients.values()) c.close();
      clients.clear();
    },
  };
}
