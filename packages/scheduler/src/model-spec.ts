import { effectiveReplicas, type ModelResource, type ModelSpec, parseQuantity } from "@tern/core";
import type { ModelRecord, ModelVersionRecord } from "./records.js";

/**
 * Memory assumed for a model whose manifest gives none. Tern's choice (small, so such models still pack densely):
 * a model is never placed more than once per server replica anyway.
 */
export const DEFAULT_MODEL_MEMORY_BYTES = 1024 * 1024;

/** Replicas the spec asks for: `replicas`, else `minReplicas`, else 1 (DESIGN §2). */
export function wantedReplicas(spec: ModelSpec): number {
  return effectiveReplicas(spec);
}

/**
 * Replicas placement works to: the autoscaler's desired count when it decided one (kept within the spec's current
 * bounds, which a later apply may have moved), else what the spec asks for.
 */
export function modelWantedReplicas(model: Pick<ModelRecord, "resource" | "autoscaling">): number {
  const spec = model.resource.spec;
  const desired = model.autoscaling?.desiredReplicas;
  if (desired === undefined) return wantedReplicas(spec);
  const min = spec.minReplicas ?? 0;
  const max = spec.maxReplicas ?? Number.POSITIVE_INFINITY;
  return Math.min(Math.max(desired, min), max);
}

/**
 * The fields that define a model version: a change to anything but the replica counts makes a new version.
 * The key is canonical JSON (sorted keys) so that re-applying the same manifest, in any key order, is a no-op.
 */
export function versionKey(spec: ModelSpec): string {
  const { replicas: _r, minReplicas: _min, maxReplicas: _max, ...rest } = spec;
  return canonicalJson(rest);
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** A fresh version record for `resource`, with no replicas yet. */
export function newVersion(resource: ModelResource, version: number): ModelVersionRecord {
  const spec = resource.spec;
  const record: ModelVersionRecord = {
    version,
    specKey: versionKey(spec),
    storageUri: spec.storageUri,
    memoryBytes: spec.memory === undefined ? DEFAULT_MODEL_MEMORY_BYTES : parseQuantity(spec.memory),
    requirements: [...(spec.requirements ?? [])],
    parameters: [...(spec.parameters ?? [])],
    replicas: [],
  };
  if (spec.memory === undefined) record.memoryDefaulted = true;
  if (spec.secretName !== undefined) record.secretName = spec.secretName;
  if (spec.server !== undefined) record.pinnedServer = spec.server;
  return record;
}
