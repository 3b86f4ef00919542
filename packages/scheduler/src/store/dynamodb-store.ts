import {
  type AttributeValue,
  type CancellationReason,
  CreateTableCommand,
  DeleteItemCommand,
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
  type TransactWriteItem,
  TransactWriteItemsCommand,
  UpdateItemCommand,
  UpdateTimeToLiveCommand,
} from "@aws-sdk/client-dynamodb";
import {
  type Fence,
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
  LEASE_COLLECTION,
  leaseLostError,
  type PreparedOp,
  prepareWrite,
  TABLE_SCHEMA,
  validateTableName,
} from "./table.js";

// This is the only file in the repository that imports the DynamoDB client (STYLE: one adapter per technology).

/** Where the table is and how to reach it. */
export interface DynamoDbTableOptions {
  /** e.g. `http://127.0.0.1:8000` for DynamoDB Local; omit for the AWS endpoint of `region`. */
  endpoint?: string;
  region: string;
  table: string;
  /**
   * Static credentials. When omitted: dummy credentials for a loopback `endpoint` (DynamoDB Local accepts any, so
   * developers need no AWS account), otherwise the SDK's default provider chain (environment, ECS task role, ...).
   */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Deadline of one HTTP request to DynamoDB. @default 5000 */
  requestTimeoutMs?: number;
}

/** Options of {@link createDynamoDbStore}. */
export interface DynamoDbStoreOptions extends DynamoDbTableOptions {
  /**
   * Retries of throttled calls and of transactions cancelled by a concurrent transaction (never of version
   * conflicts, which the caller must resolve). Jittered exponential backoff, bounded by `deadlineMs`.
   * @default { attempts: 6, baseDelayMs: 25, deadlineMs: 3000 }
   */
  retry?: { attempts?: number; baseDelayMs?: number; deadlineMs?: number };
}

/** Options of {@link ensureTable}. */
export interface EnsureTableOptions extends DynamoDbTableOptions {
  /** How long to wait for a new table to become ACTIVE. @default 30000 */
  timeoutMs?: number;
}

const A = TABLE_SCHEMA;
/** Expression attribute names used everywhere; several of these words are DynamoDB reserved words. */
const NAMES = {
  "#pk": A.partitionKey,
  "#version": A.versionAttribute,
  "#holder": A.leaseHolderAttribute,
  "#token": A.leaseTokenAttribute,
  "#lexp": A.leaseExpiresAtAttribute,
} as const;

/** How many times an op given without expectedVersion is re-read and retried when it races another writer. */
const UNCONDITIONAL_RACE_ATTEMPTS = 25;

const RETRIABLE_ERRORS = new Set([
  "ProvisionedThroughputExceededException",
  "ThrottlingException",
  "RequestLimitExceeded",
  "TransactionConflictException",
  "TransactionInProgressException",
  "InternalServerError",
  "ServiceUnavailable",
]);
const RETRIABLE_REASONS = new Set([
  "TransactionConflict",
  "ThrottlingError",
  "ProvisionedThroughputExceeded",
  "RequestLimitExceeded",
]);

/**
 * A {@link StateStore} on one DynamoDB table (layout in `table.ts`; create it with {@link ensureTable} or the SST
 * data stack). All reads are strongly consistent, so a read-modify-write sees the latest version.
 *
 * - `write` uses PutItem/DeleteItem for one unfenced op and TransactWriteItems otherwise (a fence adds a
 *   ConditionCheck on the lease item, so at most 99 ops may carry a fence). An op without `expectedVersion` is
 *   made conditional on the version read just before, and re-read and retried if it races, so the returned
 *   version is always exact.
 * - Leases: a renewal is a conditional UpdateItem (`holder = me AND leaseExpiresAt > now`); otherwise a takeover
 *   UpdateItem (`no holder OR leaseExpiresAt <= now`) that adds 1 to the token. A lease that lapsed is a new term
 *   with a new token even for the same holder. Expiry is compared with the CALLER's `now`, so the clocks of all
 *   schedulers must agree to well within the elector's safety margin (NTP / Amazon Time Sync keep them within
 *   milliseconds; the default margin is 2 s).
 * - A write retried by the SDK after a lost response may report "conflict" although it was applied (DynamoDB
 *   single-item writes are not idempotent); callers re-read on conflict, which resolves this.
 */
