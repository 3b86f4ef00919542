import type { ChildProcess } from "node:child_process";
import { waitFor } from "@tern/devstack";
import { jsonLines, startPlatformProcess } from "../helpers/platform-process.js";

/** A scheduler started as its own process (`node --import tsx packages/scheduler/src/main.ts`). */
export interface SchedulerProcess {
  readonly id: string;
  readonly url: string;
  readonly port: number;
  readonly child: ChildProcess;
  /** Everything it wrote, for failure messages. */
  output(): string;
  /** Resolves once it has exited. */
  readonly exited: Promise<void>;
  kill(signal: NodeJS.Signals): Promise<void>;
}

export interface SchedulerProcessOptions {
  id: string;
  dynamodbEndpoint: string;
  table: string;
  /** @default 0 (a free port, read back from the log) */
  port?: number;
  env?: Record<string, string>;
}

/** Lease timings short enough for tests; the defaults (10 s) are the production ones. */
export const TEST_LEASE_TTL_MS = 3000;

export async function startSchedulerProcess(options: SchedulerProcessOptions): Promise<SchedulerProcess> {
  const started = await startPlatformProcess({
    script: "packages/scheduler/src/main.ts",
    name: `scheduler ${options.id}`,
    env: {
      DYNAMODB_ENDPOINT: options.dynamodbEndpoint,
      AWS_REGION: "us-east-1",
      TERN_TABLE: options.table,
      TERN_SCHEDULER_HOST: "127.0.0.1",
      TERN_SCHEDULER_PORT: String(options.port ?? 0),
      TERN_SCHEDULER_ID: options.id,
      TERN_SCHEDULER_LEASE_TTL_MS: String(TEST_LEASE_TTL_MS),
      TERN_SCHEDULER_LEASE_POLL_MS: "200",
      TERN_AGENT_HEARTBEAT_INTERVAL_MS: "300",
      TERN_SCHEDULER_SHUTDOWN_GRACE_MS: "3000",
      LOG_LEVEL: "info",
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
      ...options.env,
    },
    // The port comes from the "control API listening" log line (it may have been 0: a free port).
    ready: (stdout) => {
      const line = jsonLines(stdout).find((l) => l.msg === "control API listening");
      return typeof line?.port === "number" ? line.port : undefined;
    },
  });
  const port = started.ready;
  return {
    id: options.id,
    url: `http://127.0.0.1:${port}`,
    port,
    child: started.child,
    output: started.output,
    exited: started.exited.then(() => undefined),
    async kill(signal) {
      started.kill(signal);
      await started.exited;
    },
  };
}

/** `GET /v1/status` of a scheduler, or undefined when it does not answer. */
export async function schedulerStatus(url: string): Promise<{ active: boolean; revision: number } | undefined> {
  try {
    const res = await fetch(`${url}/v1/status`, { signal: AbortSignal.timeout(2000) });
    if (res.status !== 200) return undefined;
    return (await res.json()) as { active: boolean; revision: number };
  } catch {
    return undefined;
  }
}

export async function waitActive(url: string, timeoutMs = 20_000): Promise<void> {
  await waitFor(async () => (await schedulerStatus(url))?.active === true, {
    timeoutMs,
    intervalMs: 100,
    description: `scheduler at ${url} active`,
  });
}

export async function applyManifest(url: string, yaml: string): Promise<Response> {
  return fetch(`${url}/v1/apply`, {
    method: "POST",
    headers: { "content-type": "application/yaml" },
    body: yaml,
    signal: AbortSignal.timeout(10_000),
  });
}

export async function getJson<T>(url: string): Promise<T | undefined> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  if (res.status !== 200) return undefined;
  return (await res.json()) as T;
}
