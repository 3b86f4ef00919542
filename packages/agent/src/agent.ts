import type { AddressInfo } from "node:net";
import { type ServerType, serve } from "@hono/node-server";
import type { AgentEndpoints, AgentEvent, AssignedModel, LoadedModelRef, ModelTrafficReport } from "@tern/core";
import type { Hono } from "hono";
import type { Logger } from "pino";
import type { ArtifactFetcher } from "./artifacts/artifact-fetcher.js";
import { type AgentGrpcServer, createGrpcServer } from "./grpc/grpc-server.js";
import { createAgentApp } from "./http/app.js";
import { createInferenceService } from "./inference/inference-service.js";
import { type AgentMetrics, createAgentMetrics } from "./metrics.js";
import { createModelRegistry, type ModelRecord, type ModelRegistry } from "./model-registry.js";
import { createModelTraffic } from "./model-traffic.js";
import type { ModelRuntime } from "./runtime/model-runtime.js";
import { processOverheadBytes } from "./runtime/process-memory.js";

/** Lifecycle of an agent process. Only `running` takes inference traffic. */
export type AgentLifecycle = "starting" | "running" | "draining" | "stopped" | "failed";

export interface AgentOptions {
  server: string;
  replica: number;
  runtime: ModelRuntime;
  fetcher: ArtifactFetcher;
  memoryBytes: number;
  /** @default 0 */
  overcommitPercent?: number;
  /** Capabilities offered; defaults to the runtime's. */
  capabilities?: string[];
  host?: string;
  /** Host written into `endpoints` (what the scheduler hands to gateways). Defaults to `host`. */
  advertiseHost?: string;
  /** 0 = ephemeral. */
  httpPort: number;
  /** 0 = ephemeral; `undefined` = no gRPC server. */
  grpcPort?: number;
  maxBodyBytes?: number;
  logger?: Logger;
  metrics?: AgentMetrics;
  /** Receives every replica state change (the scheduler client forwards these as AgentEvents). */
  onStateChange?: (event: AgentEvent) => void;
  /** @default "0.1.0" */
  version?: string;
}

/**
 * One server replica: model registry, OIP REST and gRPC servers, lifecycle. A scheduler client drives it through
 * `loadModel`/`unloadModel` (or `reconcile` with the full desired set) and reads `registration()`.
 */
export interface Agent {
  readonly server: string;
  readonly replica: number;
  readonly models: ModelRegistry;
  readonly app: Hono;
  state(): AgentLifecycle;
  /** Known once started. */
  endpoints(): AgentEndpoints;
  capabilities(): string[];
  /** What the agent holds, for (re-)registration. */
  loaded(): LoadedModelRef[];
  /** Per-model traffic since the previous call, for the models held (sent with each heartbeat). */
  traffic(): ModelTrafficReport[];
  /**
   * Memory its runtime process (MLServer) holds beyond its models' declared memory, bytes, as of the runtime's last
   * health check; undefined for the in-process ONNX runtime. Reported to the scheduler, which takes it off the capacity.
   */
  processBytes(): number | undefined;
  start(): Promise<AgentEndpoints>;
  loadModel(
    model: AssignedModel | (Pick<AssignedModel, "model" | "version" | "storageUri"> & Partial<AssignedModel>),
  ): Promise<ModelRecord>;
  unloadModel(model: string, version: number): Promise<void>;
  /** Level-triggered: loads what `desired` has and the agent lacks, unloads what the agent has and `desired` lacks. */
  reconcile(desired: readonly AssignedModel[]): Promise<void>;
  /** Stops taking new inference requests (ready → false) but keeps serving health and metadata. */
  drain(): void;
  /** Closes servers (bounded by `graceMs`) and unloads models. */
  stop(graceMs?: number): Promise<void>;
}

/** A host as it stands in a URL or a `host:port` address: an IPv6 literal in brackets (`::1` → `[::1]`). */
export function addressHost(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}