export function createDynamoDbStore(options: DynamoDbStoreOptions): StateStore {
  const table = validateTableName(options.table);
  const client = createClient(options);
  const retry = {
    attempts: options.retry?.attempts ?? 6,
    baseDelayMs: options.retry?.baseDelayMs ?? 25,
    deadlineMs: options.retry?.deadlineMs ?? 3000,
  };

  async function send<T>(what: string, call: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + retry.deadlineMs;
    for (let attempt = 1; ; attempt++) {
      try {
        return await call();
      } catch (err) {
        const mapped = mapError(err, what, table);
        const delay = Math.random() * Math.min(1000, retry.baseDelayMs * 2 ** attempt);
        if (!isRetriable(err) || attempt >= retry.attempts || Date.now() + delay > deadline) throw mapped;
        await sleep(delay);
      }
    }
  }

  async function readVersion(key: ItemKey): Promise<number | undefined> {
    const out = await send(`get ${key.collection}/${key.id}`, () =>
      client.send(
        new GetItemCommand({
          TableName: table,
          Key: itemKey(key),
          ConsistentRead: true,
          ProjectionExpression: "#version",
          ExpressionAttributeNames: { "#version": A.versionAttribute },
        }),
      ),
    );
    return out.Item ? Number(out.Item[A.versionAttribute]?.N) : undefined;
  }

  /** Turns each op into a DynamoDB action with the condition and resulting version it implies. */
  async function plan(ops: PreparedOp[]): Promise<Planned[]> {
    return Promise.all(
      ops.map(async (op): Promise<Planned> => {
        let base = op.expectedVersion;
        const implicit = base === undefined && op.type === "put";
        if (implicit) base = (await readVersion(op.key)) ?? 0;
        const condition: Planned["condition"] =
          base === undefined
            ? undefined
            : base === 0
              ? { expr: "attribute_not_exists(#pk)", names: { "#pk": A.partitionKey }, values: undefined }
              : {
                  expr: "#version = :expected",
                  names: { "#version": A.versionAttribute },
                  values: { ":expected": { N: String(base) } },
                };
        return { op, implicit, condition, version: (base ?? 0) + 1 };
      }),
    );
  }

  async function executeSingle(p: Planned): Promise<void> {
    const cond = p.condition
      ? {
          ConditionExpression: p.condition.expr,
          ExpressionAttributeNames: p.condition.names,
          ...(p.condition.values ? { ExpressionAttributeValues: p.condition.values } : {}),
        }
      : {};
    try {
      await send("write", () =>
        p.op.type === "put"
          ? client.send(new PutItemCommand({ TableName: table, Item: itemOf(p), ...cond }))
          : client.send(new DeleteItemCommand({ TableName: table, Key: itemKey(p.op.key), ...cond })),
      );
    } catch (err) {
      if (hasName((err as TernError).cause, "ConditionalCheckFailedException")) throw new ConditionFailed([0]);
      throw err;
    }
  }

  async function executeTransaction(planned: Planned[], fence: Fence | undefined): Promise<void> {
    const items: TransactWriteItem[] = planned.map((p) => {
      const cond = p.condition
        ? {
            ConditionExpression: p.condition.expr,
            ExpressionAttributeNames: p.condition.names,
            ...(p.condition.values ? { ExpressionAttributeValues: p.condition.values } : {}),
          }
        : {};
      return p.op.type === "put"
        ? { Put: { TableName: table, Item: itemOf(p), ...cond } }
        : { Delete: { TableName: table, Key: itemKey(p.op.key), ...cond } };
    });
    if (fence) {
      items.push({
        ConditionCheck: {
          TableName: table,
          Key: itemKey({ collection: LEASE_COLLECTION, id: fence.lease }),
          ConditionExpression: "#token = :token AND attribute_exists(#holder)",
          ExpressionAttributeNames: { "#token": NAMES["#token"], "#holder": NAMES["#holder"] },
          ExpressionAttributeValues: { ":token": { N: String(fence.token) } },
        },
      });
    }
    try {
      await send("transaction", () => client.send(new TransactWriteItemsCommand({ TransactItems: items })));
    } catch (err) {
      const cause = (err as TernError).cause;
      if (!hasName(cause, "TransactionCanceledException")) throw err;
      const reasons: CancellationReason[] =
        (cause as { CancellationReasons?: CancellationReason[] }).CancellationReasons ?? [];
      if (fence && reasons[planned.length]?.Code === "ConditionalCheckFailed") throw leaseLostError(fence, cause);
      const failed = reasons.flatMap((r, i) => (i < planned.length && r.Code === "ConditionalCheckFailed" ? [i] : []));
      if (failed.length > 0) throw new ConditionFailed(failed);
      throw err;
    }
  }

  return {
    async get<T>(key: ItemKey): Promise<StoredItem<T> | undefined> {
      const k = checkKey(key);
      const out = await send(`get ${k.collection}/${k.id}`, () =>
        client.send(new GetItemCommand({ TableName: table, Key: itemKey(k), ConsistentRead: true })),
      );
      return out.Item ? toStoredItem<T>(out.Item) : undefined;
    },

    async list<T>(collection: string): Promise<StoredItem<T>[]> {
      checkCollection(collection);
      const items: StoredItem<T>[] = [];
      let start: Record<string, AttributeValue> | undefined;
      // Query returns at most 1 MB per page: follow LastEvaluatedKey until the collection is exhausted.
      do {
        const out = await send(`list ${collection}`, () =>
          client.send(
            new QueryCommand({
              TableName: table,
              KeyConditionExpression: "#pk = :pk",
              ExpressionAttributeNames: { "#pk": A.partitionKey },
              ExpressionAttributeValues: { ":pk": { S: collection } },
              ConsistentRead: true,
              ExclusiveStartKey: start,
            }),
          ),
        );
        for (const item of out.Items ?? []) items.push(toStoredItem<T>(item));
        start = out.LastEvaluatedKey;
      } while (start);
      return items;
    },

    async write(ops: WriteOp[], options?: WriteOptions): Promise<StoredItem[]> {
      const prepared = prepareWrite(ops, options);
      if (prepared.ops.length === 0) return [];
      for (let attempt = 1; ; attempt++) {
        const planned = await plan(prepared.ops);
        try {
          if (planned.length === 1 && !prepared.fence) await executeSingle(planned[0] as Planned);
          else await executeTransaction(planned, prepared.fence);
          return planned.flatMap((p) => (p.op.type === "put" ? [resultOf(p)] : []));
        } catch (err) {
          if (!(err instanceof ConditionFailed)) throw err;
          const explicit = err.indexes.find((i) => !planned[i]?.implicit);
          if (explicit !== undefined) {
            const p = planned[explicit] as Planned;
            throw conflictError(p.op.key, p.op.expectedVersion);
          }
          // Only ops given without expectedVersion raced another writer: re-read their versions and go again,
          // after a jittered pause so that a crowd of blind writers spreads out instead of colliding again.
          if (attempt >= UNCONDITIONAL_RACE_ATTEMPTS) {
            const p = planned[err.indexes[0] as number] as Planned;
            throw new TernError("conflict", `${p.op.key.collection}/${p.op.key.id}: too many concurrent writers`, {
              retriable: true,
            });
          }
          await sleep(Math.random() * 5 * 2 ** Math.min(attempt, 6));
        }
      }
    },

    async acquireLease(
      name: string,
      holder: string,
      ttlMs: number,
      now: number = Date.now(),
    ): Promise<LeaseState | undefined> {
      checkAcquire(name, holder, ttlMs, now);
      const key = itemKey({ collection: LEASE_COLLECTION, id: name });
      const expiresAt = { N: String(Math.ceil(now + ttlMs)) };
      try {
        const renewed = await send(`renew lease ${name}`, () =>
          client.send(
            new UpdateItemCommand({
              TableName: table,
              Key: key,
              UpdateExpression: "SET #lexp = :exp",
              ConditionExpression: "#holder = :holder AND #lexp > :now",
              ExpressionAttributeNames: { "#lexp": NAMES["#lexp"], "#holder": NAMES["#holder"] },
              ExpressionAttributeValues: { ":exp": expiresAt, ":holder": { S: holder }, ":now": { N: String(now) } },
              ReturnValues: "ALL_NEW",
            }),
          ),
        );
        return toLease(name, renewed.Attributes);
      } catch (err) {
        if (!hasName((err as TernError).cause, "ConditionalCheckFailedException")) throw err;
      }
      try {
        const taken = await send(`take lease ${name}`, () =>
          client.send(
            new UpdateItemCommand({
              TableName: table,
              Key: key,
              // ADD on a missing attribute starts from 0, so the first holder ever gets token 1.
              UpdateExpression: "SET #holder = :holder, #lexp = :exp ADD #token :one",
              ConditionExpression: "attribute_not_exists(#pk) OR attribute_not_exists(#holder) OR #lexp <= :now",
              ExpressionAttributeNames: {
                "#pk": NAMES["#pk"],
                "#holder": NAMES["#holder"],
                "#lexp": NAMES["#lexp"],
                "#token": NAMES["#token"],
              },
              ExpressionAttributeValues: {
                ":holder": { S: holder },
                ":exp": expiresAt,
                ":now": { N: String(now) },
                ":one": { N: "1" },
              },
              ReturnValues: "ALL_NEW",
            }),
          ),
        );
        return toLease(name, taken.Attributes);
      } catch (err) {
        if (hasName((err as TernError).cause, "ConditionalCheckFailedException")) return undefined;
        throw err;
      }
    },

    async releaseLease(name: string, holder: string, token: number): Promise<void> {
      checkLeaseName(name);
      try {
        await send(`release lease ${name}`, () =>
          client.send(
            new UpdateItemCommand({
              TableName: table,
              Key: itemKey({ collection: LEASE_COLLECTION, id: name }),
              // Keep the item and its token, so the next holder's token is larger than every earlier one.
              UpdateExpression: "REMOVE #holder SET #lexp = :zero",
              ConditionExpression: "#holder = :holder AND #token = :token",
              ExpressionAttributeNames: {
                "#holder": NAMES["#holder"],
                "#token": NAMES["#token"],
                "#lexp": NAMES["#lexp"],
              },
              ExpressionAttributeValues: {
                ":holder": { S: holder },
                ":token": { N: String(token) },
                ":zero": { N: "0" },
              },
            }),
          ),
        );
      } catch (err) {
        // Someone else holds it now (or nobody): nothing of ours to release.
        if (!hasName((err as TernError).cause, "ConditionalCheckFailedException")) throw err;
      }
    },

    async readLease(name: string): Promise<LeaseState | undefined> {
      checkLeaseName(name);
      const out = await send(`read lease ${name}`, () =>
        client.send(
          new GetItemCommand({
            TableName: table,
            Key: itemKey({ collection: LEASE_COLLECTION, id: name }),
            ConsistentRead: true,
          }),
        ),
      );
      return toLease(name, out.Item);
    },

    async close(): Promise<void> {
      client.destroy();
    },
  };
}

