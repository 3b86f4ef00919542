import type { AgentEvent, ParameterSpec, ReplicaState } from "@tern/core";
import { TernError } from "@tern/core";
import type { Logger } from "pino";
import type { Artifact, ArtifactFetcher } from "./artifacts/artifact-fetcher.js";
import { ReplicaMissError } from "./errors.js";
import type { LoadedModel, ModelRuntime, ModelSignature } from "./runtime/model-runtime.js";

/** What to load: the fields of the scheduler's `AssignedModel` the agent needs. */
export interface ModelLoadSpec {
  model: string;
  version: number;
  storageUri: string;
  /** The Model's `secretName`: the credentials of a remote download. */
  secretName?: string;
  /** Bytes reserved per replica; 0 or absent means "the artifact's size". */
  memoryBytes?: number;
  parameters?: readonly ParameterSpec[];
  /** `Model.spec.requirements`: a runtime serving several frameworks (MLServer) picks one from them. */
  requirements?: readonly string[];
}

/** A model version as the registry holds it. */
export interface ModelRecord {
  model: string;
  version: number;
  storageUri: string;
  state: ReplicaState;
  reason?: string;
  /** Memory accounted for this model (known once the artifact is fetched). */
  memoryBytes: number;
  /** False when evicted to make room: still Available, reloaded on the next request. */
  resident: boolean;
  signature?: ModelSignature;
  parameters: Readonly<Record<string, string>>;
}

/** A model held for one request; `release` must be called once the request is done. */
export interface ModelLease {
  record: ModelRecord;
  model: LoadedModel;
  release(): void;
}

export interface MemoryUsage {
  capacityBytes: number;
  /** Capacity with over-commit: what loaded models may add up to. */
  committableBytes: number;
  /** Memory of every Available (or loading) model, resident or not. */
  committedBytes: number;
  /**
   * Memory of models actually in memory. A load evicts idle models to stay within `capacityBytes`; when every other
   * model is busy it goes ahead anyway, so this can exceed the capacity until they go idle.
   */
  residentBytes: number;
  /**
   * Resident memory of the runtime's own process (MLServer: its RSS, models and interpreter together), bytes; absent
   * for the in-process ONNX runtime, whose models are the agent's own memory.
   */
  processBytes?: number;
}

export interface ModelRegistryOptions {
  runtime: ModelRuntime;
  fetcher: ArtifactFetcher;
  /** Memory this replica may fill with resident models. */
  capacityBytes: number;
  /**
   * How far the models placed here may exceed `capacityBytes`, in percent. The excess is handled by evicting the
   * least-recently-used idle models and reloading them on their next request.
   * @default 0
   */
  overcommitPercent?: number;
  /** Called on every replica state change (Loading, Available, LoadFailed, Unloading, Unloaded, UnloadFailed). */
  onStateChange?: (event: AgentEvent) => void;
  logger?: Logger;
  /** How long an unload waits for requests in flight. @default 5000 */
  unloadGraceMs?: number;
  /** Clock for least-recently-used ordering; injectable for tests. @default performance.now */
  now?: () => number;
}

/** Loaded models of one agent, with memory accounting and least-recently-used eviction. */
export interface ModelRegistry {
  /**
   * Loads a model version (idempotent for the same version and URI). Resolves with the record once it is
   * `Available` or `LoadFailed` (the reason says why); never rejects for a load failure.
   */
  load(spec: ModelLoadSpec): Promise<ModelRecord>;
  /** Unloads a model version; unknown versions count as unloaded. */
  unload(model: string, version: number): Promise<void>;
  /**
   * Takes the model for one request, reloading it if it was evicted. `version` absent picks the newest Available
   * version. Throws `not_found` (unknown model/version) or `unavailable` (loading, failed, unloading, no room).
   */
  acquire(model: string, version?: string): Promise<ModelLease>;
  /** The record a request for (model, version) would use, without taking it; throws like `acquire`. */
  resolve(model: string, version?: string): ModelRecord;
  list(): ModelRecord[];
  usage(): MemoryUsage;
  /** Unloads everything (no state events). */
  close(): Promise<void>;
}

