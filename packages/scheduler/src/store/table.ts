import { type Fence, type ItemKey, TernError, type WriteOp, type WriteOptions } from "@tern/core";

/**
 * The one DynamoDB table that holds all scheduler state. This file is the single description of its shape: the
 * DynamoDB adapter creates the table from it for local runs, and the SST data stack should declare the same keys and
 * TTL attribute (import these constants rather than retyping them).
 *
 * Item layout:
 * - ordinary items: `pk` (S) = collection, `sk` (S) = id, `version` (N), `json` (S) = the value as JSON text,
 *   `expiresAt` (N, epoch SECONDS, optional) = the TTL attribute.
 * - lease items: `pk` = `lease`, `sk` = lease name, `holder` (S, absent when released), `token` (N),
 *   `leaseExpiresAt` (N, epoch MILLISECONDS). Lease items never carry `expiresAt`, so the TTL can never delete a live
 *   lease, and the item (with its token) survives release, which keeps fencing tokens increasing forever.
 *
 * Why the value is a JSON string and not a DynamoDB map: a map rejects or silently changes shapes that JSON handles
 * predictably (numbers beyond 2^53, NaN, class instances, nesting deeper than 32 levels, `undefined`), and the in-memory
 * adapter can reproduce JSON semantics exactly, so both adapters store and return byte-for-byte the same values.
 * We never need to filter or update inside a value on the server side, which is what a map would buy.
 */
export const TABLE_SCHEMA = {
  partitionKey: "pk",
  sortKey: "sk",
  versionAttribute: "version",
  valueAttribute: "json",
  /** The TTL attribute (epoch seconds). Enable DynamoDB TTL on this name. */
  ttlAttribute: "expiresAt",
  leaseHolderAttribute: "holder",
  leaseTokenAttribute: "token",
  leaseExpiresAtAttribute: "leaseExpiresAt",
  billingMode: "PAY_PER_REQUEST",
} as const;

/** Collection reserved for lease items; ordinary reads and writes of it are refused. */
export const LEASE_COLLECTION = "lease";

/** DynamoDB's limit on actions in one TransactWriteItems call; a fence check takes one of them. */
export const MAX_TRANSACTION_ITEMS = 100;

/**
 * Largest accepted value, as UTF-8 bytes of its JSON. DynamoDB items are capped at 400 KB including attribute
 * names and keys; the rest is headroom for the key, which is itself capped at 2 KB + 1 KB.
 */
export const MAX_VALUE_BYTES = 390_000;

/** DynamoDB key limits: partition key ≤ 2048 bytes, sort key ≤ 1024 bytes, neither empty. */
export const MAX_COLLECTION_BYTES = 2048;
export const MAX_ID_BYTES = 1024;

/** Epoch seconds beyond this (year 5138) are almost certainly milliseconds given by mistake. */
const MAX_EXPIRES_AT_SECONDS = 100_000_000_000;

const TABLE_NAME = /^[A-Za-z0-9_.-]{3,255}$/;

/** Throws a `config.invalid` TernError unless `name` is a legal DynamoDB table name. */
export function validateTableName(name: unknown): string {
  if (typeof name !== "string" || !TABLE_NAME.test(name)) {
    throw new TernError(
      "config.invalid",
      `table: "${String(name)}" is not a valid DynamoDB table name (3-255 characters: letters, digits, _ . -)`,
    );
  }
  return name;
}

/** A write op after validation, with its value already encoded; both adapters execute these. */
export type PreparedOp =
  | { type: "put"; key: ItemKey; json: string; expectedVersion: number | undefined; expiresAt: number | undefined }
  | { type: "delete"; key: ItemKey; expectedVersion: number | undefined };

/**
 * Validates a `write` call exactly as both adapters must (so the in-memory adapter refuses what DynamoDB would) and
 * encodes the values. Throws a `bad_request` TernError naming the offending field.
 */
export function prepareWrite(ops: unknown, options: WriteOptions | undefined): { ops: PreparedOp[]; fence?: Fence } {
  if (!Array.isArray(ops)) throw badRequest("ops: expected an array of write ops");
  const fence = options?.fence === undefined ? undefined : checkFence(options.fence);
  const limit = fence ? MAX_TRANSACTION_ITEMS - 1 : MAX_TRANSACTION_ITEMS;
  if (ops.length > limit) {
    throw badRequest(
      `ops: ${ops.length} ops in one write; at most ${limit} are allowed${fence ? " with a fence (the fence check takes one of DynamoDB's 100 transaction slots)" : ""}`,
    );
  }
  const seen = new Set<string>();
  const prepared = ops.map((raw, i): PreparedOp => {
    const field = `ops[${i}]`;
    if (typeof raw !== "object" || raw === null) throw badRequest(`${field}: expected a write op object`);
    const op = raw as Partial<WriteOp> & { type?: unknown };
    const key = checkKey(op.key, `${field}.key`);
    const id = `${key.collection}\u0000${key.id}`;
    if (seen.has(id)) {
      throw badRequest(`${field}.key: ${key.collection}/${key.id} appears twice in one write; combine the ops`);
    }
    seen.add(id);
    const expectedVersion = checkExpectedVersion(op.expectedVersion, `${field}.expectedVersion`);
    if (op.type === "put") {
      const json = encodeValue((op as { value?: unknown }).value, `${field}.value`);
      const expiresAt = checkExpiresAt((op as { expiresAt?: unknown }).expiresAt, `${field}.expiresAt`);
      return { type: "put", key, json, expectedVersion, expiresAt };
    }
    if (op.type === "delete") return { type: "delete", key, expectedVersion };
    throw badRequest(`${field}.type: expected "put" or "delete", got ${JSON.stringify(op.type)}`);
  });
  return fence ? { ops: prepared, fence } : { ops: prepared };
}

