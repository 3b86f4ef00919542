import type { ParameterSpec } from "./resources.js";
import type { ReplicaState } from "./status.js";

/**
 * The wire contract between an agent (one per server replica) and the scheduler's control API.
 * All bodies are JSON; paths are relative to the scheduler URL (default http://127.0.0.1:9004).
 *
 * - `POST   /v1/agents`                                 AgentRegistration → AgentRegistered
 * - `POST   /v1/agents/{server}/{replica}/heartbeat`    → 204; 404 means "unknown agent: register again"
 * - `GET    /v1/agents/{server}/{replica}/assignments`  server-sent events; every `data:` is an AgentAssignments,
 *                                                        the FULL desired set (level-triggered: load what is missing,
 *                                                        unload what is absent). The first event comes at once.
 * - `POST   /v1/agents/{server}/{replica}/events`       AgentEvent → 204
 * - `POST   /v1/agents/{server}/{replica}/drain`        → 202; the scheduler moves the replica's models elsewhere
 * - `GET    /v1/agents/{server}/{replica}`              → AgentView (poll `drained` while draining)
 * - `DELETE /v1/agents/{server}/{replica}`              → 204; the agent is leaving
 */

export interface AgentEndpoints {
  /** Base URL of the agent's OIP REST server, e.g. `http://127.0.0.1:9500`. */
  http: string;
  /** `host:port` of the agent's OIP gRPC server. */
  grpc?: string;
}

export interface LoadedModelRef {
  model: string;
  version: number;
}

export interface AgentRegistration {
  server: string;
  replica: number;
  capabilities: string[];
  /** Memory capacity of this replica in bytes. */
  memoryBytes: number;
  /** Percentage by which memory may be over-committed (0 = none). */
  overcommitPercent?: number;
  endpoints: AgentEndpoints;
  /** What the agent already holds (after a scheduler restart: nothing is reloaded). */
  loaded: LoadedModelRef[];
}

export interface AgentRegistered {
  heartbeatIntervalMs: number;
  /** Missing heartbeats for this long gets the agent removed and its models rescheduled. */
  heartbeatTimeoutMs: number;
}

export interface AssignedModel {
  model: string;
  version: number;
  storageUri: string;
  /** `spec.memory` in bytes; 0 when the manifest gives none: the agent then accounts the artifact's size. */
  memoryBytes: number;
  requirements: string[];
  parameters: ParameterSpec[];
}

export interface AgentAssignments {
  revision: number;
  models: AssignedModel[];
}

export interface AgentEvent {
  model: string;
  version: number;
  state: ReplicaState;
  reason?: string;
}

export interface AgentView extends AgentRegistration {
  draining: boolean;
  /** True once every model the replica held is available elsewhere (or nothing was held). */
  drained: boolean;
  lastHeartbeatAt: number;
}
