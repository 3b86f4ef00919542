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
  it("has exactly one file in Tern's code that imports kafkajs (tests may use it as an outside client)", () => {
    // Under test/, kafkajs is an outside Kafka client (test/helpers/outside-kafka.ts, the broker-restart test): it
    // shows that any client can use Tern's topics, independently of @tern/kafka. Everything else goes through the bus.
    const importers = sources(root)
      .map((file) => relative(root, file))
      .filter((file) => !file.startsWith("test/"))
      .filter((file) => importsKafkajs.test(readFileSync(join(root, file), "utf8")));
    expect(importers).toEqual(["packages/kafka/src/kafkajs-bus.ts"]);
  });
});
