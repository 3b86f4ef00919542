import { type Fence, type LeaseState, type StateStore, TernError } from "@tern/core";

/** The subset of a pino logger the elector uses. */
export interface LeaderLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** Options of {@link createLeaderElector}. */
export interface LeaderElectorOptions {
  store: StateStore;
  /** Lease name. @default "scheduler" */
  name?: string;
  /** Unique id of this process (e.g. `${hostname}-${pid}-${random}`); two electors must never share it. */
  holder: string;
  /** How long a granted lease lasts. @default 10000 */
  ttlMs?: number;
  /** How often the leader renews. Must leave time for a retry before stepping down. @default ttlMs / 3 */
  renewEveryMs?: number;
  /** How often a standby tries to acquire the lease (±20 % jitter). @default 1000 */
  pollEveryMs?: number;
  /**
   * The leader steps down this long BEFORE its lease expires. It must exceed the clock skew between any two
   * schedulers plus the longest event-loop stall, because a standby judges expiry by its own clock.
   * @default ttlMs / 5
   */
  safetyMarginMs?: number;
  /** Called when this process becomes leader; attach `fence` to every write it makes while leading. */
  onElected(fence: Fence): void | Promise<void>;
  /**
   * Called when this process stops being leader: renewal refused or too late, or stop(). It is always called before
   * another holder can acquire the lease (except for clock skew beyond the safety margin); stop all work at once.
   */
  onDeposed(reason: string): void | Promise<void>;
  /** Epoch milliseconds. @default Date.now */
  clock?: () => number;
  logger?: LeaderLogger;
}

export type LeaderElectorState = "idle" | "standby" | "leader" | "stopped";

export interface LeaderElector {
  /** Begins competing for the lease in the background. May be called again once a stop() has finished. */
  start(): void;
  /**
   * Stops competing. A leader is deposed first (onDeposed is awaited, bounded by ttlMs), then, unless
   * `release: false`, the lease is released so a standby takes over at once. `release: false` leaves the lease to
   * lapse, as if this process had died. Calling it again returns the first call's promise.
   */
  stop(options?: { release?: boolean }): Promise<void>;
  readonly state: LeaderElectorState;
  /** True while this process holds a lease that is still valid by its own clock (minus the safety margin). */
  isLeader(): boolean;
  /** The fence to attach to writes, or undefined when not leader. */
  fence(): Fence | undefined;
}

const noopLogger: LeaderLogger = { info() {}, warn() {}, error() {} };

/**
 * Leader election over a {@link StateStore} lease, so exactly one scheduler acts at a time.
 *
 * Standbys poll `acquireLease` every `pollEveryMs`; the leader renews every `renewEveryMs`. The leader deposes
 * itself the moment its lease is refused, or when `expiresAt − safetyMarginMs` passes without a successful renewal
 * (a timer, so a hung store call cannot keep a stale leader acting), and releases what it held so the next term gets a
 * new fencing token. With the defaults (ttl 10 s, poll 1 s) a standby takes over at most ~11.2 s after the leader dies,
 * within the required 15 s. Safety rests on the fence: writes carry the token and the store refuses stale ones.
 */
