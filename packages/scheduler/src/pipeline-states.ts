import { type PipelineRunReport, type PipelineState, parsePipelineRef, type WorkerReport } from "@tern/core";
import { dataflowWorkers } from "./pipeline-placement.js";
import { type ClusterState, type ModelRecord, type PipelineRecord, SERVING_STATES } from "./records.js";

/**
 * Pipeline states (DESIGN §3, issue 10), as pure functions of the cluster state and what the dataflow workers last
 * reported. The reconciler runs them after placing the pipelines, so every change (a model becoming available, a
 * worker joining, a report, a delete) recomputes them.
 *
 * - `PipelineCreating` → `PipelineReady` once every step's model serves (and its topics exist), every pipeline it
 *   reads (`input.externalInputs`/`externalTriggers`) exists, its own topics exist, and every owner reports `Ready`
 *   for the pipeline's current version while no former owner still runs it.
 * - `PipelineRebalancing` instead of Creating when the pipeline had been ready: owners changed, or a new version
 *   is starting; gateways keep serving it meanwhile.
 * - `PipelineFailed` when it cannot become ready without a change: a step model failed (`ScheduleFailed`,
 *   `ModelFailed`) or does not exist, a topic cannot be made, an owner reports `Failed`. Recomputed on every pass,
 *   so it clears once the cause does.
 * - On delete, `PipelineTerminating` while any dataflow worker still reports it (its owners were dropped from the
 *   assignments, so they drain and stop), at most until the drain deadline; then `PipelineTerminated`, kept for the
 *   retention time (as Seldon keeps deleted pipelines) and then removed.
 *
 * Reports are not stored: a newly elected scheduler has none until each worker's next heartbeat. A pipeline whose
 * owners have not reported to this scheduler yet keeps the state it had (Ready stays Ready), so a failover does not
 * flap the states.
 */

/** The join window a step waits for by default (Seldon's), also the drain allowance of a deleted pipeline. */
export const DEFAULT_JOIN_WINDOW_MS = 60_000;

/** @default 24 h: how long a terminated pipeline's record is kept (Seldon's deleted-resource TTL). */
export const DEFAULT_PIPELINE_TERMINATED_RETENTION_MS = 24 * 60 * 60 * 1000;

export interface PipelineStateInputs {
  /** Epoch ms of this pass. */
  now: number;
  /**
   * The last report of each dataflow worker, by worker id. A registered worker absent here has not reported to this
   * scheduler yet (just elected, or just registered): what it runs is unknown.
   */
  reports: ReadonlyMap<string, WorkerReport>;
  /** The scheduler manages topics (it has a Kafka admin): topics must exist before a pipeline is ready. */
  requireTopics: boolean;
  /** A worker silent this long is removed (with its report): part of a deleted pipeline's drain deadline. */
  heartbeatTimeoutMs: number;
  /** How long a terminated pipeline stays visible. @default {@link DEFAULT_PIPELINE_TERMINATED_RETENTION_MS} */
  terminatedRetentionMs?: number;
}

/** What the state function decides for one pipeline. */
export interface PipelineStateDecision {
  state: PipelineState;
  reason?: string;
  readyVersion?: number;
  terminatedAt?: number;
}

/**
 * The pipelines of `state` with their states derived, and terminated ones past their retention removed. Records
 * whose decision did not change are returned as they were (the same objects), so only changed ones are written.
 */
export function derivePipelineStates(state: ClusterState, inputs: PipelineStateInputs): Map<string, PipelineRecord> {
  const out = new Map<string, PipelineRecord>();
  const retention = inputs.terminatedRetentionMs ?? DEFAULT_PIPELINE_TERMINATED_RETENTION_MS;
  const index = indexReports(state, inputs);
  for (const [id, record] of state.pipelines) {
    if (record.terminatedAt !== undefined && inputs.now >= record.terminatedAt + retention) continue;
    const decision = decidePipelineState(record, state, inputs, index);
    if (sameDecision(record, decision)) {
      out.set(id, record);
      continue;
    }
    const { reason: _r, readyVersion: _v, terminatedAt: _t, ...rest } = record;
    const next: PipelineRecord = { ...rest, state: decision.state };
    if (decision.reason !== undefined) next.reason = decision.reason;
    if (decision.readyVersion !== undefined) next.readyVersion = decision.readyVersion;
    if (decision.terminatedAt !== undefined) next.terminatedAt = decision.terminatedAt;
    out.set(id, next);
  }
  return out;
}

/** The drain deadline of a deleted pipeline: the heartbeat timeout (a dead worker's report goes) plus its longest join window. */
export function terminateDeadline(record: PipelineRecord, heartbeatTimeoutMs: number): number | undefined {
  if (record.deletedAt === undefined) return undefined;
  return record.deletedAt + heartbeatTimeoutMs + longestJoinWindow(record);
}

