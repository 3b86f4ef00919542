import { type AgentAssignments, parseManifestsOrThrow, type StateStore } from "@tern/core";
import { pino } from "pino";
import { createScheduler, type Scheduler, type SchedulerOptions } from "../../src/scheduler.js";
import { createMemoryStore } from "../../src/store/memory-store.js";

export const silentLogger = pino({ level: "silent" });

export interface Harness {
  store: StateStore;
  scheduler: Scheduler;
  clock: { now: number };
  apply(yaml: string): Promise<unknown>;
  agent(server: string, replica: number, options?: FakeAgentOptions): Promise<FakeAgent>;
  /** Waits until every fake agent's reports have been processed. */
  settle(): Promise<void>;
  close(): Promise<void>;
}

export interface FakeAgentOptions {
  memoryBytes?: number;
  /** When false the agent acknowledges nothing: loads stay LoadRequested until `complete()`. @default true */
  auto?: boolean;
  /** Models whose load fails, with the reason. */
  failing?: Record<string, string>;
  loaded?: { model: string; version: number }[];
  capabilities?: string[];
}

/** A test double of an agent inside the process: it loads and unloads by reporting events, no inference. */
export interface FakeAgent {
  readonly server: string;
  readonly replica: number;
  /** What it holds, as `model@version`. */
  readonly held: Set<string>;
  /** Every assignments event it received. */
  readonly received: AgentAssignments[];
  loads: string[];
  unloads: string[];
  /** Reports the loads/unloads the last assignments asked for (when `auto` is false). */
  complete(): Promise<void>;
  disconnect(): void;
}

export async function createHarness(options: Partial<SchedulerOptions> = {}): Promise<Harness> {
  const store = options.store ?? createMemoryStore();
  const lease = await store.acquireLease("scheduler", "test", 60_000);
  if (lease === undefined) throw new Error("lease not granted");
  const clock = { now: 1_000_000 };
  const scheduler = createScheduler({
    store,
    fence: { lease: "scheduler", token: lease.token },
    logger: silentLogger,
    now: () => clock.now,
    heartbeatIntervalMs: 2000,
    heartbeatTimeoutMs: 6000,
    ...options,
  });
  await scheduler.start();
  const pending = new Set<Promise<unknown>>();
  const track = (p: Promise<unknown>) => {
    pending.add(p);
    p.finally(() => pending.delete(p)).catch(() => undefined);
  };

  const harness: Harness = {
    store,
    scheduler,
    clock,
    apply: (yaml) => scheduler.apply(parseManifestsOrThrow(yaml)),
    async agent(server, replica, agentOptions = {}) {
      const auto = agentOptions.auto ?? true;
      const held = new Set<string>((agentOptions.loaded ?? []).map((l) => `${l.model}@${l.version}`));
      const received: AgentAssignments[] = [];
      let stopWatching: (() => void) | undefined;
      const agent: FakeAgent = {
        server,
        replica,
        held,
        received,
        loads: [],
        unloads: [],
        async complete() {
          const last = received[received.length - 1];
          if (last === undefined) return;
          const want = new Set(last.models.map((m) => `${m.model}@${m.version}`));
          for (const m of last.models) {
            const key = `${m.model}@${m.version}`;
            if (held.has(key)) continue;
            const failure = agentOptions.failing?.[m.model];
            if (failure !== undefined) {
              await scheduler.reportEvent(server, replica, {
                model: m.model,
                version: m.version,
                state: "LoadFailed",
                reason: failure,
              });
              continue;
            }
            held.add(key);
            agent.loads.push(key);
            await scheduler.reportEvent(server, replica, { model: m.model, version: m.version, state: "Available" });
          }
          for (const key of [...held]) {
            if (want.has(key)) continue;
            held.delete(key);
            agent.unloads.push(key);
            const [model, version] = key.split("@") as [string, string];
            await scheduler.reportEvent(server, replica, { model, version: Number(version), state: "Unloaded" });
          }
        },
        disconnect() {
          stopWatching?.();
        },
      };
      await scheduler.registerAgent({
        server,
        replica,
        capabilities: agentOptions.capabilities ?? ["onnx"],
        memoryBytes: agentOptions.memoryBytes ?? 1024 * 1024 * 1024,
        endpoints: { http: `http://127.0.0.1:${9500 + replica}` },
        loaded: agentOptions.loaded ?? [],
      });
      stopWatching = scheduler.watchAssignments(server, replica, {
        assignments(a) {
          received.push(a);
          if (auto) track(agent.complete());
        },
        close() {},
      });
      await harness.settle();
      return agent;
    },
    async settle() {
      for (let i = 0; i < 100 && pending.size > 0; i++) await Promise.allSettled([...pending]);
    },
    async close() {
      await scheduler.stop();
      await store.close();
    },
  };
  return harness;
}

export function model(name: string, extra = "", replicas = 1): string {
  return `apiVersion: mlops.seldon.io/v1alpha1
kind: Model
metadata: {name: ${name}}
spec:
  storageUri: file:///models/${name}
  requirements: [onnx]
  memory: 100Ki
  replicas: ${replicas}
${extra}`;
}

export function server(name: string, replicas: number, serverConfig = "tern-onnx"): string {
  return `apiVersion: mlops.seldon.io/v1alpha1
kind: Server
metadata: {name: ${name}}
spec:
  serverConfig: ${serverConfig}
  replicas: ${replicas}
`;
}
