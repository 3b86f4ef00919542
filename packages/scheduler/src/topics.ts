import { hasCode, TernError, type TopicAdmin, type TopicNames } from "@tern/core";
import type { Logger } from "pino";
import { type ClusterState, type ModelRecord, type PipelineRecord, SERVING_STATES } from "./records.js";

/**
 * The topic lifecycle (DESIGN §3: the scheduler owns it), as thin effects over the {@link TopicAdmin} port: when a model
 * serves, its `inputs` and `outputs` topics and the installation's errors topic are made to exist with KAFKA_PARTITIONS
 * partitions; when a model is gone and `cleanTopicsOnDelete` is set, its two topics are deleted. Likewise a pipeline's
 * `pipeline.<p>.inputs|outputs` as soon as it is applied (it cannot be ready before they exist), deleted once it is
 * terminated when its `spec.dataflow.cleanTopicsOnDelete`, or else `cleanTopicsOnDelete`, says so. The outcome goes
 * back into the record (`topics`), where the reconciler turns a failure into the model's reason or the pipeline's
 * state; HTTP serving of models never waits for Kafka. Every operation runs off the scheduler's queue and is retried
 * with backoff, one resource at a time, so a down broker never blocks the reconciliation of anything else.
 */

/** The reason a model carries while the broker cannot be reached. */
export const KAFKA_UNREACHABLE_REASON = "Kafka unreachable: topics for the Kafka path not created";

export interface TopicLifecycleOptions {
  admin: TopicAdmin;
  names: TopicNames;
  partitions: number;
  /** Delete a model's topics once the model is deleted (`dataflow.cleanTopicsOnDelete` in Seldon). @default false */
  cleanTopicsOnDelete?: boolean;
  logger: Logger;
  /** Stores the outcome in the model's record, through the scheduler's change queue (a no-op for a vanished model). */
  record(model: string, topics: NonNullable<ModelRecord["topics"]>): Promise<void>;
  /** The same for a pipeline's record (a no-op for a vanished or deleted pipeline). */
  recordPipeline(pipeline: string, topics: NonNullable<PipelineRecord["topics"]>): Promise<void>;
  /** Backoff between attempts: doubles from `initialMs` up to `maxMs`. @default { initialMs: 500, maxMs: 30000 } */
  retry?: { initialMs?: number; maxMs?: number };
}

export interface TopicLifecycle {
  /** Looks at the state just adopted and starts whatever topic work it calls for. Never throws, never waits. */
  adopted(before: ClusterState, after: ClusterState): void;
  /**
   * Resolves once no operation is running (pending retries are not waited for).
   * @throws TernError `timeout` after `timeoutMs` (@default 10000)
   */
  idle(timeoutMs?: number): Promise<void>;
  /** Cancels pending retries; operations already running finish but record nothing. */
  stop(): void;
}

type Op = "ensure" | "delete";
type Owner = "model" | "pipeline";

interface Job {
  op: Op;
  attempt: number;
  timer?: NodeJS.Timeout;
}

