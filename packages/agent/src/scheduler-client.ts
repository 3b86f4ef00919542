import type {
  AgentAssignments,
  AgentEvent,
  AgentHeartbeat,
  AgentRegistered,
  AgentRegistration,
  AgentView,
  AssignedModel,
} from "@tern/core";
import { readSseStream, sleepUnlessAborted } from "@tern/core";
import type { Logger } from "pino";
import { z } from "zod";
import type { Agent } from "./agent.js";

// ---------------------------------------------------------------------------------------------------------------------
// Scheduler client
// ---------------------------------------------------------------------------------------------------------------------

/** The part of an {@link Agent} the client drives (a narrower type keeps test doubles honest). */
export type SchedulerClientAgent = Pick<
  Agent,
  "server" | "replica" | "capabilities" | "endpoints" | "loaded" | "reconcile"
> &
  Partial<Pick<Agent, "traffic" | "processBytes">>;

export interface SchedulerClientOptions {
  agent: SchedulerClientAgent;
  /** Base URL of the scheduler's control API, e.g. `http://127.0.0.1:9004`. */
  schedulerUrl: string;
  /** Bearer token when the scheduler requires one (TERN_SCHEDULER_TOKEN). */
  token?: string;
  logger: Logger;
  /** Memory capacity reported at registration, bytes. */
  memoryBytes: number;
  /** @default 0 */
  overcommitPercent?: number;
  /** Injectable for tests. @default globalThis.fetch */
  fetch?: typeof fetch;
  /** Deadline of each control call (register, heartbeat, event, drain, status). @default 5000 */
  requestTimeoutMs?: number;
  /**
   * An assignments stream that delivers nothing (not even a keep-alive comment) for this long is taken as dead and
   * reopened. Keep it about 3 × the scheduler's TERN_SCHEDULER_STREAM_HEARTBEAT_MS. @default 45000
   */
  streamIdleTimeoutMs?: number;
  /** First retry delay while the scheduler is unreachable or a standby. @default 250 */
  retryInitialMs?: number;
  /**
   * Cap of the retry delay (exponential backoff with jitter up to this). Registering again after a registration is
   * also capped at the scheduler's heartbeat interval, so a restarted scheduler hears from the agent before its
   * heartbeat deadline. @default 5000
   */
  retryMaxMs?: number;
  /** State events kept while the scheduler is unreachable; beyond it the oldest go (re-registration resyncs). @default 1000 */
  maxQueuedEvents?: number;
  /** How often `drain` polls the scheduler for `drained`. @default 250 */
  drainPollMs?: number;
  /** Called after every successful (re-)registration. */
  onRegistered?: (info: AgentRegistered & { registrations: number }) => void;
  /** Jitter source, injectable for tests. @default Math.random */
  random?: () => number;
}

/** What the client is doing, for logs, health endpoints and tests. */
export interface SchedulerClientStatus {
  registered: boolean;
  /** Successful registrations so far (1 + re-registrations). */
  registrations: number;
  /** Assignment sets received (across reconnects). */
  assignmentsReceived: number;
  /** Reconciles run (intermediate sets that were overtaken are skipped and not counted). */
  reconciles: number;
  queuedEvents: number;
  /** Events dropped because the queue was full. */
  droppedEvents: number;
  draining: boolean;
  /** The last failure talking to the scheduler; cleared by a successful registration. */
  lastError?: string;
  /** Why the last assignments stream ended (kept across registrations). */
  lastDisconnect?: string;
}

export interface DrainResult {
  /** True when the scheduler reported `drained` (its models serve elsewhere) before the deadline. */
  drained: boolean;
  /** Why it stopped waiting otherwise. */
  reason?: string;
}

