import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { createTopicNames, type MessageBus } from "@tern/core";
import { createKafkaBus, type KafkaSecurity } from "@tern/kafka";
import type { Hono } from "hono";
import pino, { type Logger } from "pino";
import { Registry } from "prom-client";
import { createApiKeyCheck } from "./api-keys.js";
import { type AppConfig, createApp } from "./app.js";
import { createBalancer } from "./balancer.js";
import { createGrpcProxy, type GrpcProxy } from "./grpc-proxy.js";
import { createPromMetrics } from "./metrics.js";
import { createSchedulerWaker } from "./model-waker.js";
import { createPipelineFront, type PipelineFront } from "./pipeline-front.js";
import type { RouteSource } from "./route-source.js";
import { createSchedulerWatchSource } from "./scheduler-watch-source.js";
import { createHttpUpstream } from "./upstream.js";

export interface StartGatewayOptions {
  /** @default "127.0.0.1" */
  host?: string;
  /** REST port; 0 picks a free one. @default 9000 */
  port?: number;
  /** gRPC port; 0 picks a free one; false serves no gRPC. @default 9001 */
  grpcPort?: number | false;
  /** Where routes come from. Default: follow the scheduler at `schedulerUrl`. */
  routes?: RouteSource;
  /** @default "http://127.0.0.1:9004" */
  schedulerUrl?: string;
  schedulerToken?: string;
  config?: AppConfig;
  /** Hex SHA-256 digests of accepted API keys; empty or absent: keys off. */
  apiKeyHashes?: string[];
  logger?: Logger;
  random?: () => number;
  /**
   * When following the scheduler: how long to wait for the first route table before listening, so that a
   * (re)started gateway does not answer "no route table yet" to its first requests. Past it, the gateway listens
   * anyway and answers 503 until the table comes (a scheduler that is down must not keep the gateway down).
   * @default 3000
   */
  firstTableWaitMs?: number;
  /**
   * Serve pipelines over Kafka (REST JSON `POST /v2/pipelines/{p}/infer`, gRPC ModelInfer with
   * `seldon-model: <p>.pipeline`). Absent: pipelines answer 503 (gRPC UNAVAILABLE).
   * `bus` replaces the kafkajs bus built from `brokers` (tests).
   */
  kafka?: {
    brokers: string[];
    partitions: number;
    /** @default "seldon" */
    prefix?: string;
    /** @default "default" */
    namespace?: string;
    /** Reply reader buckets. @default 4 */
    readerBuckets?: number;
    /** TLS and SASL to the brokers. @default none (PLAINTEXT) */
    security?: KafkaSecurity;
    bus?: MessageBus;
  };
}

export interface RunningGateway {
  /** e.g. `http://127.0.0.1:9000` */
  url: string;
  /** `host:port`, or undefined when gRPC is off. */
  grpcAddress?: string;
  app: Hono;
  routes: RouteSource;
  /** The pipeline front, when the gateway has Kafka (for status and tests). */
  pipelines?: PipelineFront;
  /** Stops listening, ends the route watch and closes agent connections. */
  close(): Promise<void>;
}

/**
 * The Node gateway: REST (Hono on node:http) plus the gRPC proxy, sharing one route source and one balancer.
 * Used by `server.ts` and by end-to-end tests (ports 0 for free ones).
 */
