import { jsonLines, type PlatformProcess, startPlatformProcess } from "./platform-process.js";

/** A dataflow worker process (`packages/dataflow/src/main.ts`) started by a test. */
export type DataflowProcess = PlatformProcess<true> & {
  readonly id: string;
  /** Sends the signal and resolves with the exit code (or the signal's name) once it exited, within `timeoutMs`. */
  stop(signal: NodeJS.Signals, timeoutMs?: number): Promise<number | string>;
  /** Its pino log lines (JSON), for assertions. */
  logs(): Array<Record<string, unknown>>;
};

export interface DataflowProcessOptions {
  /** Worker id, `dataflow-<index>`. */
  id: string;
  schedulerUrl: string;
  brokers: string[];
  /**
   * Added to the environment: at least the installation's `TERN_NAMESPACE` (and `KAFKA_PARTITIONS`) when the
   * scheduler uses others than the defaults.
   */
  env?: Record<string, string>;
  /** A hang guard, like startPlatformProcess's. @default 60000 */
  readyTimeoutMs?: number;
}

/**
 * Starts a dataflow worker against a scheduler and brokers and waits for its `tern dataflow <id> running` line (it has
 * then registered and follows its assignment). It is SIGKILLed if it does not get there; callers SIGKILL or SIGTERM it
 * at the end of their test (`stop`).
 */
export async function startDataflowProcess(options: DataflowProcessOptions): Promise<DataflowProcess> {
  const started = await startPlatformProcess({
    script: "packages/dataflow/src/main.ts",
    name: options.id,
    env: {
      TERN_SCHEDULER_URL: options.schedulerUrl,
      TERN_DATAFLOW_ID: options.id,
      KAFKA_BROKERS: options.brokers.join(","),
      LOG_LEVEL: "info",
      ...options.env,
    },
    ready: (out) => (out.includes(`tern dataflow ${options.id} running`) ? true : undefined),
    timeoutMs: options.readyTimeoutMs ?? 60_000,
  });
  return Object.assign(started, {
    id: options.id,
    async stop(signal: NodeJS.Signals, timeoutMs = 30_000) {
      started.kill(signal);
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          started.kill("SIGKILL");
          reject(new Error(`${options.id} did not exit within ${timeoutMs} ms of ${signal}\n${started.output()}`));
        }, timeoutMs);
      });
      try {
        return await Promise.race([started.exited, late]);
      } finally {
        clearTimeout(timer);
      }
    },
    logs: () => jsonLines(started.output()),
  });
}
