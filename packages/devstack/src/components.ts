import type { DevStackConfig } from "./config.js";
import type { DevStackProcessOptions } from "./dev-stack.js";

/**
 * The platform components `npm start` runs after Kafka and DynamoDB Local are ready, in start order. Each later
 * component (scheduler, dataflow workers, model gateway, agents, gateway) adds its entry here, with a readiness probe.
 */
export function localComponents(_config: DevStackConfig): DevStackProcessOptions[] {
  return [];
}

/** Addresses kept free for components that do not exist yet; `npm start` lists them as reserved. */
export const reservedServices: ReadonlyArray<{ name: string; address: string }> = [
  { name: "gateway (REST)", address: "http://localhost:9000" },
  { name: "gateway (gRPC)", address: "localhost:9001" },
  { name: "scheduler API", address: "http://localhost:9004" },
];
