import {
  type BusProducer,
  createMemoryBus,
  createTopicNames,
  DEADLINE_HEADER,
  decodeModelInferRequest,
  encodeModelInferResponse,
  type MemoryBus,
  type MessageBus,
  type PipelineReplyItem,
  partitionForRequest,
  REPLY_TO_HEADER,
  requestInputsToOip,
  TernError,
  tensorsFromOip,
} from "@tern/core";
import pino from "pino";
import { beforeEach, describe, expect, it } from "vitest";
import type { ReplyReader } from "../../src/dynamodb-replies.js";
import { createRendezvousFront } from "../../src/pipeline-rendezvous.js";

// The Lambda entry's pipeline front on the in-memory bus, with the test playing the dataflow worker: it reads the
// request off the inputs topic and puts the reply item in a map the front reads, as DynamoDB would hold it.

const topics = createTopicNames();
const logger = pino({ level: "silent" });
const PARTITIONS = 4;
const x = { name: "x", datatype: "FP32" as const, shape: [1, 2], data: Float32Array.from([1, 2]) };

let bus: MemoryBus;
let items: Map<string, PipelineReplyItem>;
let reads: number;
const readReply: ReplyReader = async (id) => {
  reads++;
  return items.get(id);
};

beforeEach(async () => {
  bus = createMemoryBus();
  await bus.admin().ensureTopics([topics.pipelineInputs("p")], PARTITIONS);
  items = new Map();
  reads = 0;
});

/** The worker's side: the request's tensors doubled, put as the reply item once the request is on the topic. */
async function answerWhenSent(id: string): Promise<void> {
  const k = partitionForRequest(id, PARTITIONS);
  for (;;) {
    const sent = bus.records(topics.pipelineInputs("p"), k).find((m) => m.key === `${k}.p.${id}`);
    if (sent) {
      const inputs = requestInputsToOip(decodeModelInferRequest(sent.value));
      const doubled = inputs.map((t) => ({
        ...t,
        name: "y",
        data: Float32Array.from(t.data as Float32Array, (v) => v * 2),
      }));
      const response = encodeModelInferResponse({
        model_name: "p",
        id,
        outputs: tensorsFromOip(doubled, false).tensors,
      });
      items.set(id, { requestId: id, pipeline: "p", expiresAt: 0, ok: true, response });
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

describe("the rendezvous pipeline front (Lambda)", () => {
  it("produces with tern-reply-to: dynamodb on the id's partition and answers with the reply item's outputs", async () => {
    const front = createRendezvousFront({ bus, topics, partitions: PARTITIONS, readReply, logger });
    const answered = answerWhenSent("id-1");
    const deadline = Date.now() + 5000;
    const reply = await front.infer("p", [x], {
      requestId: "id-1",
      deadline,
      headers: { "x-request-id": "caller" },
    });
    await answered;
    expect(reply).toMatchObject({ ok: true, requestId: "id-1" });
    if (!reply.ok) return;
    expect([...(reply.outputs[0]!.data as Float32Array)]).toEqual([2, 4]);
    const k = partitionForRequest("id-1", PARTITIONS);
    const [sent] = bus.records(topics.pipelineInputs("p"), k);
    expect(sent!.headers).toMatchObject({
      [REPLY_TO_HEADER]: "dynamodb",
      [DEADLINE_HEADER]: String(deadline),
      pipeline: "p",
      "x-request-id": "caller",
    });
    expect(front.readers()).toEqual([]);
    await front.close();
  });

  it("answers an error item with its status and message", async () => {
    const front = createRendezvousFront({ bus, topics, partitions: PARTITIONS, readReply, logger });
    items.set("id-2", {
      requestId: "id-2",
      pipeline: "p",
      expiresAt: 0,
      ok: false,
      message: "step s failed",
      status: "INVALID_ARGUMENT",
    });
    const reply = await front.infer("p", [x], { requestId: "id-2", deadline: Date.now() + 5000 });
    expect(reply).toEqual({ ok: false, requestId: "id-2", message: "step s failed", status: "INVALID_ARGUMENT" });
    await front.close();
  });

  it("fails with a timeout naming the request id when no reply comes by the deadline", async () => {
    const front = createRendezvousFront({
      bus,
      topics,
      partitions: PARTITIONS,
      readReply,
      logger,
      pollInitialMs: 5,
      pollMaxMs: 50,
    });
    const err = await front.infer("p", [x], { requestId: "id-3", deadline: Date.now() + 300 }).catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: "timeout",
      message: expect.stringMatching(/^pipeline p did not answer request id id-3 within \d+ ms$/),
    });
    expect(reads).toBeGreaterThan(0);
    await front.close();
  });

  it("after a send fails for want of the broker (a thawed environment), sends once more on a fresh producer", async () => {
    const made: Array<{ sends: number; closed: boolean }> = [];
    let failNext = 1;
    const flaky: MessageBus = {
      ...bus,
      producer(): BusProducer {
        const inner = bus.producer();
        const stats = { sends: 0, closed: false };
        made.push(stats);
        return {
          async send(messages) {
            stats.sends++;
            if (failNext > 0) {
              failNext--;
              throw new TernError("unavailable", "send: Connection closed", { retriable: true });
            }
            await inner.send(messages);
          },
          async close() {
            stats.closed = true;
            await inner.close();
          },
        };
      },
    };
    const front = createRendezvousFront({ bus: flaky, topics, partitions: PARTITIONS, readReply, logger });
    const answered = answerWhenSent("id-4");
    const reply = await front.infer("p", [x], { requestId: "id-4", deadline: Date.now() + 5000 });
    await answered;
    expect(reply.ok).toBe(true);
    expect(made).toEqual([
      { sends: 1, closed: true },
      { sends: 1, closed: false },
    ]);
    // The fresh producer is kept for the next requests.
    const again = answerWhenSent("id-5");
    await front.infer("p", [x], { requestId: "id-5", deadline: Date.now() + 5000 });
    await again;
    expect(made).toHaveLength(2);
    expect(made[1]!.sends).toBe(2);

    // Twice in a row: 503 naming the id, not a hang.
    failNext = 2;
    const err = await front
      .infer("p", [x], { requestId: "id-6", deadline: Date.now() + 5000 })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "unavailable", message: "pipeline p: request id id-6 could not be sent" });
    await front.close();
  });

  it("does not retry a send that failed for another reason (a missing topic)", async () => {
    const front = createRendezvousFront({ bus, topics, partitions: PARTITIONS, readReply, logger });
    const err = await front
      .infer("nope", [x], { requestId: "id-7", deadline: Date.now() + 5000 })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "unavailable", message: "pipeline nope: request id id-7 could not be sent" });
    expect((err as Error).cause).toMatchObject({ code: "not_found" });
    await front.close();
  });
});
