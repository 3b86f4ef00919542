import { type PlatformProcess, startPlatformProcess } from "../helpers/platform-process.js";

export type ModelGatewayProcess = PlatformProcess<true> & { readonly id: string };

/** Starts `packages/model-gateway/src/main.ts` as worker `id` and waits for its "running" line. */
export async function startModelGatewayProcess(options: {
  id: string;
  schedulerUrl: string;
  brokers: string[];
  env?: Record<string, string>;
}): Promise<ModelGatewayProcess> {
  const started = await startPlatformProcess({
    script: "packages/model-gateway/src/main.ts",
    name: options.id,
    env: {
      TERN_SCHEDULER_URL: options.schedulerUrl,
      TERN_MODELGATEWAY_ID: options.id,
      KAFKA_BROKERS: options.brokers.join(","),
      LOG_LEVEL: "info",
      ...options.env,
    },
    ready: (out) => (out.includes(`tern model-gateway ${options.id} running`) ? true : undefined),
  });
  return Object.assign(started, { id: options.id });
}
