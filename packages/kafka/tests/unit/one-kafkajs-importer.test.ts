import { readdirSync, readFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const root = resolve(fileURLToPath(new URL(".", import.meta.url)), "../../../..");
const skip = new Set(["node_modules", ".git", ".tern", ".sst", "cdk.out"]);
const importsKafkajs = /from\s+["']kafkajs["']|require\(\s*["']kafkajs["']\s*\)|import\(\s*["']kafkajs["']\s*\)/;

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    if (skip.has(entry.name)) return [];
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    return /\.(ts|mts|cts|js|mjs|cjs)$/.test(entry.name) ? [path] : [];
  });
}

describe("the Kafka client boundary", () => {
  it("has exactly one file in the repository that imports kafkajs, besides the tests' outside client", () => {
    const importers = sources(root)
      .filter((file) => importsKafkajs.test(readFileSync(file, "utf8")))
      .map((file) => relative(root, file))
      .sort();
    // test/helpers/outside-kafka.ts is a client of Tern's topics, not part of Tern: tests use it to show that any
    // Kafka client can produce requests and read answers, independently of @tern/kafka.
    expect(importers).toEqual(["packages/kafka/src/kafkajs-bus.ts", "test/helpers/outside-kafka.ts"]);
  });
});
