import { z } from "zod";
import type { PipelineState } from "./status.js";

/**
 * The wire contract between a data-plane worker (a model gateway today, a dataflow worker next) and the scheduler's
 * control API. Workers are not server replicas: they hold no models, they consume Kafka topics, and the scheduler
 * hands each one the share of the work the consistent-hash ring gives it. All bodies are JSON.
 *
 * - `POST   /v1/workers`                              WorkerRegistration → WorkerRegistered; 409 when the kind is full
 * - `POST   /v1/workers/{kind}/{id}/heartbeat`        → 204; 404 means "unknown worker: register again". The body is
 *                                                      empty or a WorkerReport (JSON): a dataflow worker says what it
 *                                                      runs, and sends one at once whenever that changes.
 * - `GET    /v1/workers/{kind}/{id}/assignments`      server-sent events (`event: assignments`); every `data:` is a
 *                                                      WorkerAssignments, the FULL set (level-triggered). The first
 *                                                      event comes at once.
 * - `GET    /v1/workers/{kind}/{id}`                  → WorkerView
 * - `DELETE /v1/workers/{kind}/{id}`                  → 204; the worker is leaving (its share moves at once)
 * - `GET    /v1/workers/{kind}`                       → WorkerKindStatus (replicas; the buckets or the pipelines' owners)
 *
 * A worker silent for the heartbeat timeout is removed and its share moves to the others, like a dead agent.
 */

export const WORKER_KINDS = ["modelgateway", "dataflow"] as const;
export type WorkerKind = (typeof WORKER_KINDS)[number];

/**
 * A worker id: lowercase letters, digits and `-`, starting and ending with a letter or digit, at most 63 characters
 * (a DNS label, so an ECS task or a pod name fits). Stable across restarts (`modelgateway-0`), so the ring gives a
 * restarted worker the same share.
 */
export const WORKER_ID_PATTERN = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export const workerRegistrationSchema = z.strictObject({
  kind: z.enum(WORKER_KINDS),
  id: z
    .string()
    .regex(WORKER_ID_PATTERN, "lowercase letters, digits and '-', starting and ending with a letter or digit, ≤ 63"),
  /** Where the worker serves its own health or metrics, if anywhere (informational). */
  endpoint: z.url({ protocol: /^https?$/ }).optional(),
});

export type WorkerRegistration = z.infer<typeof workerRegistrationSchema>;

/**
 * How a dataflow worker's run of one pipeline stands. `Starting`: the spec is being fetched or the consumer is joining
 * its group; `Ready`: the consumer holds its assignment (possibly no partition, when owners outnumber partitions) and
 * records flow; `Draining`: an old version finishing its in-flight requests; `Failed`: it cannot run (`reason` says why,
 * e.g. the spec does not compile or a topic is missing).
 */
export const PIPELINE_RUN_STATES = ["Starting", "Ready", "Draining", "Failed"] as const;
export type PipelineRunState = (typeof PIPELINE_RUN_STATES)[number];

export const pipelineRunReportSchema = z.strictObject({
  pipeline: z.string().min(1).max(253),
  version: z.number().int().positive(),
  state: z.enum(PIPELINE_RUN_STATES),
  reason: z.string().max(2000).optional(),
  /** The partition numbers its consumer holds now. */
  partitions: z.array(z.number().int().nonnegative()).max(10_000).optional(),
});
export type PipelineRunReport = z.infer<typeof pipelineRunReportSchema>;

/** A heartbeat's optional body: the FULL set of what the worker runs (level-triggered, like the assignments). */
export const workerReportSchema = z.strictObject({
  pipelines: z.array(pipelineRunReportSchema).max(100_000),
});
export type WorkerReport = z.infer<typeof workerReportSchema>;

export interface WorkerRegistered {
  heartbeatIntervalMs: number;
  /** Missing heartbeats for this long gets the worker removed and its share moved to the others. */
  heartbeatTimeoutMs: number;
}

/** One model of a bucket: the topics a model gateway reads and writes for it. */
export interface BucketModel {
  model: string;
  inputTopic: string;
  outputTopic: string;
}

