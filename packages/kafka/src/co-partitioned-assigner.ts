import { assignCoPartitioned } from "@tern/core";

/**
 * The co-partitioning assigner in the shape kafkajs expects of a `partitionAssigners` entry. kafkajs's only built-in
 * assigner (round-robin over the flat list of all topic-partitions) puts partition k of two topics on different
 * members whenever the member count does not divide the partition count; Tern's joins and request-scoped state need
 * partition k of every topic on one member. The decision itself is {@link assignCoPartitioned} (pure, in core, shared
 * with the in-memory bus); this file only adapts it to the group protocol. It takes the client's wire codec as a
 * parameter rather than importing kafkajs, so `kafkajs-bus.ts` stays the only file that imports the client.
 *
 * Only the group leader runs `assign`; it sees the topics it subscribed to itself. Tern gives every member of a group
 * the same subscription (one group per pipeline or model bucket), so that is every member's list.
 */

/** Protocol name announced in JoinGroup; every member of a group must offer it. */
export const CO_PARTITIONED_PROTOCOL = "TernCoPartitioned";
const VERSION = 0;

/** The slice of kafkajs's `AssignerProtocol` this assigner uses. */
export interface AssignerWireCodec {
  MemberMetadata: { encode(metadata: { version: number; topics: string[] }): Buffer };
  MemberAssignment: { encode(assignment: { version: number; assignment: Record<string, number[]> }): Buffer };
}

/** The slice of kafkajs's cluster an assigner may read: partition metadata of a subscribed topic. */
export interface AssignerCluster {
  findTopicPartitionMetadata(topic: string): Array<{ partitionId: number }>;
}

export interface GroupMemberAssignment {
  memberId: string;
  memberAssignment: Buffer;
}

/** A factory with kafkajs's `PartitionAssigner` signature. */
export function coPartitionedAssigner(codec: AssignerWireCodec) {
  return ({ cluster }: { cluster: AssignerCluster }) => ({
    name: CO_PARTITIONED_PROTOCOL,
    version: VERSION,
    async assign({
      members,
      topics,
    }: {
      members: Array<{ memberId: string }>;
      topics: string[];
    }): Promise<GroupMemberAssignment[]> {
      const withCounts = topics.map((topic) => ({
        topic,
        partitions: cluster.findTopicPartitionMetadata(topic).length,
      }));
      const assignment = assignCoPartitioned(
        members.map((m) => m.memberId),
        withCounts,
      );
      return Object.entries(assignment).map(([memberId, perTopic]) => ({
        memberId,
        memberAssignment: codec.MemberAssignment.encode({ version: VERSION, assignment: perTopic }),
      }));
    },
    protocol({ topics }: { topics: string[] }) {
      return { name: CO_PARTITIONED_PROTOCOL, metadata: codec.MemberMetadata.encode({ version: VERSION, topics }) };
    },
  });
}
