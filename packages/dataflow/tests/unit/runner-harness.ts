import {
  type BusConsumer,
  type BusMessage,
  createMemoryBus,
  createTopicNames,
  decodeModelInferRequest,
  decodeModelInferResponse,
  ERROR_HEADER,
  ERROR_MESSAGE_HEADER,
  ERROR_STATUS_HEADER,
  encodeModelInferRequest,
  encodeModelInferResponse,
  type MemoryBus,
  type OipTensor,
  type OutgoingMessage,
  type PipelineResource,
  type PipelineSpec,
  parseRecordKey,
  requestInputsToOip,
  responseOutputsToOip,
  tensorsFromOip,
} from "@tern/core";
import { pino } from "pino";
import { afterEach } from "vitest";
import { compilePipeline, type PipelinePlan } from "../../src/compile.js";
import { createPipelineHost, type PipelineHost } from "../../src/host.js";
import type { ReplyWriter } from "../../src/replies.js";

/**
 * A pipeline running on the in-memory bus, with the test playing the model gateway: it reads every model inputs
 * topic, computes the answer itself (each model is a function of the request's tensors) and writes it — or an error
 * record with the model gateway's headers — on the same partition of the model's outputs topic, key and headers kept.
 */

export const topics = createTopicNames();
export const silent = pino({ level: "silent" });

export const compile = (name: string, spec: PipelineSpec): PipelinePlan =>
  compilePipeline(
    { apiVersion: "mlops.seldon.io/v1alpha1", kind: "Pipeline", metadata: { name }, spec } as PipelineResource,
    { topics },
  );

/** A model: tensors in, tensors out, an Error (the model gateway's error record), or null (it never answers). */
export type Model = (inputs: OipTensor[], request: BusMessage) => OipTensor[] | Error | null;

export const fp32 = (name: string, values: number[], shape = [1, values.length]): OipTensor => ({
  name,
  datatype: "FP32",
  shape,
  data: Float32Array.from(values),
});
export const values = (t: OipTensor | undefined): number[] => (t === undefined ? [] : [...(t.data as Float32Array)]);
/** A model applying `f` to every element of its tensor `x`, answering it as `y`. */
export const elementwise =
  (f: (v: number) => number, input = "x", output = "y"): Model =>
  (inputs) => {
    const x = inputs.find((t) => t.name === input);
    if (x === undefined) return new Error(`no input ${input}`);
    return [{ ...fp32(output, values(x).map(f)), shape: x.shape }];
  };

export interface Answer {
  message: BusMessage;
  /** The decoded outputs, or the error message of an error answer. */
  outputs?: OipTensor[];
  error?: string;
  status?: string;
}

