import {
  TernError,
  type TopicNames,
  type WorkerAssignments,
  type WorkerKind,
  type WorkerKindStatus,
  type WorkerRegistered,
  type WorkerRegistration,
  type WorkerReport,
  type WorkerView,
} from "@tern/core";
import type { Logger } from "pino";
import { bucketStatuses, modelGatewayAssignments } from "./bucket-placement.js";
import { dataflowAssignments, pipelinePlacements } from "./pipeline-placement.js";
import { type ClusterState, type WorkerRecord, workerId } from "./records.js";

/**
 * Data-plane workers (model gateways, dataflow workers): registration, heartbeats, removal when they stop
 * heartbeating (the same rule as agents), and the assignments stream each one follows. The records and the buckets
 * live in the cluster state (the reconciler places the buckets); this module only keeps what is not stored —
 * heartbeat times and open streams — and turns the state into each worker's assignments (a model gateway's buckets,
 * a dataflow worker's pipelines).
 */

export interface WorkerAssignmentsListener {
  assignments(a: WorkerAssignments): void;
  close(): void;
}

/** What the registry needs from the scheduler that composes it. */
export interface WorkerRegistryOptions {
  logger: Logger;
  now: () => number;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  /** KAFKA_PARTITIONS: also the most model gateways that may register. */
  partitions: number;
  buckets: number;
  /** TERN_DATAFLOW_REPLICATION (reported in the dataflow status). */
  replication: number;
  topicNames: TopicNames;
  /** Whether the scheduler has a Kafka admin (reported in the status). */
  kafkaConfigured: boolean;
  state(): ClusterState;
  revision(): number;
  /** Runs a change through the scheduler's queue (clone, mutate, reconcile, persist). */
  change<T>(mutate: (draft: ClusterState) => T): Promise<T>;
  /** Throws `unavailable` when this scheduler no longer acts. */
  ensureRunning(): void;
}

export interface WorkerRegistry {
  register(registration: WorkerRegistration): Promise<WorkerRegistered>;
  /** False when the worker is unknown (it must register again). */
  heartbeat(kind: WorkerKind, id: string): boolean;
  /**
   * A heartbeat carrying what the worker runs (dataflow workers). Kept in memory only; when it differs from the last
   * one, resolves after a change has recomputed the pipeline states. False when the worker is unknown.
   */
  report(kind: WorkerKind, id: string, report: WorkerReport): Promise<boolean>;
  /** The last report of each registered dataflow worker that has reported to this scheduler, by worker id. */
  dataflowReports(): ReadonlyMap<string, WorkerReport>;
  remove(kind: WorkerKind, id: string): Promise<void>;
  view(kind: WorkerKind, id: string): WorkerView | undefined;
  /** Undefined when the worker is not registered. The listener gets the current assignments at once. */
  watch(kind: WorkerKind, id: string, listener: WorkerAssignmentsListener): (() => void) | undefined;
  status(kind: WorkerKind): WorkerKindStatus;
  /** Removes workers whose heartbeat deadline passed. */
  checkHeartbeats(): Promise<void>;
  /** Every stored worker gets a full deadline from now (heartbeats are not stored). */
  started(): void;
  /** After the scheduler swapped in a new state: workers whose assignments changed get them. */
  adopted(before: ClusterState, after: ClusterState): void;
  /** Ends every stream. */
  close(): void;
}

