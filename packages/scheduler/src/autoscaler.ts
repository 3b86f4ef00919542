import { type AgentHeartbeat, TernError } from "@tern/core";
import type { Logger } from "pino";
import {
  type AutoscalingPolicy,
  decideScaling,
  type LagSample,
  type ScalingDecision,
  scalingBounds,
} from "./autoscaling.js";
import { modelWantedReplicas } from "./model-spec.js";
import { desiredServerReplicas } from "./reconcile.js";
import { type ClusterState, type ModelScalingRecord, replicaId, SERVING_STATES } from "./records.js";

/**
 * The autoscaler's effects (the decisions are `autoscaling.ts`): it keeps the traffic the agents report with their
 * heartbeats (in memory only: a standby that takes over starts with an empty history, which only delays the next
 * decision by one window), turns them into one lag sample per model per tick, and writes the desired replica count
 * a decision changes into the model's record through the scheduler's change queue — placement then works to it.
 */
export interface AutoscalerOptions {
  policy: AutoscalingPolicy;
  now: () => number;
  logger: Logger;
  state: () => ClusterState;
  change: <T>(mutate: (draft: ClusterState) => T) => Promise<T>;
  /** A replica's report older than this is not used (it stopped heartbeating or holds the model no more). */
  staleMs: number;
}

/** The outcome of {@link Autoscaler.activate}. */
export interface ActivationResult {
  model: string;
  desiredReplicas: number;
  /** True when this call raised the count from 0; false when the model already wanted replicas (idempotent). */
  activated: boolean;
}

export interface Autoscaler {
  /** Keeps one agent's traffic report (from its heartbeat). */
  report(server: string, replica: number, heartbeat: AgentHeartbeat): void;
  /** Decides for every autoscaled model and writes what changed (one transaction). */
  tick(): Promise<void>;
  /**
   * A request arrived for a model scaled to zero: want one replica. Idempotent — any number of calls while the model
   * wants replicas change nothing. Throws `not_found` for an unknown model, `conflict` for one that is not autoscaled
   * down to zero (its manifest's replicas are what it gets).
   */
  activate(model: string): Promise<ActivationResult>;
}

interface ReplicaReport {
  at: number;
  lag: number;
  inFlight: number;
  idleMs: number;
}

