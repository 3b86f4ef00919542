import type { RouteTable } from "@tern/core";

/**
 * Checks that an untrusted value (JSON from the scheduler or DynamoDB) has the shape of a RouteTable and fills absent
 * maps with empty ones; undefined when it does not. Only the top level is checked: the scheduler built the rest.
 */
export function asRouteTable(value: unknown): RouteTable | undefined {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const v = value as Partial<Record<keyof RouteTable, unknown>>;
  if (typeof v.revision !== "number" || !Number.isFinite(v.revision)) return undefined;
  if (!isRecord(v.models)) return undefined;
  if (v.pipelines !== undefined && !isRecord(v.pipelines)) return undefined;
  if (v.experiments !== undefined && !isRecord(v.experiments)) return undefined;
  return {
    revision: v.revision,
    models: v.models as RouteTable["models"],
    pipelines: (v.pipelines ?? {}) as RouteTable["pipelines"],
    experiments: (v.experiments ?? {}) as RouteTable["experiments"],
  };
}

function isRecord(value: unknown): boolean {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
