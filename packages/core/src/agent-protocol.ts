import { z } from "zod";
import type { ParameterSpec } from "./resources.js";
import { checkResourceName } from "./schemas.js";
import { REPLICA_STATES, type ReplicaState } from "./status.js";

/**
 * The wire contract between an agent (one per server replica) and the scheduler's control API.
 * All bodies are JSON, sent as `content-type: application/json` (anything else gets 415); paths are relative to the
 * scheduler URL (default http://127.0.0.1:9004).
 *
 * - `POST   /v1/agents`                                 AgentRegistration → AgentRegistered
 * - `POST   /v1/agents/{server}/{replica}/heartbeat`    AgentHeartbeat (optional) → 204; 404 means "unknown agent:
 *                                                        register again". The body carries the per-model traffic
 *                                                        figures autoscaling decides from (batched, not per request)
 *                                                        and the runtime process's memory.
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
  /**
   * Memory the replica's runtime process holds beyond what its models declare (MLServer: its resident memory, with
   * its children's, less the `memory` of the models it holds), bytes. The scheduler takes it off the capacity before
   * placing; the agent refreshes it with every heartbeat. Absent or 0 for the in-process ONNX runtime.
   */
  processBytes?: number;
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
  /** `spec.secretName`: the agent reads the download's credentials from this secret (TERN_SECRETS_DIR). */
  secretName?: string;
  /** `spec.memory` in bytes; 0 when the manifest gives none: the agent then accounts the artifact's size. */
  memoryBytes: number;
  requirements: string[];
  parameters: ParameterSpec[];
}

export interface AgentAssignments {
  revision: number;
  models: AssignedModel[];
}

/** Traffic of one model on one replica since the previous heartbeat (docs/autoscaling.md). */
export interface ModelTrafficReport {
  model: string;
  /** Requests in flight (received, not yet answered, queued ones included) right now. */
  inFlight: number;
  /** Time-weighted mean of `inFlight` over the period: the model's lag on this replica. */
  lag: number;
  /** Requests answered per second over the period. */
  requestsPerSecond: number;
  /** Milliseconds since the model last received a request on this replica (since it was loaded, when never). */
  idleMs: number;
}

/** The optional body of a heartbeat. */
export interface AgentHeartbeat {
  /** Per-model traffic since the previous heartbeat (autoscaling); empty when nothing is loaded. */
  models: ModelTrafficReport[];
  /** See {@link AgentRegistration.processBytes}: refreshed with every heartbeat. */
  processBytes?: number;
}

export interface AgentEvent {
  model: string;
  version: number;
  state: ReplicaState;
  reason?: string;
}

/** Longest piece of a bad value echoed back in a message. */
const ECHO_LIMIT = 80;

function quote(text: string): string {
  return JSON.stringify(text.length > ECHO_LIMIT ? `${text.slice(0, ECHO_LIMIT)}…` : text);
}

const DNS_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
const IPV4_PART = /^(?:0|[1-9]\d{0,2})$/;

/** The problem with a host (DNS name, dotted IPv4, or bracketed IPv6), or undefined when it is fine. */
function checkHost(host: string): string | undefined {
  if (host.startsWith("[")) {
    if (!host.endsWith("]") || !/^\[[0-9A-Fa-f:.]+\]$/.test(host)) return `${quote(host)} is not an IPv6 address`;
    try {
      new URL(`http://${host}/`);
      return undefined;
    } catch {
      return `${quote(host)} is not an IPv6 address`;
    }
  }
  if (/^[\d.]+$/.test(host)) {
    const parts = host.split(".");
    const ok = parts.length === 4 && parts.every((p) => IPV4_PART.test(p) && Number(p) <= 255);
    return ok ? undefined : `${quote(host)} is not an IPv4 address`;
  }
  if (host.length > 253 || !host.split(".").every((label) => DNS_LABEL.test(label))) {
    return `${quote(host)} is not a host name (labels of letters, digits and inner "-", joined by ".")`;
  }
  return undefined;
}

/**
 * The problem with a `host:port` (what an agent registers as its gRPC endpoint), or undefined when it is fine. The
 * host is a DNS name, a dotted IPv4 address or a bracketed IPv6 address; the port 1–65535.
 */
export function checkHostPort(text: string): string | undefined {
  const colon = text.lastIndexOf(":");
  const host = colon < 0 ? "" : text.slice(0, colon);
  const port = colon < 0 ? "" : text.slice(colon + 1);
  if (host === "" || !/^[1-9]\d{0,4}$/.test(port) || Number(port) > 65535) {
    return `must be host:port with a port from 1 to 65535 (got ${quote(text)})`;
  }
  return checkHost(host);
}

/**
 * The problem with an agent's REST base URL, or undefined when it is fine: exactly `http://host:port` or
 * `https://host:port`, no credentials, path, query or fragment (the gateway appends OIP paths to it).
 */
export function checkAgentHttpEndpoint(text: string): string | undefined {
  const match = /^https?:\/\/(.*)$/.exec(text);
  if (match === null) return `must be http://host:port or https://host:port (got ${quote(text)})`;
  const problem = checkHostPort(match[1]!);
  return problem === undefined ? undefined : `must be http(s)://host:port: ${problem}`;
}

function refineWith(check: (value: string) => string | undefined) {
  return (value: string, ctx: z.RefinementCtx) => {
    const problem = check(value);
    if (problem !== undefined) ctx.addIssue({ code: "custom", message: problem });
  };
}

const nameOf = z.string().superRefine(refineWith(checkResourceName));

/**
 * What `POST /v1/agents` accepts: an {@link AgentRegistration} with a resource name for `server`, endpoints that are
 * exactly `http(s)://host:port` and `host:port`, and no field this contract does not name (a typo is an error, not
 * silently dropped).
 */
export const agentRegistrationSchema = z.strictObject({
  server: nameOf,
  replica: z.number().int().min(0),
  capabilities: z.array(z.string().min(1).max(253)).max(256),
  memoryBytes: z.number().int().min(0),
  overcommitPercent: z.number().min(0).optional(),
  processBytes: z.number().int().min(0).optional(),
  endpoints: z.strictObject({
    http: z.string().superRefine(refineWith(checkAgentHttpEndpoint)),
    grpc: z.string().superRefine(refineWith(checkHostPort)).optional(),
  }),
  loaded: z.array(z.strictObject({ model: nameOf, version: z.number().int().min(1) })).default([]),
});

/** What `POST /v1/agents/{server}/{replica}/events` accepts: an {@link AgentEvent}, and no field it does not name. */
export const agentEventSchema = z.strictObject({
  model: nameOf,
  version: z.number().int().min(1),
  state: z.enum(REPLICA_STATES),
  reason: z.string().optional(),
});

export interface AgentView extends AgentRegistration {
  draining: boolean;
  /** True once every model the replica held is available elsewhere (or nothing was held). */
  drained: boolean;
  lastHeartbeatAt: number;
}

/** What a heartbeat body must look like: a typo is an error, not silently dropped. */
export const agentHeartbeatSchema = z.strictObject({
  models: z
    .array(
      z.strictObject({
        model: nameOf,
        inFlight: z.number().int().min(0),
        lag: z.number().min(0),
        requestsPerSecond: z.number().min(0),
        idleMs: z.number().min(0),
      }),
    )
    .max(10_000)
    .default([]),
  processBytes: z.number().int().min(0).optional(),
});
