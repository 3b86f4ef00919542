import type { ModelTrafficReport } from "@tern/core";

/**
 * Per-model traffic counters for autoscaling (docs/autoscaling.md): requests in flight, their time-weighted mean
 * (the lag), requests answered and the last time a request arrived. Counting is a few additions per request; the
 * figures leave the agent only with its heartbeats ({@link ModelTraffic.report}), never per request.
 */
export interface ModelTraffic {
  /** A request for `model` arrived. Call {@link ModelTraffic.end} exactly once when it is answered (or fails). */
  begin(model: string): void;
  end(model: string): void;
  /** The model became available here: its idle time counts from now until its first request. */
  loaded(model: string): void;
  /** The model left: it is reported no more. */
  unloaded(model: string): void;
  /** The figures since the previous report (for the models `held` names), and starts a new period. */
  report(held: readonly string[]): ModelTrafficReport[];
}

interface Counters {
  inFlight: number;
  /** ∫ inFlight dt over the current period, in request·ms. */
  area: number;
  /** When `inFlight` last changed or the period started. */
  since: number;
  answered: number;
  lastUsedAt: number;
}

export function createModelTraffic(now: () => number = () => performance.now()): ModelTraffic {
  const models = new Map<string, Counters>();
  let periodStart = now();

  function counters(model: string, t: number): Counters {
    let c = models.get(model);
    if (c === undefined) {
      c = { inFlight: 0, area: 0, since: t, answered: 0, lastUsedAt: t };
      models.set(model, c);
    }
    return c;
  }

  function advance(c: Counters, t: number): void {
    c.area += c.inFlight * (t - c.since);
    c.since = t;
  }

  return {
    begin(model) {
      const t = now();
      const c = counters(model, t);
      advance(c, t);
      c.inFlight++;
      c.lastUsedAt = t;
    },
    end(model) {
      const t = now();
      const c = models.get(model);
      if (c === undefined || c.inFlight === 0) return;
      advance(c, t);
      c.inFlight--;
      c.answered++;
    },
    loaded(model) {
      const t = now();
      counters(model, t).lastUsedAt = t;
    },
    unloaded(model) {
      const c = models.get(model);
      // Requests still in flight finish against the old record's counters; only an idle entry can go.
      if (c !== undefined && c.inFlight === 0) models.delete(model);
    },
    report(held) {
      const t = now();
      const period = Math.max(1, t - periodStart);
      periodStart = t;
      const out: ModelTrafficReport[] = [];
      const names = new Set(held);
      // Requests for models not held here (unknown names, a model just unloaded) leave no counters behind.
      for (const [model, c] of models) if (!names.has(model) && c.inFlight === 0) models.delete(model);
      for (const model of names) {
        const c = counters(model, t);
        advance(c, t);
        out.push({
          model,
          inFlight: c.inFlight,
          lag: c.area / period,
          requestsPerSecond: (c.answered * 1000) / period,
          idleMs: c.inFlight > 0 ? 0 : Math.max(0, Math.round(t - c.lastUsedAt)),
        });
        c.area = 0;
        c.answered = 0;
      }
      return out;
    },
  };
}
