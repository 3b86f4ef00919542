import type { ChildProcess } from "node:child_process";
import { irisManifest, serverManifest } from "../helpers/manifests.js";
import { jsonLines, startPlatformProcess } from "../helpers/platform-process.js";
import type { SchedulerProcess } from "../scheduler/scheduler-process.js";

/** An agent started as its own process (`node --import tsx packages/agent/src/main.ts`), cwd = the repo root. */
export interface AgentProcess {
  readonly name: string;
  /** The OIP REST base URL from its ready line. */
  readonly http: string;
  readonly child: ChildProcess;
  output(): string;
  /** Resolves with the exit code (or the signal's name) once it has exited. */
  readonly exited: Promise<number | string>;
  hasExited(): boolean;
  kill(signal: NodeJS.Signals): void;
}

export interface AgentProcessOptions {
  schedulerUrl: string;
  server: string;
  replica: number;
  env?: Record<string, string>;
  /** Deadline for its ready line. @default 30000 */
  timeoutMs?: number;
}

/** Starts an agent on free ports and waits for its ready line (it prints it once registered with the scheduler). */
export async function startAgentProcess(options: AgentProcessOptions): Promise<AgentProcess> {
  const name = `${options.server}/${options.replica}`;
  const readyLine = new RegExp(`^agent ${name} serving (\\S+) grpc`, "m");
  const started = await startPlatformProcess({
    script: "packages/agent/src/main.ts",
    name: `agent ${name}`,
    env: {
      TERN_SCHEDULER_URL: options.schedulerUrl,
      TERN_AGENT_SERVER: options.server,
      TERN_AGENT_REPLICA: String(options.replica),
      TERN_AGENT_HTTP_PORT: "0",
      TERN_AGENT_GRPC_PORT: "0",
      TERN_AGENT_MEMORY: "64Mi",
      LOG_LEVEL: "info",
      ...options.env,
    },
    ready: (stdout) => readyLine.exec(stdout)?.[1],
    ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
  });
  const { ready: http, ...rest } = started;
  return { name, http, ...rest };
}

/** The JSON (pino) lines of an agent's output; other lines (the ready line, stack traces) are skipped. */
export const logLines = jsonLines;

/** A Server `mlserver` of 2 tern-onnx replicas and the sample iris Model on both. */
export const MLSERVER_WITH_IRIS = `${serverManifest("mlserver", 2)}---\n${irisManifest(2)}`;

/** Known iris rows (samples/iris/iris.csv) and their classes. */
export const IRIS_ROWS = [
  { features: [5.1, 3.5, 1.4, 0.2], label: 0 },
  { features: [7.0, 3.2, 4.7, 1.4], label: 1 },
  { features: [6.3, 3.3, 6.0, 2.5], label: 2 },
];

/** One inference straight to an agent's REST port: the HTTP status and, on 200, the predicted class. */
export async function inferIris(agentHttp: string, features: number[]): Promise<{ status: number; label?: number }> {
  const res = await fetch(`${agentHttp}/v2/models/iris/infer`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ inputs: [{ name: "predict", shape: [1, 4], datatype: "FP32", data: features }] }),
    signal: AbortSignal.timeout(5000),
  });
  const body = (await res.json()) as { outputs?: Array<{ name: string; data: number[] }> };
  if (res.status !== 200) return { status: res.status };
  return { status: 200, label: Number(body.outputs?.find((o) => o.name === "label")?.data[0]) };
}

/** SIGKILLs every agent, then every scheduler, of a test (emptying both lists) and waits until they have exited. */
export async function killAll(agents: AgentProcess[], schedulers: SchedulerProcess[]): Promise<void> {
  for (const a of agents.splice(0)) {
    a.kill("SIGKILL");
    await a.exited;
  }
  for (const s of schedulers.splice(0)) await s.kill("SIGKILL");
}