/** One bucket a model gateway holds: it runs one consumer in `groupId`, subscribed to the models' input topics. */
export interface BucketAssignment {
  bucket: number;
  groupId: string;
  models: BucketModel[];
}

/**
 * One pipeline a dataflow worker owns: it runs one consumer in `groupId` (shared with the other owners). The topics
 * come from the compiled spec: the worker fetches the pipeline at `version` from the scheduler.
 */
export interface PipelineAssignment {
  pipeline: string;
  /** The pipeline's version (bumped when its spec changes); a new version means "fetch the spec again". */
  version: number;
  groupId: string;
  /** Every owner of the pipeline, this worker included, in ring order (the first is the primary). */
  owners: string[];
}

/** What a worker must run now (the full set). */
export interface WorkerAssignments {
  revision: number;
  kind: WorkerKind;
  id: string;
  /** The installation's partition count (every topic has it). */
  partitions: number;
  /** Where error records go. */
  errorsTopic: string;
  /** Model gateways: the buckets this replica owns, by bucket number. Empty for other kinds (for now). */
  buckets: BucketAssignment[];
  /** Dataflow workers: the pipelines this worker owns, by name. Empty for other kinds. */
  pipelines: PipelineAssignment[];
}

export interface WorkerView {
  kind: WorkerKind;
  id: string;
  endpoint?: string;
  registeredAt: number;
  /** Epoch ms of the last heartbeat this scheduler saw (heartbeats are not stored: a new leader starts the clock anew). */
  lastHeartbeatAt: number;
  /** `Ready` while heartbeating; `Missing` once the deadline passed and removal is pending. */
  state: "Ready" | "Missing";
  /** Model gateways: the buckets it owns. */
  buckets: number[];
  /** Dataflow workers: the pipelines it owns, by name. */
  pipelines: string[];
}

/** One bucket as `tern list modelgateways` shows it. */
export interface BucketStatus {
  bucket: number;
  groupId: string;
  /** The model gateway replica that owns it, absent while no replica is registered. */
  owner?: string;
  models: string[];
  /** Consumers the scheduler assigned to the bucket's group: 1 when owned, else 0 (never above the partition count). */
  consumers: number;
}

/** One pipeline as `tern list dataflow` shows it. */
export interface PipelinePlacementStatus {
  pipeline: string;
  version: number;
  groupId: string;
  /** In ring order (the first is the primary); empty while no dataflow worker is registered. */
  owners: string[];
  /** The pipeline's state and reason, as `GET /v1/pipelines/{p}` gives them. */
  state?: PipelineState;
  reason?: string;
  /** What the dataflow workers report running for it, by worker id (absent while none reports it). */
  runs?: PipelineRunStatus[];
}

/** One worker's report of one pipeline version, as `tern list dataflow` shows it. */
export interface PipelineRunStatus extends Omit<PipelineRunReport, "pipeline"> {
  worker: string;
}

/** `GET /v1/workers/{kind}`. */
export interface WorkerKindStatus {
  kind: WorkerKind;
  partitions: number;
  /** False when the scheduler has no Kafka admin: topics are not managed and the Kafka path cannot work. */
  kafkaConfigured: boolean;
  replicas: WorkerView[];
  /** Model gateways only: every bucket (owned or not). */
  buckets?: BucketStatus[];
  /** Dataflow workers only: every pipeline with its owners and replication. */
  pipelines?: PipelinePlacementStatus[];
  /** Dataflow workers only: TERN_DATAFLOW_REPLICATION, the most owners a pipeline gets. */
  replication?: number;
}

/** Throws nothing; answers a message naming what is wrong, or undefined for a usable kind/id pair. */
export function checkWorkerPath(kind: string, id: string): string | undefined {
  if (!(WORKER_KINDS as readonly string[]).includes(kind)) {
    return `unknown worker kind "${kind}": expected ${WORKER_KINDS.join(" or ")}`;
  }
  if (!WORKER_ID_PATTERN.test(id)) return `worker id "${id}" is not valid: lowercase letters, digits and '-'`;
  return undefined;
}
