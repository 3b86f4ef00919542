/**
 * The port behind which the scheduler keeps ALL of its state. Adapters: DynamoDB (`dynamodb-store.ts` in
 * @tern/scheduler, the only file importing the DynamoDB client) and in-memory (`memory-store.ts`, for unit tests).
 *
 * Items live in collections (`model`, `server`, `replica`, `pipeline`, `experiment`, `routes`, `meta`, ...) under an id.
 * Every item carries a `version` that increases by one per write; writes are conditional on it, so two writers can
 * never silently overwrite each other. Writes made by a scheduler also carry its lease `fence`: the store refuses them
 * (code "lease.lost") once another scheduler holds a newer lease, so a deposed leader cannot corrupt state.
 */

export interface ItemKey {
  collection: string;
  id: string;
}

export interface StoredItem<T = unknown> extends ItemKey {
  /** Starts at 1 on create; +1 per write. */
  version: number;
  value: T;
  /** Epoch seconds after which DynamoDB may expire the item (replies, for example). */
  expiresAt?: number;
}

/** `0` means "must not exist yet"; a positive number means "must currently be this version"; undefined: unconditional. */
export type ExpectedVersion = number | undefined;

export type WriteOp =
  | { type: "put"; key: ItemKey; value: unknown; expectedVersion?: ExpectedVersion; expiresAt?: number }
  | { type: "delete"; key: ItemKey; expectedVersion?: ExpectedVersion };

/** Proof of leadership attached to writes: the lease's name and the token it was granted with. */
export interface Fence {
  lease: string;
  token: number;
}

export interface WriteOptions {
  fence?: Fence;
}

export interface LeaseState {
  name: string;
  holder: string;
  /** Monotonic fencing token: increases every time the lease changes holder. */
  token: number;
  /** Epoch milliseconds. */
  expiresAt: number;
}

export interface StateStore {
  get<T>(key: ItemKey): Promise<StoredItem<T> | undefined>;
  list<T>(collection: string): Promise<StoredItem<T>[]>;
  /**
   * Applies all ops atomically (at most 100; 99 with a fence, whose check takes one of DynamoDB's transaction slots) or none. Throws a TernError with code "conflict" when an
   * expectedVersion does not hold and "lease.lost" when the fence is stale. Returns the new items (deletes omitted).
   */
  write(ops: WriteOp[], options?: WriteOptions): Promise<StoredItem[]>;
  /**
   * Takes or renews the named lease for `holder` until now+ttlMs. Succeeds when the lease is free, expired, or already
   * held by `holder` (renewal keeps the token; a takeover, or a re-acquisition after the lease lapsed, increments it). Returns undefined when another holder's
   * lease is still valid.
   */
  acquireLease(name: string, holder: string, ttlMs: number, now?: number): Promise<LeaseState | undefined>;
  /** Gives the lease up early (only if `holder` still holds it with `token`), so a standby can take over at once. */
  releaseLease(name: string, holder: string, token: number): Promise<void>;
  /** Undefined when nobody holds the lease (never taken, or released). */
  readLease(name: string): Promise<LeaseState | undefined>;
  close(): Promise<void>;
}
