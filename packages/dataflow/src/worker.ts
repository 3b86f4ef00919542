import {
  type BusAssignment,
  type BusProducer,
  hasCode,
  type MessageBus,
  type PipelineAssignment,
  type PipelineResource,
  type PipelineRunReport,
  sleepUnlessAborted,
  TernError,
  type TopicNames,
  type WorkerAssignments,
  type WorkerClient,
} from "@tern/core";
import type { Logger } from "pino";
import { compilePipeline } from "./compile.js";
import { createPipelineHost, type PipelineHost, type PipelineHostOptions } from "./host.js";
import { createLatestWins } from "./latest-wins.js";
import type { ReplyWriter } from "./replies.js";

/** Where the worker gets a pipeline's spec: the scheduler's `GET /v1/pipelines/{p}/spec`. */
export type SpecSource = (
  pipeline: string,
  signal: AbortSignal,
) => Promise<{ version: number; resource: PipelineResource }>;

export interface DataflowWorkerOptions {
  id: string;
  bus: MessageBus;
  /** The worker's link to the scheduler (core's worker client, kind `dataflow`). */
  client: WorkerClient;
  specs: SpecSource;
  /** @default createPipelineHost (the engine); a test may wrap it to watch what the worker does. */
  createHost?: (options: PipelineHostOptions) => PipelineHost;
  topics: TopicNames;
  logger: Logger;
  /** Bound on draining an old version or a removed pipeline. @default 15000 */
  drainMs?: number;
  /** Deadline of a pipeline consumer's start (join + assignment). @default 30000 */
  startTimeoutMs?: number;
  /** How long a spec fetch is retried. @default 30000 */
  specTimeoutMs?: number;
  /** Deadline of one pipeline request (the host's). */
  requestTimeoutMs?: number;
  /** Open requests per stage (the host's). */
  maxOpen?: number;
  /** The DynamoDB rendezvous of the Lambda gateway (every host's); the caller owns it and closes it after `stop`. */
  replies?: ReplyWriter;
  /** First wait before retrying a pipeline that failed for a reason that may pass (a topic not created yet). @default 1000 */
  retryInitialMs?: number;
  /** @default 30000 */
  retryMaxMs?: number;
  /** How often the held partitions are checked for a change to report. @default 1000 */
  reportIntervalMs?: number;
}

export type DataflowWorkerState = "starting" | "running" | "draining" | "stopped";

/** One pipeline as this worker runs it. */
interface Run {
  version: number;
  groupId: string;
  state: PipelineRunReport["state"];
  reason?: string;
  host?: PipelineHost;
}

export interface DataflowWorker {
  readonly state: DataflowWorkerState;
  start(): Promise<void>;
  /** What it runs now, as the heartbeat reports it. */
  report(): PipelineRunReport[];
  /**
   * Drains every pipeline (each within `drainMs`, default the worker's), stops them, leaves the scheduler, closes the
   * bus. Idempotent.
   */
  stop(drainMs?: number): Promise<void>;
}

/**
 * A dataflow worker: follows the scheduler's assignment and runs one pipeline host per owned pipeline, in the
 * pipeline's group. Changes are serialised per pipeline, latest wins: a new version drains the old host, stops it,
 * then starts the new one in the same group (committed offsets continue; unfinished inputs are read again); a removed
 * pipeline drains and stops. What runs is reported with every heartbeat (Starting → Ready | Failed, Draining).
 */
