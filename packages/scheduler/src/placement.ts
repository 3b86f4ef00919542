import { TernError } from "@tern/core";

/**
 * The placement engine: decides which server replicas hold each model version, following DESIGN §2 "Placement"
 * (the scaling specification's rule: a model's replicas cannot exceed the replicas of the Server it is scheduled to).
 *
 * Everything here is a pure function of its arguments: no I/O, no clock, no randomness, and inputs are never
 * mutated, so the same input always gives the same decisions. The reconciler feeds it views of the cluster and turns
 * the decisions into load/unload commands.
 *
 * Cost: one decision looks at every replica of every eligible server once (O(replicas)) and sorts only the chosen
 * server's candidates; there is no replicas² or models × holdings term. `placeAll` builds its indexes once for the batch.
 */

/** One server replica (one agent) as placement sees it. */
export interface ReplicaView {
  /** Server replica index (0-based). */
  index: number;
  connected: boolean;
  draining: boolean;
  /** Memory capacity in bytes, before over-commit. */
  memoryBytes: number;
  /** Memory of the models loaded on it (all versions), in bytes. */
  loadedBytes: number;
  /** Memory reserved by loads in flight, in bytes. */
  reservedBytes: number;
  /** What it holds or is loading. */
  models: { model: string; version: number }[];
}

/** One Server as placement sees it. */
export interface ServerView {
  name: string;
  /** Effective capabilities: the server type's list, replaced by `capabilities` or extended by `extraCapabilities` (resolved by the caller). */
  capabilities: string[];
  deleting: boolean;
  /** `Server.spec.replicas`. Replicas with an index at or above it are leaving (scale-down) and take no new models. */
  desiredReplicas: number;
  replicas: ReplicaView[];
}

/** What one model version asks of placement. */
export interface ModelDemand {
  name: string;
  version: number;
  /** Memory per replica, in bytes. */
  memoryBytes: number;
  /** Effective replicas wanted. */
  replicas: number;
  /** When set, partial placement is allowed down to this many replicas. */
  minReplicas?: number;
  requirements: string[];
  /** Pinned server (`Model.spec.server`). */
  server?: string;
  /**
   * Where this version currently has replicas (loaded or loading), if anywhere. When given it is authoritative; when
   * absent, the holders are found in the servers' `ReplicaView.models` (the server holding most replicas wins).
   */
  current?: { server: string; replicas: number[] };
}

export interface PlacementOptions {
  /**
   * Percentage by which replica memory may be over-committed: capacity = memoryBytes × (1 + overcommitPercent/100),
   * rounded down to a whole byte.
   */
  overcommitPercent: number;
}

/**
 * The outcome for one model version. `replicas` are server replica indexes in ascending order.
 * - `placed`: all wanted replicas have a place on `server`.
 * - `partial`: `minReplicas` allowed running with fewer; `reason` says what is missing.
 * - `failed` (ScheduleFailed): `replicas` are the replicas that already hold the version and are still candidates, so
 *   they keep serving (possibly none); `server` is set when that list is not empty.
 */
export type PlacementDecision =
  | { model: string; version: number; status: "placed"; server: string; replicas: number[]; partial: false }
  | {
      model: string;
      version: number;
      status: "partial";
      server: string;
      replicas: number[];
      partial: true;
      reason: string;
    }
  | { model: string; version: number; status: "failed"; reason: string; server?: string; replicas: number[] };

/** Where a version is held: a server and the replica indexes holding it there. */
interface Holding {
  server: string;
  replicas: ReadonlySet<number>;
}

/** Per-server working state. `free` is mutable so that `placeAll` can account for what each decision consumes. */
interface ServerState {
  readonly view: ServerView;
  readonly name: string;
  readonly caps: ReadonlySet<string>;
  /** Connected replicas of any kind (a server without any is not a candidate). */
  readonly connected: number;
  /** Candidate replicas (connected, not draining, index < desiredReplicas), as positions into `view.replicas`. */
  readonly candPos: number[];
  /** Replica index of each candidate (parallel to `candPos`). */
  readonly candIndex: number[];
  /** Free bytes of each candidate (parallel to `candPos`): capacity − loaded − reserved. */
  readonly free: Float64Array;
  readonly draining: number;
  readonly disconnected: number;
  readonly leaving: number;
}

