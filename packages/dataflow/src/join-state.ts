import type { JoinType } from "@tern/core";
import type { BatchPlan, JoinPlan, PlanSource } from "./compile.js";
import type { JoinErrorCode } from "./errors.js";

/**
 * The join state of one stage (a step, the input or the output stage), keyed by request id: a pure state machine.
 * The caller feeds it arriving records with the clock value and asks it for what expired; it never reads a clock and
 * holds no timers, so every interleaving can be tested. `T` is the tensor value (an `OipTensor` in the workers).
 *
 * Rules (DESIGN §2):
 * - A record of a source is *present* when it holds at least one tensor the stage selects from that source, and
 *   *absent* when it holds none, or when the caller reports the source will not produce (its step did not run).
 * - `inner` fires when every source is present; `any` fires on the first present source; `outer` fires when every
 *   source has arrived (present or absent) or at the end of the window, with what is present.
 * - Triggers join the same way under their own join type; they gate the stage and their tensors are not passed on.
 * - A stage whose selected tensors can no longer all come (an absent source of an inner join; every source absent)
 *   does not run: a `skip` decision. This is conditional routing; the caller tells the stages downstream.
 * - The window starts at a request's first record. When it ends and the stage still waits, an inner join (or any
 *   join that got nothing) answers an `error` naming the inputs that never came.
 * - Each request gets at most one decision per visit. Once decided, its entry stays as a tombstone for one more window
 *   so that late records for it are dropped rather than start it again; `maxRevisits > 0` (a step on a cycle)
 *   lets a record carrying selected tensors start a new visit after the decision, up to that many times. A record of
 *   a `repeats` source (its step is on a cycle and may answer again) without selected tensors is ignored, not absent.
 *
 * Memory: at most `maxOpen` waiting requests, `4 × maxOpen` tombstones and one batch being filled (plus deadline
 * queues of small items, kept within four times the live ones).
 */

export interface JoinStageOptions {
  /** Names the stage in error messages: `step mul10`, `output`. */
  stage: string;
  /** At most this many requests wait at once; see {@link JoinState.arrive} for what happens at the cap. @default 10_000 */
  maxOpen?: number;
  batch?: BatchPlan;
  /** @default 0 */
  maxRevisits?: number;
}

/** A request the stage fires, with the tensors it passes on, named and ordered by the plan (not by arrival). */
export interface FiredRequest<T> {
  requestId: string;
  tensors: Map<string, T>;
  /** 0 on the first pass through the stage, 1 on the first revisit, … */
  visit: number;
}

export type JoinDecision<T> =
  /** Run the stage: one request, or a batch of them when the step batches. */
  | { kind: "fire"; requests: FiredRequest<T>[] }
  /** The stage does not run for this request (conditional routing). */
  | { kind: "skip"; requestId: string; reason: string }
  /** The request fails here; `missing` lists the source ids that never came (for `join.window_expired`). */
  | { kind: "error"; requestId: string; code: JoinErrorCode; message: string; missing: string[] };

/** A record's tensors, or `null` when the source will not produce anything for this request. */
export type Arrival<T> = ReadonlyMap<string, T> | null;

export interface JoinState<T> {
  /**
   * Takes one record of `sourceId` for `requestId` at time `now` (ms) and returns the decisions it causes (none while
   * the stage keeps waiting). Records of sources the stage does not read are ignored. At the cap of open requests a
   * new request id gets a `join.capacity` error at once and no state; the requests already waiting are not disturbed.
   */
  arrive(requestId: string, sourceId: string, arrival: Arrival<T>, now: number): JoinDecision<T>[];
  /**
   * Decides every request whose window (or batch window) ended at or before `now`, and forgets old tombstones.
   * Cost: the number of requests it decides, not the number open.
   */
  expire(now: number): JoinDecision<T>[];
  /**
   * Ends a request without a decision (it failed elsewhere, e.g. a step's error record); later records are dropped,
   * and it leaves the batch being filled.
   */
  drop(requestId: string, now: number): void;
  /** The earliest time at which {@link expire} would decide something, or undefined; for the caller's one timer. */
  nextDeadline(): number | undefined;
  /** Requests waiting (not counting tombstones or the batch being filled). */
  readonly open: number;
}

/** @default 10_000 */
export const DEFAULT_MAX_OPEN = 10_000;

/**
 * Items in the order they were added, each with its time. V8's Map is slow to iterate from the front after many
 * deletions there (it walks the holes), so expiry order is kept in an array with a moving head instead; an item
 * whose Map entry was replaced or removed meanwhile is stale and skipped.
 */
class TimeQueue<V> {
  private items: { key: string; value: V }[] = [];
  private head = 0;
  /** Adds an item; when stale items outnumber live ones (`liveCount`) fourfold, drops them all (amortised O(1)). */
  push(key: string, value: V, live: (key: string, value: V) => boolean, liveCount: number): void {
    this.items.push({ key, value });
    if (this.items.length - this.head > 4 * liveCount + 1024) {
      this.items = this.items.slice(this.head).filter((item) => live(item.key, item.value));
      this.head = 0;
    }
  }
  /** The first live item (stale ones are dropped on the way), without removing it. */
  peek(live: (key: string, value: V) => boolean): { key: string; value: V } | undefined {
    while (this.head < this.items.length) {
      const item = this.items[this.head]!;
      if (live(item.key, item.value)) return item;
      this.shift();
    }
    return undefined;
  }
  shift(): void {
    this.head++;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }
}

