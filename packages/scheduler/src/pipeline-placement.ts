import {
  createHashRing,
  createTopicNames,
  type HashRing,
  type PipelineAssignment,
  type PipelinePlacementStatus,
  type PipelineRunStatus,
  type TopicNames,
  type WorkerAssignments,
  type WorkerReport,
} from "@tern/core";
import type { ClusterState, PipelineRecord } from "./records.js";

/**
 * Where pipelines run (DESIGN §3, issue 10), as pure functions of the cluster state: each pipeline is owned by
 * R = min(dataflow workers, TERN_DATAFLOW_REPLICATION) distinct workers, the first R the consistent-hash ring meets
 * clockwise from the pipeline's hash. The owners share the pipeline's own consumer group, so a pipeline's partitions
 * are spread over its owners and a crashed owner's partitions go to the others.
 *
 * Why the ring: a worker joining enters about R/(N+1) of the owner sets and replaces exactly one owner in each (the
 * R−1 others keep their partitions' state); a worker leaving changes only the sets it was in. While fewer workers than
 * R are registered every set holds them all and simply grows by one on a join. The reconciler stores the owners in
 * each pipeline record, so a standby serves the same answer.
 */

/**
 * @default 2 (see TERN_DATAFLOW_REPLICATION). Two owners per pipeline: when one crashes the other already runs a
 * consumer in the pipeline's group, so its partitions move within one group rebalance (bounded by the session
 * timeout) instead of waiting for the scheduler to notice the missed heartbeats and a new consumer to start; and a
 * pipeline's load is spread over two workers. Each extra owner costs every worker one more consumer per pipeline and
 * makes a join move more pipelines (R/(N+1) of them), so we stop at two.
 */
export const DEFAULT_DATAFLOW_REPLICATION = 2;

export interface PipelinePlacementOptions {
  /** TERN_DATAFLOW_REPLICATION: the most owners a pipeline gets. @default 2 */
  replication?: number;
  /** Topic names of the installation (their namespace also names the groups). @default seldon/default */
  topicNames?: TopicNames;
}

/** The consumer group every owner of pipeline `p` joins: `tern.<namespace>.dataflow.pipeline.<p>`. */
export function pipelineGroupId(names: TopicNames, pipeline: string): string {
  return `tern.${names.namespace}.dataflow.pipeline.${pipeline}`;
}

/** The ids of the registered dataflow workers, sorted. */
export function dataflowWorkers(state: ClusterState): string[] {
  const ids: string[] = [];
  for (const w of state.workers.values()) if (w.kind === "dataflow") ids.push(w.id);
  return ids.sort(compareStrings);
}

/**
 * The owner set of `pipeline` on `ring`: min(ring size, replication) distinct workers in ring order from the
 * pipeline's hash (the first is the primary). The ring key is the pipeline name itself.
 */
export function pipelineOwners(ring: HashRing, pipeline: string, replication: number): string[] {
  return ring.lookup(pipeline, replication);
}

/**
 * Whether a pipeline is placed: not once it is deleted. A deleted pipeline leaves its owners' assignments at once, which
 * is how they learn to drain it and stop (it is `PipelineTerminating` until they report it gone).
 */
export function isPlaced(p: PipelineRecord): boolean {
  return p.deletedAt === undefined && p.terminatedAt === undefined && p.state !== "PipelineTerminated";
}

/**
 * The pipelines of `state` with their owners set (absent while no dataflow worker is registered). Records whose
 * owners did not change are returned as they were (the same objects), so the store writes only the moved ones.
 */
export function placePipelines(
  state: ClusterState,
  options: PipelinePlacementOptions = {},
): Map<string, PipelineRecord> {
  const replication = options.replication ?? DEFAULT_DATAFLOW_REPLICATION;
  const ring = createHashRing({ nodes: dataflowWorkers(state) });
  const out = new Map<string, PipelineRecord>();
  for (const [id, record] of state.pipelines) {
    const owners = isPlaced(record) ? pipelineOwners(ring, record.name, replication) : [];
    if (sameOwners(record.owners, owners)) {
      out.set(id, record);
      continue;
    }
    const { owners: _old, ...rest } = record;
    out.set(id, owners.length === 0 ? rest : { ...rest, owners });
  }
  return out;
}

/** The pipeline's version (records stored before versions existed count as version 1). */
export function pipelineVersion(p: PipelineRecord): number {
  return p.version ?? 1;
}

/** What one dataflow worker must run: the stored pipelines it owns, by name, with their groups and co-owners. */
export function dataflowAssignments(
  pipelines: Iterable<PipelineRecord>,
  id: string,
  names: TopicNames,
  partitions: number,
  revision: number,
): WorkerAssignments {
  const own: PipelineAssignment[] = [...pipelines]
    .filter((p) => p.owners?.includes(id) === true)
    .sort((a, b) => compareStrings(a.name, b.name))
    .map((p) => ({
      pipeline: p.name,
      version: pipelineVersion(p),
      groupId: pipelineGroupId(names, p.name),
      owners: [...(p.owners ?? [])],
    }));
  return {
    revision,
    kind: "dataflow",
    id,
    partitions,
    errorsTopic: names.errors(),
    buckets: [],
    pipelines: own,
  };
}

/**
 * Every stored pipeline with its stored owners, state and reason, sorted by name; with `reports` (the dataflow workers'
 * last reports, by worker id), also what each worker reports running for it.
 */
export function pipelinePlacements(
  state: ClusterState,
  options: PipelinePlacementOptions = {},
  reports: ReadonlyMap<string, WorkerReport> = new Map(),
): PipelinePlacementStatus[] {
  const names = options.topicNames ?? createTopicNames();
  const runs = new Map<string, PipelineRunStatus[]>();
  for (const worker of [...reports.keys()].sort(compareStrings)) {
    for (const { pipeline, ...run } of reports.get(worker)!.pipelines) {
      const list = runs.get(pipeline) ?? [];
      list.push({ worker, ...run });
      runs.set(pipeline, list);
    }
  }
  return [...state.pipelines.values()]
    .sort((a, b) => compareStrings(a.name, b.name))
    .map((p) => {
      const status: PipelinePlacementStatus = {
        pipeline: p.name,
        version: pipelineVersion(p),
        groupId: pipelineGroupId(names, p.name),
        owners: [...(p.owners ?? [])],
        state: p.state,
      };
      if (p.reason !== undefined) status.reason = p.reason;
      const reported = runs.get(p.name);
      if (reported !== undefined) status.runs = reported;
      return status;
    });
}

function sameOwners(a: readonly string[] | undefined, b: readonly string[]): boolean {
  const left = a ?? [];
  return left.length === b.length && left.every((x, i) => x === b[i]);
}

// Code-unit order, not localeCompare: the order must be the same on every machine.
function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