export function createAgent(options: AgentOptions): Agent {
  const host = options.host ?? "127.0.0.1";
  const advertise = addressHost(options.advertiseHost ?? host);
  const log = options.logger;
  let lifecycle: AgentLifecycle = "starting";
  let httpServer: ServerType | undefined;
  let grpcServer: AgentGrpcServer | undefined;
  let endpoints: AgentEndpoints | undefined;
  const traffic = createModelTraffic();

  const models = createModelRegistry({
    runtime: options.runtime,
    fetcher: options.fetcher,
    capacityBytes: options.memoryBytes,
    overcommitPercent: options.overcommitPercent ?? 0,
    ...(log ? { logger: log } : {}),
    onStateChange: (e) => {
      metrics.stateChange(e.model, e.state);
      if (e.state === "Available") traffic.loaded(e.model);
      else if (e.state === "Unloaded") traffic.unloaded(e.model);
      options.onStateChange?.(e);
    },
  });
  const metrics = options.metrics ?? createAgentMetrics({ models });
  const service = createInferenceService({
    models,
    serverName: options.server,
    serverVersion: options.version ?? "0.1.0",
    platform: options.runtime.platform,
    forwardsJson: options.runtime.forwardsJson ?? false,
    isReady: () => lifecycle === "running",
    traffic,
  });
  const app = createAgentApp({
    service,
    metrics,
    ...(log ? { logger: log } : {}),
    ...(options.maxBodyBytes ? { maxBodyBytes: options.maxBodyBytes } : {}),
  });

  const agent: Agent = {
    server: options.server,
    replica: options.replica,
    models,
    app,
    state: () => lifecycle,
    endpoints() {
      if (!endpoints) throw new Error("agent not started");
      return endpoints;
    },
    capabilities: () => options.capabilities ?? [...options.runtime.capabilities],
    loaded: () =>
      models
        .list()
        .filter((r) => r.state === "Available")
        .map((r) => ({ model: r.model, version: r.version })),
    traffic: () => traffic.report([...new Set(models.list().map((r) => r.model))]),

    processBytes() {
      const usage = models.usage();
      return processOverheadBytes(usage.processBytes, usage.residentBytes);
    },

    async start() {
      try {
        // The runtime's own server (MLServer) is up before the agent says it serves.
        await options.runtime.start?.();
        const httpPort = await new Promise<number>((resolve, reject) => {
          const s = serve({ fetch: app.fetch, hostname: host, port: options.httpPort }, (info: AddressInfo) =>
            resolve(info.port),
          );
          s.once("error", reject);
          httpServer = s;
        });
        endpoints = { http: `http://${advertise}:${httpPort}` };
        if (options.grpcPort !== undefined) {
          grpcServer = createGrpcServer({
            service,
            metrics,
            ...(log ? { logger: log } : {}),
            ...(options.maxBodyBytes ? { maxMessageBytes: options.maxBodyBytes } : {}),
          });
          const grpcPort = await grpcServer.start(addressHost(host), options.grpcPort);
          endpoints.grpc = `${advertise}:${grpcPort}`;
        }
        lifecycle = "running";
        log?.info({ server: options.server, replica: options.replica, ...endpoints }, "agent running");
        return endpoints;
      } catch (err) {
        lifecycle = "failed";
        await agent.stop(0);
        lifecycle = "failed";
        throw err;
      }
    },

    loadModel(m) {
      return models.load({
        model: m.model,
        version: m.version,
        storageUri: m.storageUri,
        ...(m.secretName === undefined ? {} : { secretName: m.secretName }),
        memoryBytes: m.memoryBytes ?? 0,
        parameters: m.parameters ?? [],
        requirements: m.requirements ?? [],
      });
    },

    unloadModel: (model, version) => models.unload(model, version),

    async reconcile(desired) {
      const wanted = new Set(desired.map((d) => `${d.model}\u0000${d.version}`));
      const unloads = models
        .list()
        .filter((r) => !wanted.has(`${r.model}\u0000${r.version}`))
        .map((r) => models.unload(r.model, r.version));
      const loads = desired.map((d) => agent.loadModel(d));
      await Promise.all([...unloads, ...loads]);
    },

    drain() {
      if (lifecycle === "running" || lifecycle === "starting") lifecycle = "draining";
    },

    async stop(graceMs = 5000) {
      if (lifecycle === "stopped") return;
      if (lifecycle !== "failed") lifecycle = "draining";
      const closeHttp = new Promise<void>((resolve) => {
        if (!httpServer) return resolve();
        const timer = setTimeout(() => {
          (httpServer as { closeAllConnections?: () => void }).closeAllConnections?.();
          resolve();
        }, graceMs);
        httpServer.close(() => {
          clearTimeout(timer);
          resolve();
        });
        // Idle keep-alive sockets would hold close() open until the grace period ends.
        (httpServer as { closeIdleConnections?: () => void }).closeIdleConnections?.();
      });
      await Promise.all([closeHttp, grpcServer?.close(graceMs)]);
      await models.close();
      await options.runtime.stop?.();
      if (lifecycle !== "failed") lifecycle = "stopped";
      log?.info({ server: options.server, replica: options.replica }, "agent stopped");
    },
  };
  return agent;
}
