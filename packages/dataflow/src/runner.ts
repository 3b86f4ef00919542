import {
  type BusAssignment,
  type BusBatchContext,
  type BusMessage,
  type BusProducer,
  DEADLINE_HEADER,
  deadlineOf,
  ERROR_HEADER,
  ERROR_MESSAGE_HEADER,
  ERROR_STATUS_HEADER,
  formatRecordKey,
  type OutgoingMessage,
  PIPELINE_HEADER,
  parseRecordKey,
  parseTopic,
  REPLY_TO_DYNAMODB,
  REPLY_TO_HEADER,
  REQUEST_ID_HEADER,
  TernError,
} from "@tern/core";
import type { Logger } from "pino";
import {
  type JoinPlan,
  type PipelinePlan,
  type RecordTarget,
  recordTargets,
  type StepPlan,
  stepAnswering,
  stepErrorMessage,
} from "./compile.js";
import type { JoinErrorCode } from "./errors.js";
import {
  createJoinState,
  DEFAULT_MAX_OPEN,
  type FiredRequest,
  type JoinDecision,
  type JoinState,
} from "./join-state.js";
import { type HeldRecord, OffsetLog } from "./offset-log.js";
import type { ReplyWriter } from "./replies.js";
import {
  batchSignature,
  concatBatch,
  decodeTensors,
  encodeRequest,
  encodeResponse,
  splitBatch,
  type WireTensor,
  type WireTensors,
} from "./wire-tensors.js";

/**
 * The engine that runs one compiled pipeline on the message bus (DESIGN §3 "Dataflow"): it reads the records of the
 * pipeline's topics, feeds each stage's join state, produces the model requests, the pipeline's answers and its error
 * answers, and commits a topic-partition only up to the oldest record of a request that is not finished
 * (at-least-once). Everything about joins is decided by the pure join state; this is the loop around it.
 */

/**
 * On a batched model request (and so on its answer, which carries the request's headers): the requests it holds and
 * their row counts, as JSON `[["<requestId>", rows], ...]`, in the order their rows are concatenated.
 */
export const BATCH_HEADER = "tern-batch";

/** Sends (one per handled batch or timer tick) in flight at once before a batch handler waits for the oldest. */
export const MAX_OUTSTANDING_SENDS = 16;

/** Extra time after the longest window before an unfinished request fails: the model gateway's own deadline (60 s). */
export const REQUEST_TIMEOUT_MARGIN_MS = 60_000;

export interface PipelineRunnerOptions {
  plan: PipelinePlan;
  producer: BusProducer;
  /** The installation's partition count (every topic has it). */
  partitions: number;
  errorsTopic: string;
  logger: Logger;
  /** Names this worker in logs and in the ids of batched model requests. @default "dataflow" */
  workerId?: string;
  /** The clock. @default Date.now */
  now?: () => number;
  /**
   * A request not finished within this is failed with an error answer naming what it still waited for.
   * @default the plan's longest join or batch window + {@link REQUEST_TIMEOUT_MARGIN_MS} (60 s): a stage that waits
   * out its whole window reports its own, more precise error first, and so does a step whose model answers an error
   * at the model gateway's deadline.
   */
  requestTimeoutMs?: number;
  /**
   * Most requests open at once in this runner, and most waiting in each stage (spread evenly over the partitions). A
   * new request beyond it is failed at once with `RESOURCE_EXHAUSTED`; the open ones are kept.
   * @default 10_000
   */
  maxOpen?: number;
  /**
   * Where the answers (and error answers) of requests carrying `tern-reply-to: dynamodb` are also put, besides the
   * pipeline's outputs topic (the Lambda gateway's rendezvous). Unset: such requests are answered on Kafka only, and
   * a warning says so.
   */
  replies?: ReplyWriter;
}

export interface PipelineRunner {
  /** What its consumer subscribes to (`plan.subscribe`). */
  readonly topics: string[];
  /** The consumer's batch handler (`commit: "manual"`). Never throws for a bad record: that request fails instead. */
  onBatch(messages: BusMessage[], context: BusBatchContext): Promise<void>;
  /** The consumer's assignment callback: requests of partitions it lost are dropped (their new owner replays them). */
  onAssignment(assignment: BusAssignment): void;
  /** Requests taken and not finished (answered, failed, or dropped with their partition). */
  inFlight(): number;
  /**
   * Stops taking NEW requests from the pipeline's inputs (their records stay uncommitted, so the next version re-reads
   * them); resolves when every open request finished or after `timeoutMs`.
   */
  drain(timeoutMs: number): Promise<{ unfinished: number }>;
  /** Timers off; no more sends; resolves once the sends in flight ended (acked or given up). */
  close(): Promise<void>;
}

