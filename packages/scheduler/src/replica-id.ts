import {
  AUTO_REPLICA_ID,
  claimReplicaIndex,
  LOST_REPLICA_ID_EXIT_CODE,
  type ReplicaIndexClaim,
  type ReplicaIndexLogger,
  type SharedConfig,
  type StateStore,
} from "@tern/core";
import { createDynamoDbStore } from "./store/dynamodb-store.js";

// The id variables (TERN_MODELGATEWAY_ID, TERN_DATAFLOW_ID, TERN_AGENT_REPLICA) of the processes that may run as
// identical tasks: a fixed id passes through, `auto` claims an index in the state table (docs/replica-ids.md). It
// lives here rather than in core because it needs the DynamoDB store, which only the scheduler package may import.

/** Where the claims are written: the state table (TERN_TABLE). */
export type ReplicaIdStoreConfig = Pick<SharedConfig, "DYNAMODB_ENDPOINT" | "AWS_REGION" | "TERN_TABLE">;

/** The claim's timing, from the process's TERN_REPLICA_ID_* variables. */
export interface ReplicaIdTiming {
  TERN_REPLICA_ID_TTL_MS: number;
  TERN_REPLICA_ID_WAIT_MS: number;
}

/** What the process gives a claim: the table, what to do when the claim is lost, and where to log. */
export interface ReplicaIdDeps {
  store: StateStore;
  onLost(reason: string): void;
  logger?: ReplicaIndexLogger;
}

/** Options of {@link resolveReplicaId}. */
export interface ResolveReplicaIdOptions<T> extends ReplicaIdDeps {
  /** The id variable's value: `auto` claims one; anything else is the id, used as it is without touching the table. */
  configured: T | typeof AUTO_REPLICA_ID;
  /** The id a claimed index stands for: `dataflow-<index>`, or the index itself for an agent's replica number. */
  fromIndex(index: number): T;
  /** Claims of one kind number one set of replicas (`modelgateway`, `dataflow`, `agent:<server>`). */
  kind: string;
  /** Indexes are 0..cap-1. */
  cap: number;
  /** Why `cap` is the cap, for the all-taken error: the variable that sets it and what it must cover. */
  capReason: string;
  /** Names the replicas in logs and errors (`model-gateway`, `dataflow`, `<server> agent`). */
  label: string;
  timing: ReplicaIdTiming;
}

/** A resolved id, and the claim that holds it when it was `auto`. */
export interface ResolvedReplicaId<T> {
  id: T;
  claim?: ReplicaIndexClaim;
}

/** The state table the `auto` claims are written to; making it does no I/O, so a fixed id never reaches the table. */
export function createReplicaIdStore(config: ReplicaIdStoreConfig): StateStore {
  return createDynamoDbStore({
    ...(config.DYNAMODB_ENDPOINT ? { endpoint: config.DYNAMODB_ENDPOINT } : {}),
    region: config.AWS_REGION,
    table: config.TERN_TABLE,
  });
}

/**
 * The configured id, or for `auto` (ECS) the lowest index below `cap` that no other replica of `kind` holds, kept
 * claimed until `claim.release()`.
 * @throws TernError `unavailable` when all `cap` indexes stay taken for TERN_REPLICA_ID_WAIT_MS (the message names
 * `capReason`).
 */
export async function resolveReplicaId<T>(options: ResolveReplicaIdOptions<T>): Promise<ResolvedReplicaId<T>> {
  if (options.configured !== AUTO_REPLICA_ID) return { id: options.configured as T };
  const claim = await claimReplicaIndex({
    store: options.store,
    kind: options.kind,
    max: options.cap,
    ttlMs: options.timing.TERN_REPLICA_ID_TTL_MS,
    waitMs: options.timing.TERN_REPLICA_ID_WAIT_MS,
    label: options.label,
    capReason: options.capReason,
    onLost: options.onLost,
    ...(options.logger ? { logger: options.logger } : {}),
  });
  return { id: options.fromIndex(claim.index), claim };
}

/** The subset of a pino logger a process entry passes. */
export interface ReplicaIdProcessLogger {
  fatal(msg: string): void;
  child(bindings: Record<string, unknown>): ReplicaIndexLogger;
}

/** Options of {@link createReplicaIdProcess}. */
export interface ReplicaIdProcessOptions {
  config: ReplicaIdStoreConfig;
  logger: ReplicaIdProcessLogger;
  /** Ends the lost-claim log line: "exiting so the supervisor restarts <restarts>". */
  restarts: string;
  /** @default createReplicaIdStore(config) */
  store?: StateStore;
}

/** A process entry's side of its id: the store, exit on a lost claim, release at the end. */
export interface ReplicaIdProcess {
  /**
   * Runs the component's resolver with the store, a `replica-id` child logger, and an `onLost` that logs fatal and
   * exits LOST_REPLICA_ID_EXIT_CODE (75) at once: another replica may have our id, and the supervisor starts a fresh
   * process, which claims again. Remembers the claim for {@link close}.
   */
  resolve<R extends { claim?: ReplicaIndexClaim }>(resolver: (deps: ReplicaIdDeps) => Promise<R>): Promise<R>;
  /**
   * Releases the claim (if any) and closes the store. Call it last in the drain: the id stays ours until the process
   * has left its groups and the scheduler, then the next task may take it at once. Also on a failed start.
   */
  close(): Promise<void>;
}

export function createReplicaIdProcess(options: ReplicaIdProcessOptions): ReplicaIdProcess {
  const store = options.store ?? createReplicaIdStore(options.config);
  const { logger } = options;
  let claim: ReplicaIndexClaim | undefined;
  return {
    async resolve(resolver) {
      const resolved = await resolver({
        store,
        logger: logger.child({ part: "replica-id" }),
        onLost: (reason) => {
          logger.fatal(`${reason}: exiting so the supervisor restarts ${options.restarts}`);
          process.exit(LOST_REPLICA_ID_EXIT_CODE);
        },
      });
      claim = resolved.claim;
      return resolved;
    },
    async close() {
      await claim?.release();
      await store.close();
    },
  };
}
