// The DynamoDB rendezvous of a pipeline answer (DESIGN §3, "Pipeline gateway"): a Lambda gateway cannot hold a
// consumer group, so it asks the dataflow worker to also put the answer in the state table, and polls for it. This
// file is the one description of that item, shared by the writer (the dataflow worker) and the reader (the Lambda
// gateway). It names attributes and sizes only; the DynamoDB client stays in each component's adapter.

/** Request header asking for the answer on another channel besides the pipeline's outputs topic. */
export const REPLY_TO_HEADER = "tern-reply-to";
/** The one channel there is: a `reply#<requestId>` item in the state table (TERN_TABLE). */
export const REPLY_TO_DYNAMODB = "dynamodb";

/** DynamoDB's item size limit (400 KB, attribute names included). */
export const DYNAMODB_ITEM_LIMIT_BYTES = 400 * 1024;
/** An error message longer than this is cut: the item must stay far below the limit whatever the model said. */
export const MAX_REPLY_MESSAGE_BYTES = 16 * 1024;

/** Attribute names of a reply item; `pk`/`sk`/`expiresAt` are the table's own (packages/scheduler/src/store/table.ts). */
export const REPLY_ATTRIBUTES = {
  pk: "pk",
  sk: "sk",
  /** TTL attribute of the table: epoch seconds. */
  expiresAt: "expiresAt",
  pipeline: "pipeline",
  /** B: the pipeline's answer, an OIP ModelInferResponse (protobuf) — the bytes of its outputs record. */
  response: "response",
  /** S: the error answer's message and gRPC status name (as the error record's `tern-error`/`tern-error-status`). */
  error: "error",
  status: "status",
} as const;

/** Every reply item has this sort key; the request id is in the partition key, so replies spread over partitions. */
export const REPLY_SORT_KEY = "reply";

/** The key of the reply item of a request: `pk` = `reply#<requestId>`, `sk` = `reply`. */
export function replyItemKey(requestId: string): { pk: string; sk: string } {
  return { pk: `reply#${requestId}`, sk: REPLY_SORT_KEY };
}

/** A pipeline's answer to one request, as the rendezvous carries it. */
export type PipelineReplyItem = {
  requestId: string;
  pipeline: string;
  /** Epoch seconds: DynamoDB's TTL deletes the item some time after this. */
  expiresAt: number;
} & ({ ok: true; response: Uint8Array } | { ok: false; message: string; status: string });

/** The wire shape of a DynamoDB attribute value (the SDK's `AttributeValue`, the members used here). */
export type ReplyAttributeValue = { S: string } | { N: string } | { B: Uint8Array };

const utf8 = new TextEncoder();
const byteLength = (s: string) => utf8.encode(s).byteLength;

/** The item's attributes for PutItem. */
export function replyItemAttributes(item: PipelineReplyItem): Record<string, ReplyAttributeValue> {
  const key = replyItemKey(item.requestId);
  const A = REPLY_ATTRIBUTES;
  return {
    [A.pk]: { S: key.pk },
    [A.sk]: { S: key.sk },
    [A.expiresAt]: { N: String(item.expiresAt) },
    [A.pipeline]: { S: item.pipeline },
    ...(item.ok
      ? { [A.response]: { B: item.response } }
      : { [A.error]: { S: item.message }, [A.status]: { S: item.status } }),
  };
}

/**
 * The size DynamoDB counts for an item: names and values in bytes (strings as UTF-8, binaries raw); a number counts
 * at most 21 bytes, which is taken as its size here so the estimate never falls short.
 */
export function replyItemBytes(item: PipelineReplyItem): number {
  let total = 0;
  for (const [name, value] of Object.entries(replyItemAttributes(item))) {
    total += byteLength(name);
    if ("S" in value) total += byteLength(value.S);
    else if ("B" in value) total += value.B.byteLength;
    else total += 21;
  }
  return total;
}

function cut(message: string): string {
  const bytes = utf8.encode(message);
  if (bytes.byteLength <= MAX_REPLY_MESSAGE_BYTES) return message;
  // Back off to the start of a character (continuation bytes are 10xxxxxx), so none is split.
  let end = MAX_REPLY_MESSAGE_BYTES - 3;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return `${new TextDecoder().decode(bytes.subarray(0, end))}...`;
}

/**
 * The item to put for an answer: the answer itself when it fits DynamoDB's item limit, else an error item with
 * status `RESOURCE_EXHAUSTED` (HTTP 413) whose message names the limit and the size, so the caller learns why instead
 * of waiting out its deadline. Error messages are cut at {@link MAX_REPLY_MESSAGE_BYTES}.
 */
export function fitReplyItem(item: PipelineReplyItem): PipelineReplyItem {
  if (!item.ok) {
    const message = cut(item.message);
    return message === item.message ? item : { ...item, message };
  }
  const bytes = replyItemBytes(item);
  if (bytes <= DYNAMODB_ITEM_LIMIT_BYTES) return item;
  return {
    requestId: item.requestId,
    pipeline: item.pipeline,
    expiresAt: item.expiresAt,
    ok: false,
    status: "RESOURCE_EXHAUSTED",
    message:
      `pipeline ${item.pipeline}: the answer to request id ${item.requestId} is ${bytes} bytes, above DynamoDB's ` +
      `item limit of ${DYNAMODB_ITEM_LIMIT_BYTES} bytes (400 KB) that the Lambda reply channel can carry; ` +
      "ask the Node gateway, or make the pipeline's outputs smaller",
  };
}

/** The reply from a GetItem's attributes; undefined when they are not a reply item (absent, or another shape). */
export function replyItemFromAttributes(
  attributes: Record<string, { S?: string; N?: string; B?: Uint8Array } | undefined> | undefined,
): PipelineReplyItem | undefined {
  if (attributes === undefined) return undefined;
  const A = REPLY_ATTRIBUTES;
  const pk = attributes[A.pk]?.S;
  if (pk === undefined || !pk.startsWith("reply#")) return undefined;
  const base = {
    requestId: pk.slice("reply#".length),
    pipeline: attributes[A.pipeline]?.S ?? "",
    expiresAt: Number(attributes[A.expiresAt]?.N ?? 0),
  };
  const response = attributes[A.response]?.B;
  if (response !== undefined) return { ...base, ok: true, response };
  const message = attributes[A.error]?.S;
  if (message === undefined) return undefined;
  return { ...base, ok: false, message, status: attributes[A.status]?.S ?? "UNKNOWN" };
}
