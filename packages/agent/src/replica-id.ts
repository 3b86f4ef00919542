import type { ReplicaIndexClaim } from "@tern/core";
import { type ReplicaIdDeps, resolveReplicaId } from "@tern/scheduler/replica-id";
import type { AgentConfig } from "./config.js";

export { createReplicaIdStore } from "@tern/scheduler/replica-id";

/** The agent's replica number, and the claim that holds it when it was `auto`. */
export interface ResolvedAgentReplica {
  replica: number;
  claim?: ReplicaIndexClaim;
}

/**
 * TERN_AGENT_REPLICA as configured, or for `auto` (ECS) the lowest replica number below TERN_AGENT_REPLICA_MAX that no
 * other agent of the same Server (TERN_AGENT_SERVER) holds in the state table (docs/replica-ids.md).
 * @throws TernError `unavailable` when all of them stay taken for TERN_REPLICA_ID_WAIT_MS.
 */
export async function resolveAgentReplica(config: AgentConfig, deps: ReplicaIdDeps): Promise<ResolvedAgentReplica> {
  const server = config.TERN_AGENT_SERVER;
  const { id, claim } = await resolveReplicaId({
    ...deps,
    configured: config.TERN_AGENT_REPLICA,
    fromIndex: (index) => index,
    kind: `agent:${server}`,
    cap: config.TERN_AGENT_REPLICA_MAX,
    capReason: `TERN_AGENT_REPLICA_MAX (${config.TERN_AGENT_REPLICA_MAX}) caps the agents of one Server; raise it with the Server's maxReplicas`,
    label: `${server} agent`,
    timing: config,
  });
  return { replica: id, claim };
}
