import { createHashRing, createTopicNames } from "@tern/core";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  bucketGroupId,
  bucketOf,
  bucketOwners,
  bucketStatuses,
  modelGatewayAssignments,
  placeBuckets,
} from "../../src/bucket-placement.js";
import { type ClusterState, emptyClusterState, type ModelRecord, workerId } from "../../src/records.js";

const workerIds = fc.uniqueArray(fc.stringMatching(/^[a-z0-9]{1,8}(-[a-z0-9]{1,4})?$/), { minLength: 1, maxLength: 8 });
const bucketCounts = fc.integer({ min: 1, max: 64 });
// Fixed seed: the properties are deterministic functions of the generated inputs, so a fixed seed cannot flake.
const SEED = 9_2026;

/** A model that serves (has an Available replica) unless `serving` is false. */
function servingModel(name: string, serving = true): ModelRecord {
  return {
    name,
    resource: {
      apiVersion: "mlops.seldon.io/v1alpha1",
      kind: "Model",
      metadata: { name },
      spec: { storageUri: `file:///m/${name}` },
    },
    versions: [
      {
        version: 1,
        specKey: "k",
        storageUri: `file:///m/${name}`,
        memoryBytes: 1,
        requirements: [],
        parameters: [],
        replicas: serving ? [{ server: "s", replica: 0, state: "Available" }] : [],
      },
    ],
    deleting: false,
    state: serving ? "ModelAvailable" : "ModelProgressing",
  } as ModelRecord;
}

function stateWith(gateways: string[], models: ModelRecord[] = []): ClusterState {
  const state = emptyClusterState();
  for (const id of gateways)
    state.workers.set(workerId("modelgateway", id), { kind: "modelgateway", id, registeredAt: 0 });
  for (const m of models) state.models.set(m.name, m);
  return state;
}

describe("bucket placement", () => {
  it("gives every bucket exactly one owner, a registered worker, while at least one worker is registered", () => {
    fc.assert(
      fc.property(workerIds, bucketCounts, (workers, buckets) => {
        const placed = [...placeBuckets(stateWith(workers), { buckets }).values()];
        expect(placed.map((b) => b.bucket)).toEqual(Array.from({ length: buckets }, (_, b) => b));
        for (const b of placed) expect(workers).toContain(b.owner);
      }),
      { seed: SEED },
    );
  });

  it("stores no bucket while no model gateway is registered (dataflow workers do not own buckets)", () => {
    const state = stateWith([]);
    state.workers.set(workerId("dataflow", "d-0"), { kind: "dataflow", id: "d-0", registeredAt: 0 });
    expect(placeBuckets(state).size).toBe(0);
    expect(bucketOwners([], 4)).toEqual([undefined, undefined, undefined, undefined]);
  });

  it("moves, when a worker joins, exactly the buckets the ring gives the newcomer and nothing else", () => {
    fc.assert(
      fc.property(workerIds, bucketCounts, (workers, buckets) => {
        const [joiner, ...before] = workers;
        fc.pre(before.length > 0);
        const ownersBefore = bucketOwners(before, buckets);
        const ownersAfter = bucketOwners([...before, joiner!], buckets);
        const ring = createHashRing({ nodes: [...before, joiner!] });
        for (let b = 0; b < buckets; b++) {
          if (ownersAfter[b] !== ownersBefore[b]) expect(ownersAfter[b]).toBe(joiner);
          expect(ownersAfter[b]).toBe(ring.primary(`bucket-${b}`));
        }
      }),
      { seed: SEED },
    );
  });

  it("is deterministic: the order workers registered in does not change the owners", () => {
    fc.assert(
      fc.property(
        workerIds.chain((ws) => fc.tuple(fc.constant(ws), fc.shuffledSubarray(ws, { minLength: ws.length }))),
        bucketCounts,
        ([workers, shuffled], buckets) => {
          expect(bucketOwners(shuffled, buckets)).toEqual(bucketOwners(workers, buckets));
          expect(placeBuckets(stateWith(shuffled), { buckets })).toEqual(placeBuckets(stateWith(workers), { buckets }));
        },
      ),
      { seed: SEED },
    );
  });

  it("puts every serving model into exactly the bucket its hash names, and no model that does not serve", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.stringMatching(/^[a-z][a-z0-9-]{0,10}$/), { maxLength: 30 }),
        bucketCounts,
        (names, buckets) => {
          const models = names.map((n, i) => servingModel(n, i % 4 !== 0));
          const placed = [...placeBuckets(stateWith(["mg-0"], models), { buckets }).values()];
          for (const [i, n] of names.entries()) {
            const holders = placed.filter((b) => b.models.includes(n)).map((b) => b.bucket);
            expect(holders).toEqual(i % 4 !== 0 ? [bucketOf(n, buckets)] : []);
          }
        },
      ),
      { seed: SEED },
    );
  });

  it("leaves out models whose topics are not known to exist when topics are managed", () => {
    const ready = { ...servingModel("a"), topics: { ready: true } };
    const failed = { ...servingModel("b"), topics: { ready: false, reason: "x" } };
    const unchecked = servingModel("c");
    const all = (requireTopics: boolean) =>
      [...placeBuckets(stateWith(["mg-0"], [ready, failed, unchecked]), { buckets: 1, requireTopics }).values()][0]!
        .models;
    expect(all(true)).toEqual(["a"]);
    expect(all(false)).toEqual(["a", "b", "c"]);
  });

  it("names each bucket's group after the namespace and hands a worker its buckets with the models' topics", () => {
    const names = createTopicNames({ prefix: "seldon", namespace: "prod" });
    const buckets = placeBuckets(stateWith(["mg-0", "mg-1"], [servingModel("iris")]), {
      buckets: 4,
      topicNames: names,
    });
    const irisBucket = bucketOf("iris", 4);
    const owner = [...buckets.values()].find((b) => b.bucket === irisBucket)!.owner!;
    const a = modelGatewayAssignments(buckets.values(), owner, names, 4, 7);
    expect(a).toMatchObject({ revision: 7, kind: "modelgateway", id: owner, partitions: 4 });
    expect(a.errorsTopic).toBe("seldon.prod.errors.errors");
    expect(a.buckets.find((b) => b.bucket === irisBucket)).toEqual({
      bucket: irisBucket,
      groupId: `tern.prod.modelgateway.bucket-${irisBucket}`,
      models: [
        { model: "iris", inputTopic: "seldon.prod.model.iris.inputs", outputTopic: "seldon.prod.model.iris.outputs" },
      ],
    });
    expect(bucketGroupId(names, 3)).toBe("tern.prod.modelgateway.bucket-3");
    const other = owner === "mg-0" ? "mg-1" : "mg-0";
    const all = [...a.buckets, ...modelGatewayAssignments(buckets.values(), other, names, 4, 7).buckets].map(
      (b) => b.bucket,
    );
    expect(all.sort()).toEqual([0, 1, 2, 3]);
  });

  it("shows the buckets unowned, with their models, while no model gateway is registered", () => {
    const statuses = bucketStatuses(stateWith([], [servingModel("iris")]), { buckets: 2 });
    expect(statuses.map((s) => s.owner)).toEqual([undefined, undefined]);
    expect(statuses.map((s) => s.consumers)).toEqual([0, 0]);
    expect(statuses[bucketOf("iris", 2)]!.models).toEqual(["iris"]);
  });
});