export async function startGateway(options: StartGatewayOptions = {}): Promise<RunningGateway> {
  const host = options.host ?? "127.0.0.1";
  let pipelines: PipelineFront | undefined;
  const logger = options.logger ?? pino({ name: "gateway" });
  let routes: RouteSource;
  if (options.routes) {
    routes = options.routes;
  } else {
    const watch = createSchedulerWatchSource({
      url: options.schedulerUrl ?? "http://127.0.0.1:9004",
      logger: logger.child({ part: "routes" }),
      // A deleted pipeline's outputs topic leaves its bucket's reply reader (the front exists once routes do).
      onTable: (table) => {
        pipelines?.prune?.(table).catch((err: unknown) => logger.warn({ err }, "pruning pipeline readers failed"));
      },
      ...(options.schedulerToken ? { token: options.schedulerToken } : {}),
    });
    const waitMs = options.firstTableWaitMs ?? 3000;
    if (!(await watch.whenReady(waitMs))) {
      logger.warn({ waitMs }, "no route table from the scheduler yet: listening anyway (503 until it comes)");
    }
    routes = watch;
  }
  const registry = new Registry();
  const metrics = createPromMetrics(registry);
  const upstream = createHttpUpstream();
  const apiKeys = createApiKeyCheck(options.apiKeyHashes ?? []);
  const balancer = createBalancer();
  const config = options.config ?? {};
  let bus: MessageBus | undefined;
  if (options.kafka) {
    const k = options.kafka;
    bus =
      k.bus ??
      createKafkaBus({
        brokers: k.brokers,
        logger: logger.child({ part: "kafka" }),
        ...(k.security ? { security: k.security } : {}),
      });
    pipelines = createPipelineFront({
      bus,
      topics: createTopicNames({
        ...(k.prefix ? { prefix: k.prefix } : {}),
        ...(k.namespace ? { namespace: k.namespace } : {}),
      }),
      partitions: k.partitions,
      ...(k.readerBuckets ? { buckets: k.readerBuckets } : {}),
      logger: logger.child({ part: "pipelines" }),
    });
  }
  // The reply reader's consumer leaves its group before the bus closes.
  const closePipelines = async () => {
    await pipelines?.close();
    if (!options.kafka?.bus) await bus?.close();
  };
  // Following the scheduler: it can wake models scaled to zero (an injected route source has no scheduler). One waker
  // for REST and gRPC, so first requests over both share one activation call.
  const waker = options.routes
    ? undefined
    : createSchedulerWaker({
        url: options.schedulerUrl ?? "http://127.0.0.1:9004",
        logger: logger.child({ part: "waker" }),
        ...(options.schedulerToken ? { token: options.schedulerToken } : {}),
      });
  const app = createApp({
    routes,
    upstream,
    logger,
    config,
    metrics,
    balancer,
    metricsText: async () => ({ contentType: registry.contentType, body: await registry.metrics() }),
    ...(apiKeys ? { apiKeys } : {}),
    ...(options.random ? { random: options.random } : {}),
    ...(pipelines ? { pipelines } : {}),
    ...(waker ? { waker } : {}),
  });

  let grpcProxy: GrpcProxy | undefined;
  let grpcAddress: string | undefined;
  try {
    if (options.grpcPort !== false) {
      grpcProxy = createGrpcProxy({
        routes,
        logger,
        metrics,
        balancer,
        ...(config.deadlineMs ? { deadlineMs: config.deadlineMs } : {}),
        ...(config.pipelineDeadlineMs ? { pipelineDeadlineMs: config.pipelineDeadlineMs } : {}),
        ...(pipelines ? { pipelines } : {}),
        ...(config.bodyLimitBytes ? { maxMessageBytes: config.bodyLimitBytes } : {}),
        ...(config.maxMirrorsInFlight !== undefined ? { maxMirrorsInFlight: config.maxMirrorsInFlight } : {}),
        ...(apiKeys ? { apiKeys } : {}),
        ...(options.random ? { random: options.random } : {}),
        ...(waker ? { waker } : {}),
      });
      const port = await grpcProxy.listen(host, options.grpcPort ?? 9001);
      grpcAddress = `${host}:${port}`;
    }
  } catch (err) {
    await Promise.all([grpcProxy?.close(), routes.close(), upstream.close(), closePipelines()]);
    throw err;
  }

  const server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: host, port: options.port ?? 9000 }, () => resolve(s));
    s.once("error", reject);
  }).catch(async (err: unknown) => {
    await Promise.all([grpcProxy?.close(), routes.close(), upstream.close(), closePipelines()]);
    throw err;
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
  logger.info({ url, grpc: grpcAddress }, "gateway listening");

  let closing: Promise<void> | undefined;
  return {
    url,
    ...(grpcAddress ? { grpcAddress } : {}),
    app,
    routes,
    ...(pipelines ? { pipelines } : {}),
    close() {
      closing ??= (async () => {
        await Promise.all([
          new Promise<void>((resolve) => {
            server.close(() => resolve());
            // Idle keep-alive connections would hold close() open.
            if ("closeIdleConnections" in server) server.closeIdleConnections();
          }),
          grpcProxy?.close(),
        ]);
        await Promise.all([routes.close(), upstream.close(), closePipelines()]);
      })();
      return closing;
    },
  };
}