/**
 * Creates the table if it does not exist (on-demand billing, keys `pk`/`sk`), waits until it is ACTIVE, and enables
 * TTL on `expiresAt`. Safe to call from several processes at once. Returns whether this call created the table.
 */
export async function ensureTable(options: EnsureTableOptions): Promise<{ created: boolean }> {
  const table = validateTableName(options.table);
  const client = createClient(options);
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  try {
    let created = false;
    let status = await describeStatus(client, table);
    if (status === undefined) {
      try {
        await client.send(
          new CreateTableCommand({
            TableName: table,
            BillingMode: A.billingMode,
            AttributeDefinitions: [
              { AttributeName: A.partitionKey, AttributeType: "S" },
              { AttributeName: A.sortKey, AttributeType: "S" },
            ],
            KeySchema: [
              { AttributeName: A.partitionKey, KeyType: "HASH" },
              { AttributeName: A.sortKey, KeyType: "RANGE" },
            ],
          }),
        );
        created = true;
      } catch (err) {
        // Another process created it between our describe and create: fine, wait for it like they do.
        if (!hasName(err, "ResourceInUseException")) throw mapError(err, `create table ${table}`, table);
      }
      status = await describeStatus(client, table);
    }
    while (status !== "ACTIVE") {
      if (Date.now() > deadline) {
        throw new TernError("timeout", `table ${table} did not become ACTIVE in time (status ${status ?? "missing"})`);
      }
      await sleep(200);
      status = await describeStatus(client, table);
    }
    const ttl = await client.send(new DescribeTimeToLiveCommand({ TableName: table }));
    const ttlStatus = ttl.TimeToLiveDescription?.TimeToLiveStatus;
    if (ttlStatus !== "ENABLED" && ttlStatus !== "ENABLING") {
      try {
        await client.send(
          new UpdateTimeToLiveCommand({
            TableName: table,
            TimeToLiveSpecification: { AttributeName: A.ttlAttribute, Enabled: true },
          }),
        );
      } catch (err) {
        // A concurrent ensureTable enabled it first; DynamoDB then says TTL is already enabled.
        if (!(hasName(err, "ValidationException") && /already enabled/i.test((err as Error).message))) {
          throw mapError(err, `enable TTL on ${table}`, table);
        }
      }
    }
    return { created };
  } catch (err) {
    if (err instanceof TernError) throw err;
    throw mapError(err, `ensure table ${table}`, table);
  } finally {
    client.destroy();
  }
}

