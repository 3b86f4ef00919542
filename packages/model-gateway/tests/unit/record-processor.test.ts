import {
  type BusMessage,
  createTopicNames,
  DEADLINE_HEADER,
  ERROR_HEADER,
  ERROR_MESSAGE_HEADER,
  ERROR_STATUS_HEADER,
} from "@tern/core";
import { createBalancer, createGrpcUpstream, createMemoryRouteSource } from "@tern/gateway";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRecordProcessor } from "../../src/record-processor.js";
import {
  decodeInferResponse,
  encodeInferRequest,
  IRIS_ROWS,
  irisRoute,
  startCountingAgent,
  startInProcessAgent,
  tableOf,
} from "./in-process-agent.js";

const topics = createTopicNames();
let agent: Awaited<ReturnType<typeof startInProcessAgent>>;
const upstream = createGrpcUpstream({ balancer: createBalancer() });
const routes = createMemoryRouteSource();
const processor = createRecordProcessor({
  topics,
  routes,
  upstream,
  logger: pino({ level: "silent" }),
  routeWaitMs: 200,
  routePollMs: 20,
});

beforeAll(async () => {
  agent = await startInProcessAgent();
  routes.set(tableOf(irisRoute(agent.address)));
});
afterAll(async () => {
  upstream.close();
  await agent.close();
});

function record(value: Uint8Array, overrides: Partial<BusMessage> = {}): BusMessage {
  return {
    topic: topics.modelInputs("iris"),
    partition: 2,
    offset: "7",
    key: "2.iris.req-1",
    value,
    headers: { "x-request-id": "client-1", pipeline: "p", "x-custom": "kept" },
    ...overrides,
  };
}

const irisRequest = (model = "iris") =>
  encodeInferRequest({
    model_name: model,
    id: "r1",
    inputs: [
      {
        name: "predict",
        datatype: "FP32",
        shape: [3, 4],
        contents: { fp32_contents: IRIS_ROWS.flatMap((r) => r.features) },
      },
    ],
  });

describe("model gateway record processing", () => {
  it("answers on the same partition of the outputs topic with the same key and headers, labels right", async () => {
    const out = await processor.process(record(irisRequest()));
    expect(out).toHaveLength(1);
    const [answer] = out;
    expect(answer!.topic).toBe("seldon.default.model.iris.outputs");
    expect(answer!.partition).toBe(2);
    expect(answer!.key).toBe("2.iris.req-1");
    expect(answer!.headers).toEqual({ "x-request-id": "client-1", pipeline: "p", "x-custom": "kept" });
    const response = decodeInferResponse(answer!.value);
    expect(response.id).toBe("r1");
    const label = response.outputs.find((o: { name: string }) => o.name === "label");
    expect(label.contents.int64_contents.map(Number)).toEqual(IRIS_ROWS.map((r) => r.label));
  });

  it("sends the request under the topic's model name, whatever name the record carries", async () => {
    const out = await processor.process(record(irisRequest("something-else")));
    expect(out[0]!.headers[ERROR_HEADER]).toBeUndefined();
    expect(decodeInferResponse(out[0]!.value).model_name).toBe("iris");
  });

  it("turns the agent's refusal (unknown tensor) into an error record on outputs and errors, with its message", async () => {
    const bad = encodeInferRequest({
      model_name: "iris",
      inputs: [{ name: "nope", datatype: "FP32", shape: [1, 4], contents: { fp32_contents: [1, 2, 3, 4] } }],
    });
    const out = await processor.process(record(bad));
    expect(out.map((r) => [r.topic, r.partition, r.key])).toEqual([
      ["seldon.default.model.iris.outputs", 2, "2.iris.req-1"],
      ["seldon.default.errors.errors", 2, "2.iris.req-1"],
    ]);
    expect(out[0]!.value).toHaveLength(0);
    expect(out[0]!.headers[ERROR_HEADER]).toBe("iris");
    expect(out[0]!.headers[ERROR_STATUS_HEADER]).toBe("INVALID_ARGUMENT");
    expect(out[0]!.headers[ERROR_MESSAGE_HEADER]).toContain("nope");
    expect(new TextDecoder().decode(out[1]!.value)).toBe(out[0]!.headers[ERROR_MESSAGE_HEADER]);
    expect(out[1]!.headers["x-request-id"]).toBe("client-1");
  });

  it("answers a record that is not protobuf with an INVALID_ARGUMENT error record", async () => {
    const out = await processor.process(record(new Uint8Array([0xff, 0xff, 0xff])));
    expect(out[0]!.headers[ERROR_STATUS_HEADER]).toBe("INVALID_ARGUMENT");
    expect(out[0]!.headers[ERROR_MESSAGE_HEADER]).toMatch(/not an OIP ModelInferRequest/);
  });

  it("waits for a model missing from the route table, then answers NOT_FOUND naming it", async () => {
    const out = await processor.process(
      record(irisRequest("ghost"), { topic: topics.modelInputs("ghost"), key: "2.ghost.x" }),
    );
    expect(out[0]!.topic).toBe("seldon.default.model.ghost.outputs");
    expect(out[0]!.headers[ERROR_STATUS_HEADER]).toBe("NOT_FOUND");
    expect(out[0]!.headers[ERROR_MESSAGE_HEADER]).toContain("ghost");
  });

  it("serves a model that appears in the route table while its record waits", async () => {
    const other = routes;
    other.set(tableOf());
    setTimeout(() => other.set(tableOf(irisRoute(agent.address))), 60);
    const out = await processor.process(record(irisRequest()));
    expect(out[0]!.headers[ERROR_HEADER]).toBeUndefined();
    expect(decodeInferResponse(out[0]!.value).outputs).toHaveLength(2);
  });

  it("ignores records of topics that are not model inputs topics", async () => {
    expect(await processor.process(record(irisRequest(), { topic: "seldon.default.pipeline.p.inputs" }))).toEqual([]);
  });
});

