import { CloudWatchClient, PutMetricDataCommand } from "@aws-sdk/client-cloudwatch";
import { TernError } from "@tern/core";
import type { GroupPartitions } from "@tern/kafka";
import type { Logger } from "pino";
import type { BucketConsumerStatus } from "./bucket-consumers.js";

/**
 * The model gateway's consumer lag as a CloudWatch metric, for the AWS stack's autoscaling of the model-gateway service
 * (target tracking on it; maximum = the partition count). Each replica publishes, every interval, the records waiting
 * on the partitions it holds: end offset − committed offset, summed over its buckets' groups.
 *
 * The names are the stack's contract: namespace `Tern`, metric `ModelGatewayLag`, dimension `Stage` = TERN_STAGE.
 */
export const LAG_METRIC = { namespace: "Tern", metricName: "ModelGatewayLag", dimension: "Stage" } as const;

/** The partitions this replica holds, per bucket group (the lag is measured on exactly these). */
export function heldPartitions(buckets: readonly BucketConsumerStatus[]): GroupPartitions[] {
  return buckets
    .filter((b) => Object.values(b.partitions).some((ps) => ps.length > 0))
    .map((b) => ({ groupId: b.groupId, partitions: b.partitions }));
}

/** Where a lag value goes. */
export type LagSink = (lag: number) => Promise<void>;

export interface CloudWatchLagSinkOptions {
  stage: string;
  region: string;
  /** Another CloudWatch endpoint (a local emulator such as moto server); unset: AWS's. */
  endpoint?: string;
  /** Unset: the SDK's default chain (the task role on AWS). */
  credentials?: { accessKeyId: string; secretAccessKey: string };
}

/** One `PutMetricData` per value: `Tern/ModelGatewayLag{Stage=<stage>}`, unit Count. */
export function createCloudWatchLagSink(options: CloudWatchLagSinkOptions): LagSink & { close(): void } {
  const client = new CloudWatchClient({
    region: options.region,
    ...(options.endpoint ? { endpoint: options.endpoint } : {}),
    ...(options.credentials ? { credentials: options.credentials } : {}),
    maxAttempts: 2,
  });
  const sink = async (lag: number): Promise<void> => {
    try {
      await client.send(
        new PutMetricDataCommand({
          Namespace: LAG_METRIC.namespace,
          MetricData: [
            {
              MetricName: LAG_METRIC.metricName,
              Dimensions: [{ Name: LAG_METRIC.dimension, Value: options.stage }],
              Value: lag,
              Unit: "Count",
              Timestamp: new Date(),
            },
          ],
        }),
        { abortSignal: AbortSignal.timeout(10_000) },
      );
    } catch (err) {
      const name = (err as { name?: string }).name ?? "Error";
      throw new TernError(
        "unavailable",
        `put ${LAG_METRIC.metricName} to CloudWatch: ${name}: ${(err as Error).message}`,
        {
          cause: err,
          retriable: true,
        },
      );
    }
  };
  return Object.assign(sink, { close: () => client.destroy() });
}

export interface LagPublisherOptions {
  /** Reads the current lag (e.g. `readConsumerLag` over {@link heldPartitions}). */
  readLag: () => Promise<number>;
  sink: LagSink;
  /** @default 60000 */
  intervalMs?: number;
  logger: Pick<Logger, "warn" | "debug">;
}

export interface LagPublisher {
  /** Publishes now, then every interval. */
  start(): void;
  /** One read-and-publish; resolves with the value published. */
  publishOnce(): Promise<number>;
  /** Stops the timer and waits for a publish in progress. Idempotent. */
  stop(): Promise<void>;
}

/** A failed read or put is logged (once per distinct reason) and tried again at the next interval; it never throws. */
export function createLagPublisher(options: LagPublisherOptions): LagPublisher {
  const intervalMs = options.intervalMs ?? 60_000;
  let timer: NodeJS.Timeout | undefined;
  let current: Promise<unknown> | undefined;
  let lastError: string | undefined;
  let stopped = false;

  async function publishOnce(): Promise<number> {
    const lag = await options.readLag();
    await options.sink(lag);
    options.logger.debug({ lag }, "published the consumer lag");
    return lag;
  }

  function tick(): void {
    if (stopped || current !== undefined) return;
    current = publishOnce()
      .then(() => {
        lastError = undefined;
      })
      .catch((err: unknown) => {
        const reason = err instanceof Error ? err.message : String(err);
        if (reason !== lastError) options.logger.warn({ err: reason }, "could not publish the consumer lag; retrying");
        lastError = reason;
      })
      .finally(() => {
        current = undefined;
      });
  }

  return {
    start() {
      if (timer !== undefined || stopped) return;
      tick();
      timer = setInterval(tick, intervalMs);
      timer.unref();
    },
    publishOnce,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await current;
    },
  };
}
