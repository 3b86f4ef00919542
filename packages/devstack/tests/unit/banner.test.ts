import { describe, expect, it } from "vitest";
import { formatServiceTable, shortPath } from "../../src/banner.js";

describe("formatServiceTable", () => {
  it("aligns one line per service and lists reserved addresses that nothing uses yet", () => {
    const text = formatServiceTable(
      [
        { name: "kafka", address: "localhost:9092", kind: "started", pid: 11, logFile: "/repo/.tern/kafka/kafka.log" },
        { name: "dynamodb", address: "http://ddb:8000", kind: "external" },
        { name: "scheduler", address: "http://localhost:9004", kind: "started", pid: 12, logFile: "/tmp/s.log" },
      ],
      {
        cwd: "/repo",
        reserved: [
          { name: "gateway (REST)", address: "http://localhost:9000" },
          { name: "Kafka again", address: "localhost:9092" },
        ],
      },
    );
    expect(text.split("\n")).toEqual([
      "  Kafka           localhost:9092         pid 11, log .tern/kafka/kafka.log",
      "  DynamoDB Local  http://ddb:8000        external (given in config)",
      "  scheduler       http://localhost:9004  pid 12, log /tmp/s.log",
      "  gateway (REST)  http://localhost:9000  reserved, not started yet",
    ]);
  });
});

describe("shortPath", () => {
  it("shows a path inside the working folder relative to it, and any other path absolute", () => {
    expect(shortPath("/repo/.tern/logs", "/repo")).toBe(".tern/logs");
    expect(shortPath("/repo/samples/manifests", "/repo")).toBe("samples/manifests");
    // A TERN_DEV_DIR or TERN_SAMPLES_DIR outside the checkout (a temp folder) is printed as given, not as ../../tmp/x.
    expect(shortPath("/tmp/tern-dev/logs", "/repo")).toBe("/tmp/tern-dev/logs");
    expect(shortPath("/repo-other/x", "/repo")).toBe("/repo-other/x");
    expect(shortPath("/repo", "/repo")).toBe("/repo");
  });
});
