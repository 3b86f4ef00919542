import { z } from "zod";
import { envVar } from "./config.js";
import { TernError } from "./errors.js";
import type { StateStore } from "./state-store.js";

/**
 * Replica indexes claimed in the state table, for platforms (ECS) that give every task of a service the same
 * environment while our components need a unique, stable id (`modelgateway-<index>`, `dataflow-<index>`, an agent's
 * replica number).
 *
 * Each index is a lease of the store (`replica-id:<kind>:<index>`), so the conditional writes are the store's own:
 * taking succeeds only when the item is free or its lease has expired, renewing only while this holder still holds
 * it unexpired, releasing only while it holds it with the same token. A claimer that cannot renew before its lease
 * expires (a frozen process, a cut network) may already share its id with a newcomer: it is told through `onLost`
 * and must stop at once (the process entries exit non-zero, and the supervisor starts a fresh process).
 */

/** Variables of the replica-id claim, shared by the model gateway, the dataflow worker and the agent. */
export const replicaIdEnvSchema = z.object({
  /** How long one claim lasts without renewal; renewed every third of it. A crashed replica's id is free after it. */
  TERN_REPLICA_ID_TTL_MS: envVar.int(15_000, 1_000),
  /** How long a starting replica waits for an id when all are taken (a crashed predecessor's lapses within the ttl). */
  TERN_REPLICA_ID_WAIT_MS: envVar.int(30_000, 0),
});

/** The value of an id variable (TERN_MODELGATEWAY_ID, TERN_DATAFLOW_ID, TERN_AGENT_REPLICA) that asks for a claim. */
export const AUTO_REPLICA_ID = "auto";

/**
 * Exit code of a process that lost its claimed id (EX_TEMPFAIL): it stops at once rather than run with an id another
 * replica may now hold; its supervisor (ECS) starts a fresh process, which claims again.
 */
export const LOST_REPLICA_ID_EXIT_CODE = 75;

/** The subset of a pino logger the claim uses. */
export interface ReplicaIndexLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** Options of {@link claimReplicaIndex}. */
export interface ReplicaIndexOptions {
  store: Pick<StateStore, "acquireLease" | "releaseLease">;
  /** What the indexes number: `modelgateway`, `dataflow`, `agent:<server>`. Claims of different kinds never collide. */
  kind: string;
  /** Indexes are 0..max-1. */
  max: number;
  /** @default 15000 */
  ttlMs?: number;
  /** @default ttlMs / 3 */
  renewEveryMs?: number;
  /** How long to retry while every index is taken or the store fails. @default 2 × ttlMs */
  waitMs?: number;
  /** Unique id of this process. @default `<random>-<pid>` */
  holder?: string;
  /** Names the replicas in errors ("all 6 model-gateway ids are taken"). @default kind */
  label?: string;
  /** Why `max` is the cap, appended to the all-taken error ("KAFKA_PARTITIONS caps the model gateway"). */
  capReason?: string;
  /**
   * Called once when the claim is lost: renewal refused (another holder took the index after ours lapsed) or not
   * done before expiry. Another process may now have the same id: stop at once (exit non-zero).
   */
  onLost(reason: string): void;
  logger?: ReplicaIndexLogger;
  /** Epoch milliseconds. @default Date.now */
  clock?: () => number;
}

export interface ReplicaIndexClaim {
  readonly index: number;
  /** True once the claim was lost (onLost has been called). */
  readonly lost: boolean;
  /** Stops renewing and frees the index (only if still ours), bounded by the ttl. Idempotent. */
  release(): Promise<void>;
}

const noopLogger: ReplicaIndexLogger = { info() {}, warn() {} };

/** The lease name of one index; exported for tests and operators reading the table. */
export function replicaIndexLeaseName(kind: string, index: number): string {
  return `replica-id:${kind}:${index}`;
}

/**
 * Claims the lowest free index below `max` and keeps it claimed (renewing every `renewEveryMs`) until release().
 * @throws TernError `unavailable` when all `max` indexes stay taken for `waitMs`; `config.invalid` on bad options.
 */
