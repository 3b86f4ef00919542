import { TernError } from "./errors.js";

/**
 * How a consumer group's partitions are spread over its members: pure functions of (members, topics), so every
 * adapter (the Kafka group leader in `@tern/kafka`, the in-memory bus) computes the same answer. They live in core
 * because both adapters need them and core is the only package both depend on.
 */

/** A subscribed topic and its partition count. */
export interface AssignmentTopic {
  topic: string;
  partitions: number;
}

/** Partitions per topic, per member id. Every member is present, with an entry (maybe empty) for every topic. */
export type GroupAssignment = Record<string, Record<string, number[]>>;

function validate(members: readonly string[], topics: readonly AssignmentTopic[]): string[] {
  for (const { topic, partitions } of topics) {
    if (!Number.isInteger(partitions) || partitions < 0) {
      throw new TernError(
        "bad_request",
        `topic ${topic}: partition count must be a non-negative integer (got ${partitions})`,
      );
    }
  }
  // Sorted, so the answer does not depend on the order in which the members joined (every leader agrees).
  return [...new Set(members)].sort();
}

function empty(members: readonly string[], topics: readonly AssignmentTopic[]): GroupAssignment {
  const out: GroupAssignment = {};
  for (const member of members) {
    const perTopic: Record<string, number[]> = {};
    for (const { topic } of topics) perTopic[topic] = [];
    out[member] = perTopic;
  }
  return out;
}

/**
 * Co-partitioned assignment: partition k of EVERY topic goes to the same member, the owner of k, which is the
 * (k mod n)-th member in sorted id order. So a request that travels on partition k of several topics (a pipeline's
 * inputs, its steps' outputs, its joins) is always handled by one member, which can keep its state in memory.
 *
 * - Balanced: the partition numbers 0..P-1 (P = the largest partition count) are dealt out round the sorted members,
 *   so any two members hold counts that differ by at most 1, per topic and in total.
 * - Deterministic: the same member ids and topics give the same answer whatever their order.
 * - Topics with different partition counts (Tern forbids them, `kafka.partition_mismatch`, but a topic made by
 *   another tool may differ): partition k of each topic that has a partition k follows the owner of k; a topic with
 *   fewer partitions simply has no partition k for the higher owners. Co-partitioning holds for every k that exists.
 * - More members than partitions: the members after the P-th hold nothing (they stand by for a failover).
 */
export function assignCoPartitioned(members: readonly string[], topics: readonly AssignmentTopic[]): GroupAssignment {
  const sorted = validate(members, topics);
  const out = empty(sorted, topics);
  if (sorted.length === 0) return out;
  for (const { topic, partitions } of topics) {
    for (let k = 0; k < partitions; k++) out[sorted[k % sorted.length]!]![topic]!.push(k);
  }
  return out;
}

/**
 * Round-robin over the flat list of all topic-partitions (topics in the given order), as kafkajs's built-in assigner
 * does. Balanced over the whole group, but partition k of two topics lands on different members whenever the
 * member count does not divide the partition count. The in-memory bus uses it to behave like the real client.
 */
export function assignRoundRobin(members: readonly string[], topics: readonly AssignmentTopic[]): GroupAssignment {
  const sorted = validate(members, topics);
  const out = empty(sorted, topics);
  if (sorted.length === 0) return out;
  let i = 0;
  for (const { topic, partitions } of topics) {
    for (let k = 0; k < partitions; k++) out[sorted[i++ % sorted.length]!]![topic]!.push(k);
  }
  return out;
}