interface Planned {
  op: PreparedOp;
  /** The op had no expectedVersion: its condition is our own read, so a failure means "re-read", not "conflict". */
  implicit: boolean;
  condition:
    | { expr: string; names: Record<string, string>; values: Record<string, AttributeValue> | undefined }
    | undefined;
  version: number;
}

/** Internal signal: the conditions of these op indexes failed. */
class ConditionFailed extends Error {
  constructor(readonly indexes: number[]) {
    super("condition failed");
  }
}

function createClient(options: DynamoDbTableOptions): DynamoDBClient {
  if (typeof options.region !== "string" || options.region.length === 0) {
    throw new TernError("config.invalid", "region: expected a non-empty AWS region such as us-east-1");
  }
  let local = false;
  if (options.endpoint !== undefined) {
    let url: URL;
    try {
      url = new URL(options.endpoint);
    } catch (err) {
      throw new TernError(
        "config.invalid",
        `endpoint: "${options.endpoint}" is not a URL (e.g. http://127.0.0.1:8000)`,
        {
          cause: err,
        },
      );
    }
    local = isLoopback(url.hostname);
  }
  const timeout = options.requestTimeoutMs ?? 5000;
  return new DynamoDBClient({
    region: options.region,
    ...(options.endpoint !== undefined ? { endpoint: options.endpoint } : {}),
    ...(options.credentials
      ? { credentials: options.credentials }
      : local
        ? { credentials: { accessKeyId: "local", secretAccessKey: "local" } }
        : {}),
    maxAttempts: 3,
    // Bounded connection and request times, so no call can hang on a dead endpoint.
    requestHandler: { connectionTimeout: Math.min(timeout, 3000), requestTimeout: timeout },
  });
}