export function createLeaderElector(options: LeaderElectorOptions): LeaderElector {
  const o = resolveOptions(options);
  const { store, name, holder, ttlMs, renewEveryMs, pollEveryMs, safetyMarginMs: margin } = o;
  const clock = options.clock ?? Date.now;
  const log = options.logger ?? noopLogger;
  // A store call that takes longer than this is treated as failed; the leader's deadline timer covers the rest.
  const callTimeoutMs = renewEveryMs;

  let state: LeaderElectorState = "idle";
  let term: { token: number; expiresAt: number } | undefined;
  /** Increments on every change of leadership, so a store answer that arrives after one can be recognised as stale. */
  let epoch = 0;
  let stopping = false;
  let deposeTimer: ReturnType<typeof setTimeout> | undefined;
  let wake: (() => void) | undefined;
  let running: Promise<void> | undefined;
  let lastDeposed: Promise<void> = Promise.resolve();
  /** Resolves on stop({ release: false }): nothing will be released, so there is no point waiting for a store call. */
  let abandon: () => void = () => {};
  let abandoned = newAbandonSignal();
  function newAbandonSignal(): Promise<undefined> {
    return new Promise<undefined>((resolve) => {
      abandon = () => resolve(undefined);
    });
  }
  /** Resolves when the last stop() has fully finished; start() may then begin a new run. */
  let stopped: Promise<void> | undefined;
  let fullyStopped = false;
  /** Tokens this process was granted but no longer leads with; released so a standby need not wait for expiry. */
  const toRelease = new Set<number>();

  /** Runs a callback without letting its failure (sync or async) break the election loop. */
  function invoke(what: string, fn: () => void | Promise<void>): Promise<void> {
    try {
      return Promise.resolve(fn()).catch((err: unknown) => log.error({ err, lease: name, holder }, `${what} failed`));
    } catch (err) {
      log.error({ err, lease: name, holder }, `${what} failed`);
      return Promise.resolve();
    }
  }

  function scheduleDeadline(): void {
    if (deposeTimer !== undefined) clearTimeout(deposeTimer);
    if (!term) return;
    const ms = Math.max(0, term.expiresAt - margin - clock());
    deposeTimer = setTimeout(() => {
      deposeTimer = undefined;
      if (term && clock() >= term.expiresAt - margin) depose("lease could not be renewed before it would expire");
      else scheduleDeadline(); // the timer fired early by our clock: wait the rest
    }, ms);
  }

  function elect(lease: LeaseState): void {
    term = { token: lease.token, expiresAt: lease.expiresAt };
    state = "leader";
    epoch++;
    scheduleDeadline();
    log.info({ lease: name, holder, token: lease.token }, "elected leader");
    const fence: Fence = { lease: name, token: lease.token };
    void invoke("onElected", () => options.onElected(fence));
  }

  function depose(reason: string): void {
    if (!term) return;
    toRelease.add(term.token);
    log.warn({ lease: name, holder, token: term.token, reason }, "deposed");
    term = undefined;
    state = stopping ? "stopped" : "standby";
    epoch++;
    if (deposeTimer !== undefined) clearTimeout(deposeTimer);
    deposeTimer = undefined;
    lastDeposed = invoke("onDeposed", () => options.onDeposed(reason));
    wake?.();
  }

  /** True while leading; deposes synchronously when the deadline has passed but the timer has not fired yet. */
  function checkLeading(): boolean {
    if (term && clock() >= term.expiresAt - margin) depose("lease could not be renewed before it would expire");
    return term !== undefined;
  }

  async function releasePending(): Promise<void> {
    for (const token of [...toRelease]) {
      toRelease.delete(token);
      try {
        await withTimeout(store.releaseLease(name, holder, token), callTimeoutMs);
      } catch (err) {
        // The lease lapses by itself at expiry; releasing only makes the handover faster.
        log.warn({ err, lease: name, holder, token }, "could not release lease");
      }
    }
  }

  function pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        wake = undefined;
        resolve();
      }
      wake = done;
    });
  }

  async function loop(): Promise<void> {
    while (!stopping) {
      await releasePending();
      if (stopping) break;
      const leading = checkLeading();
      const startEpoch = epoch;
      const now = clock();
      let lease: LeaseState | undefined;
      let failure: unknown;
      try {
        lease = await Promise.race([
          withTimeout(store.acquireLease(name, holder, ttlMs, now), callTimeoutMs),
          abandoned,
        ]);
      } catch (err) {
        failure = err;
      }
      if (epoch !== startEpoch || stopping) {
        // Leadership changed while we waited (deadline passed, or stop()): this answer is stale. Give back what it granted.
        if (lease?.holder === holder) toRelease.add(lease.token);
        continue;
      }
      if (failure !== undefined) {
        log.warn(
          { err: failure, lease: name, holder, leading },
          leading ? "lease renewal failed" : "lease poll failed",
        );
        // A leader retries soon while its lease is still valid; the deadline timer deposes it if that does not help.
        await pause(leading ? Math.min(renewEveryMs, pollEveryMs) : jitter(pollEveryMs));
        continue;
      }
      if (lease && lease.holder === holder) {
        if (clock() >= lease.expiresAt - margin) {
          // Granted, but the answer came too late to act on safely.
          toRelease.add(lease.token);
          if (leading) depose("lease renewal completed too late");
        } else if (leading && term && lease.token === term.token) {
          term.expiresAt = lease.expiresAt;
          scheduleDeadline();
        } else {
          if (leading) depose(`lease token changed to ${lease.token}`);
          elect(lease);
        }
      } else if (leading) {
        depose(`lease refused: ${lease ? `held by ${lease.holder}` : "held by another holder"}`);
      }
      await pause(state === "leader" ? renewEveryMs : jitter(pollEveryMs));
    }
  }

  return {
    get state() {
      return state;
    },
    start() {
      if (state === "stopped" && fullyStopped) {
        // A restart after stop(): a fresh run that competes like a new process (its old terms were released or lapsed).
        stopping = false;
        fullyStopped = false;
        stopped = undefined;
        abandoned = newAbandonSignal();
      } else if (state !== "idle") {
        throw new TernError("bad_request", `leader elector for "${name}" is already running (or still stopping)`);
      }
      state = "standby";
      running = loop().catch((err: unknown) => {
        // loop() catches store failures itself; reaching here is a bug, and leading on would be unsafe.
        log.error({ err, lease: name, holder }, "leader election loop failed");
        depose("leader election loop failed");
        state = "stopped";
      });
    },
    stop({ release = true } = {}) {
      stopped ??= stopOnce(release);
      return stopped;
    },
    isLeader() {
      return checkLeading();
    },
    fence() {
      return checkLeading() && term ? { lease: name, token: term.token } : undefined;
    },
  };

  async function stopOnce(release: boolean): Promise<void> {
    stopping = true;
    if (!release) abandon();
    wake?.();
    depose("stopped");
    await running;
    state = "stopped";
    // Let the scheduler finish (or abandon) its work before a standby may start writing.
    await withTimeout(lastDeposed, ttlMs).catch(() => undefined);
    if (release) await releasePending();
    toRelease.clear();
    log.info({ lease: name, holder, released: release }, "leader elector stopped");
    fullyStopped = true;
  }
}