/** Throws `bad_request` unless `key` is a usable item key outside the reserved lease collection. */
export function checkKey(key: unknown, field = "key"): ItemKey {
  if (typeof key !== "object" || key === null) throw badRequest(`${field}: expected { collection, id }`);
  const { collection, id } = key as Partial<ItemKey>;
  checkKeyPart(collection, `${field}.collection`, MAX_COLLECTION_BYTES);
  checkKeyPart(id, `${field}.id`, MAX_ID_BYTES);
  checkCollection(collection as string, `${field}.collection`);
  return { collection: collection as string, id: id as string };
}

/** Throws `bad_request` unless `collection` names an ordinary (non-lease) collection. */
export function checkCollection(collection: unknown, field = "collection"): string {
  checkKeyPart(collection, field, MAX_COLLECTION_BYTES);
  if (collection === LEASE_COLLECTION) {
    throw badRequest(`${field}: "${LEASE_COLLECTION}" is reserved for leases; use acquireLease/readLease`);
  }
  return collection as string;
}

/** Throws `bad_request` unless `name` is a usable lease name. */
export function checkLeaseName(name: unknown, field = "name"): string {
  checkKeyPart(name, field, MAX_ID_BYTES);
  return name as string;
}

export function decodeValue<T>(json: string): T {
  return JSON.parse(json) as T;
}

export function badRequest(message: string): TernError {
  return new TernError("bad_request", message);
}

function checkKeyPart(value: unknown, field: string, maxBytes: number): void {
  if (typeof value !== "string" || value.length === 0) throw badRequest(`${field}: expected a non-empty string`);
  if (Buffer.byteLength(value, "utf8") > maxBytes) throw badRequest(`${field}: longer than ${maxBytes} bytes`);
}

function checkExpectedVersion(value: unknown, field: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw badRequest(`${field}: expected 0 (must not exist) or a positive integer version, got ${String(value)}`);
  }
  return value;
}

function checkExpiresAt(value: unknown, field: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    throw badRequest(`${field}: expected epoch seconds (a positive number), got ${String(value)}`);
  }
  if (value >= MAX_EXPIRES_AT_SECONDS) {
    throw badRequest(`${field}: ${value} looks like milliseconds; expiresAt is in epoch SECONDS`);
  }
  return Math.floor(value);
}

function checkFence(fence: unknown): Fence {
  if (typeof fence !== "object" || fence === null) throw badRequest("options.fence: expected { lease, token }");
  const { lease, token } = fence as Partial<Fence>;
  checkLeaseName(lease, "options.fence.lease");
  if (typeof token !== "number" || !Number.isSafeInteger(token) || token < 1) {
    throw badRequest(`options.fence.token: expected a positive integer, got ${String(token)}`);
  }
  return { lease: lease as string, token };
}

function encodeValue(value: unknown, field: string): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch (err) {
    throw new TernError("bad_request", `${field}: not serialisable as JSON (${(err as Error).message})`, {
      cause: err,
    });
  }
  if (json === undefined) throw badRequest(`${field}: a value is required (got ${typeof value})`);
  const bytes = Buffer.byteLength(json, "utf8");
  if (bytes > MAX_VALUE_BYTES)
    throw badRequest(`${field}: ${bytes} bytes of JSON; at most ${MAX_VALUE_BYTES} fit in an item`);
  return json;
}

/** The error both adapters raise when an op's expectedVersion does not hold. */
export function conflictError(key: ItemKey, expectedVersion: number | undefined, cause?: unknown): TernError {
  const expected = expectedVersion === 0 ? "to not exist yet" : `to be at version ${expectedVersion}`;
  return new TernError(
    "conflict",
    `${key.collection}/${key.id}: expected ${expected}, but it changed; re-read and retry`,
    {
      cause,
    },
  );
}

/** The error both adapters raise when a write's fence is no longer the lease's current token. */
export function leaseLostError(fence: Fence, cause?: unknown): TernError {
  return new TernError(
    "lease.lost",
    `lease "${fence.lease}": token ${fence.token} is no longer current (another holder took over or it was released); write refused`,
    { cause },
  );
}

/** Validates acquireLease arguments the same way in both adapters. */
export function checkAcquire(name: unknown, holder: unknown, ttlMs: unknown, now: unknown): void {
  checkLeaseName(name);
  if (typeof holder !== "string" || holder.length === 0) throw badRequest("holder: expected a non-empty string");
  if (typeof ttlMs !== "number" || !Number.isFinite(ttlMs) || ttlMs <= 0) {
    throw badRequest(`ttlMs: expected a positive number of milliseconds, got ${String(ttlMs)}`);
  }
  if (typeof now !== "number" || !Number.isFinite(now))
    throw badRequest(`now: expected epoch milliseconds, got ${String(now)}`);
}