export function createWorkerRegistry(options: WorkerRegistryOptions): WorkerRegistry {
  const { logger, now } = options;
  const heartbeats = new Map<string, number>();
  /** Dataflow workers' last reports, by worker id (not stored: a new leader learns them at the next heartbeat). */
  const reports = new Map<string, WorkerReport>();
  const listeners = new Map<string, Set<WorkerAssignmentsListener>>();

  function assignmentsOf(state: ClusterState, record: WorkerRecord): WorkerAssignments {
    if (record.kind === "modelgateway") {
      return modelGatewayAssignments(
        state.buckets.values(),
        record.id,
        options.topicNames,
        options.partitions,
        options.revision(),
      );
    }
    return dataflowAssignments(
      state.pipelines.values(),
      record.id,
      options.topicNames,
      options.partitions,
      options.revision(),
    );
  }

  /** The part of the assignments that matters for change detection (the revision always moves). */
  function shareOf(state: ClusterState, key: string): string {
    const record = state.workers.get(key);
    if (record === undefined) return "";
    const a = assignmentsOf(state, record);
    return JSON.stringify([a.buckets, a.pipelines]);
  }

  function viewOf(state: ClusterState, record: WorkerRecord): WorkerView {
    const key = workerId(record.kind, record.id);
    const last = heartbeats.get(key) ?? 0;
    const view: WorkerView = {
      kind: record.kind,
      id: record.id,
      registeredAt: record.registeredAt,
      lastHeartbeatAt: last,
      state: now() - last > options.heartbeatTimeoutMs ? "Missing" : "Ready",
      buckets: [...state.buckets.values()]
        .filter((b) => b.owner === record.id && record.kind === "modelgateway")
        .map((b) => b.bucket)
        .sort((a, b) => a - b),
      pipelines: [...state.pipelines.values()]
        .filter((p) => record.kind === "dataflow" && p.owners?.includes(record.id) === true)
        .map((p) => p.name)
        .sort(),
    };
    if (record.endpoint !== undefined) view.endpoint = record.endpoint;
    return view;
  }

  function closeStreams(key: string): void {
    const set = listeners.get(key);
    if (set === undefined) return;
    listeners.delete(key);
    for (const l of set) l.close();
  }

  const registry: WorkerRegistry = {
    async register(reg) {
      const key = workerId(reg.kind, reg.id);
      // A (re-)registering worker starts afresh: what it ran before is not what it runs now (the change below
      // recomputes the states without it).
      if (reg.kind === "dataflow") reports.delete(reg.id);
      await options.change((draft) => {
        const prev = draft.workers.get(key);
        if (reg.kind === "modelgateway" && prev === undefined) {
          const others = [...draft.workers.values()].filter((w) => w.kind === "modelgateway").length;
          if (others >= options.partitions) {
            throw new TernError(
              "conflict",
              `model gateway ${reg.id} refused: ${others} model-gateway replicas are registered and KAFKA_PARTITIONS is ` +
                `${options.partitions}; a replica beyond the partition count would sit idle`,
            );
          }
        }
        const record: WorkerRecord = { kind: reg.kind, id: reg.id, registeredAt: prev?.registeredAt ?? now() };
        if (reg.endpoint !== undefined) record.endpoint = reg.endpoint;
        draft.workers.set(key, record);
      });
      heartbeats.set(key, now());
      logger.info({ kind: reg.kind, id: reg.id }, "worker registered");
      return { heartbeatIntervalMs: options.heartbeatIntervalMs, heartbeatTimeoutMs: options.heartbeatTimeoutMs };
    },

    heartbeat(kind, id) {
      options.ensureRunning();
      const key = workerId(kind, id);
      if (!options.state().workers.has(key)) return false;
      heartbeats.set(key, now());
      return true;
    },

    async report(kind, id, report) {
      if (!registry.heartbeat(kind, id)) return false;
      // Model gateways run no pipelines: their reports carry nothing the scheduler uses.
      if (kind !== "dataflow") return true;
      const normalized = normalizeReport(report);
      const previous = reports.get(id);
      if (previous !== undefined && JSON.stringify(previous) === JSON.stringify(normalized)) return true;
      reports.set(id, normalized);
      try {
        await options.change(() => undefined);
      } catch (err) {
        // Not applied: forget it, so the worker's next heartbeat (the same report) runs the change again.
        if (reports.get(id) === normalized) reports.delete(id);
        throw err;
      }
      return true;
    },

    dataflowReports() {
      const state = options.state();
      for (const id of reports.keys()) if (!state.workers.has(workerId("dataflow", id))) reports.delete(id);
      return reports;
    },

    async remove(kind, id) {
      const key = workerId(kind, id);
      await options.change((draft) => {
        if (!draft.workers.delete(key)) throw new TernError("not_found", `unknown worker ${kind}/${id}`);
      });
      heartbeats.delete(key);
      if (kind === "dataflow") reports.delete(id);
      closeStreams(key);
      logger.info({ kind, id }, "worker left");
    },

    view(kind, id) {
      const state = options.state();
      const record = state.workers.get(workerId(kind, id));
      return record === undefined ? undefined : viewOf(state, record);
    },

    watch(kind, id, listener) {
      options.ensureRunning();
      const key = workerId(kind, id);
      const state = options.state();
      const record = state.workers.get(key);
      if (record === undefined) return undefined;
      let set = listeners.get(key);
      if (set === undefined) {
        set = new Set();
        listeners.set(key, set);
      }
      set.add(listener);
      listener.assignments(assignmentsOf(state, record));
      return () => {
        set.delete(listener);
        if (set.size === 0 && listeners.get(key) === set) listeners.delete(key);
      };
    },

    status(kind) {
      const state = options.state();
      const replicas = [...state.workers.values()]
        .filter((w) => w.kind === kind)
        .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
        .map((w) => viewOf(state, w));
      const status: WorkerKindStatus = {
        kind,
        partitions: options.partitions,
        kafkaConfigured: options.kafkaConfigured,
        replicas,
      };
      if (kind === "modelgateway") {
        status.buckets = bucketStatuses(state, { buckets: options.buckets, topicNames: options.topicNames });
      }
      if (kind === "dataflow") {
        status.replication = options.replication;
        status.pipelines = pipelinePlacements(state, { topicNames: options.topicNames }, registry.dataflowReports());
      }
      return status;
    },

    async checkHeartbeats() {
      const t = now();
      const late = (key: string) => t - (heartbeats.get(key) ?? t) > options.heartbeatTimeoutMs;
      const expired = [...options.state().workers.keys()].filter(late);
      if (expired.length === 0) return;
      await options.change((draft) => {
        // Re-check inside the queue: the worker may have come back while earlier changes ran.
        for (const key of expired) if (late(key)) draft.workers.delete(key);
      });
      for (const key of expired) {
        if (options.state().workers.has(key)) continue;
        logger.warn(
          { worker: key, heartbeatTimeoutMs: options.heartbeatTimeoutMs },
          "worker missed its heartbeat deadline: removed, its share moved to the others",
        );
        heartbeats.delete(key);
        if (key.startsWith("dataflow/")) reports.delete(key.slice("dataflow/".length));
        closeStreams(key);
      }
    },

    started() {
      const t = now();
      for (const key of options.state().workers.keys()) heartbeats.set(key, t);
    },

    adopted(before, after) {
      for (const [key, set] of listeners) {
        const record = after.workers.get(key);
        if (record === undefined || shareOf(before, key) === shareOf(after, key)) continue;
        const assignments = assignmentsOf(after, record);
        for (const l of set) l.assignments(assignments);
      }
    },

    close() {
      for (const key of [...listeners.keys()]) closeStreams(key);
    },
  };
  return registry;
}

/** A report in a canonical order (by pipeline, then version), so that a reordered but equal report changes nothing. */
function normalizeReport(report: WorkerReport): WorkerReport {
  const pipelines = [...report.pipelines]
    .map((p) => (p.partitions === undefined ? { ...p } : { ...p, partitions: [...p.partitions].sort((a, b) => a - b) }))
    .sort((a, b) => (a.pipeline < b.pipeline ? -1 : a.pipeline > b.pipeline ? 1 : a.version - b.version));
  return { pipelines };
}