type Status = "DEADLINE_EXCEEDED" | "RESOURCE_EXHAUSTED" | "ABORTED" | "FAILED_PRECONDITION" | "INVALID_ARGUMENT";
const JOIN_STATUS: Record<JoinErrorCode, Status> = {
  "join.window_expired": "DEADLINE_EXCEEDED",
  "join.capacity": "RESOURCE_EXHAUSTED",
  "join.revisits": "ABORTED",
};

interface Stage {
  /** As `recordTargets` names it: `input`, `output`, or the step's name. */
  name: string;
  /** As error messages name it: `input`, `output`, `step add10`. */
  label: string;
  join: JoinPlan;
  step?: StepPlan;
}

/** What a record of one topic with one `pipeline` header means to this pipeline. */
interface Route {
  targets: RecordTarget[];
  /** The step whose answers (and error records) come on this topic, for records of this pipeline. */
  errorStep?: StepPlan;
  /** True when a record of it may start a request (the pipeline's inputs, the input stage's sources). */
  entry: boolean;
  kind: "request" | "response";
}

interface Part {
  partition: number;
  joins: Map<string, JoinState<WireTensor>>;
  requests: Map<string, Req>;
  /** Requests answered or failed here lately: their late or replayed records are done at once. */
  finished: Map<string, number>;
  finishedOrder: { id: string; until: number }[];
  finishedHead: number;
}

interface Req {
  id: string;
  part: Part;
  /** Carried to every record the request causes: the caller's headers, never `pipeline` or error markers. */
  headers: Record<string, string>;
  /** This runner's request timeout. */
  deadline: number;
  /** The caller's (`tern-deadline` on its first record): past it nobody waits, so no more work is started for it. */
  callerDeadline: number | undefined;
  /** The records this request holds back from being committed. */
  records: HeldRecord[];
  /** What it waits for, per stage: a join, or a model's answer. */
  stages: Map<string, "joining" | "running">;
  state: "open" | "closing" | "done" | "dropped";
  /** The caller asked for the answer in DynamoDB too (`tern-reply-to: dynamodb`). */
  replyTo: boolean;
}

/** Records produced and requests ended by one batch or timer tick; the requests finish once the records are acked. */
interface Round {
  out: OutgoingMessage[];
  closing: Req[];
}

// The reply-to header stays with the request it came on: carried on, it would make a pipeline reading this one's
// outputs put its own answer under the same request id.
const NOT_CARRIED = new Set([
  PIPELINE_HEADER,
  ERROR_HEADER,
  ERROR_MESSAGE_HEADER,
  ERROR_STATUS_HEADER,
  BATCH_HEADER,
  REPLY_TO_HEADER,
]);
const encoder = new TextEncoder();
const EMPTY = new Uint8Array(0);