/** Internal view of the whole cluster. */
interface Cluster {
  readonly servers: ServerState[];
  readonly byName: ReadonlyMap<string, ServerState>;
  /** Unpinned candidate servers per requirement list (deleting and connectedness do not change within a session). */
  readonly eligibleByRequirements: Map<string, ServerState[]>;
}

/** Capacity of a replica in whole bytes once over-commit is applied. */
export function replicaCapacity(memoryBytes: number, options: PlacementOptions): number {
  // Integer arithmetic first: 100 × 1.15 is 114.99999999999999 in floating point, which would refuse an exact fit.
  return Math.floor((memoryBytes * (100 + options.overcommitPercent)) / 100);
}

const UNITS: readonly [string, number][] = [
  ["Ti", 2 ** 40],
  ["Gi", 2 ** 30],
  ["Mi", 2 ** 20],
  ["Ki", 2 ** 10],
];

/**
 * Formats bytes for people with binary units: `2Gi`, `100Ki`, `1.5Gi`. A value that is not a whole number of its unit
 * keeps at least one decimal (`2.0Gi` for just under 2Gi) so that rounding never looks exact.
 */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return String(bytes);
  const sign = bytes < 0 ? "-" : "";
  const abs = Math.abs(bytes);
  for (const [unit, size] of UNITS) {
    if (abs < size) continue;
    const value = abs / size;
    if (Number.isInteger(value)) return `${sign}${value}${unit}`;
    let text = value.toFixed(2).replace(/0+$/, "");
    if (text.endsWith(".")) text += "0";
    return `${sign}${text}${unit}`;
  }
  return `${sign}${Math.round(abs)}B`;
}

function badInput(message: string): TernError {
  return new TernError("bad_request", message);
}

function isCount(n: unknown): n is number {
  return typeof n === "number" && Number.isSafeInteger(n) && n >= 0;
}

function validateOptions(options: PlacementOptions): void {
  const pct = options?.overcommitPercent;
  if (typeof pct !== "number" || !Number.isFinite(pct) || pct < 0) {
    throw badInput(`placement options: overcommitPercent must be a finite number ≥ 0 (got ${String(pct)})`);
  }
}

function validateModel(model: ModelDemand): void {
  if (typeof model?.name !== "string" || model.name === "")
    throw badInput("model demand: name must be a non-empty string");
  const who = `model ${model.name}`;
  if (!isCount(model.version)) throw badInput(`${who}: version must be an integer ≥ 0 (got ${String(model.version)})`);
  if (typeof model.memoryBytes !== "number" || !Number.isFinite(model.memoryBytes) || model.memoryBytes < 0) {
    throw badInput(`${who}: memoryBytes must be a finite number ≥ 0 (got ${String(model.memoryBytes)})`);
  }
  if (!isCount(model.replicas))
    throw badInput(`${who}: replicas must be an integer ≥ 0 (got ${String(model.replicas)})`);
  if (model.minReplicas !== undefined) {
    if (!isCount(model.minReplicas) || model.minReplicas > model.replicas) {
      throw badInput(
        `${who}: minReplicas must be an integer between 0 and replicas (${model.replicas}) (got ${String(model.minReplicas)})`,
      );
    }
  }
  if (!Array.isArray(model.requirements)) throw badInput(`${who}: requirements must be an array of capability names`);
}

function buildServerState(view: ServerView, options: PlacementOptions): ServerState {
  const candPos: number[] = [];
  const candIndex: number[] = [];
  const freeList: number[] = [];
  let connected = 0;
  let draining = 0;
  let disconnected = 0;
  let leaving = 0;
  const replicas = view.replicas;
  for (let pos = 0; pos < replicas.length; pos++) {
    const r = replicas[pos]!;
    if (!r.connected) {
      disconnected++;
      continue;
    }
    connected++;
    if (r.index >= view.desiredReplicas) {
      leaving++;
      continue;
    }
    if (r.draining) {
      draining++;
      continue;
    }
    candPos.push(pos);
    candIndex.push(r.index);
    freeList.push(replicaCapacity(r.memoryBytes, options) - r.loadedBytes - r.reservedBytes);
  }
  return {
    view,
    name: view.name,
    caps: new Set(view.capabilities),
    connected,
    candPos,
    candIndex,
    free: Float64Array.from(freeList),
    draining,
    disconnected,
    leaving,
  };
}

