import type { AgentAssignments, AgentRegistered } from "@tern/core";

/**
 * A test double of an agent: a real HTTP client of the scheduler's agent API (register, heartbeat, assignments
 * stream, events), with no inference. It "loads" whatever it is assigned by reporting Available, "unloads" whatever
 * is no longer assigned by reporting Unloaded, and records every load and unload so tests can prove nothing was
 * reloaded. It reconnects (and re-registers when told it is unknown) while the scheduler restarts.
 */
export interface FakeAgentOptions {
  /** Scheduler base URL (a restarted scheduler must come back on the same one). */
  url: string;
  server: string;
  replica: number;
  memoryBytes?: number;
  capabilities?: string[];
  token?: string;
}

export interface FakeHttpAgent {
  readonly loads: string[];
  readonly unloads: string[];
  readonly held: Set<string>;
  /** Assignment events received (across reconnects). */
  readonly received: AgentAssignments[];
  /** Times the assignments stream was (re)opened. */
  readonly connects: number;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function createFakeAgent(options: FakeAgentOptions): FakeHttpAgent {
  const held = new Set<string>();
  const loads: string[] = [];
  const unloads: string[] = [];
  const received: AgentAssignments[] = [];
  let connects = 0;
  let stopped = false;
  let heartbeatMs = 500;
  let registered = false;
  const controller = new AbortController();
  const base = `/v1/agents/${options.server}/${options.replica}`;
  const headers = (json = false): Record<string, string> => ({
    ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
    ...(json ? { "content-type": "application/json" } : {}),
  });
  let chain: Promise<void> = Promise.resolve();
  const loops: Promise<void>[] = [];

  async function call(path: string, init: RequestInit = {}, timeoutMs = 3000): Promise<Response> {
    const signal = AbortSignal.any([controller.signal, AbortSignal.timeout(timeoutMs)]);
    return fetch(`${options.url}${path}`, { ...init, signal });
  }

  async function register(): Promise<void> {
    const res = await call("/v1/agents", {
      method: "POST",
      headers: headers(true),
      body: JSON.stringify({
        server: options.server,
        replica: options.replica,
        capabilities: options.capabilities ?? ["onnx"],
        memoryBytes: options.memoryBytes ?? 1024 ** 3,
        endpoints: { http: `http://127.0.0.1:${19500 + options.replica}` },
        loaded: [...held].map((k) => {
          const [model, version] = k.split("@") as [string, string];
          return { model, version: Number(version) };
        }),
      }),
    });
    if (res.status !== 200) throw new Error(`register: HTTP ${res.status} ${await res.text()}`);
    const body = (await res.json()) as AgentRegistered;
    heartbeatMs = body.heartbeatIntervalMs;
    registered = true;
  }

  async function report(model: string, version: number, state: string): Promise<void> {
    const res = await call(`${base}/events`, {
      method: "POST",
      headers: headers(true),
      body: JSON.stringify({ model, version, state }),
    });
    if (res.status !== 204) throw new Error(`event: HTTP ${res.status}`);
  }

  /** Level-triggered: load what is missing, unload what is absent. Serialised so reports keep their order. */
  function onAssignments(a: AgentAssignments): void {
    received.push(a);
    chain = chain.then(async () => {
      const want = new Set(a.models.map((m) => `${m.model}@${m.version}`));
      for (const m of a.models) {
        const key = `${m.model}@${m.version}`;
        if (held.has(key)) continue;
        held.add(key);
        loads.push(key);
        await report(m.model, m.version, "Available").catch(() => held.delete(key));
      }
      for (const key of [...held]) {
        if (want.has(key)) continue;
        held.delete(key);
        unloads.push(key);
        const [model, version] = key.split("@") as [string, string];
        await report(model, Number(version), "Unloaded").catch(() => undefined);
      }
    });
  }

  async function sleep(ms: number): Promise<void> {
    await new Promise((r) => setTimeout(r, ms));
  }

  async function heartbeatLoop(): Promise<void> {
    while (!stopped) {
      try {
        if (!registered) await register();
        const res = await call(`${base}/heartbeat`, { method: "POST", headers: headers() });
        if (res.status === 404) registered = false;
      } catch {
        // Scheduler down or standing by: keep trying.
      }
      await sleep(heartbeatMs);
    }
  }

  async function streamLoop(): Promise<void> {
    while (!stopped) {
      try {
        if (!registered) await register();
        const res = await fetch(`${options.url}${base}/assignments`, { headers: headers(), signal: controller.signal });
        if (res.status === 404) registered = false;
        if (res.status !== 200 || res.body === null) throw new Error(`assignments: HTTP ${res.status}`);
        connects++;
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let sep = buffer.indexOf("\n\n");
          while (sep >= 0) {
            const block = buffer.slice(0, sep);
            buffer = buffer.slice(sep + 2);
            const data = block
              .split("\n")
              .filter((l) => l.startsWith("data:"))
              .map((l) => l.slice(5).trimStart())
              .join("\n");
            if (data !== "") onAssignments(JSON.parse(data) as AgentAssignments);
            sep = buffer.indexOf("\n\n");
          }
        }
      } catch {
        // Connection refused or dropped: retry below.
      }
      if (!stopped) await sleep(200);
    }
  }

  return {
    loads,
    unloads,
    held,
    received,
    get connects() {
      return connects;
    },
    async start() {
      await register();
      loops.push(heartbeatLoop(), streamLoop());
    },
    async stop() {
      stopped = true;
      controller.abort();
      await Promise.allSettled(loops);
      await chain.catch(() => undefined);
    },
  };
}
