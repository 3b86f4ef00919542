import { describe, expect, it } from "vitest";
import { randomKafkaClusterId, renderServerProperties } from "../../src/kafka-broker.js";

function parseProperties(text: string): Map<string, string> {
  const entries = text
    .split("\n")
    .filter((line) => line.trim() !== "" && !line.startsWith("#"))
    .map((line) => {
      const eq = line.indexOf("=");
      return [line.slice(0, eq), line.slice(eq + 1)] as [string, string];
    });
  return new Map(entries);
}

describe("renderServerProperties", () => {
  const props = parseProperties(
    renderServerProperties({ port: 19092, controllerPort: 19093, dataDir: "/data/kafka", partitions: 6 }),
  );

  it("makes one KRaft node that is both broker and controller on the given ports", () => {
    expect(props.get("process.roles")).toBe("broker,controller");
    expect(props.get("node.id")).toBe("1");
    expect(props.get("controller.quorum.voters")).toBe("1@localhost:19093");
    expect(props.get("listeners")).toBe("PLAINTEXT://localhost:19092,CONTROLLER://localhost:19093");
    expect(props.get("advertised.listeners")).toBe("PLAINTEXT://localhost:19092");
    expect(props.get("controller.listener.names")).toBe("CONTROLLER");
    expect(props.get("listener.security.protocol.map")).toBe("PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT");
  });

  it("uses the uniform partition count and never creates topics implicitly", () => {
    expect(props.get("num.partitions")).toBe("6");
    expect(props.get("auto.create.topics.enable")).toBe("false");
  });

  it("fits a single broker: replication factor 1 for internal topics, no rebalance delay", () => {
    expect(props.get("offsets.topic.replication.factor")).toBe("1");
    expect(props.get("transaction.state.log.replication.factor")).toBe("1");
    expect(props.get("transaction.state.log.min.isr")).toBe("1");
    expect(props.get("group.initial.rebalance.delay.ms")).toBe("0");
    expect(props.get("log.dirs")).toBe("/data/kafka");
  });

  it("advertises the host it is given", () => {
    const remote = parseProperties(
      renderServerProperties({ port: 9092, controllerPort: 9093, dataDir: "/d", partitions: 4, host: "10.0.0.5" }),
    );
    expect(remote.get("advertised.listeners")).toBe("PLAINTEXT://10.0.0.5:9092");
  });
});

describe("randomKafkaClusterId", () => {
  it("is 22 characters of unpadded base64url, like Kafka's Uuid", () => {
    for (let i = 0; i < 200; i++) expect(randomKafkaClusterId()).toMatch(/^[A-Za-z0-9_][A-Za-z0-9_-]{21}$/);
  });

  it("draws again rather than return an id Kafka reserves or that reads as a flag", () => {
    const draws = [
      Buffer.alloc(16), // the zero id
      Buffer.from([...new Array(15).fill(0), 1]), // the metadata topic id
      Buffer.from([0xfb, ...new Array(15).fill(7)]), // base64url "-..." would read as a command-line flag
      Buffer.from(new Array(16).fill(42)),
    ];
    let calls = 0;
    const id = randomKafkaClusterId(() => draws[calls++]!);
    expect(calls).toBe(4);
    expect(id).toBe(Buffer.from(new Array(16).fill(42)).toString("base64url"));
  });
});