export function createPipelineRunner(options: PipelineRunnerOptions): PipelineRunner {
  const { plan, producer, errorsTopic, logger, replies } = options;
  const now = options.now ?? Date.now;
  const workerId = options.workerId ?? "dataflow";
  if (!Number.isSafeInteger(options.partitions) || options.partitions < 1) {
    throw new TernError("config.invalid", `partitions must be a positive integer (got ${options.partitions})`);
  }
  const maxOpen = options.maxOpen ?? DEFAULT_MAX_OPEN;
  const maxOpenPerPartition = Math.max(1, Math.ceil(maxOpen / options.partitions));
  const stages = new Map<string, Stage>();
  if (plan.input !== undefined) stages.set("input", { name: "input", label: "input", join: plan.input });
  for (const step of plan.steps)
    stages.set(step.name, { name: step.name, label: `step ${step.name}`, join: step, step });
  stages.set("output", { name: "output", label: "output", join: plan.output });
  const longestWindow = Math.max(
    ...[...stages.values()].map((s) => Math.max(s.join.windowMs, s.step?.batch?.windowMs ?? 0)),
  );
  const requestTimeoutMs = options.requestTimeoutMs ?? longestWindow + REQUEST_TIMEOUT_MARGIN_MS;
  // Batched model requests need ids no other worker or restart uses.
  const batchIdPrefix = `batch.${workerId}.${Date.now().toString(36)}`;
  let batchSeq = 0;

  const parts = new Map<number, Part>();
  let logs = new Map<string, OffsetLog>();
  const routes = new Map<string, Route | null>();
  /** Requests in the order they opened (so in deadline order), for the request timeout. */
  let timeouts: Req[] = [];
  let timeoutsHead = 0;
  let open = 0;
  /** Requests taken and not finished: open, or closing (their answer not acked yet). */
  const live = new Set<Req>();
  let closed = false;
  let draining = false;
  let drainWaiters: Array<() => void> = [];
  let timer: NodeJS.Timeout | undefined;
  let timerAt = Number.POSITIVE_INFINITY;
  /** Sends not acknowledged yet (each with the requests it finishes); see `onBatch`. */
  const outstanding = new Set<Promise<void>>();

  function routeOf(topic: string, header: string): Route | null {
    const cacheKey = `${topic}\u0000${header}`;
    let route = routes.get(cacheKey);
    if (route !== undefined) return route;
    const targets = recordTargets(plan, topic, header);
    const errorStep = header === plan.pipeline ? stepAnswering(plan, topic) : undefined;
    const inputStage = plan.input === undefined ? [] : [...plan.input.inputs, ...plan.input.triggers];
    const entry =
      (topic === plan.inputsTopic && header === plan.pipeline) ||
      inputStage.some((s) => s.topic === topic && s.pipeline === header);
    const direction = parseTopic(topic)?.direction ?? (topic.endsWith(".outputs") ? "outputs" : "inputs");
    route =
      targets.length === 0 && errorStep === undefined
        ? null
        : {
            targets,
            ...(errorStep ? { errorStep } : {}),
            entry,
            kind: direction === "outputs" ? "response" : "request",
          };
    routes.set(cacheKey, route);
    return route;
  }

  function partOf(partition: number): Part {
    let part = parts.get(partition);
    if (part === undefined) {
      part = {
        partition,
        joins: new Map(),
        requests: new Map(),
        finished: new Map(),
        finishedOrder: [],
        finishedHead: 0,
      };
      parts.set(partition, part);
    }
    return part;
  }

  function joinOf(part: Part, stage: Stage): JoinState<WireTensor> {
    let join = part.joins.get(stage.name);
    if (join === undefined) {
      join = createJoinState<WireTensor>(stage.join, {
        stage: stage.label,
        maxOpen: maxOpenPerPartition,
        ...(stage.step?.batch ? { batch: stage.step.batch } : {}),
        maxRevisits: stage.step?.maxRevisits ?? 0,
      });
      part.joins.set(stage.name, join);
    }
    return join;
  }

  function logOf(topic: string, partition: number): OffsetLog {
    const k = `${topic}#${partition}`;
    let log = logs.get(k);
    if (log === undefined) {
      log = new OffsetLog(topic, partition);
      logs.set(k, log);
    }
    return log;
  }

  // --- finished requests: remembered for the request timeout, at most 4 × maxOpen per partition -----------------

  function remember(part: Part, id: string, at: number): void {
    const until = at + requestTimeoutMs;
    part.finished.set(id, until);
    part.finishedOrder.push({ id, until });
    while (part.finished.size > 4 * maxOpenPerPartition) forgetOldest(part);
  }
  function forgetOldest(part: Part): void {
    const item = part.finishedOrder[part.finishedHead++];
    if (item !== undefined && part.finished.get(item.id) === item.until) part.finished.delete(item.id);
    if (part.finishedHead > 1024 && part.finishedHead * 2 > part.finishedOrder.length) {
      part.finishedOrder = part.finishedOrder.slice(part.finishedHead);
      part.finishedHead = 0;
    }
  }
  function forgetExpired(part: Part, at: number): void {
    while (part.finishedHead < part.finishedOrder.length && part.finishedOrder[part.finishedHead]!.until <= at) {
      forgetOldest(part);
    }
  }

  // --- records out ----------------------------------------------------------------------------------------------

  const headersOf = (req: Req): Record<string, string> => ({ ...req.headers, [PIPELINE_HEADER]: plan.pipeline });
  const keyOf = (partition: number, resource: string, id: string) =>
    formatRecordKey({ partition, resource, requestId: id });

  function openRequest(part: Part, id: string, incoming: Record<string, string>, at: number): Req {
    const headers: Record<string, string> = {};
    for (const name in incoming) if (!NOT_CARRIED.has(name)) headers[name] = incoming[name]!;
    headers[REQUEST_ID_HEADER] ??= id;
    const replyTo = incoming[REPLY_TO_HEADER];
    if (replyTo !== undefined && (replyTo !== REPLY_TO_DYNAMODB || replies === undefined)) {
      logger.warn(
        { pipeline: plan.pipeline, requestId: id, replyTo },
        replies === undefined
          ? "request asks for a DynamoDB reply but this worker has no reply table: answered on Kafka only"
          : `unknown ${REPLY_TO_HEADER} channel: answered on Kafka only`,
      );
    }
    const req: Req = {
      id,
      part,
      headers,
      deadline: at + requestTimeoutMs,
      callerDeadline: deadlineOf(incoming),
      records: [],
      stages: new Map(),
      state: "open",
      replyTo: replyTo === REPLY_TO_DYNAMODB && replies !== undefined,
    };
    part.requests.set(id, req);
    timeouts.push(req);
    open++;
    live.add(req);
    return req;
  }

  /**
   * Ends a request in every stage; it finishes (its records become done) once what it produced is acked. Until then it
   * stays in its partition's requests, so that a record of it read meanwhile (a replay after a rebalance) is held too.
   */
  function close(req: Req, round: Round, at: number): void {
    req.state = "closing";
    remember(req.part, req.id, at);
    for (const join of req.part.joins.values()) join.drop(req.id, at);
    open--;
    round.closing.push(req);
  }

  function complete(req: Req, tensors: ReadonlyMap<string, WireTensor>, round: Round, at: number): void {
    let value: Uint8Array;
    try {
      value = encodeResponse(plan.pipeline, req.id, tensors);
    } catch (err) {
      fail(
        req,
        `pipeline ${plan.pipeline}: its answer cannot be encoded: ${(err as Error).message}`,
        "INVALID_ARGUMENT",
        round,
        at,
      );
      return;
    }
    round.out.push({
      topic: plan.outputsTopic,
      partition: req.part.partition,
      key: keyOf(req.part.partition, plan.pipeline, req.id),
      value,
      headers: headersOf(req),
    });
    if (req.replyTo) replies?.put({ requestId: req.id, pipeline: plan.pipeline, ok: true, response: value });
    close(req, round, at);
  }

  function fail(req: Req, message: string, status: string, round: Round, at: number): void {
    if (req.state !== "open") return;
    const partition = req.part.partition;
    const key = keyOf(partition, plan.pipeline, req.id);
    const marked = { ...headersOf(req), [ERROR_HEADER]: plan.pipeline };
    round.out.push(
      {
        topic: plan.outputsTopic,
        partition,
        key,
        value: EMPTY,
        headers: { ...marked, [ERROR_MESSAGE_HEADER]: message, [ERROR_STATUS_HEADER]: status },
      },
      { topic: errorsTopic, partition, key, value: encoder.encode(message), headers: marked },
    );
    logger.debug({ pipeline: plan.pipeline, requestId: req.id, status, message }, "pipeline request failed");
    if (req.replyTo) replies?.put({ requestId: req.id, pipeline: plan.pipeline, ok: false, message, status });
    close(req, round, at);
  }

  /**
   * Fails a request whose caller's deadline has passed (its answer would reach nobody); true when it did. `next` says
   * what is not done for it.
   */
  function failIfLate(req: Req, next: string, round: Round, at: number): boolean {
    if (req.callerDeadline === undefined || at < req.callerDeadline) return false;
    fail(
      req,
      `pipeline ${plan.pipeline}: request ${req.id}: the caller's deadline passed ${at - req.callerDeadline} ms ago; ${next}`,
      "DEADLINE_EXCEEDED",
      round,
      at,
    );
    return true;
  }

  function sendStep(req: Req, step: StepPlan, tensors: ReadonlyMap<string, WireTensor>, round: Round, at: number) {
    let value: Uint8Array;
    try {
      value = encodeRequest(step.model, req.id, tensors);
    } catch (err) {
      fail(req, stepErrorMessage(plan, step.name, (err as Error).message), "INVALID_ARGUMENT", round, at);
      return;
    }
    round.out.push({
      topic: step.requestTopic,
      partition: req.part.partition,
      key: keyOf(req.part.partition, step.model, req.id),
      value,
      headers: headersOf(req),
    });
    req.stages.set(step.name, "running");
  }

  /** Fired requests of a batching step: one model request per group that can share a call (see docs/dataflow.md). */
  function sendBatch(
    part: Part,
    step: StepPlan,
    fired: { req: Req; tensors: ReadonlyMap<string, WireTensor> }[],
    round: Round,
    at: number,
  ) {
    const groups = new Map<string, { req: Req; tensors: ReadonlyMap<string, WireTensor>; rows: number }[]>();
    for (const f of fired) {
      const signature = batchSignature(f.tensors);
      if (signature === undefined) {
        sendStep(f.req, step, f.tensors, round, at);
        continue;
      }
      const group = groups.get(signature.key);
      if (group === undefined) groups.set(signature.key, [{ ...f, rows: signature.rows }]);
      else group.push({ ...f, rows: signature.rows });
    }
    for (const group of groups.values()) {
      if (group.length === 1) {
        sendStep(group[0]!.req, step, group[0]!.tensors, round, at);
        continue;
      }
      const id = `${batchIdPrefix}.${batchSeq++}`;
      let value: Uint8Array;
      try {
        value = encodeRequest(step.model, id, concatBatch(group.map((g) => g.tensors)));
      } catch (err) {
        for (const g of group)
          fail(g.req, stepErrorMessage(plan, step.name, (err as Error).message), "INVALID_ARGUMENT", round, at);
        continue;
      }
      round.out.push({
        topic: step.requestTopic,
        partition: part.partition,
        key: keyOf(part.partition, step.model, id),
        value,
        headers: {
          [PIPELINE_HEADER]: plan.pipeline,
          [REQUEST_ID_HEADER]: id,
          [BATCH_HEADER]: JSON.stringify(group.map((g) => [g.req.id, g.rows])),
          ...batchDeadline(group.map((g) => g.req)),
        },
      });
      for (const g of group) g.req.stages.set(step.name, "running");
    }
  }

  // --- records in -----------------------------------------------------------------------------------------------

  function decide(part: Part, stage: Stage, decisions: JoinDecision<WireTensor>[], round: Round, at: number): void {
    for (const d of decisions) {
      if (d.kind === "fire") {
        const fired: { req: Req; tensors: ReadonlyMap<string, WireTensor> }[] = [];
        for (const r of d.requests as FiredRequest<WireTensor>[]) {
          const req = part.requests.get(r.requestId);
          if (req === undefined || req.state !== "open") continue;
          req.stages.delete(stage.name);
          if (stage.name !== "output" && failIfLate(req, `${stage.label} is not run`, round, at)) continue;
          fired.push({ req, tensors: r.tensors });
        }
        if (stage.name === "output") for (const f of fired) complete(f.req, f.tensors, round, at);
        else if (stage.name === "input") {
          for (const { req, tensors } of fired) {
            let value: Uint8Array;
            try {
              value = encodeRequest(plan.pipeline, req.id, tensors);
            } catch (err) {
              fail(req, `pipeline ${plan.pipeline}: input: ${(err as Error).message}`, "INVALID_ARGUMENT", round, at);
              continue;
            }
            round.out.push({
              topic: plan.inputsTopic,
              partition: part.partition,
              key: keyOf(part.partition, plan.pipeline, req.id),
              value,
              headers: headersOf(req),
            });
          }
        } else if (stage.step?.batch !== undefined && fired.length > 1) sendBatch(part, stage.step, fired, round, at);
        else for (const f of fired) sendStep(f.req, stage.step!, f.tensors, round, at);
        continue;
      }
      const req = part.requests.get(d.requestId);
      if (req === undefined || req.state !== "open") continue;
      req.stages.delete(stage.name);
      if (d.kind === "error") {
        fail(req, `pipeline ${plan.pipeline}: ${d.message}`, JOIN_STATUS[d.code], round, at);
      } else if (stage.step === undefined) {
        // The output (or input) stage did not run: no step produced what it takes.
        fail(req, `pipeline ${plan.pipeline}: no answer: ${d.reason}`, "FAILED_PRECONDITION", round, at);
      } else {
        // Conditional routing: the stages that read this step (its outputs or its inputs) learn it will not produce.
        for (const topic of [stage.step.answerTopic, stage.step.requestTopic]) {
          for (const target of routeOf(topic, plan.pipeline)?.targets ?? []) {
            if (req.state !== "open") break;
            feed(req, target, null, round, at);
          }
        }
      }
    }
  }

  function feed(req: Req, target: RecordTarget, arrival: WireTensors | null, round: Round, at: number): void {
    const stage = stages.get(target.stage)!;
    const decisions = joinOf(req.part, stage).arrive(req.id, target.sourceId, arrival, at);
    if (decisions.length === 0 && !req.stages.has(stage.name)) req.stages.set(stage.name, "joining");
    decide(req.part, stage, decisions, round, at);
  }

  function dispatch(
    part: Part,
    id: string,
    message: BusMessage,
    record: HeldRecord,
    route: Route,
    tensorsOf: () => WireTensors | Error,
    round: Round,
    at: number,
  ): void {
    let req = part.requests.get(id);
    if (req !== undefined && req.state !== "open") {
      // Its answer is on its way: the record is done when that is acknowledged.
      req.records.push(record);
      record.holds++;
      return;
    }
    if (req === undefined) {
      // Only a request's first record starts it; others of a request not open here (late, duplicated, or of a
      // request this worker no longer knows) are done at once — a replay re-runs the request from its inputs.
      if (!route.entry || part.finished.has(id)) return;
      if (draining) {
        // Not taken: held uncommitted for the next owner or version.
        record.holds++;
        return;
      }
      req = openRequest(part, id, message.headers, at);
      if (open > maxOpen) {
        req.records.push(record);
        record.holds++;
        fail(
          req,
          `pipeline ${plan.pipeline}: ${maxOpen} requests are already open; refused`,
          "RESOURCE_EXHAUSTED",
          round,
          at,
        );
        return;
      }
    }
    req.records.push(record);
    record.holds++;
    const errorText = message.headers[ERROR_MESSAGE_HEADER];
    if (message.headers[ERROR_HEADER] !== undefined || errorText !== undefined) {
      const reason = errorText ?? "an error record without a message";
      const status = message.headers[ERROR_STATUS_HEADER] ?? "UNKNOWN";
      const text = route.errorStep
        ? stepErrorMessage(plan, route.errorStep.name, reason)
        : `pipeline ${plan.pipeline}: ${route.targets.map((t) => t.sourceId).join(", ")} failed: ${reason}`;
      fail(req, text, status, round, at);
      return;
    }
    if (failIfLate(req, "its remaining steps are not run", round, at)) return;
    if (route.errorStep !== undefined && req.stages.get(route.errorStep.name) === "running") {
      req.stages.delete(route.errorStep.name);
    }
    if (route.targets.length === 0) return;
    const tensors = tensorsOf();
    if (tensors instanceof Error) {
      fail(
        req,
        `pipeline ${plan.pipeline}: a record on ${message.topic}: ${tensors.message}`,
        "INVALID_ARGUMENT",
        round,
        at,
      );
      return;
    }
    for (const target of route.targets) {
      if (req.state !== "open") break;
      feed(req, target, tensors, round, at);
    }
  }

  function processMessage(message: BusMessage, log: OffsetLog, round: Round): void {
    const record = log.append(message.offset);
    const header = message.headers[PIPELINE_HEADER] ?? (message.topic === plan.inputsTopic ? plan.pipeline : undefined);
    if (header === undefined) return;
    const route = routeOf(message.topic, header);
    if (route === null) return;
    const key = parseRecordKey(message.key);
    if (key === null) {
      logger.warn(
        { topic: message.topic, partition: message.partition, offset: message.offset },
        "record key is not <partition>.<resource>.<id>: ignored",
      );
      return;
    }
    const at = now();
    const part = partOf(message.partition);
    const decodeAll = (): WireTensors | Error => {
      try {
        return decodeTensors(message.value, route.kind);
      } catch (err) {
        return err as Error;
      }
    };
    const batchText = message.headers[BATCH_HEADER];
    if (batchText === undefined) {
      let decoded: WireTensors | Error | undefined;
      dispatch(part, key.requestId, message, record, route, () => (decoded ??= decodeAll()), round, at);
      return;
    }
    const members = parseBatchHeader(batchText);
    if (members === undefined) {
      logger.warn({ topic: message.topic, offset: message.offset }, `bad ${BATCH_HEADER} header: record ignored`);
      return;
    }
    let split: WireTensors[] | Error | undefined;
    const splitAll = (): WireTensors[] | Error => {
      const whole = decodeAll();
      if (whole instanceof Error) return whole;
      try {
        return splitBatch(
          whole,
          members.map(([, rows]) => rows),
          route.kind === "request" ? "input" : "output",
        );
      } catch (err) {
        return err as Error;
      }
    };
    members.forEach(([id], i) => {
      dispatch(
        part,
        id,
        message,
        record,
        route,
        () => {
          split ??= splitAll();
          return split instanceof Error ? split : split[i]!;
        },
        round,
        at,
      );
    });
  }

  // --- sending, finishing, committing ---------------------------------------------------------------------------

  async function deliver(out: OutgoingMessage[], context: BusBatchContext | undefined): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      if (closed) return false;
      try {
        await producer.send(out);
        return true;
      } catch (err) {
        logger.warn({ pipeline: plan.pipeline, err, attempt }, "produce failed; retrying");
        if (closed || (context !== undefined && !context.isRunning())) return false;
        await new Promise((resolve) => setTimeout(resolve, Math.min(100 * 2 ** attempt, 2000)));
      }
    }
  }

  /** Sends a round's records in the background; the requests it ends finish, and commit, once they are acked. */
  function flushLater(round: Round, context: BusBatchContext | undefined): Promise<void> {
    const sending = flush(round, context).catch((err: unknown) => logger.error({ err }, "dataflow flush failed"));
    outstanding.add(sending);
    void sending.then(() => outstanding.delete(sending));
    return sending;
  }

  async function flush(round: Round, context: BusBatchContext | undefined): Promise<void> {
    if (round.out.length > 0 && !(await deliver(round.out, context))) return;
    const touched = new Set<OffsetLog>();
    for (const req of round.closing) {
      if (req.state !== "closing") continue;
      req.state = "done";
      live.delete(req);
      if (req.part.requests.get(req.id) === req) req.part.requests.delete(req.id);
      for (const record of req.records) {
        record.holds--;
        if (record.holds === 0) touched.add(record.log);
      }
      // It may wait in the timeout queue a while longer: let go of what it held.
      req.records = [];
      req.headers = {};
      req.stages.clear();
    }
    for (const log of touched) log.commit();
    if (live.size === 0 && drainWaiters.length > 0) for (const wake of drainWaiters.splice(0)) wake();
  }

  // --- time -----------------------------------------------------------------------------------------------------

  function schedule(): void {
    if (closed) return;
    let next = Number.POSITIVE_INFINITY;
    for (const part of parts.values()) {
      for (const join of part.joins.values()) {
        const d = join.nextDeadline();
        if (d !== undefined && d < next) next = d;
      }
    }
    while (timeoutsHead < timeouts.length && timeouts[timeoutsHead]!.state !== "open") timeoutsHead++;
    if (timeoutsHead > 1024 && timeoutsHead * 2 > timeouts.length) {
      timeouts = timeouts.slice(timeoutsHead);
      timeoutsHead = 0;
    }
    const first = timeouts[timeoutsHead];
    if (first !== undefined && first.deadline < next) next = first.deadline;
    if (next === Number.POSITIVE_INFINITY || (timer !== undefined && timerAt <= next)) return;
    if (timer !== undefined) clearTimeout(timer);
    timerAt = next;
    timer = setTimeout(tick, Math.max(0, next - now()));
    timer.unref();
  }

  function tick(): void {
    timer = undefined;
    timerAt = Number.POSITIVE_INFINITY;
    if (closed) return;
    const at = now();
    const round: Round = { out: [], closing: [] };
    for (const part of parts.values()) {
      for (const [name, join] of part.joins) decide(part, stages.get(name)!, join.expire(at), round, at);
      forgetExpired(part, at);
    }
    while (timeoutsHead < timeouts.length) {
      const req = timeouts[timeoutsHead]!;
      if (req.state === "open" && req.deadline > at) break;
      timeoutsHead++;
      if (req.state !== "open") continue;
      const waiting = [...req.stages].map(([name, what]) => {
        const stage = stages.get(name)!;
        return what === "running"
          ? `the answer of model ${stage.step!.model} (${stage.label})`
          : `${stage.label} to join its inputs`;
      });
      fail(
        req,
        `pipeline ${plan.pipeline}: request ${req.id} not finished within ${requestTimeoutMs} ms; still waiting for ${waiting.length > 0 ? waiting.join(", ") : "its inputs"}`,
        "DEADLINE_EXCEEDED",
        round,
        at,
      );
    }
    schedule();
    if (round.out.length > 0 || round.closing.length > 0) void flushLater(round, undefined);
  }

  return {
    topics: [...plan.subscribe],

    async onBatch(messages, context) {
      if (closed || messages.length === 0) return;
      const first = messages[0]!;
      const log = logOf(first.topic, first.partition);
      log.context = context;
      const round: Round = { out: [], closing: [] };
      for (const message of messages) {
        try {
          processMessage(message, log, round);
        } catch (err) {
          // A bug, not bad data (bad data fails its request): log it and go on; the record is done.
          logger.error({ err, topic: message.topic, offset: message.offset }, "dataflow failed to handle a record");
        }
      }
      log.commit();
      schedule();
      // The handler returns before the broker acknowledged what it produced, so the consumer fetches on meanwhile:
      // nothing depends on the handler's return (commits are marks made once the records are acked). At most
      // MAX_OUTSTANDING_SENDS are in flight; then the handler waits for the oldest.
      if (round.out.length === 0 && round.closing.length === 0) return;
      void flushLater(round, context);
      if (outstanding.size >= MAX_OUTSTANDING_SENDS) await Promise.race(outstanding);
    },

    onAssignment(assignment) {
      const held = new Set<number>();
      for (const partitions of Object.values(assignment)) for (const p of partitions) held.add(p);
      for (const partition of parts.keys()) if (!held.has(partition)) parts.delete(partition);
      // Open or closing (answer not acked) on a lost partition: the new owner replays and answers them.
      for (const req of live) {
        if (held.has(req.part.partition)) continue;
        if (req.state === "open") open--;
        req.state = "dropped";
        live.delete(req);
      }
      // The consumer reads every partition it holds again from its committed offset (an eager rebalance), so the
      // records of open requests come again and re-attach; the old logs are done with.
      logs = new Map();
      for (const part of parts.values()) for (const req of part.requests.values()) req.records = [];
      if (live.size === 0 && drainWaiters.length > 0) for (const wake of drainWaiters.splice(0)) wake();
      logger.debug({ pipeline: plan.pipeline, partitions: [...held].sort((a, b) => a - b) }, "dataflow assignment");
    },

    inFlight: () => live.size,

    drain(timeoutMs) {
      draining = true;
      if (live.size === 0) return Promise.resolve({ unfinished: 0 });
      return new Promise((resolve) => {
        let timeout: NodeJS.Timeout | undefined;
        const wake = () => {
          if (timeout !== undefined) clearTimeout(timeout);
          resolve({ unfinished: live.size });
        };
        drainWaiters.push(wake);
        timeout = setTimeout(() => {
          drainWaiters = drainWaiters.filter((w) => w !== wake);
          resolve({ unfinished: live.size });
        }, timeoutMs);
      });
    },

    async close() {
      closed = true;
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      // Sends in flight end (acked, or failed and not retried): their marks reach the consumer before it stops.
      await Promise.all(outstanding);
      for (const wake of drainWaiters.splice(0)) wake();
    },
  };
}

/** `[["<requestId>", rows], ...]`, or undefined when the header is not that. */
function parseBatchHeader(text: string): [string, number][] | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!Array.isArray(parsed) || parsed.length === 0) return undefined;
  for (const item of parsed) {
    if (!Array.isArray(item) || item.length !== 2) return undefined;
    if (typeof item[0] !== "string" || item[0] === "" || !Number.isSafeInteger(item[1]) || item[1] < 0)
      return undefined;
  }
  return parsed as [string, number][];
}

/**
 * The deadline header of a batched model request: its members' latest (the call is worth making while any of them is
 * waited for), or none when a member has none.
 */
function batchDeadline(members: { callerDeadline: number | undefined }[]): Record<string, string> {
  let latest = Number.NEGATIVE_INFINITY;
  for (const m of members) {
    if (m.callerDeadline === undefined) return {};
    latest = Math.max(latest, m.callerDeadline);
  }
  return { [DEADLINE_HEADER]: String(latest) };
}