function buildCluster(servers: readonly ServerView[], options: PlacementOptions): Cluster {
  const states: ServerState[] = [];
  const byName = new Map<string, ServerState>();
  for (const view of servers) {
    if (byName.has(view.name)) throw badInput(`servers: duplicate server name ${view.name}`);
    const state = buildServerState(view, options);
    states.push(state);
    byName.set(view.name, state);
  }
  return { servers: states, byName, eligibleByRequirements: new Map() };
}

/** Holders found in the eligible servers' replica views (only those can be "the current server"). */
function scanHolding(model: string, version: number, eligible: readonly ServerState[]): Holding | undefined {
  let best: Holding | undefined;
  for (const { view: s } of eligible) {
    let found: Set<number> | undefined;
    for (const r of s.replicas) {
      for (const m of r.models) {
        if (m.version === version && m.model === model) {
          found ??= new Set();
          found.add(r.index);
          break;
        }
      }
    }
    if (
      found &&
      (!best || found.size > best.replicas.size || (found.size === best.replicas.size && s.name < best.server))
    ) {
      best = { server: s.name, replicas: found };
    }
  }
  return best;
}

function holdersFromCurrent(current: NonNullable<ModelDemand["current"]>): ReadonlyMap<string, ReadonlySet<number>> {
  return new Map([[current.server, new Set(current.replicas)]]);
}

/** Ask {@link decide} to find the holders by scanning the eligible servers' replica views. */
const SCAN = Symbol("scan");

/**
 * Where the version is held, by server name (only eligible servers count, so this is looked up once they are known);
 * or {@link SCAN}.
 */
type Holders = ReadonlyMap<string, ReadonlySet<number>> | undefined | typeof SCAN;

function holdingAmong(
  holders: ReadonlyMap<string, ReadonlySet<number>>,
  eligible: readonly ServerState[],
): Holding | undefined {
  let best: Holding | undefined;
  for (const s of eligible) {
    const set = holders.get(s.name);
    if (set === undefined || set.size === 0) continue;
    if (!best || set.size > best.replicas.size || (set.size === best.replicas.size && s.name < best.server)) {
      best = { server: s.name, replicas: set };
    }
  }
  return best;
}

function list(names: readonly string[]): string {
  return names.join(", ");
}

function offers(caps: ReadonlySet<string>): string {
  return caps.size === 0 ? "no capabilities" : list([...caps].sort());
}

function missingCaps(requirements: readonly string[], caps: ReadonlySet<string>): string[] {
  const missing: string[] = [];
  for (const req of requirements) if (!caps.has(req) && !missing.includes(req)) missing.push(req);
  return missing;
}

