import type { ReplicaEndpoint } from "@tern/core";

/**
 * Picks a replica by fewest requests in flight through THIS gateway; ties go round robin so that an idle model's
 * requests still spread over its replicas. State is per process (a Lambda instance sees only its own requests, which
 * is the best it can know without a shared counter on the hot path).
 */
export interface Balancer {
  /** The chosen endpoint, or undefined when `endpoints` minus `exclude` is empty. */
  pick(model: string, endpoints: readonly ReplicaEndpoint[], exclude?: ReplicaEndpoint): ReplicaEndpoint | undefined;
  /** Marks a request started on `endpoint`; call the returned function exactly once when it ends. */
  begin(endpoint: ReplicaEndpoint): () => void;
  /** Requests in flight on the endpoint (for tests and metrics). */
  inFlight(endpoint: ReplicaEndpoint): number;
}

/** Identity of an endpoint: its REST base URL (two replicas never share one). */
export function endpointKey(endpoint: ReplicaEndpoint): string {
  return endpoint.http;
}

export function createBalancer(): Balancer {
  const inFlight = new Map<string, number>();
  const cursor = new Map<string, number>();
  return {
    pick(model, endpoints, exclude) {
      const n = endpoints.length;
      if (n === 0) return undefined;
      const start = cursor.get(model) ?? 0;
      const excludeKey = exclude ? endpointKey(exclude) : undefined;
      let best: ReplicaEndpoint | undefined;
      let bestLoad = Number.POSITIVE_INFINITY;
      let bestOffset = 0;
      for (let i = 0; i < n; i++) {
        const candidate = endpoints[(start + i) % n]!;
        const key = endpointKey(candidate);
        if (key === excludeKey) continue;
        const load = inFlight.get(key) ?? 0;
        if (load < bestLoad) {
          best = candidate;
          bestLoad = load;
          bestOffset = i;
        }
      }
      // Advance past the chosen one so that the next tie starts at its neighbour.
      if (best) cursor.set(model, (start + bestOffset + 1) % n);
      return best;
    },
    begin(endpoint) {
      const key = endpointKey(endpoint);
      inFlight.set(key, (inFlight.get(key) ?? 0) + 1);
      let done = false;
      return () => {
        if (done) return;
        done = true;
        const left = (inFlight.get(key) ?? 1) - 1;
        if (left <= 0) inFlight.delete(key);
        else inFlight.set(key, left);
      };
    },
    inFlight: (endpoint) => inFlight.get(endpointKey(endpoint)) ?? 0,
  };
}
