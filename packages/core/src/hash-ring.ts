import { TernError } from "./errors.js";

/**
 * A consistent-hash ring: the scheduler spreads pipelines over dataflow workers with it, and gateways use the same hash to
 * pick a partition. Pure TypeScript, no platform imports: the answer depends only on the node set, the key, the number of
 * virtual nodes and the hash below, so every process (and any other language implementing MurmurHash3) agrees.
 */

/** @default 128 — enough that every node's share stays within about ±10–25% of fair for small clusters. */
export const DEFAULT_VIRTUAL_NODES = 128;
/** Upper bound on `virtualNodes`: beyond it a ring costs memory without making the spread measurably fairer. */
export const MAX_VIRTUAL_NODES = 10_000;

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

/**
 * MurmurHash3 (x86, 32-bit) of a byte sequence. Non-cryptographic, fast, well distributed, and specified bit for bit,
 * so results are identical on every platform and run.
 *
 * @param seed - @default 0
 * @returns an unsigned 32-bit integer
 */
export function murmur3Bytes(bytes: Uint8Array, seed = 0): number {
  let h = seed >>> 0;
  const length = bytes.length;
  const blockEnd = length - (length % 4);
  let i = 0;
  for (; i < blockEnd; i += 4) {
    let k = bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24);
    k = Math.imul(k, C1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, C2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const tail = length - blockEnd;
  if (tail > 0) {
    // The 1–3 leftover bytes, little-endian, as MurmurHash3 folds them in.
    let k = bytes[i]!;
    if (tail > 1) k |= bytes[i + 1]! << 8;
    if (tail > 2) k |= bytes[i + 2]! << 16;
    k = Math.imul(k, C1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, C2);
    h ^= k;
  }
  h ^= length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * MurmurHash3 (x86, 32-bit) of the UTF-8 encoding of `text` — the bytes other languages would hash, so a Go or Python
 * implementation of the same ring agrees. Lone surrogates encode as U+FFFD, as `TextEncoder` does.
 *
 * @param seed - @default 0
 * @returns an unsigned 32-bit integer
 */
export function murmur3(text: string, seed = 0): number {
  return murmur3Bytes(utf8(text), seed);
}

/** UTF-8 encoder written out so that core needs no platform global (and matches `TextEncoder` exactly). */
function utf8(text: string): Uint8Array {
  const out = new Uint8Array(text.length * 3);
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    let c = text.charCodeAt(i);
    if (c < 0x80) {
      out[n++] = c;
      continue;
    }
    if (c < 0x800) {
      out[n++] = 0xc0 | (c >> 6);
      out[n++] = 0x80 | (c & 0x3f);
      continue;
    }
    if (c >= 0xd800 && c <= 0xdfff) {
      const next = i + 1 < text.length ? text.charCodeAt(i + 1) : 0;
      if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        const cp = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
        i++;
        out[n++] = 0xf0 | (cp >> 18);
        out[n++] = 0x80 | ((cp >> 12) & 0x3f);
        out[n++] = 0x80 | ((cp >> 6) & 0x3f);
        out[n++] = 0x80 | (cp & 0x3f);
        continue;
      }
      c = 0xfffd;
    }
    out[n++] = 0xe0 | (c >> 12);
    out[n++] = 0x80 | ((c >> 6) & 0x3f);
    out[n++] = 0x80 | (c & 0x3f);
  }
  return out.subarray(0, n);
}

export interface HashRingOptions {
  /** Initial members. Order does not matter; duplicates count once. */
  nodes?: Iterable<string>;
  /**
   * Points each node places on the ring. More points spread keys more evenly and make lookups slightly slower.
   * @default 128
   */
  virtualNodes?: number;
}

/**
 * A consistent-hash ring over named nodes.
 *
 * Mutability: `add`/`remove` change this ring in place (handy for a long-lived worker view); `withNode`/`withoutNode`
 * return a new ring and leave this one untouched (for pure code such as the scheduler's placement). Either way the
 * answers depend only on the current node set, never on the order nodes were added.
 */
export interface HashRing {
  /** Points per node on this ring. */
  readonly virtualNodes: number;
  /** Number of member nodes. */
  readonly size: number;
  /** Member nodes, sorted (so the output is the same whatever the insertion order). */
  nodes(): string[];
  has(node: string): boolean;
  /** Adds `node` in place. @returns false when it was already a member. */
  add(node: string): boolean;
  /** Removes `node` in place. @returns false when it was not a member. */
  remove(node: string): boolean;
  /** A new ring with `node` added; this ring is unchanged. */
  withNode(node: string): HashRing;
  /** A new ring without `node`; this ring is unchanged. */
  withoutNode(node: string): HashRing;
  /**
   * The `min(replication, size)` distinct nodes owning `key`, in ring order (clockwise from the key's hash); the first is
   * the primary. An empty ring answers `[]` rather than throwing, so callers handle "no workers yet" as a normal state.
   * O(log points) to find the key's position, then a short walk to collect distinct nodes.
   *
   * @param replication - a non-negative integer (0 answers `[]`). @default 1
   * @throws TernError `bad_request` when `replication` is not a non-negative integer or `key` is not a string.
   */
  lookup(key: string, replication?: number): string[];
  /** The primary owner of `key`, or undefined on an empty ring. */
  primary(key: string): string | undefined;
}