function capWord(n: number): string {
  return n === 1 ? "capability" : "capabilities";
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** Why no server at all qualifies: the reason names the closest server and what it lacks. */
function noServerReason(model: ModelDemand, cluster: Cluster): string {
  const who = `model ${model.name}`;
  const live = cluster.servers.filter((s) => !s.view.deleting && s.connected > 0);
  if (live.length === 0) {
    if (cluster.servers.length === 0) return `${who}: no servers exist to place it on`;
    const deleting = cluster.servers.filter((s) => s.view.deleting).map((s) => s.name);
    const detail = deleting.length > 0 ? ` (being deleted: ${list(deleting.sort())})` : "";
    return `${who}: no server has connected replicas${detail}`;
  }
  // Every live server lacks some requirement: name the one that lacks fewest (then name order).
  let best: ServerState | undefined;
  let bestMissing: string[] = [];
  for (const s of live) {
    const missing = missingCaps(model.requirements, s.caps);
    if (!best || missing.length < bestMissing.length || (missing.length === bestMissing.length && s.name < best.name)) {
      best = s;
      bestMissing = missing;
    }
  }
  const anyOffers = bestMissing.some((c) => live.some((s) => s.caps.has(c)));
  if (!anyOffers) {
    return `${who}: no server offers ${capWord(bestMissing.length)} ${list(bestMissing)} (server ${best!.name} offers ${offers(best!.caps)})`;
  }
  return (
    `${who}: no server offers all of ${list(model.requirements)} ` +
    `(closest: server ${best!.name} lacks ${list(bestMissing)}; it offers ${offers(best!.caps)})`
  );
}

/** Why the pinned server cannot take the model at all, or undefined when it is a candidate. */
function pinnedReason(model: ModelDemand, s: ServerState | undefined): string | undefined {
  const who = `model ${model.name}`;
  if (!s) return `${who}: pinned server ${model.server} does not exist`;
  if (s.view.deleting) return `${who}: pinned server ${s.name} is being deleted`;
  const missing = missingCaps(model.requirements, s.caps);
  if (missing.length > 0) {
    return `${who}: pinned server ${s.name} lacks ${capWord(missing.length)} ${list(missing)} (it offers ${offers(s.caps)})`;
  }
  if (s.connected === 0) return `${who}: pinned server ${s.name} has no connected replicas`;
  return undefined;
}

function hasAll(requirements: readonly string[], caps: ReadonlySet<string>): boolean {
  for (const req of requirements) if (!caps.has(req)) return false;
  return true;
}

/** What the chosen server lacks to take every replica: replicas, or memory on enough of them. */
function lackReason(model: ModelDemand, s: ServerState, fit: number, holds: ReadonlySet<number> | undefined): string {
  const who = `model ${model.name}`;
  const usable = s.candIndex.length;
  if (usable < model.replicas) {
    const excluded: string[] = [];
    if (s.draining > 0) excluded.push(`${s.draining} draining`);
    if (s.disconnected > 0) excluded.push(`${s.disconnected} disconnected`);
    if (s.leaving > 0) excluded.push(`${s.leaving} leaving in scale-down`);
    const has =
      excluded.length === 0
        ? `has ${plural(usable, "replica")}`
        : `has ${usable} usable ${usable === 1 ? "replica" : "replicas"} (${list(excluded)})`;
    return `${who}: ${model.replicas} replicas requested, server ${s.name} ${has}`;
  }
  // Enough replicas, not enough memory on them: say how much the fullest of the rest has free.
  let mostFreeElsewhere = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < s.candIndex.length; i++) {
    const f = s.free[i]!;
    if (f < model.memoryBytes && !(holds?.has(s.candIndex[i]!) ?? false) && f > mostFreeElsewhere)
      mostFreeElsewhere = f;
  }
  const others = Number.isFinite(mostFreeElsewhere)
    ? `; the others have at most ${formatBytes(Math.max(0, mostFreeElsewhere))} free`
    : "";
  return (
    `${who}: needs ${formatBytes(model.memoryBytes)} per replica; ` +
    `server ${s.name} has ${fit} ${fit === 1 ? "replica" : "replicas"} with room (${model.replicas} requested${others})`
  );
}

function ascending(a: number, b: number): number {
  return a - b;
}

/** What {@link decide} returns: the decision and, when replicas were chosen, where (for memory accounting). */
interface Outcome {
  decision: PlacementDecision;
  /** The chosen server, when the decision lists replicas on it. */
  server?: ServerState;
  /** Candidate positions (into the server's `candIndex`/`free`) of the chosen replicas. */
  picked: number[];
}

const NONE: number[] = [];

function failed(model: ModelDemand, reason: string): Outcome {
  return {
    decision: { model: model.name, version: model.version, status: "failed", reason, replicas: [] },
    picked: NONE,
  };
}

/** Candidate servers for an unpinned model (has connected replicas, not deleting, offers every requirement). */
function eligibleFor(model: ModelDemand, cluster: Cluster): ServerState[] {
  const key = model.requirements.join("\u0000");
  let eligible = cluster.eligibleByRequirements.get(key);
  if (eligible === undefined) {
    eligible = cluster.servers.filter((s) => !s.view.deleting && s.connected > 0 && hasAll(model.requirements, s.caps));
    cluster.eligibleByRequirements.set(key, eligible);
  }
  return eligible;
}

/** True when candidate `a` comes before `b`: already holds the version, then more free memory, then lower index. */
function before(s: ServerState, holds: ReadonlySet<number> | undefined, a: number, b: number): boolean {
  if (holds !== undefined) {
    const ha = holds.has(s.candIndex[a]!);
    if (ha !== holds.has(s.candIndex[b]!)) return ha;
  }
  const fa = s.free[a]!;
  const fb = s.free[b]!;
  if (fa !== fb) return fa > fb;
  return s.candIndex[a]! < s.candIndex[b]!;
}

