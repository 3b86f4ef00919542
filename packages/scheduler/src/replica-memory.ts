import type { ReplicaRecord } from "./records.js";

/**
 * A change of a replica's reported process memory smaller than this is not written: MLServer's resident memory moves
 * by a few KiB between heartbeats, and every write is a store transaction and a reconcile pass.
 */
export const PROCESS_BYTES_STEP = 16 * 1024 * 1024;

/**
 * Memory placement may fill on a replica: its capacity with the over-commit, less what its runtime process holds
 * beyond its models' declared memory (`processBytes`, reported by the agent). Never below 0.
 */
export function placementCapacity(
  replica: Pick<ReplicaRecord, "memoryBytes" | "overcommitPercent" | "processBytes">,
): number {
  const withOvercommit = Math.floor(replica.memoryBytes * (1 + (replica.overcommitPercent ?? 0) / 100));
  return Math.max(0, withOvercommit - (replica.processBytes ?? 0));
}

/** True when a heartbeat's `processBytes` differs enough from the stored one to be written (see PROCESS_BYTES_STEP). */
export function processBytesChanged(stored: number | undefined, reported: number): boolean {
  return Math.abs(reported - (stored ?? 0)) >= PROCESS_BYTES_STEP;
}
