import type { BucketAssignment, WorkerClient } from "@tern/core";

/**
 * Where a model-gateway replica learns which buckets it holds. The process follows the scheduler through core's
 * worker client ({@link bucketAssignmentSource}); tests can hand assignments over directly with
 * {@link createMemoryAssignmentSource}.
 */
export interface AssignmentSource {
  /** Starts following; `onChange` gets every new assignment (the first as soon as it is known). */
  start(onChange: (buckets: BucketAssignment[]) => void): Promise<void>;
  /** Stops following (and tells the scheduler this replica is leaving, where it can). Idempotent. */
  close(): Promise<void>;
}

export interface MemoryAssignmentSource extends AssignmentSource {
  set(buckets: BucketAssignment[]): void;
}

export function createMemoryAssignmentSource(initial: BucketAssignment[] = []): MemoryAssignmentSource {
  let current = initial;
  let listener: ((buckets: BucketAssignment[]) => void) | undefined;
  return {
    async start(onChange) {
      listener = onChange;
      onChange(current);
    },
    set(buckets) {
      current = buckets;
      listener?.(buckets);
    },
    async close() {
      listener = undefined;
    },
  };
}

/** The buckets of the scheduler's assignments to this replica, as core's worker client follows them. */
export function bucketAssignmentSource(client: WorkerClient): AssignmentSource {
  return {
    start: (onChange) => client.start((assignments) => onChange(assignments.buckets)),
    close: () => client.close(),
  };
}
