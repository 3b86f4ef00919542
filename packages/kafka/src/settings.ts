import { TernError } from "@tern/core";

/**
 * Every knob of the Kafka client that Tern sets, with its default. Nothing is left to a client default: the defaults
 * of kafkajs suit batch pipelines (a fetch waits up to 5 s for data, one partition is handled at a time, a crashed
 * member is noticed after 30 s), while Tern's data plane carries interactive requests. docs/kafka.md explains each.
 */
export interface KafkaBusSettings {
  /** Client id sent to the brokers (visible in their logs and quotas). @default "tern" */
  clientId: string;
  /** TCP connect deadline per broker. @default 3000 */
  connectionTimeoutMs: number;
  /** Deadline of one request to a broker. @default 10000 */
  requestTimeoutMs: number;
  /** Retries of a failed request (kafkajs's exponential backoff between them). @default 5 */
  retries: number;
  /** First retry backoff. @default 100 */
  initialRetryTimeMs: number;
  /** Longest retry backoff. @default 2000 */
  maxRetryTimeMs: number;
  /** Deadline of every admin call (ensure/delete/describe topics, probe). @default 30000 */
  adminTimeoutMs: number;
  consumer: KafkaConsumerSettings;
  producer: KafkaProducerSettings;
}

export interface KafkaConsumerSettings {
  /**
   * A member that sends no heartbeat for this long is dropped and its partitions move to the others: the failover
   * bound after a crash (plus one rebalance). The broker refuses less than its `group.min.session.timeout.ms` (6 s).
   * @default 10000
   */
  sessionTimeoutMs: number;
  /** How often a member heartbeats; also how soon it notices that its group rebalances. At most a third of the session timeout. @default 3000 */
  heartbeatIntervalMs: number;
  /** How long the coordinator waits for every member to rejoin in a rebalance (a member rejoins after its batch in hand). @default 30000 */
  rebalanceTimeoutMs: number;
  /**
   * Longest time the broker holds a fetch that has less than `minBytes`. A fetch returns as soon as a record arrives,
   * so this costs no latency on a record; it sets how often an idle member asks again (each ask costs CPU in the
   * client and the broker), and how long a stop or a first fetch after a join may wait. @default 500
   */
  maxWaitTimeInMs: number;
  /** The broker answers a fetch as soon as it has this many bytes. @default 1 */
  minBytes: number;
  /** Most bytes per fetch. @default 10485760 */
  maxBytes: number;
  /** Most bytes per partition per fetch. @default 1048576 */
  maxBytesPerPartition: number;
  /** Partitions whose batches are handled at the same time by one member. @default 4 */
  partitionsConsumedConcurrently: number;
  /** Backoff before a batch whose handler threw is handed to it again (doubling, up to 16×). @default 100 */
  handlerRetryBackoffMs: number;
  /**
   * How long finished records' offsets gather before they are committed in one request (both commit modes; a stop
   * and a rebalance commit at once). The cost: after a crash, up to this much more work is handed to the next holder
   * again (at-least-once either way; readers drop duplicates by request id). @default 100
   */
  commitIntervalMs: number;
}

export interface KafkaProducerSettings {
  /**
   * Acknowledgements a send waits for: -1 = all in-sync replicas, 1 = the leader only. -1, because a record the
   * producer was told is written must survive a broker failover (at-least-once); on one broker it costs nothing.
   * @default -1
   */
  acks: -1 | 1;
  /**
   * Idempotent producer (no duplicates from the producer's own retries). Off: it forces one request in flight per
   * broker, and Tern removes duplicates by request id anyway (DESIGN §3), so it would cost latency for nothing.
   * @default false
   */
  idempotent: boolean;
  /** Deadline of one produce request on the broker (waiting for `acks`). @default 10000 */
  ackTimeoutMs: number;
}