interface Entry {
  model: string;
  version: number;
  storageUri: string;
  secretName?: string;
  specMemory: number;
  memoryBytes: number;
  parameters: Record<string, string>;
  requirements: readonly string[];
  state: ReplicaState;
  reason?: string;
  artifact?: Artifact;
  loaded?: LoadedModel;
  signature?: ModelSignature;
  lastUsed: number;
  inFlight: number;
  /** Set while the first load runs; later `load` calls for the same version wait on it. */
  pending?: Promise<ModelRecord>;
  /** Set while an evicted model is being reloaded; concurrent requests share it. */
  reloading?: Promise<LoadedModel>;
  removed: boolean;
}

const keyOf = (model: string, version: number) => `${model}\u0000${version}`;

function describe(bytes: number): string {
  if (bytes >= 1 << 20) return `${(bytes / (1 << 20)).toFixed(1)} MiB`;
  if (bytes >= 1 << 10) return `${(bytes / (1 << 10)).toFixed(1)} KiB`;
  return `${bytes} B`;
}

export function createModelRegistry(options: ModelRegistryOptions): ModelRegistry {
  const { runtime, fetcher, capacityBytes } = options;
  const overcommit = options.overcommitPercent ?? 0;
  const committable = Math.floor(capacityBytes * (1 + overcommit / 100));
  const now = options.now ?? (() => performance.now());
  const graceMs = options.unloadGraceMs ?? 5000;
  const log = options.logger;
  const entries = new Map<string, Entry>();
  // Memory decisions (reserve, evict, load into memory) run one at a time so two loads never both see the same free
  // memory. Artifact downloads happen outside this lock.
  let lock: Promise<unknown> = Promise.resolve();
  function serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = lock.then(fn, fn);
    lock = run.catch(() => undefined);
    return run;
  }

  function record(e: Entry): ModelRecord {
    return {
      model: e.model,
      version: e.version,
      storageUri: e.storageUri,
      state: e.state,
      ...(e.reason === undefined ? {} : { reason: e.reason }),
      memoryBytes: e.memoryBytes,
      resident: e.loaded !== undefined,
      ...(e.signature === undefined ? {} : { signature: e.signature }),
      parameters: e.parameters,
    };
  }

  function setState(e: Entry, state: ReplicaState, reason?: string): void {
    e.state = state;
    e.reason = reason;
    if (reason === undefined) delete e.reason;
    log?.info({ model: e.model, version: e.version, state, reason }, "model state");
    options.onStateChange?.({ model: e.model, version: e.version, state, ...(reason === undefined ? {} : { reason }) });
  }

  /**
   * What the runtime gets for a load. Its state callback applies only while that load is the entry's resident model:
   * a model lost with its runtime process goes `Loading` and comes back `Available` (or `LoadFailed` with the reason).
   */
  function loadOptions(e: Entry) {
    return {
      model: e.model,
      version: e.version,
      parameters: e.parameters,
      requirements: e.requirements,
      onStateChange: (state: "Loading" | "Available" | "LoadFailed", reason?: string) => {
        if (e.removed || e.loaded === undefined || e.state === state) return;
        setState(e, state, reason);
      },
    };
  }

  const committed = (except?: Entry) =>
    [...entries.values()]
      .filter((e) => e !== except && !e.removed && (e.state === "Available" || e.state === "Loading"))
      .reduce((a, e) => a + e.memoryBytes, 0);
  const resident = () => [...entries.values()].filter((e) => e.loaded).reduce((a, e) => a + e.memoryBytes, 0);

  /** Evicts idle resident models, least recently used first, until `needed` more bytes fit. */
  async function makeRoom(needed: number, forEntry: Entry): Promise<boolean> {
    let used = resident();
    if (used + needed <= capacityBytes) return true;
    const victims = [...entries.values()]
      .filter((e) => e !== forEntry && e.loaded && e.inFlight === 0 && !e.reloading)
      .sort((a, b) => a.lastUsed - b.lastUsed);
    for (const victim of victims) {
      if (used + needed <= capacityBytes) break;
      const loaded = victim.loaded!;
      victim.loaded = undefined;
      used -= victim.memoryBytes;
      log?.info({ model: victim.model, version: victim.version, bytes: victim.memoryBytes }, "evicted to make room");
      try {
        await loaded.unload();
      } catch (err) {
        log?.warn({ err, model: victim.model }, "releasing an evicted model failed");
      }
    }
    return used + needed <= capacityBytes;
  }

  async function firstLoad(e: Entry): Promise<ModelRecord> {
    setState(e, "Loading");
    try {
      e.artifact = await fetcher.fetch(e.storageUri, e.secretName === undefined ? {} : { secretName: e.secretName });
    } catch (err) {
      setState(e, "LoadFailed", err instanceof Error ? err.message : String(err));
      return record(e);
    }
    e.memoryBytes = e.specMemory > 0 ? e.specMemory : e.artifact.sizeBytes;
    return serial(async () => {
      if (e.removed) return record(e);
      if (e.memoryBytes > capacityBytes) {
        setState(
          e,
          "LoadFailed",
          `model needs ${describe(e.memoryBytes)} but this replica holds at most ${describe(capacityBytes)}`,
        );
        return record(e);
      }
      const others = committed(e);
      if (others + e.memoryBytes > committable) {
        setState(
          e,
          "LoadFailed",
          `not enough memory: model needs ${describe(e.memoryBytes)}, ${describe(Math.max(0, committable - others))} of ${describe(committable)} (with ${overcommit}% over-commit) is free`,
        );
        return record(e);
      }
      await makeRoom(e.memoryBytes, e);
      try {
        const loaded = await runtime.load(e.artifact!.path, loadOptions(e));
        if (e.removed) {
          await loaded.unload();
          return record(e);
        }
        e.loaded = loaded;
        e.signature = loaded.signature;
        e.lastUsed = now();
        setState(e, "Available");
      } catch (err) {
        setState(e, "LoadFailed", err instanceof Error ? err.message : String(err));
      }
      return record(e);
    });
  }

  function reload(e: Entry): Promise<LoadedModel> {
    if (e.reloading) return e.reloading;
    const p = serial(async () => {
      if (e.loaded) return e.loaded;
      if (!(await makeRoom(e.memoryBytes, e))) {
        throw new TernError(
          "unavailable",
          `model ${e.model} was evicted and cannot be reloaded now: every other model in memory is serving requests`,
          { retriable: true },
        );
      }
      try {
        const loaded = await runtime.load(e.artifact!.path, loadOptions(e));
        e.loaded = loaded;
        log?.info({ model: e.model, version: e.version }, "reloaded after eviction");
        return loaded;
      } catch (err) {
        throw new TernError(
          "unavailable",
          `reloading evicted model ${e.model} failed: ${err instanceof Error ? err.message : err}`,
          {
            cause: err,
            retriable: true,
          },
        );
      }
    }).finally(() => {
      e.reloading = undefined;
    });
    e.reloading = p;
    return p;
  }

  function find(model: string, version?: string): Entry {
    const versions = [...entries.values()].filter((e) => e.model === model && !e.removed);
    if (versions.length === 0) throw new ReplicaMissError(model);
    if (version !== undefined && version !== "") {
      const wanted = Number(version);
      const e = Number.isInteger(wanted) ? versions.find((v) => v.version === wanted) : undefined;
      if (!e)
        throw new TernError(
          "not_found",
          `model ${model} has no version ${version} here (loaded: ${versions.map((v) => v.version).join(", ")})`,
        );
      return e;
    }
    const available = versions.filter((e) => e.state === "Available").sort((a, b) => b.version - a.version);
    return available[0] ?? versions.sort((a, b) => b.version - a.version)[0]!;
  }

  function ensureAvailable(e: Entry): void {
    if (e.state === "Available") return;
    const what = `model ${e.model} version ${e.version}`;
    const message =
      e.state === "LoadFailed"
        ? `${what} failed to load: ${e.reason ?? "unknown reason"}`
        : e.state === "Loading"
          ? `${what} is still loading`
          : `${what} is not available (${e.state})`;
    throw new TernError("unavailable", message, { retriable: e.state === "Loading" });
  }

  return {
    async load(spec: ModelLoadSpec): Promise<ModelRecord> {
      const key = keyOf(spec.model, spec.version);
      const existing = entries.get(key);
      if (
        existing &&
        !existing.removed &&
        existing.storageUri === spec.storageUri &&
        existing.secretName === spec.secretName
      ) {
        if (existing.pending) return existing.pending;
        if (existing.state === "Available") return record(existing);
      }
      // A failed load left nothing in memory: forget it quietly and try again. A different URI for the same
      // version replaces what is there.
      if (existing?.state === "LoadFailed" && !existing.pending) entries.delete(key);
      else if (existing && !existing.removed) await this.unload(spec.model, spec.version);
      const parameters: Record<string, string> = {};
      for (const p of spec.parameters ?? []) parameters[p.name] = p.value;
      const e: Entry = {
        model: spec.model,
        version: spec.version,
        storageUri: spec.storageUri,
        ...(spec.secretName === undefined ? {} : { secretName: spec.secretName }),
        specMemory: spec.memoryBytes ?? 0,
        memoryBytes: spec.memoryBytes ?? 0,
        parameters,
        requirements: [...(spec.requirements ?? [])],
        state: "LoadRequested",
        lastUsed: now(),
        inFlight: 0,
        removed: false,
      };
      entries.set(key, e);
      e.pending = firstLoad(e).finally(() => {
        e.pending = undefined;
      });
      return e.pending;
    },

    async unload(model: string, version: number): Promise<void> {
      const key = keyOf(model, version);
      const e = entries.get(key);
      if (!e || e.removed) {
        options.onStateChange?.({ model, version, state: "Unloaded" });
        return;
      }
      e.removed = true;
      setState(e, "Unloading");
      // Requests already holding the model may finish (bounded); new ones no longer find it (removed) and get the
      // 404 marked as a replica miss, which the gateway retries on another replica.
      const deadline = now() + graceMs;
      while (e.inFlight > 0 && now() < deadline) await new Promise((r) => setTimeout(r, 10));
      await e.pending?.catch(() => undefined);
      await e.reloading?.catch(() => undefined);
      try {
        await serial(async () => {
          const loaded = e.loaded;
          e.loaded = undefined;
          await loaded?.unload();
        });
        if (entries.get(key) === e) entries.delete(key);
        setState(e, "Unloaded");
      } catch (err) {
        if (entries.get(key) === e) entries.delete(key);
        setState(e, "UnloadFailed", err instanceof Error ? err.message : String(err));
      }
    },

    async acquire(model: string, version?: string): Promise<ModelLease> {
      const e = find(model, version);
      ensureAvailable(e);
      e.inFlight++;
      e.lastUsed = now();
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        e.inFlight--;
      };
      try {
        const loaded = e.loaded ?? (await reload(e));
        return { record: record(e), model: loaded, release };
      } catch (err) {
        release();
        throw err;
      }
    },

    resolve(model: string, version?: string): ModelRecord {
      return record(find(model, version));
    },

    list(): ModelRecord[] {
      return [...entries.values()].filter((e) => !e.removed).map(record);
    },

    usage(): MemoryUsage {
      const processBytes = runtime.processBytes?.();
      return {
        capacityBytes,
        committableBytes: committable,
        committedBytes: committed(),
        residentBytes: resident(),
        ...(processBytes === undefined ? {} : { processBytes }),
      };
    },

    async close(): Promise<void> {
      const all = [...entries.values()];
      entries.clear();
      for (const e of all) {
        e.removed = true;
        await e.pending?.catch(() => undefined);
        const loaded = e.loaded;
        e.loaded = undefined;
        await loaded?.unload().catch(() => undefined);
      }
    },
  };
}