/** The core decision, over prepared state. */
function decide(model: ModelDemand, cluster: Cluster, holders: Holders): Outcome {
  const wanted = model.replicas;
  const mem = model.memoryBytes;

  // Candidate servers.
  let eligible: readonly ServerState[];
  if (model.server !== undefined) {
    const pinned = cluster.byName.get(model.server);
    const why = pinnedReason(model, pinned);
    if (why !== undefined) return failed(model, why);
    eligible = [pinned!];
  } else {
    eligible = eligibleFor(model, cluster);
    if (eligible.length === 0) return failed(model, noServerReason(model, cluster));
  }
  const holding =
    holders === SCAN
      ? scanHolding(model.name, model.version, eligible)
      : holders === undefined
        ? undefined
        : holdingAmong(holders, eligible);

  // Pick the server: the most replicas it can actually give (capped at what is wanted), then the current server
  // (no ping-pong among servers that do equally well), then the most replicas with room, then name order.
  let best: ServerState | undefined;
  let bestFit = -1;
  let bestGive = -1;
  let bestCurrent = false;
  for (const s of eligible) {
    const holds = holding !== undefined && holding.server === s.name ? holding.replicas : undefined;
    const free = s.free;
    let fit = 0;
    if (holds === undefined) {
      for (let i = 0; i < free.length; i++) if (free[i]! >= mem) fit++;
    } else {
      const idx = s.candIndex;
      for (let i = 0; i < free.length; i++) if (free[i]! >= mem || holds.has(idx[i]!)) fit++;
    }
    const give = Math.min(fit, wanted);
    const current = holds !== undefined;
    if (
      best === undefined ||
      give > bestGive ||
      (give === bestGive && (current !== bestCurrent ? current : fit !== bestFit ? fit > bestFit : s.name < best.name))
    ) {
      best = s;
      bestFit = fit;
      bestGive = give;
      bestCurrent = current;
    }
  }
  const server = best!;
  const holds = holding !== undefined && holding.server === server.name ? holding.replicas : undefined;

  if (wanted === 0) {
    return {
      decision: {
        model: model.name,
        version: model.version,
        status: "placed",
        server: server.name,
        replicas: [],
        partial: false,
      },
      picked: NONE,
    };
  }

  // Candidate replicas on it, best first: a partial selection sort, O(wanted × replicas), as only `wanted` are taken.
  const picked: number[] = [];
  for (let i = 0; i < server.free.length; i++) {
    if (server.free[i]! >= mem || (holds?.has(server.candIndex[i]!) ?? false)) picked.push(i);
  }
  if (picked.length > wanted) {
    for (let t = 0; t < wanted; t++) {
      let top = t;
      for (let j = t + 1; j < picked.length; j++) if (before(server, holds, picked[j]!, picked[top]!)) top = j;
      const swap = picked[t]!;
      picked[t] = picked[top]!;
      picked[top] = swap;
    }
    picked.length = wanted;
  }
  const chosen = picked.map((i) => server.candIndex[i]!);
  chosen.sort(ascending);

  if (chosen.length === wanted) {
    return {
      decision: {
        model: model.name,
        version: model.version,
        status: "placed",
        server: server.name,
        replicas: chosen,
        partial: false,
      },
      server,
      picked,
    };
  }

  const lack = lackReason(model, server, bestFit, holds);
  const min = model.minReplicas;
  if (min !== undefined && chosen.length >= min && chosen.length > 0) {
    const reason = `${lack}; running ${chosen.length} of ${wanted} (minReplicas ${min})`;
    return {
      decision: {
        model: model.name,
        version: model.version,
        status: "partial",
        server: server.name,
        replicas: chosen,
        partial: true,
        reason,
      },
      server,
      picked,
    };
  }

  // ScheduleFailed. The replicas that already hold the version and are still candidates keep serving; they reserve
  // nothing new, so no accounting is needed.
  const reason = min !== undefined ? `${lack}; at least ${min} needed (minReplicas)` : lack;
  const kept: number[] = [];
  if (holding !== undefined) {
    const current = eligible.find((s) => s.name === holding.server);
    if (current) for (const index of current.candIndex) if (holding.replicas.has(index)) kept.push(index);
  }
  if (kept.length === 0) return failed(model, reason);
  kept.sort(ascending);
  return {
    decision: {
      model: model.name,
      version: model.version,
      status: "failed",
      reason,
      server: holding!.server,
      replicas: kept.slice(0, wanted),
    },
    picked: NONE,
  };
}

