import { TernError } from "@tern/core";
import { Kafka, logLevel } from "kafkajs";
import { waitFor } from "./wait-for.js";

function createAdmin(brokers: readonly string[], clientId: string) {
  const kafka = new Kafka({
    clientId,
    brokers: [...brokers],
    // Failed probes are expected while the broker starts; kafkajs would log each one as an error.
    logLevel: logLevel.NOTHING,
    connectionTimeout: 2_000,
    requestTimeout: 5_000,
    retry: { retries: 1, initialRetryTime: 100, maxRetryTime: 500 },
  });
  return kafka.admin();
}

/**
 * One readiness probe: a real metadata request (DescribeCluster). A TCP connect is not enough: kafkajs even reports a
 * successful `connect()` to a port that accepts and never answers. Resolves with the number of brokers; rejects when
 * the cluster does not answer.
 */
export async function probeKafka(brokers: readonly string[]): Promise<number> {
  const admin = createAdmin(brokers, "tern-devstack-probe");
  try {
    await admin.connect();
    const cluster = await admin.describeCluster();
    if (cluster.brokers.length === 0) throw new Error("the cluster reports no brokers");
    return cluster.brokers.length;
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

/** Options of {@link ensureTopics}. */
export interface EnsureTopicsOptions {
  /**
   * Deadline for the topics to exist with a leader on every partition.
   * @default 30000
   */
  timeoutMs?: number;
}

/**
 * Creates the topics that do not exist yet, each with `partitions` partitions, and waits until every partition of
 * every named topic has a leader. A topic that already exists with another partition count is a `conflict` error:
 * Tern's joins need every topic co-partitioned, so it is never silently accepted.
 */
export async function ensureTopics(
  brokers: readonly string[],
  names: readonly string[],
  partitions: number,
  options: EnsureTopicsOptions = {},
): Promise<void> {
  if (!Number.isInteger(partitions) || partitions < 1) {
    throw new TernError("bad_request", `partitions must be a positive integer (got ${partitions})`);
  }
  if (names.length === 0) return;
  const timeoutMs = options.timeoutMs ?? 30_000;
  const admin = createAdmin(brokers, "tern-devstack-topics");
  try {
    await admin.connect();
    await admin.createTopics({
      topics: names.map((topic) => ({ topic, numPartitions: partitions })),
      waitForLeaders: true,
      timeout: timeoutMs,
    });
    const clash = await waitFor(
      async () => {
        const { topics } = await admin.fetchTopicMetadata({ topics: [...names] });
        // A clash is final: report it at once rather than poll until the deadline.
        const wrong = topics.find((topic) => topic.partitions.length !== partitions);
        if (wrong !== undefined) return { topic: wrong.name, count: wrong.partitions.length };
        return topics.every((topic) => topic.partitions.every((p) => p.leader >= 0)) && { topic: undefined, count: 0 };
      },
      { timeoutMs, intervalMs: 100, description: `leaders for topics ${names.join(", ")}` },
    );
    if (clash.topic !== undefined) {
      throw new TernError(
        "conflict",
        `topic ${clash.topic} has ${clash.count} partitions, expected ${partitions} (every Tern topic has KAFKA_PARTITIONS partitions)`,
      );
    }
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}
