import { type ReplicaIdDeps, type ResolvedReplicaId, resolveReplicaId } from "@tern/scheduler/replica-id";
import type { DataflowConfig } from "./config.js";

export { createReplicaIdStore } from "@tern/scheduler/replica-id";

/** The worker's id, and the claim that holds it when it was `auto`. */
export type ResolvedDataflowId = ResolvedReplicaId<string>;

/**
 * TERN_DATAFLOW_ID as configured, or for `auto` (ECS) `dataflow-<index>` with the lowest index below
 * TERN_DATAFLOW_ID_MAX that no other dataflow worker holds in the state table (docs/replica-ids.md).
 * @throws TernError `unavailable` when all of them stay taken for TERN_REPLICA_ID_WAIT_MS.
 */
export function resolveDataflowId(config: DataflowConfig, deps: ReplicaIdDeps): Promise<ResolvedDataflowId> {
  return resolveReplicaId({
    ...deps,
    configured: config.TERN_DATAFLOW_ID,
    fromIndex: (index) => `dataflow-${index}`,
    kind: "dataflow",
    cap: config.TERN_DATAFLOW_ID_MAX,
    capReason: `TERN_DATAFLOW_ID_MAX (${config.TERN_DATAFLOW_ID_MAX}) caps the dataflow workers; raise it with the service's task count`,
    label: "dataflow",
    timing: config,
  });
}
