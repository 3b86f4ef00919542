import type { ExperimentCandidate } from "./resources.js";
import type { ModelState, PipelineState } from "./status.js";

/**
 * The route table the scheduler publishes for gateways: `GET /v1/routes` on the control API (and its watch stream),
 * and the item `pk="routes", sk="current"` in DynamoDB for Lambda gateways. Only endpoints that can serve are listed.
 */
export interface RouteTable {
  /** Scheduler revision this table was built at; increases monotonically. */
  revision: number;
  models: Record<string, ModelRoute>;
  pipelines: Record<string, PipelineRoute>;
  experiments: Record<string, ExperimentRoute>;
}

export interface ReplicaEndpoint {
  server: string;
  replica: number;
  /** Model version this replica serves. */
  version: number;
  /** Base URL of the agent's OIP REST server. */
  http: string;
  /** `host:port` of the agent's gRPC server. */
  grpc?: string;
}

export interface ModelRoute {
  name: string;
  /** Latest version with available replicas (traffic moves to a new version only once it can serve). */
  version: number;
  state: ModelState;
  endpoints: ReplicaEndpoint[];
}

export interface PipelineRoute {
  name: string;
  state: PipelineState;
}

export interface ExperimentRoute {
  name: string;
  resourceType: "model" | "pipeline";
  /** When set, the experiment takes over this model's (or pipeline's) endpoint. */
  default?: string;
  candidates: ExperimentCandidate[];
  mirror?: { name: string; percent: number };
  /** False while a candidate is not ready; the gateway then serves the default as if there were no experiment. */
  active: boolean;
}

export function emptyRouteTable(): RouteTable {
  return { revision: 0, models: {}, pipelines: {}, experiments: {} };
}