export function createAutoscaler(options: AutoscalerOptions): Autoscaler {
  const { policy, now, logger } = options;
  /** model → replica id → its last report. */
  const reports = new Map<string, Map<string, ReplicaReport>>();
  /** model → lag samples, oldest first. */
  const history = new Map<string, LagSample[]>();
  const keepMs = Math.max(2 * policy.scaleUpWindowMs, 10_000);

  function sampleOf(model: string, serving: string[], t: number): { sample?: LagSample; idleMs?: number } {
    const byReplica = reports.get(model);
    let lag = 0;
    let fresh = 0;
    let idleMs: number | undefined;
    for (const id of serving) {
      const r = byReplica?.get(id);
      if (r === undefined || t - r.at > options.staleMs) continue;
      fresh++;
      lag += r.lag;
      const idle = r.inFlight > 0 ? 0 : r.idleMs + (t - r.at);
      idleMs = idleMs === undefined ? idle : Math.max(idleMs, idle);
    }
    if (fresh === 0) return {};
    return { sample: { at: t, lag: lag / fresh }, ...(idleMs === undefined ? {} : { idleMs }) };
  }

  return {
    report(server, replica, heartbeat) {
      const t = now();
      const id = replicaId(server, replica);
      for (const m of heartbeat.models) {
        let byReplica = reports.get(m.model);
        if (byReplica === undefined) {
          byReplica = new Map();
          reports.set(m.model, byReplica);
        }
        byReplica.set(id, { at: t, lag: m.lag, inFlight: m.inFlight, idleMs: m.idleMs });
      }
    },

    async tick() {
      const t = now();
      const state = options.state();
      const updates = new Map<string, { from: number; decision: ScalingDecision }>();
      for (const name of reports.keys()) if (!state.models.has(name)) reports.delete(name);
      for (const name of history.keys()) if (!state.models.has(name)) history.delete(name);
      for (const model of state.models.values()) {
        const bounds = scalingBounds(model.resource.spec);
        if (bounds === undefined || model.deleting) continue;
        const latest = model.versions[model.versions.length - 1]!;
        const serving = latest.replicas
          .filter((r) => SERVING_STATES.has(r.state))
          .map((r) => replicaId(r.server, r.replica));
        const { sample, idleMs } = sampleOf(model.name, serving, t);
        let samples = history.get(model.name) ?? [];
        if (sample !== undefined) samples.push(sample);
        samples = samples.filter((s) => s.at >= t - keepMs);
        history.set(model.name, samples);

        const current = modelWantedReplicas(model);
        const serverRecord = latest.server === undefined ? undefined : state.servers.get(latest.server);
        const decision = decideScaling(
          {
            model: model.name,
            minReplicas: bounds.min,
            maxReplicas: bounds.max,
            current,
            ...(serverRecord === undefined
              ? {}
              : { server: { name: serverRecord.name, replicas: desiredServerReplicas(serverRecord) } }),
            samples,
            ...(idleMs === undefined ? {} : { idleMs }),
            ...(model.autoscaling?.lastChangeAt === undefined ? {} : { lastChangeAt: model.autoscaling.lastChangeAt }),
            now: t,
          },
          policy,
        );
        if (needsWrite(model.autoscaling, current, decision)) updates.set(model.name, { from: current, decision });
      }
      if (updates.size === 0) return;
      await options.change((draft) => {
        for (const [name, { from, decision }] of updates) {
          const model = draft.models.get(name);
          if (model === undefined || model.deleting) continue;
          model.autoscaling = applyDecision(model.autoscaling, from, decision, t);
          if (decision.desired !== from) {
            logger.info({ model: name, from, to: decision.desired, reason: decision.reason }, "model scaled");
          }
        }
      });
    },

    activate(name) {
      return options.change((draft) => {
        const model = draft.models.get(name);
        if (model === undefined || model.deleting) throw new TernError("not_found", `Model ${name} not found`);
        const bounds = scalingBounds(model.resource.spec);
        const current = modelWantedReplicas(model);
        if (current > 0) return { model: name, desiredReplicas: current, activated: false };
        if (bounds === undefined || bounds.max < 1) {
          throw new TernError(
            "conflict",
            `Model ${name} asks for 0 replicas and is not autoscaled (set spec.maxReplicas to let requests wake it)`,
          );
        }
        const to = Math.max(1, bounds.min);
        const t = now();
        model.autoscaling = {
          desiredReplicas: to,
          lastChangeAt: t,
          lastDecision: { at: t, from: 0, to, reason: `a request arrived while scaled to zero: 0 → ${to}` },
        };
        // Reports and samples from before the scale-down say nothing about the replica that is coming (an old
        // report's idle time would scale it straight down again).
        history.delete(name);
        reports.delete(name);
        logger.info({ model: name, to }, "model woken from zero by a request");
        return { model: name, desiredReplicas: to, activated: true };
      });
    },
  };
}

/** A decision is written when it changes the count, or when what it asks of the server (and why) changed. */
function needsWrite(record: ModelScalingRecord | undefined, current: number, d: ScalingDecision): boolean {
  if (d.desired !== current) return true;
  if (d.wantsServerReplicas !== record?.wantsServerReplicas) return true;
  return d.wantsServerReplicas !== undefined && record?.lastDecision?.reason !== d.reason;
}

function applyDecision(
  record: ModelScalingRecord | undefined,
  from: number,
  d: ScalingDecision,
  t: number,
): ModelScalingRecord {
  const next: ModelScalingRecord = { desiredReplicas: d.desired };
  if (d.desired !== from) {
    next.lastChangeAt = t;
    next.lastDecision = { at: t, from, to: d.desired, reason: d.reason };
  } else {
    if (record?.lastChangeAt !== undefined) next.lastChangeAt = record.lastChangeAt;
    if (d.wantsServerReplicas !== undefined) next.lastDecision = { at: t, from, to: d.desired, reason: d.reason };
    else if (record?.lastDecision !== undefined) next.lastDecision = record.lastDecision;
  }
  if (d.wantsServerReplicas !== undefined) next.wantsServerReplicas = d.wantsServerReplicas;
  return next;
}
