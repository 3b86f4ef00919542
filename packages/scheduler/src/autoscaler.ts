import { type AgentHeartbeat, TernError } from "@tern/core";
import type { Logger } from "pino";
import {
  type AutoscalingPolicy,
  decideScaling,
  decideServerScaling,
  type LagSample,
  type ScalingDecision,
  scalingBounds,
  serverScalingBounds,
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
  /** Server replica id → since when it has held no model (in memory, like the reports). */
  const emptySince = new Map<string, number>();

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

  /** Decisions for every autoscaled Server that change its desired count or the reason it shows. */
  function decideServers(
    state: ClusterState,
    wants: Map<string, { model: string; replicas: number }>,
    t: number,
  ): Map<string, ScalingDecision> {
    const holding = new Set<string>();
    for (const model of state.models.values()) {
      for (const version of model.versions)
        for (const r of version.replicas) holding.add(replicaId(r.server, r.replica));
    }
    for (const id of emptySince.keys()) if (!state.replicas.has(id) || holding.has(id)) emptySince.delete(id);
    for (const id of state.replicas.keys()) if (!holding.has(id) && !emptySince.has(id)) emptySince.set(id, t);
    const out = new Map<string, ScalingDecision>();
    for (const server of state.servers.values()) {
      const bounds = serverScalingBounds(server.resource.spec);
      if (bounds === undefined || server.deleting) continue;
      const current = desiredServerReplicas(server);
      const emptyForMs: number[] = [];
      for (const agent of state.replicas.values()) {
        if (agent.server !== server.name || agent.replica >= current) continue;
        const since = emptySince.get(replicaId(agent.server, agent.replica));
        if (since !== undefined) emptyForMs.push(t - since);
      }
      const wanted = wants.get(server.name);
      const decision = decideServerScaling(
        {
          server: server.name,
          minReplicas: bounds.min,
          maxReplicas: bounds.max,
          current,
          ...(wanted === undefined ? {} : { wanted }),
          emptyForMs,
          ...(server.autoscaling === undefined ? {} : { lastChangeAt: server.autoscaling.lastChangeAt }),
          now: t,
        },
        policy,
      );
      const shown = server.autoscaling?.reason;
      const reasonChanged = decision.change !== "none" || (decision.reason !== "steady" && decision.reason !== shown);
      if (decision.desired !== current || reasonChanged) out.set(server.name, decision);
    }
    return out;
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
      /** Server → the model wanting the most server replicas, and how many. */
      const wants = new Map<string, { model: string; replicas: number }>();
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
        const serverMax = serverRecord && serverScalingBounds(serverRecord.resource.spec)?.max;
        const decision = decideScaling(
          {
            model: model.name,
            minReplicas: bounds.min,
            maxReplicas: bounds.max,
            current,
            ...(serverRecord === undefined
              ? {}
              : {
                  server: {
                    name: serverRecord.name,
                    replicas: desiredServerReplicas(serverRecord),
                    ...(serverMax !== undefined && Number.isFinite(serverMax) ? { maxReplicas: serverMax } : {}),
                  },
                }),
            samples,
            ...(idleMs === undefined ? {} : { idleMs }),
            ...(model.autoscaling?.lastChangeAt === undefined ? {} : { lastChangeAt: model.autoscaling.lastChangeAt }),
            now: t,
          },
          policy,
        );
        if (needsWrite(model.autoscaling, current, decision)) updates.set(model.name, { from: current, decision });
        if (decision.wantsServerReplicas !== undefined && latest.server !== undefined) {
          const w = wants.get(latest.server);
          if (w === undefined || w.replicas < decision.wantsServerReplicas) {
            wants.set(latest.server, { model: model.name, replicas: decision.wantsServerReplicas });
          }
        }
      }
      const serverUpdates = decideServers(state, wants, t);
      if (updates.size === 0 && serverUpdates.size === 0) return;
      await options.change((draft) => {
        for (const [name, decision] of serverUpdates) {
          const server = draft.servers.get(name);
          if (server === undefined || server.deleting) continue;
          const from = desiredServerReplicas(server);
          const changed = decision.desired !== from;
          server.autoscaling = {
            desiredReplicas: decision.desired,
            lastChangeAt: changed ? t : (server.autoscaling?.lastChangeAt ?? t),
            reason: decision.reason,
          };
          if (changed) {
            logger.info({ server: name, from, to: decision.desired, reason: decision.reason }, "server scaled");
          }
        }
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
