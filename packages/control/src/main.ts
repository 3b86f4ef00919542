import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { exitAfter, hasCode, runEntry, stopSignal } from "@tern/core";
import { pino } from "pino";
import { createChildren } from "./children.js";
import { loadControlConfig } from "./config.js";
import { createControlClient } from "./control-client.js";
import { createEcsController, type EcsController } from "./ecs-controller.js";

/** The repository root: the children's entries are relative to it, as in the image. */
const root = resolve(fileURLToPath(new URL(".", import.meta.url)), "../../..");

/**
 * The long-lived container (DESIGN §5): `node --import tsx packages/control/src/main.ts`, docker/control.Dockerfile's
 * command. Runs the scheduler and TERN_DATAFLOW_WORKERS dataflow workers as child processes, restarting a crashed one
 * (backoff; after TERN_CONTROL_MAX_RESTARTS crashes within a minute the container exits 1 so ECS replaces the task),
 * and, in-process, the ECS controller (TERN_CONTROLLER=ecs) that keeps one agent service per Server.
 *
 * SIGTERM/SIGINT drain: the controller stops following (services stay as they are for the next task), the workers
 * drain and leave their groups and the scheduler, then the scheduler releases its lease so the new task's scheduler
 * takes over at once; each bounded by TERN_CONTROL_DRAIN_MS. Children write to this process's stdout and stderr.
 */
async function main(): Promise<number> {
  let config: ReturnType<typeof loadControlConfig>;
  try {
    config = loadControlConfig();
  } catch (err) {
    process.stderr.write(`tern control: ${(err as Error).message}\n`);
    return hasCode(err, "config.invalid") ? 2 : 1;
  }
  const logger = pino({ level: config.LOG_LEVEL, base: { component: "control" } });
  let gaveUp: (name: string) => void = () => undefined;
  const givenUp = new Promise<string>((resolveGiveUp) => {
    gaveUp = resolveGiveUp;
  });
  const children = createChildren({
    logger,
    restart: { initialDelayMs: config.TERN_CONTROL_RESTART_DELAY_MS, maxRestarts: config.TERN_CONTROL_MAX_RESTARTS },
    onGiveUp: (name) => gaveUp(name),
  });
  // The same loader flags this entry runs with (`--import tsx`), so a child runs as it would on its own.
  const node = (script: string) => ({ command: process.execPath, args: [...process.execArgv, script], cwd: root });
  if (config.TERN_CONTROL_SCHEDULER) {
    await children.run({ name: "scheduler", ...node("packages/scheduler/src/main.ts"), env: process.env });
  }
  // The child's name is its slot here; with TERN_CONTROL_WORKER_IDS=auto the worker's id is the one it claims.
  const workers = Array.from({ length: config.TERN_DATAFLOW_WORKERS }, (_, i) => `dataflow-${i}`);
  for (const id of workers) {
    await children.run({
      name: id,
      ...node("packages/dataflow/src/main.ts"),
      env: { ...process.env, TERN_DATAFLOW_ID: config.TERN_CONTROL_WORKER_IDS === "auto" ? "auto" : id },
    });
  }

  let controller: EcsController | undefined;
  if (config.ecs !== undefined) {
    const ecsLogger = logger.child({ part: "ecs" });
    controller = createEcsController({
      settings: config.ecs,
      client: createControlClient({
        url: config.TERN_SCHEDULER_URL,
        ...(config.TERN_SCHEDULER_TOKEN ? { token: config.TERN_SCHEDULER_TOKEN } : {}),
      }),
      logger: { info: (m) => ecsLogger.info(m), warn: (m) => ecsLogger.warn(m) },
    });
    controller.start();
  }
  logger.info(
    { workers, controller: config.TERN_CONTROLLER, stage: config.TERN_STAGE },
    "long-lived container running",
  );
  // One line on stdout that process supervisors and tests wait for.
  const running = config.TERN_CONTROL_SCHEDULER ? "scheduler, " : "";
  process.stdout.write(`tern control running (${running}${workers.length} dataflow workers)\n`);

  const ended = await Promise.race([
    stopSignal(logger, "draining").then(() => undefined),
    givenUp.then((name) => name),
  ]);
  const drainMs = config.TERN_CONTROL_DRAIN_MS;
  // Workers, then the scheduler, each up to drainMs, plus a margin for the SIGKILLs.
  exitAfter(2 * drainMs + 10_000, () => logger.error({ drainMs }, "drain grace period over: exiting anyway"));
  await controller?.stop();
  // Workers first: they leave their groups and deregister while the scheduler still answers.
  await children.stop(workers, drainMs);
  if (config.TERN_CONTROL_SCHEDULER) await children.stop(["scheduler"], drainMs);
  await children.stopAll(drainMs);
  if (ended !== undefined) {
    logger.error({ child: ended }, "a child kept crashing: exiting so the task is replaced");
    return 1;
  }
  logger.info("stopped");
  return 0;
}

runEntry("tern control", main);
