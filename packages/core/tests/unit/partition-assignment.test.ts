import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type AssignmentTopic,
  assignCoPartitioned,
  assignRoundRobin,
  type GroupAssignment,
} from "../../src/partition-assignment.js";

const SEED = 20261201;

function membersOf(count: number): string[] {
  // Deliberately not in sorted order, and not in an order where the index matches the sort position.
  return Array.from({ length: count }, (_, i) => `member-${(i * 7) % 10}-${i}`);
}

function topicsOf(count: number, partitions: number): AssignmentTopic[] {
  return Array.from({ length: count }, (_, i) => ({ topic: `seldon.default.model.m${i}.inputs`, partitions }));
}

/** Owner per (topic, partition); fails the test if a partition is held twice. */
function owners(assignment: GroupAssignment): Map<string, string> {
  const owner = new Map<string, string>();
  for (const [member, perTopic] of Object.entries(assignment)) {
    for (const [topic, partitions] of Object.entries(perTopic)) {
      for (const p of partitions) {
        const key = `${topic}#${p}`;
        expect(owner.has(key), `${key} assigned twice`).toBe(false);
        owner.set(key, member);
      }
    }
  }
  return owner;
}

function checkCoPartitioned(members: string[], topics: AssignmentTopic[], assignment: GroupAssignment): void {
  const owner = owners(assignment);
  expect(Object.keys(assignment).sort()).toEqual([...members].sort());
  // Every partition of every topic is held exactly once.
  for (const { topic, partitions } of topics) {
    for (let k = 0; k < partitions; k++) expect(owner.has(`${topic}#${k}`), `${topic}#${k} unassigned`).toBe(true);
  }
  expect(owner.size).toBe(topics.reduce((sum, t) => sum + t.partitions, 0));
  // Co-partitioned: partition k of every topic that has it has one owner.
  const maxPartitions = Math.max(0, ...topics.map((t) => t.partitions));
  for (let k = 0; k < maxPartitions; k++) {
    const ownersOfK = new Set(topics.filter((t) => k < t.partitions).map((t) => owner.get(`${t.topic}#${k}`)));
    expect(ownersOfK.size, `partition ${k} split over ${[...ownersOfK].join(", ")}`).toBe(1);
  }
  // Balanced: per topic, the members' counts differ by at most one.
  for (const { topic } of topics) {
    const counts = members.map((m) => assignment[m]![topic]!.length);
    expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1);
  }
}

describe("co-partitioned assignment", () => {
  it("puts partition k of every topic on one member, balanced, for 1–6 members × 1–8 partitions × 1–4 topics", () => {
    let cases = 0;
    for (let m = 1; m <= 6; m++) {
      for (let p = 1; p <= 8; p++) {
        for (let t = 1; t <= 4; t++) {
          const members = membersOf(m);
          const topics = topicsOf(t, p);
          checkCoPartitioned(members, topics, assignCoPartitioned(members, topics));
          cases++;
        }
      }
    }
    expect(cases).toBe(6 * 8 * 4);
  });

  it("gives the same answer whatever the order of members and topics", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 1, max: 4 }),
        fc.func(fc.integer()),
        (m, p, t, rank) => {
          const members = membersOf(m);
          const topics = topicsOf(t, p);
          const shuffle = <T>(xs: T[]) =>
            xs
              .map((x, i) => [rank(i), x] as const)
              .sort((a, b) => a[0] - b[0])
              .map(([, x]) => x);
          const expected = assignCoPartitioned(members, topics);
          const got = assignCoPartitioned(shuffle(members), shuffle(topics));
          for (const member of members) {
            for (const { topic } of topics) expect(got[member]![topic]).toEqual(expected[member]![topic]);
          }
        },
      ),
      { seed: SEED, numRuns: 300 },
    );
  });

  it("keeps partition k of topics with different partition counts on the owner of k", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.array(fc.integer({ min: 0, max: 8 }), { minLength: 1, maxLength: 4 }),
        (m, counts) => {
          const members = membersOf(m);
          const topics = counts.map((partitions, i) => ({ topic: `t${i}`, partitions }));
          checkCoPartitioned(members, topics, assignCoPartitioned(members, topics));
        },
      ),
      { seed: SEED, numRuns: 300 },
    );
  });

  it("leaves the members beyond the partition count without partitions", () => {
    const assignment = assignCoPartitioned(["a", "b", "c"], [{ topic: "x", partitions: 2 }]);
    expect(assignment).toEqual({ a: { x: [0] }, b: { x: [1] }, c: { x: [] } });
  });

  it("ignores duplicate member ids and returns nothing for an empty group", () => {
    expect(assignCoPartitioned(["b", "a", "b"], [{ topic: "x", partitions: 2 }])).toEqual({
      a: { x: [0] },
      b: { x: [1] },
    });
    expect(assignCoPartitioned([], [{ topic: "x", partitions: 2 }])).toEqual({});
  });

  it("refuses a partition count that is not a non-negative integer, naming the topic", () => {
    expect(() => assignCoPartitioned(["a"], [{ topic: "x", partitions: 1.5 }])).toThrow(/topic x/);
  });
});

describe("round-robin assignment (the kafkajs default, for comparison)", () => {
  it("splits partition k of two topics over different members for 3 members × 4 partitions", () => {
    const members = ["a", "b", "c"];
    const topics = topicsOf(2, 4);
    const assignment = assignRoundRobin(members, topics);
    expect(() => checkCoPartitioned(members, topics, assignment)).toThrow(/split/);
    // Still a complete, balanced spread over the group as a whole.
    const totals = members.map((m) => Object.values(assignment[m]!).reduce((sum, ps) => sum + ps.length, 0));
    expect(totals).toEqual([3, 3, 2]);
  });
});