export function createTopicLifecycle(options: TopicLifecycleOptions): TopicLifecycle {
  const { admin, names, partitions, logger } = options;
  const initialMs = options.retry?.initialMs ?? 500;
  const maxMs = options.retry?.maxMs ?? 30_000;
  /**
   * The one job wanted per resource, keyed `model/<m>` or `pipeline/<p>` (the latest request wins: a resource deleted
   * then applied again ends ensured).
   */
  const jobs = new Map<string, Job>();
  /** Operations run one at a time per resource, in order. */
  const running = new Map<string, Promise<void>>();
  let stopped = false;

  const keyOf = (owner: Owner, name: string) => `${owner}/${name}`;

  function schedule(owner: Owner, name: string, op: Op, delayMs: number, attempt = 0): void {
    const key = keyOf(owner, name);
    const existing = jobs.get(key);
    if (existing?.timer !== undefined) clearTimeout(existing.timer);
    const job: Job = { op, attempt };
    jobs.set(key, job);
    job.timer = setTimeout(() => {
      job.timer = undefined;
      const previous = running.get(key) ?? Promise.resolve();
      const run = previous.then(() => execute(owner, name, job));
      running.set(key, run);
      void run.finally(() => {
        if (running.get(key) === run) running.delete(key);
      });
    }, delayMs);
    job.timer.unref?.();
  }

  function cancel(owner: Owner, name: string, op: Op): void {
    const key = keyOf(owner, name);
    const job = jobs.get(key);
    if (job?.op !== op) return;
    if (job.timer !== undefined) clearTimeout(job.timer);
    jobs.delete(key);
  }

  async function execute(owner: Owner, name: string, job: Job): Promise<void> {
    const key = keyOf(owner, name);
    if (stopped || jobs.get(key) !== job) return;
    const topics =
      owner === "model"
        ? [names.modelInputs(name), names.modelOutputs(name)]
        : [names.pipelineInputs(name), names.pipelineOutputs(name)];
    const record = (outcome: { ready: boolean; reason?: string }) =>
      owner === "model" ? options.record(name, outcome) : options.recordPipeline(name, outcome);
    try {
      if (job.op === "ensure") {
        const result = await admin.ensureTopics([...topics, names.errors()], partitions);
        if (result.created.length > 0) logger.info({ [owner]: name, created: result.created }, "topics created");
        if (jobs.get(key) === job) jobs.delete(key);
        if (!stopped) await record({ ready: true });
      } else {
        await admin.deleteTopics(topics);
        logger.info({ [owner]: name, topics }, "topics deleted (cleanTopicsOnDelete)");
        if (jobs.get(key) === job) jobs.delete(key);
      }
    } catch (err) {
      if (stopped || jobs.get(key) !== job) return;
      const delay = Math.min(maxMs, initialMs * 2 ** job.attempt);
      // A topic with another partition count (or a name Kafka refuses) is not fixed by waiting; it is retried anyway,
      // so that an operator's fix shows without a restart.
      const unusable = hasCode(err, "kafka.partition_mismatch") || hasCode(err, "bad_request");
      logger.warn({ err, [owner]: name, op: job.op, retryInMs: delay }, `topic ${job.op} failed: retrying`);
      if (job.op === "ensure") {
        const reason = unusable ? `Kafka path unusable: ${(err as Error).message}` : KAFKA_UNREACHABLE_REASON;
        await record({ ready: false, reason }).catch((recordErr: unknown) =>
          logger.debug({ err: recordErr, [owner]: name }, "could not record topic state"),
        );
      }
      // The job may have been replaced while recording.
      if (!stopped && jobs.get(key) === job) schedule(owner, name, job.op, delay, job.attempt + 1);
    }
  }

  function adoptedPipelines(before: ClusterState, after: ClusterState): void {
    for (const [name, p] of after.pipelines) {
      const gone = p.deletedAt !== undefined || p.terminatedAt !== undefined;
      if (gone) {
        cancel("pipeline", name, "ensure");
        const was = before.pipelines.get(name);
        const justTerminated = p.terminatedAt !== undefined && was !== undefined && was.terminatedAt === undefined;
        if (justTerminated && (p.resource.spec.dataflow?.cleanTopicsOnDelete ?? options.cleanTopicsOnDelete) === true) {
          schedule("pipeline", name, "delete", 0);
        }
        continue;
      }
      if (p.topics?.ready === true || jobs.get(keyOf("pipeline", name))?.op === "ensure") continue;
      schedule("pipeline", name, "ensure", 0);
    }
    for (const name of before.pipelines.keys()) if (!after.pipelines.has(name)) cancel("pipeline", name, "ensure");
  }

  return {
    adopted(before, after) {
      if (stopped) return;
      for (const [name, model] of after.models) {
        if (model.deleting || model.topics?.ready === true) continue;
        if (!model.versions.some((v) => v.replicas.some((r) => SERVING_STATES.has(r.state)))) continue;
        // Already being ensured (or retried after a failure): leave it to its backoff.
        if (jobs.get(keyOf("model", name))?.op === "ensure") continue;
        schedule("model", name, "ensure", 0);
      }
      for (const name of before.models.keys()) {
        if (after.models.has(name)) continue;
        if (options.cleanTopicsOnDelete === true) schedule("model", name, "delete", 0);
        else cancel("model", name, "ensure");
      }
      adoptedPipelines(before, after);
    },
    async idle(timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (running.size > 0 || [...jobs.values()].some((j) => j.timer !== undefined && j.attempt === 0)) {
        if (Date.now() > deadline) {
          throw new TernError(
            "timeout",
            `topic operations still running after ${timeoutMs} ms (a broker not answering?)`,
          );
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    },
    stop() {
      stopped = true;
      for (const job of jobs.values()) if (job.timer !== undefined) clearTimeout(job.timer);
      jobs.clear();
    },
  };
}
