import {
  type BucketAssignment,
  type BucketStatus,
  createHashRing,
  createTopicNames,
  murmur3,
  type TopicNames,
  type WorkerAssignments,
} from "@tern/core";
import { type BucketRecord, bucketId, type ClusterState, type ModelRecord, SERVING_STATES } from "./records.js";

/**
 * Where model-gateway work goes (DESIGN §3), as pure functions of the cluster state: every model hashes into one of
 * B buckets (`murmur3(model) % B`), each bucket is one Kafka consumer group, and the buckets are spread over the
 * registered model-gateway replicas with the consistent-hash ring, so a replica joining or leaving moves only the
 * buckets the ring gives to or takes from it, and a model applied or removed rebalances only its own bucket's group.
 * The reconciler stores the result (one item per bucket), so a standby serves the same answer.
 */

/** @default 16 (see TERN_MODELGATEWAY_BUCKETS) */
export const DEFAULT_MODELGATEWAY_BUCKETS = 16;

export interface BucketPlacementOptions {
  /** B. @default 16 */
  buckets?: number;
  /** Topic names of the installation (their namespace also names the groups). @default seldon/default */
  topicNames?: TopicNames;
  /**
   * True when the scheduler manages topics (it has a Kafka admin): only models whose topics are known to exist go into
   * a bucket, so that no consumer subscribes to a missing topic (a broker that auto-creates topics would create it
   * with its own default partition count). False: every routable model goes in. @default false
   */
  requireTopics?: boolean;
}

/** The bucket a model hashes to. */
export function bucketOf(model: string, buckets: number): number {
  return murmur3(model) % buckets;
}

/** The consumer group of a bucket: `tern.<namespace>.modelgateway.bucket-<b>`. */
export function bucketGroupId(names: TopicNames, bucket: number): string {
  return `tern.${names.namespace}.modelgateway.bucket-${bucket}`;
}

/** The ring key of a bucket (what the ring hashes to find its owner). */
function ringKey(bucket: number): string {
  return `bucket-${bucket}`;
}

/**
 * The owner of each bucket among `workers` (worker ids): index b holds bucket b's owner, undefined when there is no
 * worker. Depends only on the set of ids, never on their order.
 */
export function bucketOwners(workers: Iterable<string>, buckets: number): (string | undefined)[] {
  const ring = createHashRing({ nodes: workers });
  return Array.from({ length: buckets }, (_, b) => ring.primary(ringKey(b)));
}

/** A model goes into its bucket while it has a route (and, when topics are managed, its topics exist). */
export function inBucket(model: ModelRecord, requireTopics: boolean): boolean {
  if (model.deleting) return false;
  // Has a route: some version has a serving replica (as the route table decides).
  if (!model.versions.some((v) => v.replicas.some((r) => SERVING_STATES.has(r.state)))) return false;
  return !requireTopics || model.topics?.ready === true;
}

/**
 * The bucket records for `state`: empty while no model gateway is registered (nothing to store), else all B buckets
 * with their owner and sorted models.
 */
export function placeBuckets(state: ClusterState, options: BucketPlacementOptions = {}): Map<string, BucketRecord> {
  const out = new Map<string, BucketRecord>();
  const gateways: string[] = [];
  for (const w of state.workers.values()) if (w.kind === "modelgateway") gateways.push(w.id);
  if (gateways.length === 0) return out;
  const buckets = options.buckets ?? DEFAULT_MODELGATEWAY_BUCKETS;
  const names = options.topicNames ?? createTopicNames();
  const owners = bucketOwners(gateways, buckets);
  const models: string[][] = Array.from({ length: buckets }, () => []);
  for (const name of [...state.models.keys()].sort()) {
    if (inBucket(state.models.get(name)!, options.requireTopics ?? false)) models[bucketOf(name, buckets)]!.push(name);
  }
  for (let b = 0; b < buckets; b++) {
    const record: BucketRecord = { bucket: b, groupId: bucketGroupId(names, b), models: models[b]! };
    if (owners[b] !== undefined) record.owner = owners[b];
    out.set(bucketId(b), record);
  }
  return out;
}

/** What one model gateway must run: the stored buckets it owns, with each model's topics. */
export function modelGatewayAssignments(
  buckets: Iterable<BucketRecord>,
  id: string,
  names: TopicNames,
  partitions: number,
  revision: number,
): WorkerAssignments {
  const own: BucketAssignment[] = [...buckets]
    .filter((b) => b.owner === id)
    .sort((a, b) => a.bucket - b.bucket)
    .map((b) => ({
      bucket: b.bucket,
      groupId: b.groupId,
      models: b.models.map((model) => ({
        model,
        inputTopic: names.modelInputs(model),
        outputTopic: names.modelOutputs(model),
      })),
    }));
  return { revision, kind: "modelgateway", id, partitions, errorsTopic: names.errors(), buckets: own, pipelines: [] };
}

/**
 * Every bucket as the status shows it. With stored records (a model gateway is registered) they are the answer;
 * without, the buckets are computed unowned, so an operator still sees where each model would go.
 */
export function bucketStatuses(state: ClusterState, options: BucketPlacementOptions = {}): BucketStatus[] {
  const buckets = options.buckets ?? DEFAULT_MODELGATEWAY_BUCKETS;
  const names = options.topicNames ?? createTopicNames();
  const stored = [...state.buckets.values()];
  const records: BucketRecord[] =
    stored.length > 0
      ? stored.sort((a, b) => a.bucket - b.bucket)
      : [
          ...placeBuckets(
            {
              ...state,
              workers: new Map([["modelgateway/-", { kind: "modelgateway", id: "-", registeredAt: 0 }]]),
            },
            { ...options, buckets, topicNames: names },
          ).values(),
        ].map(({ owner: _o, ...rest }): BucketRecord => rest);
  return records.map((r) => {
    const status: BucketStatus = {
      bucket: r.bucket,
      groupId: r.groupId,
      models: r.models,
      consumers: r.owner === undefined ? 0 : 1,
    };
    if (r.owner !== undefined) status.owner = r.owner;
    return status;
  });
}