/** Settings in which any field may be left out. */
export type KafkaBusSettingsInput = Partial<Omit<KafkaBusSettings, "consumer" | "producer">> & {
  consumer?: Partial<KafkaConsumerSettings>;
  producer?: Partial<KafkaProducerSettings>;
};

export const DEFAULT_KAFKA_SETTINGS: Readonly<KafkaBusSettings> = Object.freeze({
  clientId: "tern",
  connectionTimeoutMs: 3_000,
  requestTimeoutMs: 10_000,
  retries: 5,
  initialRetryTimeMs: 100,
  maxRetryTimeMs: 2_000,
  adminTimeoutMs: 30_000,
  consumer: Object.freeze({
    sessionTimeoutMs: 10_000,
    heartbeatIntervalMs: 3_000,
    rebalanceTimeoutMs: 30_000,
    maxWaitTimeInMs: 500,
    minBytes: 1,
    maxBytes: 10 * 1024 * 1024,
    maxBytesPerPartition: 1024 * 1024,
    partitionsConsumedConcurrently: 4,
    handlerRetryBackoffMs: 100,
    commitIntervalMs: 100,
  }),
  producer: Object.freeze({ acks: -1 as const, idempotent: false, ackTimeoutMs: 10_000 }),
});

/** The broker's floor for a session timeout (`group.min.session.timeout.ms` default). */
export const BROKER_MIN_SESSION_TIMEOUT_MS = 6_000;

/** Fills in the defaults and checks the combination; a bad value is a `config.invalid` error naming the field. */
export function resolveKafkaSettings(input: KafkaBusSettingsInput = {}): KafkaBusSettings {
  const settings: KafkaBusSettings = {
    ...DEFAULT_KAFKA_SETTINGS,
    ...input,
    consumer: { ...DEFAULT_KAFKA_SETTINGS.consumer, ...input.consumer },
    producer: { ...DEFAULT_KAFKA_SETTINGS.producer, ...input.producer },
  };
  const positive = (field: string, value: number) => {
    if (!Number.isInteger(value) || value <= 0) {
      throw new TernError("config.invalid", `kafka ${field} must be a positive integer (got ${value})`);
    }
  };
  for (const field of [
    "connectionTimeoutMs",
    "requestTimeoutMs",
    "initialRetryTimeMs",
    "maxRetryTimeMs",
    "adminTimeoutMs",
  ] as const) {
    positive(field, settings[field]);
  }
  if (!Number.isInteger(settings.retries) || settings.retries < 0) {
    throw new TernError("config.invalid", `kafka retries must be a non-negative integer (got ${settings.retries})`);
  }
  for (const [field, value] of Object.entries(settings.consumer)) positive(`consumer.${field}`, value);
  const { sessionTimeoutMs, heartbeatIntervalMs } = settings.consumer;
  if (sessionTimeoutMs < BROKER_MIN_SESSION_TIMEOUT_MS) {
    throw new TernError(
      "config.invalid",
      `kafka consumer.sessionTimeoutMs must be at least ${BROKER_MIN_SESSION_TIMEOUT_MS} (the broker's group.min.session.timeout.ms); got ${sessionTimeoutMs}`,
    );
  }
  if (heartbeatIntervalMs * 3 > sessionTimeoutMs) {
    throw new TernError(
      "config.invalid",
      `kafka consumer.heartbeatIntervalMs (${heartbeatIntervalMs}) must be at most a third of consumer.sessionTimeoutMs (${sessionTimeoutMs})`,
    );
  }
  if (settings.producer.acks !== -1 && settings.producer.acks !== 1) {
    throw new TernError(
      "config.invalid",
      `kafka producer.acks must be -1 or 1 (got ${String(settings.producer.acks)})`,
    );
  }
  if (settings.producer.idempotent && settings.producer.acks !== -1) {
    throw new TernError("config.invalid", "kafka producer.idempotent needs producer.acks -1");
  }
  positive("producer.ackTimeoutMs", settings.producer.ackTimeoutMs);
  return settings;
}