/** Connects one agent to the scheduler: registration, heartbeats, assignments, state events, drain. */
export interface SchedulerClient {
  /** Starts registering (in the background: it retries until the scheduler answers). The agent must be started. */
  start(): void;
  /** Resolves once the first registration succeeded; rejects with the signal's reason when it is aborted first. */
  registered(signal?: AbortSignal): Promise<void>;
  /** Queues an agent state change for the scheduler (wire this to the agent's `onStateChange`). */
  report(event: AgentEvent): void;
  /**
   * Asks the scheduler to move this replica's models elsewhere and waits until it says `drained` or `timeoutMs` has
   * passed (never longer). Keeps following assignments meanwhile, so models are unloaded as the scheduler decides.
   */
  drain(timeoutMs: number): Promise<DrainResult>;
  /** Stops every loop; with `deregister`, tells the scheduler this agent is leaving (`DELETE`, best effort). */
  stop(options?: { deregister?: boolean }): Promise<void>;
  status(): SchedulerClientStatus;
}

const assignedModelSchema = z.object({
  model: z.string().min(1),
  version: z.number().int().min(1),
  storageUri: z.string().min(1),
  secretName: z.string().min(1).optional(),
  memoryBytes: z.number().min(0).default(0),
  requirements: z.array(z.string()).default([]),
  parameters: z.array(z.object({ name: z.string(), value: z.string() })).default([]),
});
const assignmentsSchema = z.object({ revision: z.number(), models: z.array(assignedModelSchema) });
const registeredSchema = z.object({
  heartbeatIntervalMs: z.number().int().positive(),
  heartbeatTimeoutMs: z.number().int().positive(),
});

/** Raised inside the client for an answer that is not what the protocol promises. */
class CallError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = "CallError";
  }
}

/**
 * Creates the client. Everything runs in the background and never throws into the process: an unreachable scheduler,
 * a standby (503), a restart (404 on heartbeat, a dropped stream) all lead to retrying with capped exponential backoff
 * and jitter, then registering again with what the agent holds (so nothing is reloaded).
 */