function isLoopback(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, "");
  return h === "localhost" || h.endsWith(".localhost") || h === "::1" || h === "0.0.0.0" || h.startsWith("127.");
}

async function describeStatus(client: DynamoDBClient, table: string): Promise<string | undefined> {
  try {
    const out = await client.send(new DescribeTableCommand({ TableName: table }));
    return out.Table?.TableStatus ?? "UNKNOWN";
  } catch (err) {
    if (hasName(err, "ResourceNotFoundException")) return undefined;
    throw mapError(err, `describe table ${table}`, table);
  }
}

function itemKey(key: ItemKey): Record<string, AttributeValue> {
  return { [A.partitionKey]: { S: key.collection }, [A.sortKey]: { S: key.id } };
}

function itemOf(p: Planned): Record<string, AttributeValue> {
  const op = p.op as Extract<PreparedOp, { type: "put" }>;
  const item: Record<string, AttributeValue> = {
    ...itemKey(op.key),
    [A.versionAttribute]: { N: String(p.version) },
    [A.valueAttribute]: { S: op.json },
  };
  if (op.expiresAt !== undefined) item[A.ttlAttribute] = { N: String(op.expiresAt) };
  return item;
}

function resultOf(p: Planned): StoredItem {
  const op = p.op as Extract<PreparedOp, { type: "put" }>;
  const item: StoredItem = { ...op.key, version: p.version, value: decodeValue(op.json) };
  if (op.expiresAt !== undefined) item.expiresAt = op.expiresAt;
  return item;
}

function toStoredItem<T>(item: Record<string, AttributeValue>): StoredItem<T> {
  const json = item[A.valueAttribute]?.S;
  if (json === undefined) {
    throw new TernError(
      "internal",
      `item ${item[A.partitionKey]?.S}/${item[A.sortKey]?.S} has no "${A.valueAttribute}" attribute`,
    );
  }
  const stored: StoredItem<T> = {
    collection: item[A.partitionKey]?.S as string,
    id: item[A.sortKey]?.S as string,
    version: Number(item[A.versionAttribute]?.N),
    value: decodeValue<T>(json),
  };
  const expiresAt = item[A.ttlAttribute]?.N;
  if (expiresAt !== undefined) stored.expiresAt = Number(expiresAt);
  return stored;
}