export function createDataflowWorker(options: DataflowWorkerOptions): DataflowWorker {
  const { id, bus, client, logger, topics } = options;
  let drainMs = options.drainMs ?? 15_000;
  const startTimeoutMs = options.startTimeoutMs ?? 30_000;
  const createHost = options.createHost ?? createPipelineHost;
  const retryInitialMs = options.retryInitialMs ?? 1000;
  const retryMaxMs = options.retryMaxMs ?? 30_000;
  const runs = new Map<string, Run>();
  let state: DataflowWorkerState = "starting";
  let stopping: Promise<void> | undefined;
  let installation = { partitions: 0, errorsTopic: topics.errors() };
  let reportTimer: ReturnType<typeof setInterval> | undefined;
  // One producer for every pipeline this worker runs (created on first use; the bus closes it on stop).
  let producer: BusProducer | undefined;
  const sharedProducer = (): BusProducer => {
    producer ??= bus.producer();
    return producer;
  };

  const changes = createLatestWins<PipelineAssignment>({
    same: (a, b) => a?.version === b?.version && a?.groupId === b?.groupId,
    run: (pipeline, target, superseded) => converge(pipeline, target, superseded),
    onError: (pipeline, err) => logger.error({ pipeline, err }, "pipeline change failed"),
  });

  function report(): PipelineRunReport[] {
    return [...runs]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([pipeline, run]) => {
        const entry: PipelineRunReport = { pipeline, version: run.version, state: run.state };
        if (run.reason !== undefined) entry.reason = run.reason.slice(0, 2000);
        if (run.state === "Ready" && run.host !== undefined) entry.partitions = partitionsOf(run.host.assignment());
        return entry;
      });
  }
  const publish = () => client.report({ pipelines: report() });

  function setRun(pipeline: string, run: Run | undefined): void {
    if (run === undefined) runs.delete(pipeline);
    else runs.set(pipeline, run);
    publish();
  }

  async function retire(pipeline: string, run: Run): Promise<void> {
    const host = run.host;
    if (host === undefined) return setRun(pipeline, undefined);
    if (run.state === "Failed") {
      // Its consumer is gone: nothing it holds can finish here. Its uncommitted records go to the next reader.
      await host.stop().catch((err: unknown) => logger.warn({ pipeline, err: errorMessage(err) }, "stop failed"));
      return setRun(pipeline, undefined);
    }
    setRun(pipeline, { ...run, state: "Draining", reason: undefined, host });
    try {
      const { unfinished } = await host.drain(drainMs);
      if (unfinished > 0) {
        logger.warn(
          { pipeline, version: run.version, unfinished },
          "drain time over: unfinished requests are left to the next reader",
        );
      }
    } catch (err) {
      logger.warn({ pipeline, err: errorMessage(err) }, "drain failed; stopping anyway");
    }
    await host.stop().catch((err: unknown) => logger.warn({ pipeline, err: errorMessage(err) }, "stop failed"));
    setRun(pipeline, undefined);
    logger.info({ pipeline, version: run.version }, "pipeline version stopped");
  }

  async function converge(pipeline: string, target: PipelineAssignment | undefined, superseded: AbortSignal) {
    const current = runs.get(pipeline);
    if (current !== undefined) {
      const same = target !== undefined && current.version === target.version && current.groupId === target.groupId;
      // Only the owner set changed: the group rebalances on its own.
      if (same && current.state !== "Failed") return;
      await retire(pipeline, current);
      // A consumer that failed while running: start again after a pause, so a failure that repeats cannot spin.
      if (same && current.state === "Failed") await sleepUnlessAborted(retryInitialMs, superseded);
    }
    if (target === undefined || superseded.aborted) return;
    let backoff = retryInitialMs;
    for (;;) {
      const failure = await launch(pipeline, target, superseded);
      if (failure === undefined || superseded.aborted) return;
      if (!failure.retriable) return;
      // A reason that may pass (the topics not created yet, the scheduler away): try again while still wanted.
      await sleepUnlessAborted(backoff, superseded);
      if (superseded.aborted) return;
      backoff = Math.min(backoff * 2, retryMaxMs);
    }
  }

  /** Starts one version; answers undefined when it runs, or the failure (already reported). */
  async function launch(
    pipeline: string,
    target: PipelineAssignment,
    superseded: AbortSignal,
  ): Promise<{ retriable: boolean } | undefined> {
    const { version, groupId } = target;
    setRun(pipeline, { version, groupId, state: "Starting" });
    let host: PipelineHost | undefined;
    try {
      const spec = await fetchSpec(pipeline, version, superseded);
      if (spec === undefined) {
        setRun(pipeline, undefined);
        return undefined;
      }
      const plan = compilePipeline(spec, { topics });
      host = createHost({
        bus,
        plan,
        groupId,
        partitions: installation.partitions,
        errorsTopic: installation.errorsTopic,
        logger: logger.child({ pipeline, version }),
        workerId: id,
        ...(options.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: options.requestTimeoutMs }),
        ...(options.maxOpen === undefined ? {} : { maxOpen: options.maxOpen }),
        ...(options.replies === undefined ? {} : { replies: options.replies }),
        producer: sharedProducer(),
        onFailure: (err) => {
          const run = runs.get(pipeline);
          if (run === undefined || run.host !== host || state === "draining" || state === "stopped") return;
          const reason = `its consumer stopped: ${errorMessage(err)}; starting a new one`;
          logger.error({ pipeline, version, reason }, "pipeline consumer failed");
          setRun(pipeline, { ...run, state: "Failed", reason });
          changes.rerun(pipeline);
        },
      });
      setRun(pipeline, { version, groupId, state: "Starting", host });
      await host.start({ timeoutMs: startTimeoutMs });
      setRun(pipeline, { version, groupId, state: "Ready", host });
      logger.info({ pipeline, version, groupId, partitions: partitionsOf(host.assignment()) }, "pipeline ready");
      return undefined;
    } catch (err) {
      await host?.stop().catch(() => {});
      const retriable = !hasCode(err, "manifest.invalid");
      const reason = errorMessage(err);
      logger.warn({ pipeline, version, reason, retriable }, "pipeline failed to start");
      setRun(pipeline, { version, groupId, state: "Failed", reason });
      return { retriable };
    }
  }

  /**
   * The spec at `version`: retried (5 s per call) until the scheduler answers it or `specTimeoutMs` passes. The
   * scheduler serves the latest version only; an assignment naming an older one is being replaced, so a newer
   * version is waited out like an error. Undefined when superseded.
   */
  async function fetchSpec(pipeline: string, version: number, superseded: AbortSignal) {
    const deadline = AbortSignal.timeout(options.specTimeoutMs ?? 30_000);
    const signal = AbortSignal.any([superseded, deadline]);
    let backoff = 100;
    let last = "";
    while (!signal.aborted) {
      try {
        const spec = await options.specs(pipeline, AbortSignal.any([signal, AbortSignal.timeout(5000)]));
        if (spec.version === version) return spec.resource;
        last = `the scheduler has version ${spec.version}`;
      } catch (err) {
        if (superseded.aborted) return undefined;
        last = errorMessage(err);
      }
      await sleepUnlessAborted(backoff, signal);
      backoff = Math.min(backoff * 2, 2000);
    }
    if (superseded.aborted) return undefined;
    throw new TernError(
      "unavailable",
      `spec of pipeline ${pipeline} at version ${version} not fetched within ${options.specTimeoutMs ?? 30_000} ms: ${last}`,
      { retriable: true },
    );
  }

  function apply(assignments: WorkerAssignments): void {
    if (state === "draining" || state === "stopped") return;
    installation = { partitions: assignments.partitions, errorsTopic: assignments.errorsTopic };
    const wanted = new Map(assignments.pipelines.map((p) => [p.pipeline, p]));
    for (const pipeline of new Set([...changes.targets().keys(), ...wanted.keys()])) {
      changes.set(pipeline, wanted.get(pipeline));
    }
  }

  return {
    get state() {
      return state;
    },
    report,
    async start() {
      publish();
      await client.start(apply);
      // Rebalances change the partitions a Ready pipeline holds: the report follows (sent only when it changed).
      reportTimer = setInterval(publish, options.reportIntervalMs ?? 1000);
      reportTimer.unref();
      state = "running";
      logger.info({ id }, "dataflow worker running");
    },
    stop(shutdownDrainMs) {
      stopping ??= (async () => {
        state = "draining";
        if (shutdownDrainMs !== undefined) drainMs = shutdownDrainMs;
        clearInterval(reportTimer);
        for (const pipeline of changes.targets().keys()) changes.set(pipeline, undefined);
        await changes.idle();
        await client.close();
        await producer
          ?.close()
          .catch((err: unknown) => logger.warn({ err: errorMessage(err) }, "producer close failed"));
        await bus.close();
        state = "stopped";
      })();
      return stopping;
    },
  };
}

/** The partition numbers a consumer holds, over all its topics (co-partitioned: the same k on every topic). */
export function partitionsOf(assignment: BusAssignment): number[] {
  return [...new Set(Object.values(assignment).flat())].sort((a, b) => a - b);
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
