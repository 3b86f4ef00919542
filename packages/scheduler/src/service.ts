import { randomBytes } from "node:crypto";
import type { Server } from "node:http";
import { hostname } from "node:os";
import { serve } from "@hono/node-server";
import { createTopicNames, type StateStore, type TopicAdmin } from "@tern/core";
import type { Logger } from "pino";
import { createControlApp } from "./app.js";
import type { SchedulerConfig } from "./config.js";
import { createLeaderElector, type LeaderElector } from "./lease.js";
import { createScheduler, type Scheduler } from "./scheduler.js";

/** Options of {@link startSchedulerService}. */
export interface SchedulerServiceOptions {
  config: SchedulerConfig;
  store: StateStore;
  logger: Logger;
  /**
   * The Kafka admin the scheduler manages topics with (`@tern/kafka`'s). Absent: topics are not managed and the
   * model-gateway status says Kafka is not configured; models still serve over HTTP.
   */
  topicAdmin?: TopicAdmin;
}

/** A running scheduler process: the control API plus the leader elector. */
export interface SchedulerService {
  /** The port the control API listens on (useful with TERN_SCHEDULER_PORT=0). */
  readonly port: number;
  readonly holder: string;
  isActive(): boolean;
  /** Stops competing (releasing the lease so a standby takes over at once), closes the API and every stream. */
  close(): Promise<void>;
}

/**
 * Serves the control API at once (a standby answers reads from the store and 503 for writes) and competes for the
 * leader lease; on election it loads the state from the store and starts acting, on deposition it stops writing and
 * stands by again.
 */
export async function startSchedulerService(options: SchedulerServiceOptions): Promise<SchedulerService> {
  const { config, store, logger } = options;
  const holder = config.TERN_SCHEDULER_ID ?? `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
  let active: Scheduler | undefined;
  /** Increments on every election and deposition, so a slow start that lost its term is thrown away. */
  let term = 0;

  const app = createControlApp({
    active: () => active,
    store,
    leaseName: config.TERN_SCHEDULER_LEASE,
    logger,
    streamHeartbeatMs: config.TERN_SCHEDULER_STREAM_HEARTBEAT_MS,
    ...(config.TERN_SCHEDULER_TOKEN === undefined ? {} : { token: config.TERN_SCHEDULER_TOKEN }),
  });

  const elector: LeaderElector = createLeaderElector({
    store,
    name: config.TERN_SCHEDULER_LEASE,
    holder,
    ttlMs: config.TERN_SCHEDULER_LEASE_TTL_MS,
    pollEveryMs: config.TERN_SCHEDULER_LEASE_POLL_MS,
    logger,
    async onElected(fence) {
      const myTerm = ++term;
      // Loading can fail while the store is briefly unreachable: retry for as long as this term lasts.
      for (let attempt = 1; myTerm === term; attempt++) {
        const scheduler = createScheduler({
          store,
          fence,
          logger,
          heartbeatIntervalMs: config.TERN_AGENT_HEARTBEAT_INTERVAL_MS,
          heartbeatTimeoutMs: config.TERN_AGENT_HEARTBEAT_TIMEOUT_MS,
          overcommitPercent: config.TERN_SCHEDULER_OVERCOMMIT_PERCENT,
          historyLimit: config.TERN_SCHEDULER_WATCH_HISTORY,
          autoscaling: {
            lagThreshold: config.TERN_AUTOSCALE_LAG_THRESHOLD,
            scaleUpWindowMs: config.TERN_AUTOSCALE_SCALE_UP_WINDOW_MS,
            idleWindowMs: config.TERN_AUTOSCALE_IDLE_WINDOW_MS,
            cooldownMs: config.TERN_AUTOSCALE_COOLDOWN_MS,
            serverIdleWindowMs: config.TERN_AUTOSCALE_SERVER_IDLE_WINDOW_MS,
          },
          dataPlane: {
            partitions: config.KAFKA_PARTITIONS,
            topicNames: createTopicNames({ prefix: config.TERN_TOPIC_PREFIX, namespace: config.TERN_NAMESPACE }),
            buckets: config.TERN_MODELGATEWAY_BUCKETS,
            replication: config.TERN_DATAFLOW_REPLICATION,
            cleanTopicsOnDelete: config.TERN_DATAFLOW_CLEAN_TOPICS_ON_DELETE,
            terminatedRetentionMs: config.TERN_PIPELINE_TERMINATED_RETENTION_MS,
            ...(options.topicAdmin === undefined ? {} : { topicAdmin: options.topicAdmin }),
          },
          onLeaseLost: () => {
            // The store refused our fence: another scheduler leads. Stop acting now; the elector notices on renewal.
            if (active === scheduler) active = undefined;
            scheduler.stop().catch(() => undefined);
          },
        });
        try {
          await scheduler.start();
        } catch (err) {
          await scheduler.stop();
          logger.error({ err, attempt }, "could not load the state after being elected: retrying");
          await new Promise((r) => setTimeout(r, Math.min(5_000, 250 * attempt)));
          continue;
        }
        if (myTerm !== term) {
          await scheduler.stop();
          return;
        }
        active = scheduler;
        logger.info({ holder, token: fence.token, revision: scheduler.revision }, "elected: this scheduler is active");
        return;
      }
    },
    async onDeposed(reason) {
      term++;
      const was = active;
      active = undefined;
      if (was !== undefined) {
        logger.warn({ holder, reason }, "deposed: standing by");
        await was.stop();
      }
    },
  });

  const server = await new Promise<Server>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: config.TERN_SCHEDULER_HOST, port: config.TERN_SCHEDULER_PORT }, () =>
      resolve(s as Server),
    ) as Server;
    s.once("error", reject);
  });
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : config.TERN_SCHEDULER_PORT;
  logger.info({ host: config.TERN_SCHEDULER_HOST, port, holder }, "control API listening");
  elector.start();

  let closing: Promise<void> | undefined;
  return {
    port,
    holder,
    isActive: () => active !== undefined,
    close() {
      closing ??= (async () => {
        await elector.stop({ release: true });
        const was = active;
        active = undefined;
        await was?.stop();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          // Event streams never end by themselves.
          server.closeAllConnections();
        });
      })();
      return closing;
    },
  };
}