export async function claimReplicaIndex(options: ReplicaIndexOptions): Promise<ReplicaIndexClaim> {
  const { store, kind, max, onLost } = options;
  if (typeof kind !== "string" || kind.length === 0) throw invalid("kind: expected a non-empty string");
  if (!Number.isSafeInteger(max) || max < 1) throw invalid(`max: expected a positive integer, got ${String(max)}`);
  const ttlMs = options.ttlMs ?? 15_000;
  const renewEveryMs = options.renewEveryMs ?? ttlMs / 3;
  if (!(ttlMs > 0)) throw invalid(`ttlMs: expected a positive number, got ${String(ttlMs)}`);
  if (!(renewEveryMs > 0 && renewEveryMs < ttlMs)) throw invalid(`renewEveryMs: must be below ttlMs (${ttlMs})`);
  const waitMs = options.waitMs ?? 2 * ttlMs;
  const holder = options.holder ?? `${Math.random().toString(36).slice(2, 10)}-${process.pid}`;
  const label = options.label ?? kind;
  const log = options.logger ?? noopLogger;
  const clock = options.clock ?? Date.now;
  // One store call that takes longer than this counts as failed (the deadline timer covers the renewal case).
  const callTimeoutMs = renewEveryMs;

  const deadline = clock() + waitMs;
  let lastError: unknown;
  let granted: { index: number; token: number; expiresAt: number } | undefined;
  for (let attempt = 0; !granted; attempt++) {
    lastError = undefined;
    for (let index = 0; index < max && !granted; index++) {
      try {
        const lease = await withTimeout(
          store.acquireLease(replicaIndexLeaseName(kind, index), holder, ttlMs, clock()),
          ttlMs,
        );
        if (lease?.holder === holder) granted = { index, token: lease.token, expiresAt: lease.expiresAt };
      } catch (err) {
        // The call may have taken the index even so: ask for the same one again (for its holder, a take is a
        // renewal), rather than leave it held by nobody until it lapses.
        lastError = err;
        if (clock() >= deadline) break;
        await sleep(Math.min(250, ttlMs / 4));
        index--;
      }
    }
    if (granted) break;
    if (clock() >= deadline) {
      if (lastError !== undefined) {
        throw new TernError(
          "unavailable",
          `could not claim a ${label} id within ${waitMs} ms: the state table did not answer (${(lastError as Error).message})`,
          { cause: lastError, retriable: true },
        );
      }
      throw new TernError(
        "unavailable",
        `all ${max} ${label} ids are taken (waited ${waitMs} ms for one to be released or to lapse)` +
          (options.capReason ? `: ${options.capReason}` : ""),
        { retriable: true },
      );
    }
    await sleep(Math.min(Math.max(0, deadline - clock()), Math.min(ttlMs / 4, 250 * 2 ** Math.min(attempt, 3))));
  }

  const mine = granted;
  const name = replicaIndexLeaseName(kind, mine.index);
  log.info({ kind, index: mine.index, holder, ttlMs }, "claimed replica index");
  let lost = false;
  let released: Promise<void> | undefined;
  let renewTimer: ReturnType<typeof setTimeout> | undefined;
  let deadlineTimer: ReturnType<typeof setTimeout> | undefined;

  function lose(reason: string): void {
    if (lost || released) return;
    lost = true;
    clearTimeout(renewTimer);
    clearTimeout(deadlineTimer);
    const message = `lost replica index ${mine.index} of ${label}: ${reason}; another replica may now have the same id`;
    log.warn({ kind, index: mine.index, holder }, message);
    onLost(message);
  }

  function armDeadline(): void {
    clearTimeout(deadlineTimer);
    deadlineTimer = setTimeout(
      () => {
        if (clock() >= mine.expiresAt) lose("the claim could not be renewed before it expired");
        else armDeadline();
      },
      Math.max(0, mine.expiresAt - clock()),
    );
    deadlineTimer.unref?.();
  }

  async function renew(): Promise<void> {
    if (lost || released) return;
    const now = clock();
    if (now >= mine.expiresAt) return lose("the claim expired before it could be renewed");
    try {
      const lease = await withTimeout(store.acquireLease(name, holder, ttlMs, now), callTimeoutMs);
      if (lost || released) return;
      if (!lease || lease.holder !== holder) return lose(`renewal refused: held by ${lease?.holder ?? "another"}`);
      // A new token means ours lapsed and was taken again: someone else may have held it in between.
      if (lease.token !== mine.token) return lose(`renewal found token ${lease.token}, not ours (${mine.token})`);
      mine.expiresAt = lease.expiresAt;
      armDeadline();
    } catch (err) {
      log.warn({ err, kind, index: mine.index }, "replica index renewal failed; retrying until the claim expires");
    }
    if (!lost && !released) scheduleRenew();
  }

  /** The renewal in flight, which release() lets finish first: a renewal landing after the release would take the index again. */
  let renewing: Promise<void> = Promise.resolve();
  function scheduleRenew(): void {
    renewTimer = setTimeout(() => {
      renewing = renew();
    }, renewEveryMs);
  }

  armDeadline();
  scheduleRenew();

  return {
    index: mine.index,
    get lost() {
      return lost;
    },
    release() {
      released ??= (async () => {
        clearTimeout(renewTimer);
        clearTimeout(deadlineTimer);
        await renewing;
        try {
          await withTimeout(store.releaseLease(name, holder, mine.token), ttlMs);
          log.info({ kind, index: mine.index }, "released replica index");
        } catch (err) {
          // It lapses by itself at expiry; releasing only frees it sooner.
          log.warn({ err, kind, index: mine.index }, "could not release replica index");
        }
      })();
      return released;
    },
  };
}

function invalid(message: string): TernError {
  return new TernError("config.invalid", message);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TernError("timeout", `state table call took longer than ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
