import {
  AUTO_REPLICA_ID,
  claimReplicaIndex,
  type ReplicaIndexClaim,
  type ReplicaIndexLogger,
  type SharedConfig,
  type StateStore,
} from "@tern/core";
import { createDynamoDbStore } from "@tern/scheduler/dynamodb-store";
import type { DataflowConfig } from "./config.js";

/** The worker's id, and the claim that holds it when it was `auto`. */
export interface ResolvedDataflowId {
  id: string;
  claim?: ReplicaIndexClaim;
}

/** The state table (TERN_TABLE) the `auto` claim is written to; making it does no I/O. */
export function createReplicaIdStore(
  config: Pick<SharedConfig, "DYNAMODB_ENDPOINT" | "AWS_REGION" | "TERN_TABLE">,
): StateStore {
  return createDynamoDbStore({
    ...(config.DYNAMODB_ENDPOINT ? { endpoint: config.DYNAMODB_ENDPOINT } : {}),
    region: config.AWS_REGION,
    table: config.TERN_TABLE,
  });
}

/**
 * TERN_DATAFLOW_ID as configured, or for `auto` (ECS) `dataflow-<index>` with the lowest index below
 * TERN_DATAFLOW_ID_MAX that no other dataflow worker holds in the state table (docs/replica-ids.md).
 * @throws TernError `unavailable` when all of them stay taken for TERN_REPLICA_ID_WAIT_MS.
 */
export async function resolveDataflowId(
  config: DataflowConfig,
  deps: { store: StateStore; onLost(reason: string): void; logger?: ReplicaIndexLogger },
): Promise<ResolvedDataflowId> {
  if (config.TERN_DATAFLOW_ID !== AUTO_REPLICA_ID) return { id: config.TERN_DATAFLOW_ID };
  const claim = await claimReplicaIndex({
    store: deps.store,
    kind: "dataflow",
    max: config.TERN_DATAFLOW_ID_MAX,
    ttlMs: config.TERN_REPLICA_ID_TTL_MS,
    waitMs: config.TERN_REPLICA_ID_WAIT_MS,
    label: "dataflow",
    capReason: `TERN_DATAFLOW_ID_MAX (${config.TERN_DATAFLOW_ID_MAX}) caps the dataflow workers; raise it with the service's task count`,
    onLost: deps.onLost,
    ...(deps.logger ? { logger: deps.logger } : {}),
  });
  return { id: `dataflow-${claim.index}`, claim };
}
