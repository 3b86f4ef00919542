import {
  AUTO_REPLICA_ID,
  claimReplicaIndex,
  type ReplicaIndexClaim,
  type ReplicaIndexLogger,
  type SharedConfig,
  type StateStore,
} from "@tern/core";
import { createDynamoDbStore } from "@tern/scheduler/dynamodb-store";
import type { AgentConfig } from "./config.js";

/** The agent's replica number, and the claim that holds it when it was `auto`. */
export interface ResolvedAgentReplica {
  replica: number;
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
 * TERN_AGENT_REPLICA as configured, or for `auto` (ECS) the lowest replica number below TERN_AGENT_REPLICA_MAX that no
 * other agent of the same Server (TERN_AGENT_SERVER) holds in the state table (docs/replica-ids.md).
 * @throws TernError `unavailable` when all of them stay taken for TERN_REPLICA_ID_WAIT_MS.
 */
export async function resolveAgentReplica(
  config: AgentConfig,
  deps: { store: StateStore; onLost(reason: string): void; logger?: ReplicaIndexLogger },
): Promise<ResolvedAgentReplica> {
  if (config.TERN_AGENT_REPLICA !== AUTO_REPLICA_ID) return { replica: config.TERN_AGENT_REPLICA };
  const server = config.TERN_AGENT_SERVER;
  const claim = await claimReplicaIndex({
    store: deps.store,
    kind: `agent:${server}`,
    max: config.TERN_AGENT_REPLICA_MAX,
    ttlMs: config.TERN_REPLICA_ID_TTL_MS,
    waitMs: config.TERN_REPLICA_ID_WAIT_MS,
    label: `${server} agent`,
    capReason: `TERN_AGENT_REPLICA_MAX (${config.TERN_AGENT_REPLICA_MAX}) caps the agents of one Server; raise it with the Server's maxReplicas`,
    onLost: deps.onLost,
    ...(deps.logger ? { logger: deps.logger } : {}),
  });
  return { replica: claim.index, claim };
}
