import {
  AUTO_REPLICA_ID,
  claimReplicaIndex,
  type ReplicaIndexClaim,
  type ReplicaIndexLogger,
  type SharedConfig,
  type StateStore,
} from "@tern/core";
import { createDynamoDbStore } from "@tern/scheduler/dynamodb-store";
import type { ModelGatewayConfig } from "./config.js";

/** The model gateway's id, and the claim that holds it when it was `auto`. */
export interface ResolvedModelGatewayId {
  id: string;
  claim?: ReplicaIndexClaim;
}

/** The state table (TERN_TABLE) the `auto` claim is written to. */
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
 * TERN_MODELGATEWAY_ID as configured, or for `auto` (ECS) `modelgateway-<index>` with the lowest index below
 * KAFKA_PARTITIONS that no other model gateway holds (docs/replica-ids.md).
 * @throws TernError `unavailable` when all KAFKA_PARTITIONS ids stay taken for TERN_REPLICA_ID_WAIT_MS.
 */
export async function resolveModelGatewayId(
  config: ModelGatewayConfig,
  deps: { store: StateStore; onLost(reason: string): void; logger?: ReplicaIndexLogger },
): Promise<ResolvedModelGatewayId> {
  if (config.TERN_MODELGATEWAY_ID !== AUTO_REPLICA_ID) return { id: config.TERN_MODELGATEWAY_ID };
  const claim = await claimReplicaIndex({
    store: deps.store,
    kind: "modelgateway",
    max: config.KAFKA_PARTITIONS,
    ttlMs: config.TERN_REPLICA_ID_TTL_MS,
    waitMs: config.TERN_REPLICA_ID_WAIT_MS,
    label: "model-gateway",
    capReason: `KAFKA_PARTITIONS (${config.KAFKA_PARTITIONS}) caps the model gateway: a topic's consumers never exceed its partitions`,
    onLost: deps.onLost,
    ...(deps.logger ? { logger: deps.logger } : {}),
  });
  return { id: `modelgateway-${claim.index}`, claim };
}
