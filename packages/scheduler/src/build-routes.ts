import type { ModelRoute, RouteTable } from "@tern/core";
import { servingVersion } from "./reconcile.js";
import { type ClusterState, replicaId, SERVING_STATES } from "./records.js";

/**
 * Builds the route table gateways use from the cluster state: for each model, the newest version that has serving
 * replicas and those replicas' endpoints (traffic moves to a new version only once it can serve); pipelines with
 * their state; experiments with whether they are active. Pure.
 */
export function buildRouteTable(state: ClusterState, revision: number): RouteTable {
  const table: RouteTable = { revision, models: {}, pipelines: {}, experiments: {} };
  for (const name of [...state.models.keys()].sort()) {
    const model = state.models.get(name)!;
    if (model.deleting) continue;
    const version = servingVersion(model);
    if (version === undefined) continue;
    const route: ModelRoute = { name, version: version.version, state: model.state, endpoints: [] };
    for (const r of [...version.replicas].sort((a, b) => a.replica - b.replica)) {
      if (!SERVING_STATES.has(r.state)) continue;
      const agent = state.replicas.get(replicaId(r.server, r.replica));
      if (agent === undefined) continue;
      const endpoint = { server: r.server, replica: r.replica, version: version.version, http: agent.endpoints.http };
      route.endpoints.push(agent.endpoints.grpc === undefined ? endpoint : { ...endpoint, grpc: agent.endpoints.grpc });
    }
    if (route.endpoints.length > 0) table.models[name] = route;
  }
  for (const name of [...state.pipelines.keys()].sort()) {
    const p = state.pipelines.get(name)!;
    table.pipelines[name] = { name, state: p.state };
  }
  for (const name of [...state.experiments.keys()].sort()) {
    const e = state.experiments.get(name)!;
    const spec = e.resource.spec;
    table.experiments[name] = {
      name,
      resourceType: spec.resourceType ?? "model",
      candidates: spec.candidates,
      active: e.active,
      ...(spec.default === undefined ? {} : { default: spec.default }),
      ...(spec.mirror === undefined ? {} : { mirror: { name: spec.mirror.name, percent: spec.mirror.percent ?? 100 } }),
    };
  }
  return table;
}

/** True when two tables route the same way (the revision aside). */
export function sameRoutes(a: RouteTable, b: RouteTable): boolean {
  return JSON.stringify({ ...a, revision: 0 }) === JSON.stringify({ ...b, revision: 0 });
}