export function createSchedulerClient(options: SchedulerClientOptions): SchedulerClient {
  const { agent, logger: log } = options;
  const base = options.schedulerUrl.replace(/\/+$/, "");
  const agentPath = `/v1/agents/${encodeURIComponent(agent.server)}/${agent.replica}`;
  const doFetch = options.fetch ?? globalThis.fetch;
  const requestTimeoutMs = options.requestTimeoutMs ?? 5000;
  const idleTimeoutMs = options.streamIdleTimeoutMs ?? 45_000;
  const retryInitialMs = options.retryInitialMs ?? 250;
  const retryMaxMs = options.retryMaxMs ?? 5000;
  const maxQueued = options.maxQueuedEvents ?? 1000;
  const drainPollMs = options.drainPollMs ?? 250;
  const random = options.random ?? Math.random;

  const stopController = new AbortController();
  /** Aborted to end the current session (stream + heartbeats) and register again. */
  let session: AbortController | undefined;
  let started = false;
  let registered = false;
  let registrations = 0;
  let assignmentsReceived = 0;
  let reconciles = 0;
  let droppedEvents = 0;
  let draining = false;
  let lastError: string | undefined;
  let lastDisconnect: string | undefined;
  let mainLoop: Promise<void> | undefined;
  let senderLoop: Promise<void> | undefined;
  const firstRegistration = deferred();

  const events: AgentEvent[] = [];
  let wakeSender: (() => void) | undefined;
  const kickSender = () => {
    const w = wakeSender;
    wakeSender = undefined;
    w?.();
  };

  // Reconciles run one at a time; a set arriving meanwhile replaces any set still waiting (only the latest matters).
  let pendingSet: AssignedModel[] | undefined;
  let reconciling = false;

  const backoff = (attempt: number) => {
    const cap = Math.min(retryMaxMs, retryInitialMs * 2 ** Math.min(attempt, 20));
    return Math.round(cap / 2 + (random() * cap) / 2);
  };
  /** The heartbeat interval of the last registration; unknown until the first one. */
  let heartbeatIntervalMs: number | undefined;
  /**
   * Delay before registering again. Once registered, it never exceeds the heartbeat interval: a newly elected
   * scheduler gives the agents it loads from the store one heartbeat deadline (about 3 intervals) to come back, and
   * removes those that miss it, rescheduling their models. Polling at the heartbeat rate costs the scheduler no more
   * than the heartbeats did.
   */
  const registerDelay = (attempt: number) =>
    Math.min(backoff(attempt), heartbeatIntervalMs ?? Number.POSITIVE_INFINITY);

  function headers(json: boolean): Record<string, string> {
    return {
      ...(options.token === undefined ? {} : { authorization: `Bearer ${options.token}` }),
      ...(json ? { "content-type": "application/json" } : {}),
    };
  }

  async function call(
    method: string,
    path: string,
    body?: unknown,
    signal: AbortSignal = stopController.signal,
    timeoutMs = requestTimeoutMs,
  ): Promise<Response> {
    return doFetch(`${base}${path}`, {
      method,
      headers: headers(body !== undefined),
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
    });
  }

  async function errorText(res: Response): Promise<string> {
    const text = await res.text().catch(() => "");
    try {
      const parsed = JSON.parse(text) as { error?: unknown; leader?: { holder?: string } | null };
      const leader = parsed.leader?.holder ? ` (leader: ${parsed.leader.holder})` : "";
      return `${res.status} ${typeof parsed.error === "string" ? parsed.error : text}${leader}`;
    } catch {
      return `${res.status} ${text.slice(0, 200)}`;
    }
  }

  function describe(err: unknown): string {
    if (err instanceof Error) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      const detail = cause?.code ?? cause?.message;
      return detail ? `${err.message} (${detail})` : err.message;
    }
    return String(err);
  }

  // --- registration -------------------------------------------------------------------------------------------------

  function registration(): AgentRegistration {
    return {
      server: agent.server,
      replica: agent.replica,
      capabilities: agent.capabilities(),
      memoryBytes: options.memoryBytes,
      overcommitPercent: options.overcommitPercent ?? 0,
      ...processReport(),
      endpoints: agent.endpoints(),
      loaded: agent.loaded(),
    };
  }

  /** The part of registrations and heartbeats that says what the runtime process holds (nothing for ONNX). */
  function processReport(): Pick<AgentHeartbeat, "processBytes"> {
    const bytes = agent.processBytes?.();
    return bytes === undefined ? {} : { processBytes: Math.round(bytes) };
  }

  /** Registers, retrying until it works or the client stops. Returns undefined when stopped. */
  async function registerWithRetry(): Promise<AgentRegistered | undefined> {
    for (let attempt = 0; !stopController.signal.aborted; attempt++) {
      try {
        const reg = registration();
        const res = await call("POST", "/v1/agents", reg);
        if (res.status === 200) {
          const parsed = registeredSchema.safeParse(await res.json());
          if (!parsed.success) throw new CallError("the scheduler answered the registration with an unexpected body");
          registrations++;
          registered = true;
          heartbeatIntervalMs = parsed.data.heartbeatIntervalMs;
          lastError = undefined;
          log.info(
            {
              scheduler: base,
              loaded: reg.loaded.length,
              heartbeatIntervalMs: parsed.data.heartbeatIntervalMs,
              registrations,
            },
            registrations === 1
              ? "registered with the scheduler"
              : "registered again with the scheduler (nothing reloaded)",
          );
          options.onRegistered?.({ ...parsed.data, registrations });
          firstRegistration.resolve();
          kickSender();
          return parsed.data;
        }
        const why = await errorText(res);
        throw new CallError(
          res.status === 503 ? `the scheduler is a standby: ${why}` : `registration refused: ${why}`,
          res.status,
        );
      } catch (err) {
        if (stopController.signal.aborted) return undefined;
        const delay = registerDelay(attempt);
        lastError = describe(err);
        const status = err instanceof CallError ? err.status : undefined;
        // A standby or an unreachable scheduler is expected during restarts: warn on the first failure and then
        // every 10th, so the log says what is going on without a line every few seconds.
        const level = status !== undefined && status !== 503 ? "error" : attempt % 10 === 0 ? "warn" : "debug";
        log[level](
          { scheduler: base, attempt: attempt + 1, retryInMs: delay, reason: lastError },
          status === undefined ? "scheduler unreachable: retrying" : "registration failed: retrying",
        );
        await sleepUnlessAborted(delay, stopController.signal);
      }
    }
    return undefined;
  }

  // --- heartbeats ---------------------------------------------------------------------------------------------------

  async function heartbeatLoop(intervalMs: number, current: AbortController): Promise<void> {
    let failures = 0;
    while (!current.signal.aborted) {
      await sleepUnlessAborted(intervalMs, current.signal);
      if (current.signal.aborted) return;
      try {
        // The traffic figures (docs/autoscaling.md) and MLServer's memory, which moves as models load and requests run
        // (the scheduler stores it when it moved enough to matter), ride on the heartbeat; with neither it has no body.
        const models = agent.traffic?.() ?? [];
        const report = processReport();
        const res = await call(
          "POST",
          `${agentPath}/heartbeat`,
          models.length === 0 && report.processBytes === undefined ? undefined : { models, ...report },
          current.signal,
          Math.min(requestTimeoutMs, Math.max(intervalMs, 1000)),
        );
        if (res.status === 204 || res.status === 200) {
          await res.body?.cancel();
          if (failures > 0) log.info({ failures }, "heartbeats answered again");
          failures = 0;
          continue;
        }
        const why = await errorText(res);
        if (res.status === 404) {
          // The scheduler lost us (restart with another store, or it timed us out): register again.
          log.warn({ reason: why }, "the scheduler does not know this agent: registering again");
          current.abort();
          return;
        }
        throw new CallError(why, res.status);
      } catch (err) {
        if (current.signal.aborted) return;
        failures++;
        lastError = describe(err);
        log[failures === 1 ? "warn" : "debug"]({ failures, reason: lastError }, "heartbeat failed");
      }
    }
  }

  // --- assignments --------------------------------------------------------------------------------------------------

  function onAssignments(set: AgentAssignments): void {
    assignmentsReceived++;
    pendingSet = set.models;
    log.debug({ revision: set.revision, models: set.models.map((m) => `${m.model}:${m.version}`) }, "assignments");
    if (reconciling) return;
    reconciling = true;
    void runReconciles();
  }

  async function runReconciles(): Promise<void> {
    // After stop() the agent is shutting down: a set still waiting must not start loads into a closing registry.
    while (pendingSet !== undefined && !stopController.signal.aborted) {
      const set = pendingSet;
      pendingSet = undefined;
      reconciles++;
      try {
        await agent.reconcile(set);
      } catch (err) {
        log.error({ err }, "reconciling the assigned models failed");
      }
    }
    // Cleared in the same tick the loop sees no set waiting, so a set arriving later starts a new loop.
    reconciling = false;
  }

  /** Follows the assignments stream until it ends, dies, goes silent or the session is aborted. */
  async function followAssignments(current: AbortController): Promise<{ events: number; reason: string }> {
    const stream = new AbortController();
    const signal = AbortSignal.any([current.signal, stream.signal]);
    let count = 0;
    let idleReason: string | undefined;
    let timer: NodeJS.Timeout | undefined;
    const arm = (ms: number, why: string) => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        idleReason = why;
        stream.abort();
      }, ms);
    };
    try {
      arm(requestTimeoutMs, `no answer within ${requestTimeoutMs} ms`);
      const res = await doFetch(`${base}${agentPath}/assignments`, {
        headers: { ...headers(false), accept: "text/event-stream" },
        signal,
      });
      if (res.status !== 200 || res.body === null) return { events: 0, reason: await errorText(res) };
      arm(idleTimeoutMs, `silent for ${idleTimeoutMs} ms`);
      await readSseStream(res.body, {
        onChunk: () => arm(idleTimeoutMs, `silent for ${idleTimeoutMs} ms`),
        message(m) {
          if (m.event !== "assignments" && m.event !== "message") return;
          let parsed: ReturnType<typeof assignmentsSchema.safeParse>;
          try {
            parsed = assignmentsSchema.safeParse(JSON.parse(m.data));
          } catch {
            log.error({ data: m.data.slice(0, 200) }, "assignments event is not JSON: ignored");
            return;
          }
          if (!parsed.success) {
            log.error(
              { issues: parsed.error.issues.slice(0, 3) },
              "assignments event has an unexpected shape: ignored",
            );
            return;
          }
          count++;
          onAssignments(parsed.data);
        },
      });
      return { events: count, reason: "the scheduler ended the stream" };
    } catch (err) {
      return { events: count, reason: idleReason ?? describe(err) };
    } finally {
      clearTimeout(timer);
      stream.abort();
    }
  }

  // --- the session loop ---------------------------------------------------------------------------------------------

  async function run(): Promise<void> {
    let failedSessions = 0;
    while (!stopController.signal.aborted) {
      const info = await registerWithRetry();
      if (info === undefined) return;
      const current = new AbortController();
      session = current;
      const onStop = () => current.abort();
      stopController.signal.addEventListener("abort", onStop, { once: true });
      if (draining) void requestDrain(current.signal);
      const heartbeats = heartbeatLoop(info.heartbeatIntervalMs, current);
      const result = await followAssignments(current);
      current.abort();
      await heartbeats;
      stopController.signal.removeEventListener("abort", onStop);
      registered = false;
      if (stopController.signal.aborted) return;
      lastError = result.reason;
      lastDisconnect = result.reason;
      // A stream that delivered something was a healthy session: start the backoff afresh.
      failedSessions = result.events > 0 ? 0 : failedSessions + 1;
      const delay = failedSessions === 0 ? 0 : registerDelay(failedSessions - 1);
      log.warn({ reason: result.reason, retryInMs: delay }, "assignments stream closed: registering again");
      await sleepUnlessAborted(delay, stopController.signal);
    }
  }

  // --- events -------------------------------------------------------------------------------------------------------

  async function sendEvents(): Promise<void> {
    let attempt = 0;
    while (!stopController.signal.aborted) {
      if (events.length === 0 || !registered) {
        await new Promise<void>((resolve) => {
          wakeSender = resolve;
          if (stopController.signal.aborted) resolve();
        });
        continue;
      }
      const event = events[0]!;
      try {
        const res = await call("POST", `${agentPath}/events`, event);
        if (res.status === 204 || res.status === 200) {
          await res.body?.cancel();
          if (events[0] === event) events.shift();
          attempt = 0;
          continue;
        }
        const why = await errorText(res);
        if (res.status === 400) {
          // The scheduler will never take this one; keeping it would block every later event.
          log.error({ event, reason: why }, "the scheduler rejected a state event: dropped");
          if (events[0] === event) events.shift();
          continue;
        }
        if (res.status === 404) {
          log.warn({ reason: why }, "the scheduler does not know this agent: registering again before sending events");
          registered = false;
          session?.abort();
          continue;
        }
        throw new CallError(why, res.status);
      } catch (err) {
        if (stopController.signal.aborted) return;
        lastError = describe(err);
        const delay = backoff(attempt++);
        log[attempt === 1 ? "warn" : "debug"](
          { event, queued: events.length, retryInMs: delay, reason: lastError },
          "sending a state event failed: retrying",
        );
        await sleepUnlessAborted(delay, stopController.signal);
      }
    }
  }

  // --- drain --------------------------------------------------------------------------------------------------------

  /** POSTs the drain request until it is accepted or `signal` aborts. */
  async function requestDrain(signal: AbortSignal): Promise<boolean> {
    for (let attempt = 0; !signal.aborted; attempt++) {
      try {
        const res = await call("POST", `${agentPath}/drain`, undefined, signal);
        if (res.status === 202 || res.status === 200) {
          await res.body?.cancel();
          return true;
        }
        throw new CallError(await errorText(res), res.status);
      } catch (err) {
        if (signal.aborted) return false;
        lastError = describe(err);
        log[attempt === 0 ? "warn" : "debug"]({ reason: lastError }, "drain request failed: retrying");
        await sleepUnlessAborted(backoff(attempt), signal);
      }
    }
    return false;
  }

  const client: SchedulerClient = {
    start() {
      if (started) return;
      started = true;
      agent.endpoints(); // fails fast (before anything runs in the background) when the agent was not started
      mainLoop = run();
      senderLoop = sendEvents();
    },

    registered(signal) {
      if (signal === undefined) return firstRegistration.promise;
      return Promise.race([
        firstRegistration.promise,
        new Promise<never>((_, reject) => {
          if (signal.aborted) reject(signal.reason);
          signal.addEventListener("abort", () => reject(signal.reason), { once: true });
        }),
      ]);
    },

    report(event) {
      if (events.length >= maxQueued) {
        events.shift();
        droppedEvents++;
        if (droppedEvents === 1 || droppedEvents % 100 === 0) {
          log.warn(
            { dropped: droppedEvents, maxQueuedEvents: maxQueued },
            "state event queue full: dropping the oldest",
          );
        }
        // The dropped event is recovered by registering again: `loaded` restates what the agent holds.
        registered = false;
        session?.abort();
      }
      events.push(event);
      kickSender();
    },

    async drain(timeoutMs) {
      draining = true;
      if (registrations === 0) {
        // The scheduler never heard of this agent, so no gateway routes here: nothing to wait for.
        return { drained: true, reason: "never registered with the scheduler" };
      }
      const deadline = AbortSignal.any([stopController.signal, AbortSignal.timeout(Math.max(0, timeoutMs))]);
      log.info({ timeoutMs }, "draining: asking the scheduler to move this replica's models");
      if (!(await requestDrain(deadline))) {
        return { drained: false, reason: `the scheduler did not take the drain request within ${timeoutMs} ms` };
      }
      while (!deadline.aborted) {
        try {
          const res = await call("GET", agentPath, undefined, deadline);
          if (res.status === 200) {
            const view = (await res.json()) as AgentView;
            if (view.drained) {
              log.info("drained: every model of this replica serves elsewhere");
              return { drained: true };
            }
          } else if (res.status === 404) {
            // Unknown (removed after missing heartbeats): the scheduler routes nothing here any more.
            await res.body?.cancel();
            return { drained: true, reason: "the scheduler no longer knows this agent" };
          } else {
            await res.body?.cancel();
          }
        } catch (err) {
          if (deadline.aborted) break;
          lastError = describe(err);
        }
        await sleepUnlessAborted(drainPollMs, deadline);
      }
      return { drained: false, reason: `not drained within ${timeoutMs} ms${lastError ? ` (${lastError})` : ""}` };
    },

    async stop(stopOptions = {}) {
      const wasRegistered = registrations > 0;
      stopController.abort();
      session?.abort();
      kickSender();
      await Promise.all([mainLoop, senderLoop]);
      registered = false;
      if (stopOptions.deregister && wasRegistered) {
        try {
          const res = await call("DELETE", agentPath, undefined, AbortSignal.timeout(requestTimeoutMs));
          await res.body?.cancel();
          if (res.status === 204 || res.status === 404) log.info("deregistered from the scheduler");
          else log.warn({ status: res.status }, "the scheduler refused the deregistration");
        } catch (err) {
          log.warn(
            { reason: describe(err) },
            "could not deregister (the scheduler removes the agent when heartbeats stop)",
          );
        }
      }
    },

    status: () => ({
      registered,
      registrations,
      assignmentsReceived,
      reconciles,
      queuedEvents: events.length,
      droppedEvents,
      draining,
      ...(lastError === undefined ? {} : { lastError }),
      ...(lastDisconnect === undefined ? {} : { lastDisconnect }),
    }),
  };
  return client;
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}