/**
 * Decides where one model version goes, given the cluster as it is. See DESIGN §2 "Placement".
 * Throws a TernError (code `bad_request`) naming the field when the demand or options are malformed.
 */
export function placeModel(
  model: ModelDemand,
  servers: readonly ServerView[],
  options: PlacementOptions,
): PlacementDecision {
  validateOptions(options);
  validateModel(model);
  const cluster = buildCluster(servers, options);
  return decide(model, cluster, model.current ? holdersFromCurrent(model.current) : SCAN).decision;
}

function getOrCreate<K, V>(map: Map<K, V>, key: K, create: () => V): V {
  let value = map.get(key);
  if (value === undefined) {
    value = create();
    map.set(key, value);
  }
  return value;
}

function versionKey(model: string, version: number): string {
  return `${model}\u0000${version}`;
}

/**
 * Returns the views after a decision: each NEW replica (one that did not hold the version yet, by `model.current` when
 * given, else by the replica's `models`) gets the model's memory
 * added to `reservedBytes` and the version added to `models`, as a load in flight. Untouched servers and replicas are
 * returned as the same objects; nothing is mutated.
 */
export function applyDecision(
  servers: readonly ServerView[],
  model: ModelDemand,
  decision: PlacementDecision,
): ServerView[] {
  if (decision.replicas.length === 0 || decision.server === undefined) return servers.slice();
  const target = new Set(decision.replicas);
  const current = model.current;
  return servers.map((s) => {
    if (s.name !== decision.server) return s;
    let changed = false;
    const replicas = s.replicas.map((r) => {
      if (!target.has(r.index)) return r;
      // Same notion of "already holds" as the decision: `current` when given, else the replica's own list.
      const held = current
        ? current.server === s.name && current.replicas.includes(r.index)
        : r.models.some((m) => m.version === model.version && m.model === model.name);
      if (held) return r;
      changed = true;
      return {
        ...r,
        reservedBytes: r.reservedBytes + model.memoryBytes,
        models: [...r.models, { model: model.name, version: model.version }],
      };
    });
    return changed ? { ...s, replicas } : s;
  });
}

/**
 * A placement session over one snapshot of the cluster: each `place` decides like {@link placeModel} but sees the
 * memory the earlier decisions of the session reserved, without rebuilding its view of the cluster. This is what a
 * reconciler pass that places model after model should use (a `placeModel` per model costs models × replicas).
 */
export interface Placer {
  /** Decides for one model version and reserves what it takes. Throws like {@link placeModel} on bad input. */
  place(model: ModelDemand, options?: PlaceOptions): PlacementDecision;
  /** The views with every reservation made so far (see {@link applyDecision}); the input views are not mutated. */
  views(): ServerView[];
}

/** Options of one {@link Placer.place} call. */
export interface PlaceOptions {
  /**
   * Chosen replicas for which this call must reserve nothing, because the version's memory there is already counted
   * in the views or no load will be issued (the reconciler: a replica still unloading this version, or one where it
   * failed to load). Affects only what later decisions of the session see, never this decision.
   */
  skipReservation?: (server: string, replica: number) => boolean;
}

interface PlacerInternal extends Placer {
  holdersOf(model: ModelDemand): ReadonlyMap<string, ReadonlySet<number>> | undefined;
  placeWith(
    model: ModelDemand,
    holders: ReadonlyMap<string, ReadonlySet<number>> | undefined,
    skipReservation?: PlaceOptions["skipReservation"],
  ): PlacementDecision;
}

