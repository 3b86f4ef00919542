import { type RouteTable, type StateStore, type StoredItem, TernError, unpackRouteTable } from "@tern/core";
import {
  type BucketRecord,
  type ClusterState,
  COLLECTIONS,
  type ExperimentRecord,
  emptyClusterState,
  type ModelRecord,
  type PipelineRecord,
  REVISION_KEY,
  type ReplicaRecord,
  ROUTES_KEY,
  type ServerRecord,
  type WorkerRecord,
} from "./records.js";

/** Everything a scheduler reads from the store on start (and a standby on every read). */
export interface LoadedState {
  state: ClusterState;
  /** Store version of every item, by `collection/id`, for conditional writes. */
  versions: Map<string, number>;
  revision: number;
  routes: RouteTable | undefined;
}

/** The key used in {@link LoadedState.versions}. */
export function versionKeyOf(collection: string, id: string): string {
  return `${collection}\u0000${id}`;
}

/** Reads the whole cluster state from the store. */
export async function loadState(store: StateStore): Promise<LoadedState> {
  const [models, servers, replicas, pipelines, experiments, workers, buckets, revision, routes] = await Promise.all([
    store.list<ModelRecord>(COLLECTIONS.model),
    store.list<ServerRecord>(COLLECTIONS.server),
    store.list<ReplicaRecord>(COLLECTIONS.replica),
    store.list<PipelineRecord>(COLLECTIONS.pipeline),
    store.list<ExperimentRecord>(COLLECTIONS.experiment),
    store.list<WorkerRecord>(COLLECTIONS.worker),
    store.list<BucketRecord>(COLLECTIONS.bucket),
    store.get<{ revision: number }>(REVISION_KEY),
    store.get<unknown>(ROUTES_KEY),
  ]);
  const state = emptyClusterState();
  const versions = new Map<string, number>();
  const fill = <T>(map: Map<string, T>, items: StoredItem<T>[]) => {
    for (const item of items) {
      map.set(item.id, item.value);
      versions.set(versionKeyOf(item.collection, item.id), item.version);
    }
  };
  fill(state.models, models);
  fill(state.servers, servers);
  fill(state.replicas, replicas);
  fill(state.pipelines, pipelines);
  fill(state.experiments, experiments);
  fill(state.workers, workers);
  fill(state.buckets, buckets);
  if (revision !== undefined) versions.set(versionKeyOf(REVISION_KEY.collection, REVISION_KEY.id), revision.version);
  if (routes !== undefined) versions.set(versionKeyOf(ROUTES_KEY.collection, ROUTES_KEY.id), routes.version);
  const rev = revision?.value.revision ?? 0;
  if (!Number.isSafeInteger(rev) || rev < 0) {
    throw new TernError("internal", `stored revision is not a non-negative integer (got ${JSON.stringify(rev)})`);
  }
  return {
    state,
    versions,
    revision: rev,
    routes: routes === undefined ? undefined : (unpackRouteTable(routes.value) as RouteTable),
  };
}
