import { TernError } from "./errors.js";
import type { EnsureTopicsResult, TopicAdmin } from "./message-bus.js";

/** An in-memory {@link TopicAdmin} for unit tests, with a switch that makes every call fail as a down broker would. */
export interface MemoryTopicAdmin extends TopicAdmin {
  /** Partition count per topic that exists now. */
  readonly topics: ReadonlyMap<string, number>;
  /** Makes every later call reject with a retriable `unavailable` error (true) or succeed again (false). */
  setDown(down: boolean): void;
  /** Creates a topic directly, as another tool would (e.g. with a partition count that differs from the installation's). */
  createExternally(topic: string, partitions: number): void;
}

export function createMemoryTopicAdmin(): MemoryTopicAdmin {
  const topics = new Map<string, number>();
  let down = false;
  const check = (): void => {
    if (down)
      throw new TernError("unavailable", "Kafka is unreachable (in-memory admin set down)", { retriable: true });
  };
  return {
    topics,
    setDown(value) {
      down = value;
    },
    createExternally(topic, partitions) {
      topics.set(topic, partitions);
    },
    async ensureTopics(names, partitions): Promise<EnsureTopicsResult> {
      check();
      const result: EnsureTopicsResult = { created: [], existing: [] };
      for (const name of names) {
        const found = topics.get(name);
        if (found === undefined) continue;
        if (found !== partitions) {
          throw new TernError(
            "kafka.partition_mismatch",
            `topic ${name} has ${found} partitions, this installation uses ${partitions} (KAFKA_PARTITIONS)`,
          );
        }
      }
      for (const name of new Set(names)) {
        if (topics.has(name)) {
          result.existing.push(name);
        } else {
          topics.set(name, partitions);
          result.created.push(name);
        }
      }
      return result;
    },
    async deleteTopics(names) {
      check();
      for (const name of names) topics.delete(name);
    },
    async describeTopics(names) {
      check();
      const out: Record<string, number> = {};
      for (const name of names) {
        const found = topics.get(name);
        if (found !== undefined) out[name] = found;
      }
      return out;
    },
  };
}