function resolveOptions(options: LeaderElectorOptions) {
  if (typeof options !== "object" || options === null) throw invalid("options: expected an object");
  if (!options.store) throw invalid("store: a StateStore is required");
  if (typeof options.holder !== "string" || options.holder.length === 0)
    throw invalid("holder: expected a unique non-empty id");
  if (typeof options.onElected !== "function") throw invalid("onElected: expected a function");
  if (typeof options.onDeposed !== "function") throw invalid("onDeposed: expected a function");
  const name = options.name ?? "scheduler";
  if (typeof name !== "string" || name.length === 0) throw invalid("name: expected a non-empty lease name");
  const ttlMs = positive("ttlMs", options.ttlMs ?? 10_000);
  const renewEveryMs = positive("renewEveryMs", options.renewEveryMs ?? ttlMs / 3);
  const pollEveryMs = positive("pollEveryMs", options.pollEveryMs ?? 1000);
  const safetyMarginMs = positive("safetyMarginMs", options.safetyMarginMs ?? ttlMs / 5);
  if (safetyMarginMs >= ttlMs) throw invalid(`safetyMarginMs: ${safetyMarginMs} must be less than ttlMs (${ttlMs})`);
  if (renewEveryMs >= ttlMs - safetyMarginMs) {
    throw invalid(
      `renewEveryMs: ${renewEveryMs} must be less than ttlMs - safetyMarginMs (${ttlMs - safetyMarginMs}), or the leader steps down before it renews`,
    );
  }
  return { store: options.store, name, holder: options.holder, ttlMs, renewEveryMs, pollEveryMs, safetyMarginMs };
}

function positive(field: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    throw invalid(`${field}: expected a positive number of milliseconds, got ${String(value)}`);
  }
  return value;
}

function invalid(message: string): TernError {
  return new TernError("config.invalid", message);
}

function jitter(ms: number): number {
  return ms * (0.8 + Math.random() * 0.4);
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TernError("timeout", `lease store call took longer than ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
