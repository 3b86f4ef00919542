import {
  type ItemKey,
  type LeaseState,
  type StateStore,
  type StoredItem,
  TernError,
  type WriteOp,
  type WriteOptions,
} from "@tern/core";
import {
  checkAcquire,
  checkCollection,
  checkKey,
  checkLeaseName,
  conflictError,
  decodeValue,
  leaseLostError,
  prepareWrite,
} from "./table.js";

interface Row {
  version: number;
  /** Values are kept as JSON text, exactly like the DynamoDB adapter, so callers see the same copies and shapes. */
  json: string;
  expiresAt: number | undefined;
}

interface LeaseRow {
  holder: string | undefined;
  token: number;
  expiresAt: number;
}

/**
 * An in-memory {@link StateStore} for unit tests and single-process experiments. It follows the DynamoDB adapter's
 * contract exactly (the shared contract suite runs against both): the same validation and limits, JSON round-tripping
 * of values, ids listed in UTF-8 byte order, fencing by token, and atomic multi-op writes. Like DynamoDB, expired
 * items (`expiresAt` in the past) are not hidden: TTL is garbage collection, not a read filter.
 */
export function createMemoryStore(): StateStore {
  const collections = new Map<string, Map<string, Row>>();
  const leases = new Map<string, LeaseRow>();
  let closed = false;

  function ensureOpen(): void {
    if (closed) throw new TernError("unavailable", "state store is closed");
  }

  function toItem<T>(key: ItemKey, row: Row): StoredItem<T> {
    const item: StoredItem<T> = {
      collection: key.collection,
      id: key.id,
      version: row.version,
      value: decodeValue<T>(row.json),
    };
    if (row.expiresAt !== undefined) item.expiresAt = row.expiresAt;
    return item;
  }

  function leaseState(name: string, row: LeaseRow): LeaseState {
    return { name, holder: row.holder as string, token: row.token, expiresAt: row.expiresAt };
  }

  return {
    async get<T>(key: ItemKey): Promise<StoredItem<T> | undefined> {
      ensureOpen();
      const k = checkKey(key);
      const row = collections.get(k.collection)?.get(k.id);
      return row ? toItem<T>(k, row) : undefined;
    },

    async list<T>(collection: string): Promise<StoredItem<T>[]> {
      ensureOpen();
      checkCollection(collection);
      const rows = collections.get(collection);
      if (!rows) return [];
      // DynamoDB orders sort keys by their UTF-8 bytes, which differs from JS string order for some characters.
      const ids = [...rows.keys()].map((id) => ({ id, bytes: Buffer.from(id, "utf8") }));
      ids.sort((a, b) => Buffer.compare(a.bytes, b.bytes));
      return ids.map(({ id }) => toItem<T>({ collection, id }, rows.get(id) as Row));
    },

    async write(ops: WriteOp[], options?: WriteOptions): Promise<StoredItem[]> {
      ensureOpen();
      const prepared = prepareWrite(ops, options);
      if (prepared.ops.length === 0) return [];
      // Everything below runs synchronously, so the checks and the changes form one atomic step.
      if (prepared.fence) {
        const lease = leases.get(prepared.fence.lease);
        if (!lease || lease.holder === undefined || lease.token !== prepared.fence.token) {
          throw leaseLostError(prepared.fence);
        }
      }
      for (const op of prepared.ops) {
        const current = collections.get(op.key.collection)?.get(op.key.id);
        if (op.expectedVersion === 0 && current) throw conflictError(op.key, 0);
        if (op.expectedVersion !== undefined && op.expectedVersion > 0 && current?.version !== op.expectedVersion) {
          throw conflictError(op.key, op.expectedVersion);
        }
      }
      const written: StoredItem[] = [];
      for (const op of prepared.ops) {
        let rows = collections.get(op.key.collection);
        if (op.type === "delete") {
          rows?.delete(op.key.id);
          continue;
        }
        if (!rows) {
          rows = new Map();
          collections.set(op.key.collection, rows);
        }
        const row: Row = { version: (rows.get(op.key.id)?.version ?? 0) + 1, json: op.json, expiresAt: op.expiresAt };
        rows.set(op.key.id, row);
        written.push(toItem(op.key, row));
      }
      return written;
    },

    async acquireLease(
      name: string,
      holder: string,
      ttlMs: number,
      now: number = Date.now(),
    ): Promise<LeaseState | undefined> {
      ensureOpen();
      checkAcquire(name, holder, ttlMs, now);
      const row = leases.get(name);
      const live = row !== undefined && row.holder !== undefined && row.expiresAt > now;
      if (live && row.holder === holder) {
        row.expiresAt = now + ttlMs;
        return leaseState(name, row);
      }
      if (live) return undefined;
      // Free, released or lapsed (even if lapsed by this same holder): a new term with a new token.
      const next: LeaseRow = { holder, token: (row?.token ?? 0) + 1, expiresAt: now + ttlMs };
      leases.set(name, next);
      return leaseState(name, next);
    },

    async releaseLease(name: string, holder: string, token: number): Promise<void> {
      ensureOpen();
      checkLeaseName(name);
      const row = leases.get(name);
      if (row && row.holder === holder && row.token === token) {
        // Keep the row and its token: the next holder must get a larger token than any before it.
        row.holder = undefined;
        row.expiresAt = 0;
      }
    },

    async readLease(name: string): Promise<LeaseState | undefined> {
      ensureOpen();
      checkLeaseName(name);
      const row = leases.get(name);
      return row && row.holder !== undefined ? leaseState(name, row) : undefined;
    },

    async close(): Promise<void> {
      closed = true;
    },
  };
}
