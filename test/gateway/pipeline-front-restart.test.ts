import { randomUUID } from "node:crypto";
import {
  createTopicNames,
  encodeModelInferResponse,
  formatRecordKey,
  type MessageBus,
  type OipTensor,
  partitionForRequest,
  tensorsFromOip,
} from "@tern/core";
import { waitFor } from "@tern/devstack";
import { createPipelineFront } from "@tern/gateway";
import { createKafkaBus } from "@tern/kafka";
import pino from "pino";
import { afterEach, expect, it } from "vitest";
import { kafkaBrokers } from "../helpers/services.js";
import { testSettings } from "../kafka/test-settings.js";

// The Node gateway's reply reader on the real broker (kafkajs), through the pipeline front's own path: a pipeline's
// first request restarts its bucket's reader; an answer written to a partition the reader never read from, while no
// reader runs, must still reach its request. The test writes the answers itself (no workers), so the write lands in
// the restart window every time: after the old reader left the group, before the new one joins.

const PARTITIONS = 4;
const logger = pino({ level: "silent" });
const buses: MessageBus[] = [];

afterEach(async () => {
  await Promise.all(buses.splice(0).map((b) => b.close()));
});

function answer(topic: string, pipeline: string, requestId: string, value: number) {
  const partition = partitionForRequest(requestId, PARTITIONS);
  const y: OipTensor = { name: "y", datatype: "FP32", shape: [1, 1], data: new Float32Array([value]) };
  return {
    topic,
    partition,
    key: formatRecordKey({ partition, resource: pipeline, requestId }),
    value: encodeModelInferResponse({ model_name: pipeline, outputs: tensorsFromOip([y], false).tensors }),
  };
}

it("an answer written while the reply reader restarts, on a partition it never read from, reaches its request", async () => {
  const bus = createKafkaBus({ brokers: kafkaBrokers(), settings: testSettings });
  buses.push(bus);
  const topics = createTopicNames({ namespace: `it-restart-${randomUUID().slice(0, 8)}` });
  await bus.admin().ensureTopics(
    ["first", "second"].flatMap((p) => [topics.pipelineInputs(p), topics.pipelineOutputs(p)]),
    PARTITIONS,
  );
  const producer = bus.producer();
  const firstId = `first-${randomUUID()}`;
  const secondId = `second-${randomUUID()}`;
  let written = false;
  const hooked: MessageBus = {
    ...bus,
    consumer(options) {
      const c = bus.consumer(options);
      if (!options.topics.includes(topics.pipelineOutputs("second"))) return c;
      // The restart for 'second': the reader that read 'first' has left its group; write first's answer now.
      const start = async (o?: { timeoutMs?: number }) => {
        await producer.send([answer(topics.pipelineOutputs("first"), "first", firstId, 1)]);
        written = true;
        return c.start(o);
      };
      return { ...c, start };
    },
  };
  const front = createPipelineFront({
    bus: hooked,
    topics,
    partitions: PARTITIONS,
    logger,
    buckets: 1,
    groupId: `tern-it.restart.${randomUUID()}`,
  });
  try {
    const x: OipTensor[] = [{ name: "x", datatype: "FP32", shape: [1, 1], data: new Float32Array([0]) }];
    // Its answer comes during the restart; without an offset where the first reader started, the new one would start
    // after it and this request would wait out its deadline (504).
    const first = front.infer("first", x, { deadline: Date.now() + 25_000, requestId: firstId });
    first.catch(() => undefined);
    await waitFor(() => front.readers()[0]?.pipelines.includes("first"), {
      timeoutMs: 30_000,
      description: "the reader reading first's outputs",
    });
    const second = front.infer("second", x, { deadline: Date.now() + 30_000, requestId: secondId });
    second.catch(() => undefined);
    await waitFor(() => front.readers()[0]?.pipelines.includes("second"), {
      timeoutMs: 30_000,
      description: "the restarted reader reading second's outputs too",
    });
    await producer.send([answer(topics.pipelineOutputs("second"), "second", secondId, 2)]);
    expect(written).toBe(true);
    const replies = await Promise.all([first, second].map((p) => p.catch((err: unknown) => err)));
    expect(replies).toMatchObject([
      { ok: true, requestId: firstId, outputs: [{ name: "y", data: new Float32Array([1]) }] },
      { ok: true, requestId: secondId, outputs: [{ name: "y", data: new Float32Array([2]) }] },
    ]);
  } finally {
    await front.close();
    await producer.close();
  }
}, 90_000);
