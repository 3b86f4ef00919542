import { hasCode, TernError, type TopicAdmin, type TopicNames } from "@tern/core";
import type { Logger } from "pino";
import { type ClusterState, type ModelRecord, SERVING_STATES } from "./records.js";

/**
 * The topic lifecycle (DESIGN §3: the scheduler owns it), as thin effects over the {@link TopicAdmin} port: when a model
 * serves, its `inputs` and `outputs` topics and the installation's errors topic are made to exist with KAFKA_PARTITIONS
 * partitions; when a model is gone and `cleanTopicsOnDelete` is set, its two topics are deleted. The outcome goes back
 * into the model's record (`topics`), where the reconciler turns a failure into the model's reason; HTTP serving never
 * waits for Kafka. Every operation runs off the scheduler's queue and is retried with backoff, one model at a time, so
 * a down broker never blocks the reconciliation of other models.
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

interface Job {
  op: Op;
  attempt: number;
  timer?: NodeJS.Timeout;
}

export function createTopicLifecycle(options: TopicLifecycleOptions): TopicLifecycle {
  const { admin, names, partitions, logger } = options;
  const initialMs = options.retry?.initialMs ?? 500;
  const maxMs = options.retry?.maxMs ?? 30_000;
  /** The one job wanted per model (the latest request wins: a model deleted then applied again ends ensured). */
  const jobs = new Map<string, Job>();
  /** Operations run one at a time per model, in order. */
  const running = new Map<string, Promise<void>>();
  let stopped = false;

  function schedule(model: string, op: Op, delayMs: number, attempt = 0): void {
    const existing = jobs.get(model);
    if (existing?.timer !== undefined) clearTimeout(existing.timer);
    const job: Job = { op, attempt };
    jobs.set(model, job);
    job.timer = setTimeout(() => {
      job.timer = undefined;
      const previous = running.get(model) ?? Promise.resolve();
      const run = previous.then(() => execute(model, job));
      running.set(model, run);
      void run.finally(() => {
        if (running.get(model) === run) running.delete(model);
      });
    }, delayMs);
    job.timer.unref?.();
  }

  async function execute(model: string, job: Job): Promise<void> {
    if (stopped || jobs.get(model) !== job) return;
    const topics = [names.modelInputs(model), names.modelOutputs(model)];
    try {
      if (job.op === "ensure") {
        const result = await admin.ensureTopics([...topics, names.errors()], partitions);
        if (result.created.length > 0) logger.info({ model, created: result.created }, "topics created");
        if (jobs.get(model) === job) jobs.delete(model);
        if (!stopped) await options.record(model, { ready: true });
      } else {
        await admin.deleteTopics(topics);
        logger.info({ model, topics }, "topics deleted (cleanTopicsOnDelete)");
        if (jobs.get(model) === job) jobs.delete(model);
      }
    } catch (err) {
      if (stopped || jobs.get(model) !== job) return;
      const delay = Math.min(maxMs, initialMs * 2 ** job.attempt);
      // A topic with another partition count (or a name Kafka refuses) is not fixed by waiting; it is retried anyway,
      // so that an operator's fix shows without a restart.
      const unusable = hasCode(err, "kafka.partition_mismatch") || hasCode(err, "bad_request");
      logger.warn({ err, model, op: job.op, retryInMs: delay }, `topic ${job.op} failed: retrying`);
      if (job.op === "ensure") {
        const reason = unusable ? `Kafka path unusable: ${(err as Error).message}` : KAFKA_UNREACHABLE_REASON;
        await options
          .record(model, { ready: false, reason })
          .catch((recordErr: unknown) => logger.debug({ err: recordErr, model }, "could not record topic state"));
      }
      // The job may have been replaced while recording.
      if (!stopped && jobs.get(model) === job) schedule(model, job.op, delay, job.attempt + 1);
    }
  }

  return {
    adopted(before, after) {
      if (stopped) return;
      for (const [name, model] of after.models) {
        if (model.deleting || model.topics?.ready === true) continue;
        if (!model.versions.some((v) => v.replicas.some((r) => SERVING_STATES.has(r.state)))) continue;
        // Already being ensured (or retried after a failure): leave it to its backoff.
        if (jobs.get(name)?.op === "ensure") continue;
        schedule(name, "ensure", 0);
      }
      for (const name of before.models.keys()) {
        if (after.models.has(name)) continue;
        if (options.cleanTopicsOnDelete === true) schedule(name, "delete", 0);
        else if (jobs.get(name)?.op === "ensure") {
          clearTimeout(jobs.get(name)!.timer);
          jobs.delete(name);
        }
      }
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