describe("model gateway record processing when the agent is gone", () => {
  it("answers UNAVAILABLE without the agent's address in the record", async () => {
    const gone = createRecordProcessor({
      topics,
      routes: createMemoryRouteSource(tableOf(irisRoute("127.0.0.1:1"))),
      upstream,
      logger: pino({ level: "silent" }),
    });
    const out = await gone.process(record(irisRequest()));
    expect(out[0]!.headers[ERROR_STATUS_HEADER]).toBe("UNAVAILABLE");
    expect(out[0]!.headers[ERROR_MESSAGE_HEADER]).toBe("model iris is unavailable: the call to its replica failed");
    expect(new TextDecoder().decode(out[1]!.value)).not.toContain("127.0.0.1");
  });
});

describe("model gateway record processing with the caller's deadline (tern-deadline)", () => {
  let slow: Awaited<ReturnType<typeof startCountingAgent>>;
  let deadlined: ReturnType<typeof createRecordProcessor>;
  beforeAll(async () => {
    slow = await startCountingAgent({ delayMs: 0 });
    deadlined = createRecordProcessor({
      topics,
      routes: createMemoryRouteSource(tableOf(irisRoute(slow.address))),
      upstream,
      logger: pino({ level: "silent" }),
      deadlineMs: 60_000,
    });
  });
  afterAll(() => slow.close());
  const withDeadline = (deadline: number, id: string) =>
    record(irisRequest(), {
      key: `2.iris.${id}`,
      headers: { "x-request-id": id, [DEADLINE_HEADER]: String(deadline) },
    });

  it("does not call the agent for a record whose deadline passed, and answers DEADLINE_EXCEEDED saying so", async () => {
    slow.setDelay(0);
    const before = slow.calls.length;
    const out = await deadlined.process(withDeadline(Date.now() - 1_000, "late-1"));
    expect(slow.calls.length).toBe(before);
    expect(out.map((r) => [r.topic, r.partition, r.key])).toEqual([
      ["seldon.default.model.iris.outputs", 2, "2.iris.late-1"],
      ["seldon.default.errors.errors", 2, "2.iris.late-1"],
    ]);
    expect(out[0]!.headers[ERROR_HEADER]).toBe("iris");
    expect(out[0]!.headers[ERROR_STATUS_HEADER]).toBe("DEADLINE_EXCEEDED");
    expect(out[0]!.headers[ERROR_MESSAGE_HEADER]).toMatch(
      /^model iris not called: the caller's deadline passed \d+ ms/,
    );
    // The request's own headers, the deadline among them, stay on its answer (the dataflow reads it there too).
    expect(out[0]!.headers[DEADLINE_HEADER]).toBe(out[1]!.headers[DEADLINE_HEADER]);
    expect(out[1]!.headers["x-request-id"]).toBe("late-1");
  });

  it("gives the agent call only the time left before the caller's deadline", async () => {
    slow.setDelay(5_000);
    const out = await deadlined.process(withDeadline(Date.now() + 300, "short-1"));
    expect(slow.calls.filter((c) => c.id === "r1").length).toBeGreaterThan(0);
    expect(out[0]!.headers[ERROR_STATUS_HEADER]).toBe("DEADLINE_EXCEEDED");
    expect(out[0]!.headers[ERROR_MESSAGE_HEADER]).toMatch(/^model iris did not answer before the caller's deadline/);
  });

  it("calls the agent as before for a record with a deadline still ahead, or without one", async () => {
    slow.setDelay(0);
    const before = slow.calls.length;
    const ahead = await deadlined.process(withDeadline(Date.now() + 30_000, "ahead-1"));
    const none = await deadlined.process(record(irisRequest()));
    const bad = await deadlined.process(record(irisRequest(), { headers: { [DEADLINE_HEADER]: "soon" } }));
    expect(slow.calls.length).toBe(before + 3);
    for (const out of [ahead, none, bad]) {
      expect(out).toHaveLength(1);
      expect(out[0]!.headers[ERROR_HEADER]).toBeUndefined();
    }
  });
});