function toLease(name: string, item: Record<string, AttributeValue> | undefined): LeaseState | undefined {
  const holder = item?.[A.leaseHolderAttribute]?.S;
  if (!item || holder === undefined) return undefined;
  return {
    name,
    holder,
    token: Number(item[A.leaseTokenAttribute]?.N),
    expiresAt: Number(item[A.leaseExpiresAtAttribute]?.N),
  };
}

function hasName(err: unknown, name: string): boolean {
  return typeof err === "object" && err !== null && (err as { name?: unknown }).name === name;
}

function isRetriable(err: unknown): boolean {
  const name = (err as { name?: string })?.name ?? "";
  if (RETRIABLE_ERRORS.has(name)) return true;
  if (name === "TransactionCanceledException") {
    const reasons = (err as { CancellationReasons?: CancellationReason[] }).CancellationReasons ?? [];
    // Only when nothing but contention cancelled it; a failed condition is the caller's business.
    return (
      reasons.some((r) => RETRIABLE_REASONS.has(r.Code ?? "")) &&
      reasons.every((r) => r.Code === undefined || r.Code === "None" || RETRIABLE_REASONS.has(r.Code))
    );
  }
  return false;
}

/** Wraps an SDK error in a TernError with a stable code; the original stays in `cause` for the adapter to inspect. */
function mapError(err: unknown, what: string, table: string): TernError {
  if (err instanceof TernError) return err;
  const name = (err as { name?: string })?.name ?? "Error";
  const message = (err as Error)?.message ?? String(err);
  if (name === "ConditionalCheckFailedException")
    return new TernError("conflict", `${what}: ${message}`, { cause: err });
  if (name === "TransactionCanceledException") {
    const reasons = (err as { CancellationReasons?: CancellationReason[] }).CancellationReasons ?? [];
    const invalid = reasons.find((r) => r.Code === "ValidationError");
    if (invalid) return new TernError("bad_request", `${what}: ${invalid.Message ?? message}`, { cause: err });
  }
  if (name === "ResourceNotFoundException") {
    return new TernError(
      "unavailable",
      `${what}: table ${table} does not exist (run ensureTable or deploy the data stack)`,
      {
        cause: err,
      },
    );
  }
  if (name === "ValidationException") return new TernError("bad_request", `${what}: ${message}`, { cause: err });
  if (isRetriable(err))
    return new TernError("unavailable", `${what}: DynamoDB is busy (${name})`, { cause: err, retriable: true });
  return new TernError("unavailable", `${what}: DynamoDB call failed (${name}: ${message})`, {
    cause: err,
    retriable: true,
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** What {@link describeTable} reports: enough to check a table matches `TABLE_SCHEMA`. */
export interface TableDescription {
  status: string;
  partitionKey: string | undefined;
  sortKey: string | undefined;
  ttlAttribute: string | undefined;
  ttlEnabled: boolean;
}

/** Describes the table's keys and TTL, or returns undefined when it does not exist (for health checks and tests). */
export async function describeTable(options: DynamoDbTableOptions): Promise<TableDescription | undefined> {
  const table = validateTableName(options.table);
  const client = createClient(options);
  try {
    const out = await client.send(new DescribeTableCommand({ TableName: table }));
    const ttl = await client.send(new DescribeTimeToLiveCommand({ TableName: table }));
    const keys = out.Table?.KeySchema ?? [];
    const ttlStatus = ttl.TimeToLiveDescription?.TimeToLiveStatus;
    return {
      status: out.Table?.TableStatus ?? "UNKNOWN",
      partitionKey: keys.find((k) => k.KeyType === "HASH")?.AttributeName,
      sortKey: keys.find((k) => k.KeyType === "RANGE")?.AttributeName,
      ttlAttribute: ttl.TimeToLiveDescription?.AttributeName,
      ttlEnabled: ttlStatus === "ENABLED" || ttlStatus === "ENABLING",
    };
  } catch (err) {
    if (hasName(err, "ResourceNotFoundException")) return undefined;
    throw mapError(err, `describe table ${table}`, table);
  } finally {
    client.destroy();
  }
}
