import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { PipelinePlacementStatus, WorkerKindStatus } from "@tern/core";
import { waitFor } from "@tern/devstack";
import { type E2eStack, serverManifest, startE2eStack } from "../e2e/harness.js";
import { type DataflowProcess, startDataflowProcess } from "../helpers/dataflow-process.js";
import { createPipelineKafka, type PipelineKafka } from "../helpers/pipeline-kafka.js";
import { repoRoot } from "../helpers/platform-process.js";
import { kafkaBrokers } from "../helpers/services.js";
import { type ModelGatewayProcess, startModelGatewayProcess } from "../model-gateway/model-gateway-process.js";
import { getJson } from "../scheduler/scheduler-process.js";

/**
 * The real data plane for pipeline tests: a scheduler on DynamoDB Local (with the Kafka admin, so it creates the
 * topics), one agent serving the sample models, one model gateway, and N dataflow worker processes, all on the
 * integration broker under a namespace of their own. The test talks to it only through Kafka (pipeline-kafka.ts)
 * and the scheduler's control API.
 */
export interface DataflowStack {
  readonly e2e: E2eStack;
  readonly namespace: string;
  readonly partitions: number;
  readonly client: PipelineKafka;
  readonly modelGateway: ModelGatewayProcess;
  /** Running workers by id. */
  readonly workers: Map<string, DataflowProcess>;
  startWorker(id: string): Promise<DataflowProcess>;
  /** Sends the signal and waits (bounded) until the worker has exited. */
  stopWorker(id: string, signal: NodeJS.Signals): Promise<void>;
  /** Applies manifests and waits until every Pipeline among them is `PipelineReady`. */
  applyPipelines(yaml: string, timeoutMs?: number): Promise<void>;
  dataflowStatus(): Promise<WorkerKindStatus>;
  pipelineStatus(name: string): Promise<PipelinePlacementStatus>;
  /** The worker whose consumer holds `partition` of the pipeline's group now, by the workers' own reports. */
  ownerOfPartition(pipeline: string, partition: number): Promise<string>;
  logs(): string;
  close(): Promise<void>;
}

export interface DataflowStackOptions {
  name: string;
  /** Dataflow workers started at once, `dataflow-0`… */
  workers: number;
  /** TERN_DATAFLOW_REPLICATION. */
  replication: number;
  /** @default 4 */
  partitions?: number;
  /**
   * Give the Node gateway the installation's Kafka (KAFKA_BROKERS, KAFKA_PARTITIONS, TERN_NAMESPACE) so it serves
   * pipelines, plus these variables. Absent: the gateway has no Kafka.
   */
  gatewayEnv?: Record<string, string>;
}

/** The broker's floor: a SIGKILLed worker's partitions move after at most this (plus one rebalance). */
export const SESSION_TIMEOUT_MS = 6_000;

/** The sample models and pipelines exactly as `npm start` applies them. */
export function sampleManifest(file: "pipeline-models.yaml" | "pipelines.yaml"): string {
  return readFileSync(join(repoRoot, "samples/manifests", file), "utf8");
}

/** Names of the Pipelines in a multi-document manifest (`kind: Pipeline` followed by `metadata: name:`). */
export function pipelineNames(yaml: string): string[] {
  const names: string[] = [];
  for (const doc of yaml.split(/^---\s*$/m)) {
    if (!/^kind:\s*Pipeline\s*$/m.test(doc)) continue;
    const name =
      /^metadata:\s*\n\s+name:\s*(\S+)/m.exec(doc)?.[1] ?? /^metadata:\s*\{\s*name:\s*([^}\s]+)/m.exec(doc)?.[1];
    if (name) names.push(name);
  }
  return names;
}

