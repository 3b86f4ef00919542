import { createSupervisor } from "@tern/control";
import { type DynamoDbLocalOptions, dynamoDbLocalProcessSpec } from "./dynamodb-local.js";
import { probeDynamoDb } from "./dynamodb-probe.js";
import { waitFor } from "./wait-for.js";

/** A DynamoDB Local started on its own, outside a dev stack. */
export interface DynamoDbLocalInstance {
  endpoint: string;
  pid: number;
  /** SIGTERM, then SIGKILL after `graceMs` (default 5000); resolves once the JVM is gone. */
  stop(graceMs?: number): Promise<void>;
}

/** Options of {@link startDynamoDbLocal}. */
export interface StartDynamoDbLocalOptions extends DynamoDbLocalOptions {
  /** @default 60000 */
  readyTimeoutMs?: number;
}

/**
 * Starts one DynamoDB Local and resolves once it answers ListTables. Tests use it to restart an instance on the same
 * `dbPath` and check that data survives; a dead JVM ends the wait at once with its log.
 */
export async function startDynamoDbLocal(options: StartDynamoDbLocalOptions): Promise<DynamoDbLocalInstance> {
  const abort = new AbortController();
  const supervisor = createSupervisor({
    onUnexpectedExit: (child, exit) => abort.abort(new Error(`${child.name} exited (${exit.code ?? exit.signal})`)),
  });
  const child = await supervisor.spawn(dynamoDbLocalProcessSpec(options));
  const endpoint = `http://localhost:${options.port}`;
  const stop = (graceMs = 5_000): Promise<void> => supervisor.stopAll(graceMs);
  try {
    await waitFor(() => probeDynamoDb(endpoint), {
      timeoutMs: options.readyTimeoutMs ?? 60_000,
      description: `DynamoDB Local at ${endpoint} (log ${child.logFile})`,
      signal: abort.signal,
    });
  } catch (err) {
    await stop(0);
    throw err;
  }
  return { endpoint, pid: child.pid, stop };
}
