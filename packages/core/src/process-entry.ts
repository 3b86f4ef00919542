/**
 * The few lines every long-running Tern process (scheduler, model gateway, dataflow worker) ends the same way: wait for
 * SIGTERM/SIGINT, bound the shutdown, turn the entry's result into the exit code. Only the `process` global: no
 * platform module is imported.
 */

/** Resolves on the first SIGTERM or SIGINT, logging it with `message`. */
export function stopSignal(
  logger: { info(fields: object, message: string): void },
  message: string,
): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      logger.info({ signal }, message);
      resolve(signal);
    };
    process.once("SIGTERM", onSignal);
    process.once("SIGINT", onSignal);
  });
}

/** Exits with code 1 after `graceMs` unless the process ended by itself first (the timer does not keep it alive). */
export function exitAfter(graceMs: number, onLate: () => void): void {
  const grace = setTimeout(() => {
    onLate();
    process.exit(1);
  }, graceMs);
  grace.unref();
}

/** Runs a process's `main`: its answer is the exit code; a throw is printed, prefixed with `name`, and exits 1. */
export function runEntry(name: string, main: () => Promise<number>): void {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`${name}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