export async function waitFor<T>(
  probe: () => T | undefined | Promise<T | undefined>,
  what: string,
  timeoutMs = 5_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

export interface HarnessOptions {
  partitions?: number;
  models: Record<string, Model>;
  /** Extra topics to create (other pipelines' topics for external inputs). */
  topics?: string[];
  requestTimeoutMs?: number;
  maxOpen?: number;
  /** Records per onBatch (1 makes arrival order follow production order closely). */
  maxBatchSize?: number;
  bus?: MemoryBus;
  /** The Lambda rendezvous writer every host gets. */
  replies?: ReplyWriter;
}

export interface Harness {
  bus: MemoryBus;
  plan: PipelinePlan;
  groupId: string;
  partitions: number;
  host: PipelineHost;
  /** Starts another host of the same pipeline in the same group (a second worker). */
  addHost(): Promise<PipelineHost>;
  /** Writes a pipeline request on `partition` of the pipeline's inputs topic; returns its key. */
  send(
    id: string,
    partition: number,
    tensors: OipTensor[],
    headers?: Record<string, string>,
    raw?: boolean,
  ): Promise<string>;
  /** Writes records as another component would (another pipeline's answers, foreign records). */
  produce(messages: OutgoingMessage[]): Promise<void>;
  /** Every answer on the pipeline's outputs topic for request `id`. */
  answers(id: string): Answer[];
  /** Waits for the first answer of `id`. */
  answer(id: string, timeoutMs?: number): Promise<Answer>;
  /** Model requests the test's model gateway received, per model. */
  modelCalls: Map<string, BusMessage[]>;
  /** Holds model calls back (they are answered on `releaseModels` or one by one with `releaseCall`). */
  pauseModels(): void;
  releaseModels(): void;
  /** Model calls held back, oldest first. */
  heldCalls(): readonly BusMessage[];
  /** Answers the held call at `index` now. */
  releaseCall(index: number): Promise<void>;
  close(): Promise<void>;
}

export function decodeAnswer(message: BusMessage): Answer {
  if (message.headers[ERROR_HEADER] !== undefined) {
    return {
      message,
      error: message.headers[ERROR_MESSAGE_HEADER] ?? "",
      status: message.headers[ERROR_STATUS_HEADER] ?? "",
    };
  }
  return { message, outputs: responseOutputsToOip(decodeModelInferResponse(message.value)) };
}

export async function startHarness(plan: PipelinePlan, options: HarnessOptions): Promise<Harness> {
  const partitions = options.partitions ?? 4;
  const bus = options.bus ?? createMemoryBus({ maxBatchSize: options.maxBatchSize ?? 100 });
  const models = new Set(plan.steps.map((s) => s.model));
  const all = new Set([...plan.subscribe, ...plan.produce, ...(options.topics ?? [])]);
  for (const m of models) {
    all.add(topics.modelInputs(m));
    all.add(topics.modelOutputs(m));
  }
  await bus.admin().ensureTopics([...all], partitions);
  const producer = bus.producer();
  const modelCalls = new Map<string, BusMessage[]>();
  let paused = false;
  let held: BusMessage[] = [];
  const answerCall = async (messages: BusMessage[]) => {
    const out = [];
    for (const message of messages) {
      const model = topics.parse(message.topic)!.name!;
      modelCalls.set(model, [...(modelCalls.get(model) ?? []), message]);
      const fn = options.models[model];
      const request = decodeModelInferRequest(message.value);
      const result = fn === undefined ? new Error(`no model ${model}`) : fn(requestInputsToOip(request), message);
      const base = { topic: topics.modelOutputs(model), partition: message.partition, key: message.key };
      if (result === null) continue;
      if (result instanceof Error) {
        out.push({
          ...base,
          value: new Uint8Array(0),
          headers: {
            ...message.headers,
            [ERROR_HEADER]: model,
            [ERROR_MESSAGE_HEADER]: result.message,
            [ERROR_STATUS_HEADER]: "INVALID_ARGUMENT",
          },
        });
      } else {
        const { tensors: wire, raw } = tensorsFromOip(result, true);
        const value = encodeModelInferResponse({
          model_name: model,
          ...(request.id ? { id: request.id } : {}),
          outputs: wire,
          ...(raw ? { raw_output_contents: raw } : {}),
        });
        out.push({ ...base, value, headers: { ...message.headers } });
      }
    }
    if (out.length > 0) await producer.send(out);
  };
  const gateway: BusConsumer = bus.consumer({
    groupId: `test-model-gateway-${plan.pipeline}`,
    topics: [...models].map((m) => topics.modelInputs(m)),
    assignment: "round-robin",
    fromBeginning: true,
    onBatch: async (messages) => {
      if (paused) {
        held.push(...messages);
        return;
      }
      await answerCall(messages);
    },
  });
  await gateway.start({ timeoutMs: 5_000 });
  const groupId = `pipeline-${plan.pipeline}`;
  const hosts: PipelineHost[] = [];
  const addHost = async () => {
    const host = createPipelineHost({
      bus,
      plan,
      groupId,
      partitions,
      errorsTopic: topics.errors(),
      logger: silent,
      workerId: `dataflow-${hosts.length}`,
      ...(options.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: options.requestTimeoutMs }),
      ...(options.maxOpen === undefined ? {} : { maxOpen: options.maxOpen }),
      ...(options.replies === undefined ? {} : { replies: options.replies }),
    });
    hosts.push(host);
    await host.start({ timeoutMs: 5_000 });
    return host;
  };
  const host = await addHost();
  const answers = (id: string): Answer[] => {
    const out: Answer[] = [];
    for (let k = 0; k < partitions; k++) {
      for (const message of bus.records(plan.outputsTopic, k)) {
        if (parseRecordKey(message.key)?.requestId === id) out.push(decodeAnswer(message));
      }
    }
    return out;
  };
  return {
    bus,
    plan,
    groupId,
    partitions,
    host,
    addHost,
    async send(id, partition, tensors, headers = {}, raw = true) {
      const key = `${partition}.${plan.pipeline}.${id}`;
      const { tensors: wire, raw: rawContents } = tensorsFromOip(tensors, raw);
      const value = encodeModelInferRequest({
        model_name: plan.pipeline,
        id,
        inputs: wire,
        ...(rawContents ? { raw_input_contents: rawContents } : {}),
      });
      await producer.send([
        { topic: plan.inputsTopic, partition, key, value, headers: { pipeline: plan.pipeline, ...headers } },
      ]);
      return key;
    },
    produce: (messages) => producer.send(messages),
    answers,
    answer: (id, timeoutMs) => waitFor(() => answers(id)[0], `an answer to ${id}`, timeoutMs),
    modelCalls,
    pauseModels() {
      paused = true;
    },
    releaseModels() {
      paused = false;
      const messages = held;
      held = [];
      void answerCall(messages);
    },
    heldCalls: () => held,
    async releaseCall(index) {
      const [message] = held.splice(index, 1);
      if (message !== undefined) await answerCall([message]);
    },
    async close() {
      await Promise.all(hosts.map((h) => h.stop()));
      await gateway.stop();
      await producer.close();
      await bus.close();
    },
  };
}

/** `startHarness` for a test file: every harness it starts is closed after its test. */
export function harnessPerTest(): typeof startHarness {
  const open: Harness[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((h) => h.close()));
  });
  return async (...args) => {
    const h = await startHarness(...args);
    open.push(h);
    return h;
  };
}

/** The sample models add10 and mul10, elementwise on `x` into `y`. */
export const add10 = elementwise((v) => v + 10);
export const mul10 = elementwise((v) => v * 10);