/** Creates a consistent-hash ring. @throws TernError `bad_request` on a bad node name or `virtualNodes`. */
export function createHashRing(options: HashRingOptions = {}): HashRing {
  const virtualNodes = options.virtualNodes ?? DEFAULT_VIRTUAL_NODES;
  if (!Number.isInteger(virtualNodes) || virtualNodes < 1 || virtualNodes > MAX_VIRTUAL_NODES) {
    throw new TernError(
      "bad_request",
      `hash ring virtualNodes must be an integer from 1 to ${MAX_VIRTUAL_NODES} (got ${String(virtualNodes)})`,
    );
  }
  const ring = new Ring(virtualNodes, new Map());
  for (const node of options.nodes ?? []) ring.add(node);
  return ring;
}

class Ring implements HashRing {
  // Sorted by (hash, owner name): the owner tie-break makes hash collisions resolve the same way on every process.
  private hashes = new Uint32Array(0);
  private owners: string[] = [];
  private stale = true;

  constructor(
    readonly virtualNodes: number,
    // Each member's points, computed once and shared between rings derived with withNode/withoutNode.
    private readonly points: Map<string, Uint32Array>,
  ) {}

  get size(): number {
    return this.points.size;
  }

  nodes(): string[] {
    return [...this.points.keys()].sort(compareStrings);
  }

  has(node: string): boolean {
    return this.points.has(node);
  }

  add(node: string): boolean {
    checkNode(node);
    if (this.points.has(node)) return false;
    this.points.set(node, nodePoints(node, this.virtualNodes));
    this.stale = true;
    return true;
  }

  remove(node: string): boolean {
    checkNode(node);
    if (!this.points.delete(node)) return false;
    this.stale = true;
    return true;
  }

  withNode(node: string): HashRing {
    const copy = new Ring(this.virtualNodes, new Map(this.points));
    copy.add(node);
    return copy;
  }

  withoutNode(node: string): HashRing {
    const copy = new Ring(this.virtualNodes, new Map(this.points));
    copy.remove(node);
    return copy;
  }

  lookup(key: string, replication = 1): string[] {
    if (typeof key !== "string") {
      throw new TernError("bad_request", `hash ring key must be a string (got ${typeof key})`);
    }
    if (!Number.isInteger(replication) || replication < 0) {
      throw new TernError(
        "bad_request",
        `hash ring replication must be a non-negative integer (got ${String(replication)})`,
      );
    }
    const want = Math.min(replication, this.points.size);
    if (want === 0) return [];
    this.rebuild();
    const hashes = this.hashes;
    const total = hashes.length;
    const start = lowerBound(hashes, murmur3(key));
    const found: string[] = [];
    const seen = new Set<string>();
    // Every member has at least one point, so a full turn always finds `want` distinct nodes.
    for (let step = 0; step < total && found.length < want; step++) {
      const owner = this.owners[(start + step) % total]!;
      if (!seen.has(owner)) {
        seen.add(owner);
        found.push(owner);
      }
    }
    return found;
  }

  primary(key: string): string | undefined {
    return this.lookup(key, 1)[0];
  }

  // Lazy, so a burst of add/remove calls sorts once, at the next lookup.
  private rebuild(): void {
    if (!this.stale) return;
    const entries: { hash: number; owner: string }[] = [];
    for (const [owner, hashes] of this.points) {
      for (const hash of hashes) entries.push({ hash, owner });
    }
    entries.sort((a, b) => a.hash - b.hash || compareStrings(a.owner, b.owner));
    this.hashes = Uint32Array.from(entries, (e) => e.hash);
    this.owners = entries.map((e) => e.owner);
    this.stale = false;
  }
}

function checkNode(node: string): void {
  if (typeof node !== "string" || node.length === 0) {
    throw new TernError("bad_request", `hash ring node must be a non-empty string (got ${JSON.stringify(node)})`);
  }
}

function nodePoints(node: string, virtualNodes: number): Uint32Array {
  const out = new Uint32Array(virtualNodes);
  for (let i = 0; i < virtualNodes; i++) out[i] = murmur3(`${node}#${i}`);
  return out;
}

/** Index of the first point at or after `hash`, wrapping to 0 past the last point. */
function lowerBound(hashes: Uint32Array, hash: number): number {
  let lo = 0;
  let hi = hashes.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (hashes[mid]! < hash) lo = mid + 1;
    else hi = mid;
  }
  return lo === hashes.length ? 0 : lo;
}

// Code-unit order, not localeCompare: locale rules differ between machines, and the order must not.
function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