function createPlacerInternal(servers: readonly ServerView[], options: PlacementOptions): PlacerInternal {
  validateOptions(options);
  const cluster = buildCluster(servers, options);
  // Holders of every version in the views, indexed on first need (versions whose `current` is given skip it); the
  // session's own reservations are added as they are made.
  let index: Map<string, Map<string, Set<number>>> | undefined;
  const indexed = (): Map<string, Map<string, Set<number>>> => {
    if (index) return index;
    index = new Map();
    for (const s of servers) {
      for (const r of s.replicas) {
        for (const held of r.models) {
          const byServer = getOrCreate(
            index,
            versionKey(held.model, held.version),
            () => new Map<string, Set<number>>(),
          );
          getOrCreate(byServer, s.name, () => new Set<number>()).add(r.index);
        }
      }
    }
    return index;
  };
  // Reservations made by this session: server name → replica position → models added.
  const added = new Map<string, Map<number, ModelDemand[]>>();

  const holdersOf = (m: ModelDemand) =>
    m.current ? holdersFromCurrent(m.current) : indexed().get(versionKey(m.name, m.version));

  const placeWith = (
    m: ModelDemand,
    held: ReadonlyMap<string, ReadonlySet<number>> | undefined,
    skipReservation?: PlaceOptions["skipReservation"],
  ): PlacementDecision => {
    const { decision, server: s, picked } = decide(m, cluster, held);
    if (s === undefined) return decision;
    // A replica that already holds the version has its memory counted in `loadedBytes` (or `reservedBytes`).
    const holds = held?.get(s.name);
    for (const c of picked) {
      const replicaIndex = s.candIndex[c]!;
      if (holds?.has(replicaIndex) || skipReservation?.(s.name, replicaIndex)) continue;
      s.free[c]! -= m.memoryBytes;
      const byPos = getOrCreate(added, s.name, () => new Map<number, ModelDemand[]>());
      const pos = s.candPos[c]!;
      const list = byPos.get(pos);
      if (list) list.push(m);
      else byPos.set(pos, [m]);
      if (index) {
        const byServer = getOrCreate(index, versionKey(m.name, m.version), () => new Map<string, Set<number>>());
        getOrCreate(byServer, s.name, () => new Set<number>()).add(replicaIndex);
      }
    }
    return decision;
  };

  const views = (): ServerView[] =>
    servers.map((view) => {
      const byPos = added.get(view.name);
      if (!byPos) return view;
      const replicas = view.replicas.map((r, pos) => {
        const extra = byPos.get(pos);
        if (!extra) return r;
        let bytes = 0;
        const models = r.models.slice();
        for (const m of extra) {
          bytes += m.memoryBytes;
          models.push({ model: m.name, version: m.version });
        }
        return { ...r, reservedBytes: r.reservedBytes + bytes, models };
      });
      return { ...view, replicas };
    });

  return {
    holdersOf,
    placeWith,
    place: (m, placeOptions) => {
      validateModel(m);
      return placeWith(m, holdersOf(m), placeOptions?.skipReservation);
    },
    views,
  };
}

/**
 * Starts a placement session over `servers` (see {@link Placer}). Throws a TernError (code `bad_request`) for bad
 * options or two servers with the same name.
 */
export function createPlacer(servers: readonly ServerView[], options: PlacementOptions): Placer {
  const { place, views } = createPlacerInternal(servers, options);
  return { place, views };
}

/**
 * Places many model versions, one after another in a deterministic order, each decision seeing the memory the
 * earlier ones reserved. The order: versions that already have replicas first (they keep their places), then pinned
 * ones, then larger memory, more replicas, name and version (biggest first packs tighter). The order of `models` in
 * the input does not change the outcome.
 *
 * Returns one decision per model in INPUT order, and the views with every new replica reserved (see
 * {@link applyDecision}). Throws a TernError (code `bad_request`) for malformed input or a version listed twice.
 */
export function placeAll(
  models: readonly ModelDemand[],
  servers: readonly ServerView[],
  options: PlacementOptions,
): { decisions: PlacementDecision[]; servers: ServerView[] } {
  validateOptions(options);
  const seen = new Set<string>();
  for (const m of models) {
    validateModel(m);
    const key = versionKey(m.name, m.version);
    if (seen.has(key)) throw badInput(`models: model ${m.name} version ${m.version} is listed twice`);
    seen.add(key);
  }
  const placer = createPlacerInternal(servers, options);
  const holders = models.map((m) => placer.holdersOf(m));
  const order = models.map((_, i) => i);
  const cmpStr = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  order.sort((a, b) => {
    const ma = models[a]!;
    const mb = models[b]!;
    return (
      (holders[b] ? 1 : 0) - (holders[a] ? 1 : 0) ||
      (mb.server !== undefined ? 1 : 0) - (ma.server !== undefined ? 1 : 0) ||
      mb.memoryBytes - ma.memoryBytes ||
      mb.replicas - ma.replicas ||
      cmpStr(ma.name, mb.name) ||
      ma.version - mb.version
    );
  });
  const decisions: PlacementDecision[] = new Array(models.length);
  for (const i of order) decisions[i] = placer.placeWith(models[i]!, holders[i]);
  return { decisions, servers: placer.views() };
}