/** True when a time-driven transition is due (a drain deadline passed, or a terminated record's retention ended). */
export function pipelineDeadlineDue(state: ClusterState, inputs: PipelineStateInputs): boolean {
  const retention = inputs.terminatedRetentionMs ?? DEFAULT_PIPELINE_TERMINATED_RETENTION_MS;
  for (const p of state.pipelines.values()) {
    if (p.terminatedAt !== undefined) {
      if (inputs.now >= p.terminatedAt + retention) return true;
      continue;
    }
    const deadline = terminateDeadline(p, inputs.heartbeatTimeoutMs);
    if (deadline !== undefined && inputs.now >= deadline) return true;
  }
  return false;
}

/** The registered dataflow workers, and what each reports running, by pipeline then worker: built once per pass. */
export interface ReportIndex {
  workers: string[];
  runs: Map<string, Map<string, PipelineRunReport[]>>;
}

export function indexReports(state: ClusterState, inputs: PipelineStateInputs): ReportIndex {
  const workers = dataflowWorkers(state);
  const runs = new Map<string, Map<string, PipelineRunReport[]>>();
  for (const worker of workers) {
    for (const run of inputs.reports.get(worker)?.pipelines ?? []) {
      let byWorker = runs.get(run.pipeline);
      if (byWorker === undefined) {
        byWorker = new Map();
        runs.set(run.pipeline, byWorker);
      }
      const list = byWorker.get(worker) ?? [];
      list.push(run);
      byWorker.set(worker, list);
    }
  }
  return { workers, runs };
}

/** The state of one pipeline (see the module comment for the rules). */
export function decidePipelineState(
  record: PipelineRecord,
  state: ClusterState,
  inputs: PipelineStateInputs,
  index: ReportIndex = indexReports(state, inputs),
): PipelineStateDecision {
  const version = record.version ?? 1;
  const name = record.name;
  if (record.terminatedAt !== undefined) return { state: "PipelineTerminated", terminatedAt: record.terminatedAt };
  const { workers } = index;
  const reported = index.runs.get(name);
  const runs = (worker: string): PipelineRunReport[] => reported?.get(worker) ?? [];

  if (record.deletedAt !== undefined) {
    const unheard = workers.filter((w) => !inputs.reports.has(w));
    const running = [...(reported?.keys() ?? [])].sort();
    const deadline = terminateDeadline(record, inputs.heartbeatTimeoutMs)!;
    if ((running.length === 0 && unheard.length === 0) || inputs.now >= deadline) {
      const decision: PipelineStateDecision = { state: "PipelineTerminated", terminatedAt: inputs.now };
      const still = [...running, ...unheard];
      if (still.length > 0) {
        decision.reason = `terminated at the drain deadline while ${list(still)} had not reported stopping it`;
      }
      return decision;
    }
    const waiting = running.length > 0 ? running : unheard;
    const what = running.length > 0 ? "to stop running it" : "to report what they run";
    return {
      state: "PipelineTerminating",
      reason: `waiting for dataflow ${workerWord(waiting)} ${list(waiting)} ${what}`,
    };
  }

  const failed: string[] = [];
  const waiting: string[] = [];
  const keep = record.readyVersion === undefined ? {} : { readyVersion: record.readyVersion };
  const notReady = (): PipelineStateDecision => {
    if (failed.length > 0) return { state: "PipelineFailed", reason: sentence(failed), ...keep };
    return { state: "PipelineCreating", reason: sentence(waiting), ...keep };
  };

  for (const model of stepModels(record)) {
    const m = state.models.get(model);
    if (m === undefined) {
      failed.push(`step ${model}: model ${model} does not exist`);
    } else if (m.deleting) {
      failed.push(`step ${model}: model ${model} is being deleted`);
    } else if (!serves(m)) {
      if (m.state === "ScheduleFailed" || m.state === "ModelFailed") {
        failed.push(`step ${model}: model ${model} is ${m.state}${m.reason === undefined ? "" : ` (${m.reason})`}`);
      } else {
        waiting.push(`model ${model} is not available yet${m.reason === undefined ? "" : ` (${m.reason})`}`);
      }
    } else if (inputs.requireTopics && m.topics?.ready !== true) {
      if (m.topics?.reason !== undefined) failed.push(`step ${model}: model ${model}'s topics: ${m.topics.reason}`);
      else waiting.push(`model ${model}'s topics are being created`);
    }
  }
  for (const other of externalPipelines(record)) {
    const p = state.pipelines.get(other);
    if (p === undefined || p.deletedAt !== undefined || p.terminatedAt !== undefined) {
      waiting.push(`pipeline ${other}, which input.externalInputs reads, does not exist`);
    } else if (inputs.requireTopics && p.topics?.ready !== true) {
      waiting.push(`pipeline ${other}'s topics are being created`);
    }
  }
  if (inputs.requireTopics && record.topics?.ready !== true) {
    if (record.topics?.reason !== undefined) failed.push(`the pipeline's topics: ${record.topics.reason}`);
    else waiting.push("the pipeline's topics are being created");
  }
  if (failed.length > 0 || waiting.length > 0) return notReady();

  if (workers.length === 0) return { state: "PipelineCreating", reason: "no dataflow worker registered", ...keep };
  const owners = record.owners ?? [];
  const unheard: string[] = [];
  const pending: string[] = [];
  for (const owner of owners) {
    const report = inputs.reports.get(owner);
    if (report === undefined) {
      unheard.push(owner);
      continue;
    }
    const run = runs(owner).find((r) => r.version === version);
    if (run === undefined) pending.push(`${owner} has not started it`);
    else if (run.state === "Failed") {
      failed.push(`dataflow worker ${owner} cannot run version ${version}: ${run.reason ?? "no reason given"}`);
    } else if (run.state !== "Ready") pending.push(`${owner} reports ${run.state}`);
  }
  if (failed.length > 0) return notReady();
  // Former owners that still run it hold partitions of its group: the assignment is not settled yet.
  const leaving = [...(reported?.keys() ?? [])]
    .filter((w) => !owners.includes(w) && runs(w).some((r) => r.state === "Starting" || r.state === "Ready"))
    .sort();
  const served = record.readyVersion !== undefined;
  if (unheard.length > 0) {
    // Just elected (or the worker just registered): keep what the store says until the owners report.
    if (
      (record.state === "PipelineReady" && record.readyVersion === version) ||
      record.state === "PipelineRebalancing"
    ) {
      return record.reason === undefined
        ? { state: record.state, ...keep }
        : { state: record.state, reason: record.reason, ...keep };
    }
    pending.push(`${list(unheard)} ${unheard.length === 1 ? "has" : "have"} not reported yet`);
  }
  if (pending.length > 0 || leaving.length > 0) {
    const parts: string[] = [];
    if (pending.length > 0) parts.push(`waiting for its owners to run version ${version}: ${pending.join(", ")}`);
    if (leaving.length > 0)
      parts.push(`${list(leaving)} still ${leaving.length === 1 ? "runs" : "run"} it (no longer an owner)`);
    return { state: served ? "PipelineRebalancing" : "PipelineCreating", reason: sentence(parts), ...keep };
  }
  return { state: "PipelineReady", readyVersion: version };
}

