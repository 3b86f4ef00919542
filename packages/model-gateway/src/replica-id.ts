import { type ReplicaIdDeps, type ResolvedReplicaId, resolveReplicaId } from "@tern/scheduler/replica-id";
import type { ModelGatewayConfig } from "./config.js";

export { createReplicaIdStore } from "@tern/scheduler/replica-id";

/** The model gateway's id, and the claim that holds it when it was `auto`. */
export type ResolvedModelGatewayId = ResolvedReplicaId<string>;

/**
 * TERN_MODELGATEWAY_ID as configured, or for `auto` (ECS) `modelgateway-<index>` with the lowest index below
 * KAFKA_PARTITIONS that no other model gateway holds (docs/replica-ids.md).
 * @throws TernError `unavailable` when all KAFKA_PARTITIONS ids stay taken for TERN_REPLICA_ID_WAIT_MS.
 */
export function resolveModelGatewayId(
  config: ModelGatewayConfig,
  deps: ReplicaIdDeps,
): Promise<ResolvedModelGatewayId> {
  return resolveReplicaId({
    ...deps,
    configured: config.TERN_MODELGATEWAY_ID,
    fromIndex: (index) => `modelgateway-${index}`,
    kind: "modelgateway",
    cap: config.KAFKA_PARTITIONS,
    capReason: `KAFKA_PARTITIONS (${config.KAFKA_PARTITIONS}) caps the model gateway: a topic's consumers never exceed its partitions`,
    label: "model-gateway",
    timing: config,
  });
}