/** Decided requests remembered per open slot; see `bury`. */
const TOMBSTONES_PER_OPEN = 4;

type SourceState<T> = { present: Map<string, T> } | "absent";

interface Entry<T> {
  opened: number;
  visit: number;
  inputs: Map<string, SourceState<T>>;
  triggers: Map<string, SourceState<T>>;
}

interface Tombstone {
  until: number;
  visits: number;
}

type Outcome = "ready" | "never" | "waiting";

export function createJoinState<T>(plan: JoinPlan, options: JoinStageOptions): JoinState<T> {
  const maxOpen = options.maxOpen ?? DEFAULT_MAX_OPEN;
  const maxRevisits = options.maxRevisits ?? 0;
  const entries = new Map<string, Entry<T>>();
  const tombstones = new Map<string, Tombstone>();
  const entryOrder = new TimeQueue<Entry<T>>();
  const stoneOrder = new TimeQueue<Tombstone>();
  const liveEntry = (id: string, e: Entry<T>) => entries.get(id) === e;
  const liveStone = (id: string, t: Tombstone) => tombstones.get(id) === t;
  let batch: { requests: FiredRequest<T>[]; deadline: number } | undefined;
  // The clock never goes back inside the state: a smaller `now` (a caller's clock step) counts as the latest one seen.
  // So entries and tombstones are queued in deadline order, and expiry stops at the first one still running instead
  // of scanning everything.
  let latest = Number.NEGATIVE_INFINITY;
  const clock = (now: number) => {
    latest = Math.max(latest, now);
    return latest;
  };

  const select = (source: PlanSource, tensors: ReadonlyMap<string, T>): Map<string, T> => {
    const out = new Map<string, T>();
    const names = source.all ? [...tensors.keys()] : source.tensors;
    for (const name of names) {
      const value = tensors.get(name);
      if (value === undefined) continue;
      out.set(source.renames.find((r) => r.from === name)?.to ?? name, value);
    }
    return out;
  };

  const outcome = (sources: PlanSource[], states: Map<string, SourceState<T>>, join: JoinType, ended: boolean) => {
    if (sources.length === 0) return "ready" as Outcome;
    const present = sources.filter((s) => typeof states.get(s.id) === "object").length;
    const absent = sources.filter((s) => states.get(s.id) === "absent").length;
    const arrived = present + absent;
    if (join === "inner") {
      if (absent > 0) return "never";
      return present === sources.length ? "ready" : "waiting";
    }
    if (join === "any" && present > 0) return "ready";
    if (arrived === sources.length) return present > 0 ? "ready" : "never";
    if (join === "outer" && ended && present > 0) return "ready";
    return "waiting";
  };

  // Tombstones are bounded too: past the cap the oldest goes first, so a very late record of that request would be
  // taken as new; its answer then reaches the gateway, which drops duplicates.
  const bury = (requestId: string, now: number, visits: number) => {
    const stone = { until: now + plan.windowMs, visits };
    tombstones.set(requestId, stone);
    stoneOrder.push(requestId, stone, liveStone, tombstones.size);
    if (tombstones.size > maxOpen * TOMBSTONES_PER_OPEN) {
      const oldest = stoneOrder.peek(liveStone)!;
      tombstones.delete(oldest.key);
      stoneOrder.shift();
    }
  };
  const close = (requestId: string, entry: Entry<T>, now: number) => {
    entries.delete(requestId);
    // Its queue item may outlive it until its deadline: let the tensors go now.
    entry.inputs.clear();
    entry.triggers.clear();
    bury(requestId, now, entry.visit + 1);
  };

  const fired = (requestId: string, entry: Entry<T>, now: number): JoinDecision<T>[] => {
    const tensors = new Map<string, T>();
    for (const source of plan.inputs) {
      const state = entry.inputs.get(source.id);
      if (typeof state !== "object") continue;
      // Plan order decides which tensor wins a name that two whole-message sources both carry: the first.
      for (const [name, value] of state.present) if (!tensors.has(name)) tensors.set(name, value);
    }
    close(requestId, entry, now);
    const request = { requestId, tensors, visit: entry.visit };
    if (options.batch === undefined) return [{ kind: "fire", requests: [request] }];
    if (batch === undefined) batch = { requests: [], deadline: now + options.batch.windowMs };
    batch.requests.push(request);
    if (options.batch.rolling) batch.deadline = now + options.batch.windowMs;
    if (batch.requests.length < options.batch.size) return [];
    const full = batch.requests;
    batch = undefined;
    return [{ kind: "fire", requests: full }];
  };

  const decide = (requestId: string, entry: Entry<T>, now: number, ended: boolean): JoinDecision<T>[] => {
    const inputs = outcome(plan.inputs, entry.inputs, plan.inputsJoin, ended);
    const triggers = outcome(plan.triggers, entry.triggers, plan.triggersJoin, ended);
    if (inputs === "never" || triggers === "never") {
      close(requestId, entry, now);
      const what = inputs === "never" ? "inputs" : "triggers";
      return [{ kind: "skip", requestId, reason: `${options.stage}: its selected ${what} are absent` }];
    }
    if (inputs === "ready" && triggers === "ready") return fired(requestId, entry, now);
    if (!ended) return [];
    const missing = [
      ...(inputs === "waiting" ? plan.inputs.filter((s) => !entry.inputs.has(s.id)).map((s) => s.id) : []),
      ...(triggers === "waiting" ? plan.triggers.filter((s) => !entry.triggers.has(s.id)).map((s) => s.id) : []),
    ];
    close(requestId, entry, now);
    return [
      {
        kind: "error",
        requestId,
        code: "join.window_expired",
        message: `${options.stage}: ${missing.join(", ")} never came within ${plan.windowMs} ms`,
        missing,
      },
    ];
  };

  return {
    arrive(requestId, sourceId, arrival, at) {
      const now = clock(at);
      // What this record means for the stage, per role: the selected tensors, "absent", or nothing (ignored).
      const roles: ["inputs" | "triggers", SourceState<T>][] = [];
      for (const [list, key] of [
        [plan.inputs, "inputs"],
        [plan.triggers, "triggers"],
      ] as const) {
        const source = list.find((s) => s.id === sourceId);
        if (source === undefined) continue;
        const picked = arrival === null ? undefined : select(source, arrival);
        const state: SourceState<T> = picked === undefined || picked.size === 0 ? "absent" : { present: picked };
        // A step on a cycle may answer again with the tensors; one answer without them decides nothing.
        if (state === "absent" && source.repeats) continue;
        roles.push([key, state]);
      }
      if (roles.length === 0) return [];
      let entry = entries.get(requestId);
      if (entry === undefined) {
        const stone = tombstones.get(requestId);
        const buried = stone !== undefined && now < stone.until;
        if (buried) {
          // Only a record that carries data starts another visit; nothing at all without revisits.
          if (maxRevisits === 0 || roles.every(([, state]) => state === "absent")) return [];
          if (stone.visits > maxRevisits) {
            bury(requestId, now, Number.POSITIVE_INFINITY);
            if (stone.visits === Number.POSITIVE_INFINITY) return [];
            return [
              {
                kind: "error",
                requestId,
                code: "join.revisits",
                message: `${options.stage}: revisited more than ${maxRevisits} times (maxStepRevisits)`,
                missing: [],
              },
            ];
          }
        }
        if (entries.size >= maxOpen) {
          bury(requestId, now, Number.POSITIVE_INFINITY);
          return [
            {
              kind: "error",
              requestId,
              code: "join.capacity",
              message: `${options.stage}: ${maxOpen} requests are already waiting; refused`,
              missing: [],
            },
          ];
        }
        tombstones.delete(requestId);
        entry = { opened: now, visit: buried ? stone.visits : 0, inputs: new Map(), triggers: new Map() };
        entries.set(requestId, entry);
        entryOrder.push(requestId, entry, liveEntry, entries.size);
      }
      for (const [key, state] of roles) {
        const states = key === "inputs" ? entry.inputs : entry.triggers;
        if (!states.has(sourceId)) states.set(sourceId, state); // the first record of a source counts; a replay changes nothing
      }
      return decide(requestId, entry, now, false);
    },

    expire(at) {
      const now = clock(at);
      const out: JoinDecision<T>[] = [];
      for (let next = entryOrder.peek(liveEntry); next !== undefined; next = entryOrder.peek(liveEntry)) {
        if (next.value.opened + plan.windowMs > now) break;
        entryOrder.shift();
        out.push(...decide(next.key, next.value, now, true));
      }
      if (batch !== undefined && batch.deadline <= now) {
        out.push({ kind: "fire", requests: batch.requests });
        batch = undefined;
      }
      for (let next = stoneOrder.peek(liveStone); next !== undefined; next = stoneOrder.peek(liveStone)) {
        if (next.value.until > now) break;
        stoneOrder.shift();
        tombstones.delete(next.key);
      }
      return out;
    },

    drop(requestId, at) {
      const now = clock(at);
      const entry = entries.get(requestId);
      if (entry !== undefined) close(requestId, entry, now);
      if (batch !== undefined) {
        batch.requests = batch.requests.filter((r) => r.requestId !== requestId);
        if (batch.requests.length === 0) batch = undefined;
      }
      bury(requestId, now, Number.POSITIVE_INFINITY);
    },

    nextDeadline() {
      const first = entryOrder.peek(liveEntry);
      const entryDeadline = first === undefined ? undefined : first.value.opened + plan.windowMs;
      if (batch === undefined) return entryDeadline;
      return entryDeadline === undefined ? batch.deadline : Math.min(entryDeadline, batch.deadline);
    },

    get open() {
      return entries.size;
    },
  };
}
