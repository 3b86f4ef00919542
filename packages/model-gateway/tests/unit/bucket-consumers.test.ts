import { type BusMessage, createMemoryBus, createTopicNames, DEADLINE_HEADER, ERROR_STATUS_HEADER } from "@tern/core";
import { waitFor } from "@tern/devstack";
import { createBalancer, createGrpcUpstream, createMemoryRouteSource } from "@tern/gateway";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { createBucketConsumers } from "../../src/bucket-consumers.js";
import { type AnswerRecord, createRecordProcessor } from "../../src/record-processor.js";
import { encodeInferRequest, irisRoute, startCountingAgent, tableOf } from "./in-process-agent.js";

describe("bucket consumers", () => {
  it("retries a bucket whose consumer failed to join, instead of leaving its models unserved", async () => {
    const bus = createMemoryBus();
    const producer = bus.producer();
    const handled: BusMessage[] = [];
    const consumers = createBucketConsumers({
      bus,
      producer,
      // Answers nothing: what is under test is which records get handled at all.
      processor: {
        async process(message): Promise<AnswerRecord[]> {
          handled.push(message);
          return [];
        },
      },
      logger: pino({ level: "silent" }),
      startTimeoutMs: 1_000,
      retry: { initialMs: 10, maxMs: 50 },
    });
    // The consumer cannot join: its topic does not exist yet (as when a broker is not ready, or topic creation lags).
    await consumers.apply([
      { bucket: 3, groupId: "g.bucket-3", models: [{ model: "m", inputTopic: "t.in", outputTopic: "t.out" }] },
    ]);
    await waitFor(() => consumers.status()[0]?.state === "failed", { timeoutMs: 5_000, description: "start failed" });

    await bus.admin().ensureTopics(["t.in", "t.out"], 2);
    await waitFor(() => consumers.status()[0]?.state === "running", {
      timeoutMs: 5_000,
      intervalMs: 10,
      description: "the bucket's consumer running after a retry",
    });
    await producer.send([{ topic: "t.in", partition: 1, key: "1.m.r1", value: new Uint8Array([1]), headers: {} }]);
    await waitFor(() => handled.length === 1, { timeoutMs: 5_000, intervalMs: 10, description: "the record handled" });
    expect(handled[0]!.key).toBe("1.m.r1");
    await consumers.stop();
    await bus.close();
  });

  it("starts a new consumer for a bucket whose consumer stopped for good after it was running", async () => {
    const bus = createMemoryBus();
    await bus.admin().ensureTopics(["t.in", "t.out"], 2);
    const producer = bus.producer();
    const handled: BusMessage[] = [];
    const consumers = createBucketConsumers({
      bus,
      producer,
      processor: {
        async process(message): Promise<AnswerRecord[]> {
          handled.push(message);
          return [];
        },
      },
      logger: pino({ level: "silent" }),
      startTimeoutMs: 1_000,
      retry: { initialMs: 10, maxMs: 50 },
    });
    await consumers.apply([
      { bucket: 5, groupId: "g.bucket-5", models: [{ model: "m", inputTopic: "t.in", outputTopic: "t.out" }] },
    ]);
    await waitFor(() => consumers.status()[0]?.state === "running", { timeoutMs: 5_000, description: "running" });
    expect(await bus.crash("g.bucket-5")).toBe(1);
    await producer.send([{ topic: "t.in", partition: 0, key: "0.m.r2", value: new Uint8Array([1]), headers: {} }]);
    await waitFor(() => handled.length === 1, {
      timeoutMs: 5_000,
      intervalMs: 10,
      description: "the record handled by the bucket's new consumer",
    });
    expect(consumers.status()[0]?.state).toBe("running");
    await consumers.stop();
    await bus.close();
  });

  it("answers a record past its caller's deadline without calling the agent, and commits past it", async () => {
    const topics = createTopicNames();
    const bus = createMemoryBus();
    const inputs = topics.modelInputs("iris");
    const outputs = topics.modelOutputs("iris");
    await bus.admin().ensureTopics([inputs, outputs, topics.errors()], 2);
    const agent = await startCountingAgent({ delayMs: 0 });
    const upstream = createGrpcUpstream({ balancer: createBalancer() });
    const producer = bus.producer();
    const consumers = createBucketConsumers({
      bus,
      producer,
      processor: createRecordProcessor({
        topics,
        routes: createMemoryRouteSource(tableOf(irisRoute(agent.address))),
        upstream,
        logger: pino({ level: "silent" }),
      }),
      logger: pino({ level: "silent" }),
      startTimeoutMs: 1_000,
    });
    try {
      await consumers.apply([
        { bucket: 1, groupId: "g.bucket-1", models: [{ model: "iris", inputTopic: inputs, outputTopic: outputs }] },
      ]);
      await waitFor(() => consumers.status()[0]?.state === "running", { timeoutMs: 5_000, description: "running" });
      const value = encodeInferRequest({
        model_name: "iris",
        id: "late",
        inputs: [{ name: "predict", datatype: "FP32", shape: [1, 4], contents: { fp32_contents: [1, 2, 3, 4] } }],
      });
      const late = { [DEADLINE_HEADER]: String(Date.now() - 10) };
      await producer.send([
        { topic: inputs, partition: 1, key: "1.iris.late-a", value, headers: late },
        { topic: inputs, partition: 1, key: "1.iris.late-b", value, headers: late },
      ]);
      await waitFor(() => bus.committed("g.bucket-1", inputs, 1) === "2", {
        timeoutMs: 5_000,
        intervalMs: 10,
        description: "both late records committed",
      });
      const answers = bus.records(outputs, 1);
      expect(answers.map((m) => [m.key, m.headers[ERROR_STATUS_HEADER]])).toEqual([
        ["1.iris.late-a", "DEADLINE_EXCEEDED"],
        ["1.iris.late-b", "DEADLINE_EXCEEDED"],
      ]);
      expect(agent.calls).toEqual([]);
    } finally {
      await consumers.stop();
      await bus.close();
      upstream.close();
      agent.close();
    }
  });
});