/** The models a pipeline's steps call (a step is named after its model), in order, once each. */
export function stepModels(record: PipelineRecord): string[] {
  return [...new Set(record.resource.spec.steps.map((s) => s.name))];
}

/** The other pipelines a pipeline reads (`input.externalInputs` and `externalTriggers`), sorted, once each. */
export function externalPipelines(record: PipelineRecord): string[] {
  const input = record.resource.spec.input;
  const names = new Set<string>();
  for (const ref of [...(input?.externalInputs ?? []), ...(input?.externalTriggers ?? [])]) {
    const parsed = parsePipelineRef(ref, { pipelineName: record.name, scope: "external" });
    if (parsed.ok && parsed.ref.kind !== "step") names.add(parsed.ref.pipeline);
  }
  return [...names].sort();
}

/** The longest join window of any stage (the default when none is set): how long an in-flight request may wait. */
function longestJoinWindow(record: PipelineRecord): number {
  const spec = record.resource.spec;
  const windows = [...spec.steps.map((s) => s.joinWindowMs), spec.input?.joinWindowMs, spec.output?.joinWindowMs].map(
    (w) => w ?? DEFAULT_JOIN_WINDOW_MS,
  );
  return Math.max(...windows);
}

/** Some version of the model has a serving replica (it has a route), as the route table sees it. */
function serves(model: ModelRecord): boolean {
  return model.versions.some((v) => v.replicas.some((r) => SERVING_STATES.has(r.state)));
}

function sameDecision(record: PipelineRecord, d: PipelineStateDecision): boolean {
  return (
    record.state === d.state &&
    record.reason === d.reason &&
    record.readyVersion === d.readyVersion &&
    record.terminatedAt === d.terminatedAt
  );
}

/** Joins clauses into one sentence. */
function sentence(parts: string[]): string {
  return parts.join("; ");
}

function list(items: string[]): string {
  return items.join(", ");
}

function workerWord(items: string[]): string {
  return items.length === 1 ? "worker" : "workers";
}
