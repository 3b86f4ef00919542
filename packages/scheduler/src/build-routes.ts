import {
  experimentCandidates,
  type ModelRoute,
  type PackedRouteTable,
  packRouteTable,
  pipelineIo,
  type ReplicaEndpoint,
  type RouteTable,
} from "@tern/core";
import { scalingBounds } from "./autoscaling.js";
import { servingVersion } from "./reconcile.js";
import { type ClusterState, type ModelRecord, type ModelReplicaRecord, replicaId, SERVING_STATES } from "./records.js";
import { MAX_VALUE_BYTES } from "./store/table.js";

/**
 * Builds the route table gateways use from the cluster state: for each model, the newest version that has serving
 * replicas and those replicas' endpoints, by replica index (traffic moves to a new version only once it can serve);
 * pipelines with their state; experiments with whether they are active. Pure.
 *
 * It runs after every change, over every model, so it avoids per-endpoint garbage: endpoint objects are built in one
 * literal and a replica list is copied and sorted only when it has more than one entry and is out of order.
 */
export function buildRouteTable(state: ClusterState, revision: number): RouteTable {
  const table: RouteTable = { revision, models: {}, pipelines: {}, experiments: {} };
  for (const name of [...state.models.keys()].sort()) {
    const model = state.models.get(name)!;
    if (model.deleting) continue;
    const version = servingVersion(model);
    if (version === undefined) {
      // An autoscaled model scaled to zero (or waking up) keeps a route without endpoints, so that a gateway knows a
      // request for it is to wake it and wait, not to be answered 404 (docs/autoscaling.md).
      if (isWakeable(model)) {
        const latest = model.versions[model.versions.length - 1]!;
        table.models[name] = { name, version: latest.version, state: model.state, endpoints: [] };
      }
      continue;
    }
    const endpoints: ReplicaEndpoint[] = [];
    for (const r of byReplicaIndex(version.replicas)) {
      if (!SERVING_STATES.has(r.state)) continue;
      const agent = state.replicas.get(replicaId(r.server, r.replica));
      if (agent === undefined) continue;
      const { http, grpc } = agent.endpoints;
      // Same keys in the same order as always, so the table's JSON (compared and stored) is unchanged.
      endpoints.push(
        grpc === undefined
          ? { server: r.server, replica: r.replica, version: version.version, http }
          : { server: r.server, replica: r.replica, version: version.version, http, grpc },
      );
    }
    if (endpoints.length > 0) {
      const route: ModelRoute = { name, version: version.version, state: model.state, endpoints };
      table.models[name] = route;
    }
  }
  for (const name of [...state.pipelines.keys()].sort()) {
    const p = state.pipelines.get(name)!;
    // A terminated pipeline is kept for `tern status` only: to the data plane it does not exist.
    if (p.state === "PipelineTerminated") continue;
    table.pipelines[name] = { name, state: p.state, io: pipelineIo(name, p.resource.spec) };
  }
  for (const name of [...state.experiments.keys()].sort()) {
    const e = state.experiments.get(name)!;
    const spec = e.resource.spec;
    table.experiments[name] = {
      name,
      resourceType: spec.resourceType ?? "model",
      candidates: experimentCandidates(spec),
      active: e.active,
      ...(spec.default === undefined ? {} : { default: spec.default }),
      ...(spec.mirror === undefined ? {} : { mirror: { name: spec.mirror.name, percent: spec.mirror.percent ?? 100 } }),
    };
  }
  return table;
}

/**
 * Autoscaled down to zero, or on its way back (woken, loading — or not placeable yet, which a server scale-up may
 * cure): a request may wake it and wait.
 */
function isWakeable(model: ModelRecord): boolean {
  const bounds = scalingBounds(model.resource.spec);
  if (bounds === undefined || bounds.max < 1) return false;
  if (model.state === "ModelScaledDown") return true;
  return (model.state === "ModelProgressing" || model.state === "ScheduleFailed") && model.autoscaling !== undefined;
}

/**
 * The replicas in ascending index order (a stable sort, so equal indexes on different servers keep their order).
 * Lists of one, and lists already in order (the usual case: placement adds them in order), are returned as they are.
 */
function byReplicaIndex(replicas: readonly ModelReplicaRecord[]): readonly ModelReplicaRecord[] {
  for (let i = 1; i < replicas.length; i++) {
    if (replicas[i]!.replica < replicas[i - 1]!.replica) return [...replicas].sort((a, b) => a.replica - b.replica);
  }
  return replicas;
}

/**
 * Size of the route table as the store would hold it (UTF-8 bytes of its JSON), and whether it fits one store item.
 * The table is written as one item (`routes/current`); DynamoDB caps an item at 400 KB and the store refuses values
 * over {@link MAX_VALUE_BYTES}. At about 150–300 bytes per model the table outgrows one item somewhere between 1 300
 * and 2 600 models (bench/results/scheduler.md has measured figures), so callers must check before writing it.
 */
export function routeTableItemSize(table: RouteTable): { bytes: number; fits: boolean; limit: number } {
  const bytes = Buffer.byteLength(JSON.stringify(table), "utf8");
  return { bytes, fits: bytes <= MAX_VALUE_BYTES, limit: MAX_VALUE_BYTES };
}

/** What to store for a route table, see {@link routeTableToStore}. */
export interface StoredRouteTable {
  value: RouteTable | PackedRouteTable;
  packed: boolean;
  /** UTF-8 bytes of the value's JSON. */
  bytes: number;
  /** False when not even the packed form fits one store item: then nothing can be written. */
  fits: boolean;
  limit: number;
}

/**
 * The value of the `routes/current` item: the table itself when it fits one store item, else the table packed (Brotli,
 * base64), which holds about a hundred times as many models. Packing only large tables keeps the common write cheap and
 * the item readable by eye.
 */
export function routeTableToStore(table: RouteTable): StoredRouteTable {
  const plain = routeTableItemSize(table);
  if (plain.fits) return { value: table, packed: false, bytes: plain.bytes, fits: true, limit: plain.limit };
  const value = packRouteTable(table);
  const bytes = Buffer.byteLength(JSON.stringify(value), "utf8");
  return { value, packed: true, bytes, fits: bytes <= MAX_VALUE_BYTES, limit: MAX_VALUE_BYTES };
}

/** True when two tables route the same way (the revision aside). */
export function sameRoutes(a: RouteTable, b: RouteTable): boolean {
  return JSON.stringify({ ...a, revision: 0 }) === JSON.stringify({ ...b, revision: 0 });
}
