import { Counter, Histogram, type Registry } from "prom-client";

/** What the gateway reports; injected so that the Lambda entry and tests can use {@link noopMetrics}. */
export interface GatewayMetrics {
  /** One finished request. `model` is "" when the request named no known model (keeps label cardinality bounded). */
  request(model: string, op: string, status: number, seconds: number): void;
  /** A failed agent call: `connect` (refused/reset, maybe retried), `timeout`, or `other`. */
  upstreamError(model: string, kind: "connect" | "timeout" | "replica_miss" | "unavailable" | "other"): void;
  /** A mirror copy: `sent`, `dropped` (too many in flight), `failed`. */
  mirror(outcome: "sent" | "dropped" | "failed"): void;
}

export const noopMetrics: GatewayMetrics = {
  request() {},
  upstreamError() {},
  mirror() {},
};

/** Prometheus metrics registered on `registry` (names start with `tern_gateway_`). */
export function createPromMetrics(registry: Registry): GatewayMetrics {
  const requests = new Counter({
    name: "tern_gateway_requests_total",
    help: "Inference API requests by model, operation and HTTP status",
    labelNames: ["model", "op", "status"] as const,
    registers: [registry],
  });
  const latency = new Histogram({
    name: "tern_gateway_request_duration_seconds",
    help: "Time from request to response, by model and operation",
    labelNames: ["model", "op"] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [registry],
  });
  const upstreamErrors = new Counter({
    name: "tern_gateway_upstream_errors_total",
    help: "Failed calls to agents by model and kind (connect, timeout, replica_miss, unavailable, other)",
    labelNames: ["model", "kind"] as const,
    registers: [registry],
  });
  const mirrors = new Counter({
    name: "tern_gateway_mirror_requests_total",
    help: "Experiment mirror copies by outcome (sent, dropped, failed)",
    labelNames: ["outcome"] as const,
    registers: [registry],
  });
  return {
    request(model, op, status, seconds) {
      requests.inc({ model, op, status: String(status) });
      latency.observe({ model, op }, seconds);
    },
    upstreamError(model, kind) {
      upstreamErrors.inc({ model, kind });
    },
    mirror(outcome) {
      mirrors.inc({ outcome });
    },
  };
}