export async function startDataflowStack(options: DataflowStackOptions): Promise<DataflowStack> {
  const partitions = options.partitions ?? 4;
  const namespace = `${options.name}${Date.now().toString(36)}`;
  const brokers = kafkaBrokers();
  const kafkaEnv = {
    KAFKA_BROKERS: brokers.join(","),
    KAFKA_PARTITIONS: String(partitions),
    TERN_NAMESPACE: namespace,
  };
  const e2e = await startE2eStack({
    name: options.name,
    agents: 1,
    ...(options.gatewayEnv ? { gatewayEnv: { ...kafkaEnv, ...options.gatewayEnv } } : {}),
    schedulerEnv: { ...kafkaEnv, TERN_DATAFLOW_REPLICATION: String(options.replication) },
  });
  const workers = new Map<string, DataflowProcess>();
  const retired: DataflowProcess[] = [];
  let modelGateway: ModelGatewayProcess | undefined;
  let client: PipelineKafka | undefined;

  const startWorker = async (id: string) => {
    if (workers.has(id)) throw new Error(`worker ${id} is already running`);
    const worker = await startDataflowProcess({
      id,
      schedulerUrl: e2e.scheduler.url,
      brokers,
      env: {
        ...kafkaEnv,
        // The state table, where answers asked for with tern-reply-to: dynamodb (the Lambda gateway's) are put.
        TERN_TABLE: e2e.table,
        DYNAMODB_ENDPOINT: e2e.dynamodbEndpoint,
        TERN_DATAFLOW_SESSION_TIMEOUT_MS: String(SESSION_TIMEOUT_MS),
        LOG_LEVEL: "warn",
      },
    });
    workers.set(id, worker);
    return worker;
  };

  const close = async () => {
    await client?.close();
    const all = [...workers.values(), ...retired, ...(modelGateway ? [modelGateway] : [])];
    for (const p of all) p.kill("SIGKILL");
    await Promise.all(all.map((p) => p.exited));
    await e2e.close();
  };

  try {
    await e2e.apply(serverManifest("mlserver", 1));
    await e2e.apply(sampleManifest("pipeline-models.yaml"));
    for (const model of ["add10", "mul10", "sum-diff", "choose", "negate"]) {
      await e2e.waitModel(model, (s) => s.state === "ModelAvailable", `${model} available`);
    }
    const started = await Promise.allSettled([
      startModelGatewayProcess({
        id: "modelgateway-0",
        schedulerUrl: e2e.scheduler.url,
        brokers,
        env: { ...kafkaEnv, LOG_LEVEL: "warn" },
      }).then((g) => {
        modelGateway = g;
      }),
      ...Array.from({ length: options.workers }, (_, i) => startWorker(`dataflow-${i}`)),
      createPipelineKafka({ brokers, namespace, partitions, name: options.name }).then((c) => {
        client = c;
      }),
    ]);
    const failed = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
  } catch (err) {
    await close().catch(() => {});
    throw err;
  }

  const dataflowStatus = () =>
    getJson<WorkerKindStatus>(`${e2e.scheduler.url}/v1/workers/dataflow`) as Promise<WorkerKindStatus>;
  const pipelineStatus = async (name: string) => {
    const found = (await dataflowStatus()).pipelines?.find((p) => p.pipeline === name);
    if (!found) throw new Error(`pipeline ${name} is not in the dataflow status`);
    return found;
  };

  return {
    e2e,
    namespace,
    partitions,
    client: client!,
    modelGateway: modelGateway!,
    workers,
    startWorker,
    async stopWorker(id, signal) {
      const worker = workers.get(id);
      if (!worker) throw new Error(`no worker ${id}`);
      workers.delete(id);
      retired.push(worker);
      worker.kill(signal);
      await waitFor(() => worker.hasExited(), {
        timeoutMs: 20_000,
        intervalMs: 50,
        description: `worker ${id} exiting on ${signal}`,
      });
    },
    async applyPipelines(yaml, timeoutMs = 30_000) {
      await e2e.apply(yaml);
      for (const name of pipelineNames(yaml)) {
        let last = "";
        await waitFor(
          async () => {
            const s = await getJson<{ state?: string; reason?: string }>(`${e2e.scheduler.url}/v1/pipelines/${name}`);
            last = `${s?.state} ${s?.reason ?? ""}`;
            return s?.state === "PipelineReady";
          },
          { timeoutMs, intervalMs: 100, description: `pipeline ${name} ready (last: ${last})` },
        ).catch((err: unknown) => {
          throw new Error(`pipeline ${name} not ready: ${last}\n${(err as Error).message}`);
        });
      }
    },
    dataflowStatus,
    pipelineStatus,
    async ownerOfPartition(pipeline, partition) {
      return waitFor(
        async () => {
          const runs = (await pipelineStatus(pipeline)).runs ?? [];
          const holders = runs.filter((r) => workers.has(r.worker) && (r.partitions ?? []).includes(partition));
          return holders.length === 1 ? holders[0]!.worker : undefined;
        },
        {
          timeoutMs: 15_000,
          intervalMs: 100,
          description: `the one worker holding ${pipeline}'s partition ${partition}`,
        },
      );
    },
    logs() {
      const parts = [e2e.logs(), `--- model gateway\n${modelGateway?.output()}`];
      for (const w of [...workers.values(), ...retired]) parts.push(`--- ${w.id}\n${w.output()}`);
      return parts.join("\n");
    },
    close,
  };
}
