import { describe, expect, it } from "vitest";
import { CO_PARTITIONED_PROTOCOL, kafkaCoPartitionedAssigner } from "../../src/index.js";

/**
 * A decoder written from the Kafka consumer protocol (ConsumerProtocolAssignment v0: int16 version, then an array of
 * [string topic, int32 array of partitions], then bytes of user data), independent of the client's own codec: the
 * assignment must read the same in any client of the group.
 */
function decodeAssignment(buffer: Buffer): { version: number; assignment: Record<string, number[]> } {
  let at = 0;
  const int16 = () => {
    const v = buffer.readInt16BE(at);
    at += 2;
    return v;
  };
  const int32 = () => {
    const v = buffer.readInt32BE(at);
    at += 4;
    return v;
  };
  const version = int16();
  const assignment: Record<string, number[]> = {};
  const topics = int32();
  for (let t = 0; t < topics; t++) {
    const length = int16();
    const topic = buffer.toString("utf8", at, at + length);
    at += length;
    const partitions = int32();
    assignment[topic] = Array.from({ length: partitions }, int32);
  }
  return { version, assignment };
}

const cluster = (counts: Record<string, number>) => ({
  findTopicPartitionMetadata: (topic: string) =>
    Array.from({ length: counts[topic] ?? 0 }, (_, partitionId) => ({ partitionId })),
});

describe("co-partitioning assigner for kafkajs", () => {
  it("hands partition k of every topic to one member, in the consumer protocol's wire format", async () => {
    const assigner = kafkaCoPartitionedAssigner({ cluster: cluster({ in: 4, out: 4 }) });
    const result = await assigner.assign({
      members: [{ memberId: "m-c" }, { memberId: "m-a" }, { memberId: "m-b" }],
      topics: ["in", "out"],
    });
    const decoded = Object.fromEntries(result.map((r) => [r.memberId, decodeAssignment(r.memberAssignment)]));
    expect(decoded).toEqual({
      "m-a": { version: 0, assignment: { in: [0, 3], out: [0, 3] } },
      "m-b": { version: 0, assignment: { in: [1], out: [1] } },
      "m-c": { version: 0, assignment: { in: [2], out: [2] } },
    });
  });

  it("reads the partition counts from the cluster metadata, so a shorter topic follows the same owners", async () => {
    const assigner = kafkaCoPartitionedAssigner({ cluster: cluster({ long: 4, short: 2 }) });
    const result = await assigner.assign({
      members: [{ memberId: "a" }, { memberId: "b" }],
      topics: ["long", "short"],
    });
    const decoded = Object.fromEntries(
      result.map((r) => [r.memberId, decodeAssignment(r.memberAssignment).assignment]),
    );
    expect(decoded).toEqual({ a: { long: [0, 2], short: [0] }, b: { long: [1, 3], short: [1] } });
  });

  it("announces its own protocol name with the subscribed topics", () => {
    const assigner = kafkaCoPartitionedAssigner({ cluster: cluster({}) });
    const { name, metadata } = assigner.protocol({ topics: ["x", "yy"] });
    expect(name).toBe(CO_PARTITIONED_PROTOCOL);
    // MemberMetadata v0: int16 version, array of strings, bytes.
    expect(metadata.readInt16BE(0)).toBe(0);
    expect(metadata.readInt32BE(2)).toBe(2);
    expect(metadata.toString("utf8", 8, 9)).toBe("x");
  });
});
