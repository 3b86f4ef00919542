import type { WorkerKind } from "@tern/core";
import type { DevStackConfig } from "./config.js";
import { repoRoot } from "./config.js";
import type { DevStackProcessOptions } from "./dev-stack.js";

/** Where the dev stack's own children reach the scheduler (the control API always listens on loopback here). */
export function localSchedulerUrl(config: DevStackConfig): string {
  return `http://127.0.0.1:${config.TERN_SCHEDULER_PORT}`;
}

/**
 * Model-gateway replicas `npm start` runs: TERN_MODELGATEWAY_REPLICAS, capped at KAFKA_PARTITIONS (a group's consumers
 * beyond the partition count would sit idle). `capped` says whether the cap applied, for a line on the terminal.
 */
export function localModelGatewayReplicas(config: DevStackConfig): { replicas: number; capped: boolean } {
  const replicas = Math.min(config.TERN_MODELGATEWAY_REPLICAS, config.KAFKA_PARTITIONS);
  return { replicas, capped: replicas < config.TERN_MODELGATEWAY_REPLICAS };
}

/**
 * The platform components `npm start` runs after Kafka and DynamoDB Local are ready, in start order, each with a real
 * readiness probe. Agents are not listed: the local controller starts them from the scheduler's Servers.
 */
export function localComponents(config: DevStackConfig): DevStackProcessOptions[] {
  const schedulerUrl = localSchedulerUrl(config);
  const node = process.execPath;
  const { replicas: modelGateways } = localModelGatewayReplicas(config);
  return [
    {
      name: "scheduler",
      command: node,
      args: ["--import", "tsx", "packages/scheduler/src/main.ts"],
      cwd: repoRoot,
      env: {
        TERN_SCHEDULER_PORT: String(config.TERN_SCHEDULER_PORT),
        TERN_SCHEDULER_URL: schedulerUrl,
        TERN_MODELGATEWAY_REPLICAS: String(modelGateways),
      },
      address: schedulerUrl,
      ports: [config.TERN_SCHEDULER_PORT],
      // Ready once it is the ACTIVE scheduler: a start right after a killed stack waits out the old lease (≤ ~11 s)
      // here instead of failing the sample apply with 503.
      ready: async () => {
        const res = await fetch(`${schedulerUrl}/healthz`, { signal: AbortSignal.timeout(2000) });
        if (res.status !== 200) return false;
        return ((await res.json()) as { active?: boolean }).active === true;
      },
    },
    {
      name: "gateway",
      command: node,
      args: ["--import", "tsx", "packages/gateway/src/server.ts"],
      cwd: repoRoot,
      env: {
        TERN_SCHEDULER_URL: schedulerUrl,
        TERN_GATEWAY_PORT: String(config.TERN_GATEWAY_PORT),
        TERN_GATEWAY_GRPC_PORT: String(config.TERN_GATEWAY_GRPC_PORT),
      },
      address: `http://localhost:${config.TERN_GATEWAY_PORT} (gRPC localhost:${config.TERN_GATEWAY_GRPC_PORT})`,
      ports: [config.TERN_GATEWAY_PORT, config.TERN_GATEWAY_GRPC_PORT],
      ready: async () => {
        const res = await fetch(`http://127.0.0.1:${config.TERN_GATEWAY_PORT}/v2/health/live`, {
          signal: AbortSignal.timeout(2000),
        });
        await res.body?.cancel();
        return res.status === 200;
      },
    },
    // Ready once the scheduler lists each as a live worker (a model gateway then holds its buckets).
    ...workers(schedulerUrl, modelGateways, {
      kind: "modelgateway",
      script: "packages/model-gateway/src/main.ts",
      idVariable: "TERN_MODELGATEWAY_ID",
      address: "Kafka: seldon.<ns>.model.<m>.inputs → outputs",
    }),
    // The samples' models do not need the dataflow workers: the start goes on while they come up.
    ...workers(schedulerUrl, config.TERN_DATAFLOW_WORKERS, {
      kind: "dataflow",
      script: "packages/dataflow/src/main.ts",
      idVariable: "TERN_DATAFLOW_ID",
      address: "Kafka: seldon.<ns>.pipeline.<p>.inputs → outputs",
      readyInBackground: true,
    }),
  ];
}

/** `count` data-plane workers of one kind, ids `<kind>-<index>`, each told its id and where the scheduler is. */
function workers(
  schedulerUrl: string,
  count: number,
  worker: { kind: WorkerKind; script: string; idVariable: string; address: string; readyInBackground?: boolean },
): DevStackProcessOptions[] {
  return Array.from({ length: count }, (_, index): DevStackProcessOptions => {
    const id = `${worker.kind}-${index}`;
    return {
      name: id,
      command: process.execPath,
      args: ["--import", "tsx", worker.script],
      cwd: repoRoot,
      env: { TERN_SCHEDULER_URL: schedulerUrl, [worker.idVariable]: id },
      address: worker.address,
      ready: () => workerIsReady(schedulerUrl, worker.kind, id),
      ...(worker.readyInBackground ? { readyInBackground: true } : {}),
    };
  });
}

/** True once the scheduler lists the worker as `Ready` (registered and heartbeating). */
async function workerIsReady(schedulerUrl: string, kind: WorkerKind, id: string): Promise<boolean> {
  const res = await fetch(`${schedulerUrl}/v1/workers/${kind}/${id}`, { signal: AbortSignal.timeout(2000) });
  if (res.status !== 200) {
    await res.body?.cancel();
    return false;
  }
  return ((await res.json()) as { state?: string }).state === "Ready";
}

/** Addresses kept free for components that do not exist yet; `npm start` lists them as reserved. */
export const reservedServices: ReadonlyArray<{ name: string; address: string }> = [];
