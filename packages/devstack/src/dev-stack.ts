import { appendFileSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import {
  createRestartPolicy,
  createSupervisor,
  type ExitInfo,
  type ProcessSpec,
  type RestartPolicy,
  readLogTail,
  type SupervisedProcess,
  type Supervisor,
} from "@tern/control";
import { TernError } from "@tern/core";
import { probeKafka } from "@tern/kafka";
import { dynamoDbLocalProcessSpec } from "./dynamodb-local.js";
import { probeDynamoDb } from "./dynamodb-probe.js";
import { ensureKafkaJars, kafkaBrokerProcessSpec, prepareKafkaBroker } from "./kafka-broker.js";
import { acquireDevStackLock, type DevStackLock, killStaleChildren } from "./lock.js";
import { isPortOpen } from "./ports.js";
import { requireJava } from "./tools.js";
import { errorText, waitFor } from "./wait-for.js";

/** Where log lines of the stack go; a pino logger fits. */
export interface DevStackLogger {
  info(message: string): void;
  warn(message: string): void;
}

/** Options of {@link createDevStack}. */
export interface DevStackOptions {
  /** Folder for broker and DynamoDB data, logs and the pid file (`.tern` for `npm start`). */
  dir: string;
  /**
   * Cache of the Kafka broker jars; share it between stacks so the Maven fetch happens once per checkout.
   * @default `${dir}/kafka/libs`
   */
  kafkaLibsDir?: string;
  /** Use these brokers instead of starting one (they are still probed). */
  kafkaBrokers?: readonly string[];
  /** Use this DynamoDB endpoint instead of starting DynamoDB Local (it is still probed). */
  dynamodbEndpoint?: string;
  /** @default 9092 */
  kafkaPort?: number;
  /** @default 9093 */
  kafkaControllerPort?: number;
  /** @default 8000 */
  dynamodbPort?: number;
  /**
   * Partition count of every topic (the broker's `num.partitions`).
   * @default 4
   */
  partitions?: number;
  /** @default "512m" */
  kafkaHeap?: string;
  /** @default "us-east-1" */
  region?: string;
  /**
   * Deadline of each readiness probe loop (the Maven fetch on a first start is not counted).
   * @default 90000
   */
  readyTimeoutMs?: number;
  /**
   * Time a child gets after SIGTERM before SIGKILL.
   * @default 10000
   */
  stopGraceMs?: number;
  /**
   * Take the pid-file lock in `dir`, so a second stack on the same folder is refused with a clear message.
   * @default true
   */
  lock?: boolean;
  /** @default a logger that prints to stdout/stderr */
  logger?: DevStackLogger;
  /** @default "java" */
  javaCommand?: string;
  /** @default "mvn" */
  mavenCommand?: string;
  /**
   * A child that dies while the stack runs (Kafka, DynamoDB Local or a component) is restarted, same command, ports
   * and data, after this delay, which doubles with each further crash within a minute.
   * @default 500
   */
  restartDelayMs?: number;
  /** @default 30000 */
  restartDelayMaxMs?: number;
  /**
   * Restarts of one child allowed within a minute; the crash after them gives up: the child's log tail is logged
   * and `onGiveUp` is called.
   * @default 5
   */
  maxRestartsPerMinute?: number;
  /**
   * Called when a child crashed too often and is no longer restarted; `logTail` holds its last log lines (the stack
   * has logged them). The rest of the stack keeps running: stop it.
   */
  onGiveUp?: (name: string, exit: ExitInfo, logTail: string) => void;
}

/** Addresses of the infrastructure, handed to components and tests. */
export interface DevStackEndpoints {
  kafkaBrokers: string[];
  dynamodbEndpoint: string;
  partitions: number;
  region: string;
}

/** A component process the stack starts after Kafka and DynamoDB are ready (scheduler, gateway, agents, ...). */
export interface DevStackProcessOptions {
  /** Short unique name, e.g. "scheduler". */
  name: string;
  command: string;
  args: readonly string[];
  cwd?: string;
  /**
   * Extra environment, on top of this process's environment and the infrastructure variables the stack sets
   * (`KAFKA_BROKERS`, `DYNAMODB_ENDPOINT`, `KAFKA_PARTITIONS`, `AWS_REGION`).
   */
  env?: Record<string, string>;
  /** Printed in the "what runs where" list, e.g. "http://localhost:9004". */
  address?: string;
  /**
   * Readiness probe, called until it returns something other than false/undefined or until the deadline; a throw
   * counts as "not yet". Without it the process counts as ready once spawned.
   */
  ready?: (endpoints: DevStackEndpoints) => Promise<unknown> | unknown;
  /** @default the stack's readyTimeoutMs */
  readyTimeoutMs?: number;
  /**
   * Start it without waiting for its readiness probe: the next component (and the end of `start()`) does not wait for
   * it; the stack says when it is ready, or warns when it is not by the deadline. For components nothing else in the
   * stack needs at start (the dataflow workers), so they do not lengthen the start.
   * @default false
   */
  readyInBackground?: boolean;
  /** Ports it listens on: checked free before anything starts, so a clash is named up front. */
  ports?: readonly number[];
}

/** One line of "what runs where". */
export interface DevStackService {
  name: string;
  address: string;
  /** "started" by this stack, "external" (given in config and probed), or "planned" (not started by this stack). */
  kind: "started" | "external";
  pid?: number;
  logFile?: string;
}

export type DevStackState = "idle" | "starting" | "running" | "stopping" | "stopped" | "failed";

/** The local stack: Kafka, DynamoDB Local and the component processes added to it. */
export interface DevStack {
  /** Adds a component process; call before `start()`. Components start in the order added. */
  addProcess(options: DevStackProcessOptions): void;
  /** Starts (or probes) Kafka and DynamoDB, then the added processes; resolves once all are ready. */
  start(): Promise<DevStackEndpoints>;
  /** Stops every child (newest first) and releases the lock. Safe to call at any time, more than once. */
  stop(): Promise<void>;
  readonly state: DevStackState;
  /** What runs where, in start order. */
  services(): DevStackService[];
  /**
   * Environment to give processes the stack does not spawn itself (the local controller's agents), marking them as
   * this stack's, so a start after a killed stack may stop them (with {@link DevStack.recordChildren}).
   */
  readonly ownerEnv: Record<string, string>;
  /** Records such processes' pids (process-group leaders) in the pid file under `group`, replacing the group's list. */
  recordChildren(group: string, pids: readonly number[]): void;
}

/** A child the stack restarts when it dies: what to run again and how to know it is back. */
interface Managed {
  name: string;
  spec: ProcessSpec;
  /** The current (or last) process. */
  child: SupervisedProcess;
  /** Readiness check in {@link waitFor}'s terms (a value other than false/null/undefined means ready). */
  ready: (() => Promise<unknown>) | undefined;
  readyTimeoutMs: number;
  policy: RestartPolicy;
  /** Pending restart. */
  timer?: NodeJS.Timeout | undefined;
}

/** Environment variable that marks a child as belonging to the stack whose folder it names. */
const ownerVariable = "TERN_DEVSTACK_OWNER";

const consoleLogger: DevStackLogger = {
  info: (message) => console.log(`tern: ${message}`),
  warn: (message) => console.error(`tern: ${message}`),
};

/** Creates the local stack; nothing runs until `start()`. */
export function createDevStack(options: DevStackOptions): DevStack {
  const kafkaPort = options.kafkaPort ?? 9092;
  const controllerPort = options.kafkaControllerPort ?? 9093;
  const dynamodbPort = options.dynamodbPort ?? 8000;
  const partitions = options.partitions ?? 4;
  const region = options.region ?? "us-east-1";
  const readyTimeoutMs = options.readyTimeoutMs ?? 90_000;
  const stopGraceMs = options.stopGraceMs ?? 10_000;
  const logger = options.logger ?? consoleLogger;
  const javaCommand = options.javaCommand ?? "java";
  const externalKafka = options.kafkaBrokers !== undefined && options.kafkaBrokers.length > 0;
  const externalDynamo = options.dynamodbEndpoint !== undefined;
  const endpoints: DevStackEndpoints = {
    kafkaBrokers: externalKafka ? [...options.kafkaBrokers!] : [`localhost:${kafkaPort}`],
    dynamodbEndpoint: externalDynamo ? options.dynamodbEndpoint! : `http://localhost:${dynamodbPort}`,
    partitions,
    region,
  };

  const components: DevStackProcessOptions[] = [];
  const extraChildren = new Map<string, readonly number[]>();
  const started: DevStackService[] = [];
  const managed = new Map<string, Managed>();
  let state: DevStackState = "idle";
  let lock: DevStackLock | undefined;
  let stopping: Promise<void> | undefined;
  // Aborted when a child dies during start, so readiness loops end at once with the child's log instead of timing out.
  const startAbort = new AbortController();

  const supervisor: Supervisor = createSupervisor({
    onUnexpectedExit(child: SupervisedProcess, exit: ExitInfo) {
      const tail = readLogTail(child.logFile);
      const how = exit.signal === null ? `exit code ${exit.code}` : `signal ${exit.signal}`;
      if (state === "starting") {
        startAbort.abort(
          new TernError(
            "unavailable",
            `${child.name} exited during start (${how}); log ${child.logFile}${tail ? `:\n${tail}` : ""}`,
          ),
        );
      } else if (state === "running") {
        const entry = [...managed.values()].find((m) => m.child === child);
        if (entry !== undefined) onCrash(entry, exit);
      }
      recordAllChildren();
    },
  });

  /** Keeps a started child under the restart rule. */
  function manage(
    name: string,
    spec: ProcessSpec,
    child: SupervisedProcess,
    ready: Managed["ready"],
    timeoutMs = readyTimeoutMs,
  ): void {
    managed.set(name, {
      name,
      spec,
      child,
      ready,
      readyTimeoutMs: timeoutMs,
      policy: createRestartPolicy({
        initialDelayMs: options.restartDelayMs ?? 500,
        maxDelayMs: options.restartDelayMaxMs ?? 30_000,
        maxRestarts: options.maxRestartsPerMinute ?? 5,
      }),
    });
  }

  function onCrash(entry: Managed, exit: ExitInfo): void {
    const decision = entry.policy.crashed(Date.now());
    const how = exit.signal === null ? `exit code ${exit.code}` : `signal ${exit.signal}`;
    const log = entry.child.logFile;
    if (decision.action === "give-up") {
      const tail = readLogTail(log, 20);
      logger.warn(
        `${entry.name} stopped unexpectedly (${how}), the ${ordinal(decision.crashesInWindow)} time within a minute: not restarting it (the stack ${entry.policy.rule}); last lines of ${log}${tail ? `:\n${tail}` : " (empty)"}`,
      );
      options.onGiveUp?.(entry.name, exit, tail);
      return;
    }
    logger.warn(
      `${entry.name} stopped unexpectedly (${how}); restarting it in ${decision.delayMs} ms (crash ${decision.crashesInWindow} within a minute; the stack ${entry.policy.rule}; log ${log})`,
    );
    const crashedAt = performance.now();
    entry.timer = setTimeout(() => {
      entry.timer = undefined;
      void restart(entry, crashedAt, how);
    }, decision.delayMs);
  }

  /** Runs a crashed child again (its log is appended to, not truncated) and says when it is ready. */
  async function restart(entry: Managed, crashedAt: number, how: string): Promise<void> {
    if (state !== "running") return;
    let child: SupervisedProcess;
    try {
      if (entry.spec.logFile !== undefined) {
        appendFileSync(
          entry.spec.logFile,
          `\n--- tern: ${new Date().toISOString()} restarting ${entry.name} (it stopped: ${how}) ---\n`,
        );
      }
      child = await spawnOwned({ ...entry.spec, appendLog: true });
    } catch (err) {
      // Stopping (the supervisor refuses new children), or the command is gone: the latter counts as a crash.
      if (state !== "running") return;
      logger.warn(`${entry.name} could not be restarted: ${errorText(err)}`);
      onCrash(entry, { code: null, signal: null });
      return;
    }
    entry.child = child;
    const service = started.find((s) => s.name === entry.name);
    if (service !== undefined) service.pid = child.pid;
    logger.info(`${entry.name} restarted (pid ${child.pid})`);
    if (entry.ready === undefined) return;
    // A new crash (reported on its own) or a stop ends this wait.
    const gone = new AbortController();
    void child.exited.then(() => gone.abort(new Error(`${entry.name} exited`)));
    const signal = AbortSignal.any([startAbort.signal, gone.signal]);
    try {
      await waitFor(entry.ready, {
        timeoutMs: entry.readyTimeoutMs,
        description: `restarted ${entry.name} (log ${child.logFile})`,
        signal,
      });
      logger.info(
        `${entry.name} is ready again, ${((performance.now() - crashedAt) / 1000).toFixed(1)} s after it stopped`,
      );
    } catch (err) {
      if (!signal.aborted) logger.warn(`${entry.name} restarted but is not ready: ${errorText(err)}`);
    }
  }

  /**
   * Spawns a child marked as this stack's (an environment variable naming the folder) and records its pid in the
   * pid file, so that a start after this process was killed can find and stop what it left running.
   */
  async function spawnOwned(spec: ProcessSpec): Promise<SupervisedProcess> {
    const child = await supervisor.spawn({
      ...spec,
      env: { ...(spec.env ?? process.env), [ownerVariable]: options.dir },
    });
    recordAllChildren();
    return child;
  }

  function recordAllChildren(): void {
    lock?.recordChildren([
      ...supervisor.children.filter((c) => !c.hasExited).map((c) => c.pid),
      ...[...extraChildren.values()].flat(),
    ]);
  }

  async function startKafka(): Promise<void> {
    if (externalKafka) {
      await waitFor(() => probeKafka(endpoints.kafkaBrokers), {
        timeoutMs: readyTimeoutMs,
        description: `Kafka at ${endpoints.kafkaBrokers.join(",")} (KAFKA_BROKERS)`,
        signal: startAbort.signal,
      });
      started.push({ name: "kafka", address: endpoints.kafkaBrokers.join(","), kind: "external" });
      return;
    }
    const kafkaDir = join(options.dir, "kafka");
    const files = {
      libsDir: options.kafkaLibsDir ?? join(kafkaDir, "libs"),
      confDir: kafkaDir,
      dataDir: join(kafkaDir, "data"),
    };
    await ensureKafkaJars({
      libsDir: files.libsDir,
      onFetch: (message) => logger.info(message),
      signal: startAbort.signal,
      ...(options.mavenCommand === undefined ? {} : { mavenCommand: options.mavenCommand }),
    });
    startAbort.signal.throwIfAborted();
    prepareKafkaBroker(files, { port: kafkaPort, controllerPort, partitions }, javaCommand);
    const spec = kafkaBrokerProcessSpec(files, options.kafkaHeap ?? "512m", javaCommand);
    const child = await spawnOwned(spec);
    // Same ports and data folder on a restart: clients reconnect to the broker they knew.
    manage("kafka", spec, child, () => probeKafka(endpoints.kafkaBrokers));
    await waitFor(() => probeKafka(endpoints.kafkaBrokers), {
      timeoutMs: readyTimeoutMs,
      description: `Kafka broker at localhost:${kafkaPort} (log ${child.logFile})`,
      signal: startAbort.signal,
    });
    started.push({
      name: "kafka",
      address: `localhost:${kafkaPort}`,
      kind: "started",
      pid: child.pid,
      logFile: child.logFile,
    });
  }

  async function startDynamo(): Promise<void> {
    const probe = (): Promise<number> => probeDynamoDb(endpoints.dynamodbEndpoint, region);
    if (externalDynamo) {
      await waitFor(probe, {
        timeoutMs: readyTimeoutMs,
        description: `DynamoDB at ${endpoints.dynamodbEndpoint} (DYNAMODB_ENDPOINT)`,
        signal: startAbort.signal,
      });
      started.push({ name: "dynamodb", address: endpoints.dynamodbEndpoint, kind: "external" });
      return;
    }
    const spec = dynamoDbLocalProcessSpec({
      port: dynamodbPort,
      dbPath: join(options.dir, "dynamodb"),
      logDir: options.dir,
      javaCommand,
    });
    const child = await spawnOwned(spec);
    // The database file is kept, so a restarted DynamoDB Local has its tables and items (after a SIGKILL possibly
    // without its last acknowledged writes: docs/local-stack.md).
    manage("dynamodb", spec, child, probe);
    await waitFor(probe, {
      timeoutMs: readyTimeoutMs,
      description: `DynamoDB Local at ${endpoints.dynamodbEndpoint} (log ${child.logFile})`,
      signal: startAbort.signal,
    });
    started.push({
      name: "dynamodb",
      address: endpoints.dynamodbEndpoint,
      kind: "started",
      pid: child.pid,
      logFile: child.logFile,
    });
  }

  async function startComponent(component: DevStackProcessOptions): Promise<void> {
    const spec: ProcessSpec = {
      name: component.name,
      command: component.command,
      args: component.args,
      ...(component.cwd === undefined ? {} : { cwd: component.cwd }),
      env: {
        ...process.env,
        KAFKA_BROKERS: endpoints.kafkaBrokers.join(","),
        DYNAMODB_ENDPOINT: endpoints.dynamodbEndpoint,
        KAFKA_PARTITIONS: String(partitions),
        AWS_REGION: region,
        ...component.env,
      },
      logFile: join(options.dir, "logs", `${component.name}.log`),
    };
    const child = await spawnOwned(spec);
    const { ready } = component;
    const check =
      ready === undefined
        ? undefined
        : async () => {
            const result = await ready(endpoints);
            return result === undefined ? false : result;
          };
    manage(component.name, spec, child, check, component.readyTimeoutMs);
    if (check !== undefined) {
      const wait = (signal: AbortSignal) =>
        waitFor(check, {
          timeoutMs: component.readyTimeoutMs ?? readyTimeoutMs,
          description: `${component.name} (log ${child.logFile})`,
          signal,
        });
      if (component.readyInBackground === true) {
        // A crash is reported (and restarted) on its own; a stop ends the wait too.
        const gone = new AbortController();
        void child.exited.then(() => gone.abort(new Error(`${component.name} exited`)));
        const signal = AbortSignal.any([startAbort.signal, gone.signal]);
        wait(signal).then(
          () => logger.info(`${component.name} is ready`),
          (err: unknown) => {
            if (!signal.aborted) logger.warn(`${component.name} is not ready: ${errorText(err)}`);
          },
        );
      } else {
        await wait(startAbort.signal);
      }
    }
    started.push({
      name: component.name,
      address: component.address ?? "",
      kind: "started",
      pid: child.pid,
      logFile: child.logFile,
    });
  }

  /** Refuses to start a service on a port something else already holds, with a message that says what to do. */
  async function checkPortsFree(): Promise<void> {
    const wanted: Array<[number, string]> = [];
    if (!externalKafka) {
      wanted.push([
        kafkaPort,
        `Kafka (KAFKA_PORT); to use that broker instead set KAFKA_BROKERS=localhost:${kafkaPort}`,
      ]);
      wanted.push([controllerPort, "the Kafka controller (KAFKA_CONTROLLER_PORT)"]);
    }
    if (!externalDynamo) {
      wanted.push([
        dynamodbPort,
        `DynamoDB Local (DYNAMODB_PORT); to use that service instead set DYNAMODB_ENDPOINT=http://localhost:${dynamodbPort}`,
      ]);
    }
    for (const component of components) {
      for (const port of component.ports ?? []) wanted.push([port, component.name]);
    }
    const busy = await Promise.all(wanted.map(async ([port]) => isPortOpen(port)));
    const clashes = wanted.filter((_, i) => busy[i]);
    if (clashes.length > 0) {
      throw new TernError(
        "conflict",
        clashes.map(([port, what]) => `port ${port} is already in use, it is needed for ${what}`).join("; "),
      );
    }
  }

  /** Stops in reverse start order (a restarted child keeps its place), then anything else the supervisor holds. */
  async function stopAll(): Promise<void> {
    const order = startOrder();
    const entries = [...managed.values()].sort((a, b) => order.indexOf(b.name) - order.indexOf(a.name));
    for (const entry of entries) {
      clearTimeout(entry.timer);
      entry.timer = undefined;
    }
    const errors: unknown[] = [];
    try {
      for (const entry of entries) await entry.child.stop(stopGraceMs).catch((err: unknown) => errors.push(err));
      // A restart that was spawning when the stop began, and anything not yet managed.
      await supervisor.stopAll(stopGraceMs);
      if (errors.length > 0) throw errors[0];
    } finally {
      lock?.release();
      lock = undefined;
    }
  }

  function startOrder(): string[] {
    return ["kafka", "dynamodb", ...components.map((c) => c.name)];
  }

  return {
    get state() {
      return state;
    },
    services(): DevStackService[] {
      // Kafka and DynamoDB become ready in either order; list them the same way every time.
      const order = startOrder();
      return [...started]
        .sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name))
        .map((service) => ({ ...service }));
    },
    ownerEnv: { [ownerVariable]: options.dir },
    recordChildren(group: string, pids: readonly number[]): void {
      extraChildren.set(group, [...pids]);
      recordAllChildren();
    },
    addProcess(component: DevStackProcessOptions): void {
      if (state !== "idle") throw new TernError("conflict", `addProcess(${component.name}) after start()`);
      if (["kafka", "dynamodb", ...components.map((c) => c.name)].includes(component.name)) {
        throw new TernError("conflict", `a process named ${component.name} is already in the stack`);
      }
      components.push(component);
    },
    async start(): Promise<DevStackEndpoints> {
      if (state !== "idle") throw new TernError("conflict", `the dev stack cannot start from state ${state}`);
      state = "starting";
      try {
        if (options.lock ?? true) {
          lock = acquireDevStackLock(join(options.dir, "devstack.pid"), {
            kafka: endpoints.kafkaBrokers.join(","),
            dynamodb: endpoints.dynamodbEndpoint,
            ...Object.fromEntries(components.flatMap((c) => (c.address ? [[c.name, c.address]] : []))),
          });
          const killed = killStaleChildren(lock.staleChildren, `${ownerVariable}=${options.dir}`);
          if (killed.length > 0) {
            logger.warn(
              `stopped ${killed.length} process(es) left by a dev stack that was killed: pid ${killed.join(", ")}`,
            );
            const ports = [kafkaPort, dynamodbPort, ...components.flatMap((c) => c.ports ?? [])];
            await waitFor(async () => (await Promise.all(ports.map((p) => isPortOpen(p)))).every((open) => !open), {
              timeoutMs: 10_000,
              intervalMs: 100,
              description: "the ports of the killed stack's services",
            });
          }
        }
        if (!externalKafka || !externalDynamo) requireJava(javaCommand);
        await checkPortsFree();
        // Both services start at once; if one fails, the other's loop is aborted rather than left to time out.
        const results = await Promise.allSettled([
          startDynamo().catch((err: unknown) => {
            startAbort.abort(err);
            throw err;
          }),
          startKafka().catch((err: unknown) => {
            startAbort.abort(err);
            throw err;
          }),
        ]);
        const failure = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
        if (failure !== undefined) throw firstCause(failure.reason, startAbort.signal);
        for (const component of components) {
          await startComponent(component).catch((err: unknown) => {
            throw firstCause(err, startAbort.signal);
          });
        }
        state = "running";
        return { ...endpoints, kafkaBrokers: [...endpoints.kafkaBrokers] };
      } catch (err) {
        if (state === "starting") state = "failed";
        await stopAll().catch((stopErr: unknown) => logger.warn(`while cleaning up: ${errorText(stopErr)}`));
        throw err;
      }
    },
    stop(): Promise<void> {
      if (state === "stopped" || state === "idle") {
        state = "stopped";
        return Promise.resolve();
      }
      stopping ??= (async () => {
        const previous = state;
        state = "stopping";
        // A stop during start (Ctrl-C while Kafka boots) ends the readiness loops and the Maven fetch now.
        startAbort.abort(new TernError("unavailable", "the dev stack was stopped while starting"));
        try {
          await stopAll();
          state = previous === "failed" ? "failed" : "stopped";
        } catch (err) {
          state = "failed";
          throw err;
        }
      })();
      return stopping;
    },
  };
}

/**
 * When a child died during start, the abort reason (its exit and log) explains the failure better than the
 * AbortError the readiness loop saw.
 */
function firstCause(err: unknown, signal: AbortSignal): unknown {
  if (signal.aborted && signal.reason instanceof TernError) return signal.reason;
  return err;
}

function ordinal(n: number): string {
  const suffix = n % 100 >= 11 && n % 100 <= 13 ? "th" : (["th", "st", "nd", "rd"][n % 10] ?? "th");
  return `${n}${suffix}`;
}
