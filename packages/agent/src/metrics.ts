import type { ReplicaState } from "@tern/core";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { ModelRegistry } from "./model-registry.js";

export type Protocol = "rest" | "grpc";

/** Prometheus metrics of one agent, registered on an injected registry. */
export interface AgentMetrics {
  readonly registry: Registry;
  /** Records one inference request: `code` is the HTTP status (gRPC codes are mapped to their HTTP equivalents). */
  observe(model: string, protocol: Protocol, code: number, seconds: number): void;
  /** Counts one replica state change of a model (Loading, Available, Unloaded, ...): loads and unloads over time. */
  stateChange(model: string, state: ReplicaState): void;
}

export interface AgentMetricsOptions {
  registry?: Registry;
  /** Exposes memory and model-count gauges when given. */
  models?: ModelRegistry;
}

export function createAgentMetrics(options: AgentMetricsOptions = {}): AgentMetrics {
  const registry = options.registry ?? new Registry();
  const requests = new Counter({
    name: "tern_agent_inference_requests_total",
    help: "Inference requests by model, protocol and status code",
    labelNames: ["model", "protocol", "code"] as const,
    registers: [registry],
  });
  const latency = new Histogram({
    name: "tern_agent_inference_duration_seconds",
    help: "Inference request latency in seconds, from body received to response ready",
    labelNames: ["model", "protocol"] as const,
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  const stateChanges = new Counter({
    name: "tern_agent_model_state_changes_total",
    help: "Replica state changes by model and new state (Loading counts loads started, Unloaded unloads done)",
    labelNames: ["model", "state"] as const,
    registers: [registry],
  });
  const models = options.models;
  if (models) {
    new Gauge({
      name: "tern_agent_models",
      help: "Model versions held, by replica state and residency",
      labelNames: ["state", "resident"] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const r of models.list()) this.inc({ state: r.state, resident: String(r.resident) });
      },
    });
    new Gauge({
      name: "tern_agent_memory_bytes",
      help: "Memory accounting: capacity, committable (with over-commit), committed and resident bytes; process: the RSS of the runtime's own process (MLServer)",
      labelNames: ["kind"] as const,
      registers: [registry],
      collect() {
        const u = models.usage();
        this.set({ kind: "capacity" }, u.capacityBytes);
        this.set({ kind: "committable" }, u.committableBytes);
        this.set({ kind: "committed" }, u.committedBytes);
        this.set({ kind: "resident" }, u.residentBytes);
        if (u.processBytes !== undefined) this.set({ kind: "process" }, u.processBytes);
      },
    });
  }
  return {
    registry,
    observe(model, protocol, code, seconds) {
      requests.inc({ model, protocol, code: String(code) });
      latency.observe({ model, protocol }, seconds);
    },
    stateChange(model, state) {
      stateChanges.inc({ model, state });
    },
  };
}
