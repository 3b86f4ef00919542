import { type ChildProcess, spawn } from "node:child_process";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { waitFor } from "@tern/devstack";

const repoRoot = resolve(fileURLToPath(new URL(".", import.meta.url)), "../..");

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
}

/** Starts an agent on free ports and waits for its ready line (it prints it once registered with the scheduler). */
export async function startAgentProcess(options: AgentProcessOptions): Promise<AgentProcess> {
  const name = `${options.server}/${options.replica}`;
  const child = spawn(process.execPath, ["--import", "tsx", "packages/agent/src/main.ts"], {
    cwd: repoRoot,
    env: {
      ...process.env,
      TERN_SCHEDULER_URL: options.schedulerUrl,
      TERN_AGENT_SERVER: options.server,
      TERN_AGENT_REPLICA: String(options.replica),
      TERN_AGENT_HTTP_PORT: "0",
      TERN_AGENT_GRPC_PORT: "0",
      TERN_AGENT_MEMORY: "64Mi",
      LOG_LEVEL: "info",
      ...options.env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let http: string | undefined;
  child.stdout!.setEncoding("utf8");
  child.stderr!.setEncoding("utf8");
  const ready = new RegExp(`^agent ${name} serving (\\S+) grpc`, "m");
  child.stdout!.on("data", (chunk: string) => {
    out += chunk;
    http ??= ready.exec(out)?.[1];
  });
  child.stderr!.on("data", (chunk: string) => {
    out += chunk;
  });
  let exitedFlag = false;
  const exited = new Promise<number | string>((r) =>
    child.once("exit", (code, signal) => {
      exitedFlag = true;
      r(code ?? signal ?? "unknown");
    }),
  );
  const url = await waitFor(
    () => {
      if (exitedFlag) throw new Error(`agent ${name} exited:\n${out}`);
      return http;
    },
    { timeoutMs: 30_000, intervalMs: 50, description: `agent ${name} ready` },
  ).catch((err: unknown) => {
    child.kill("SIGKILL");
    throw new Error(`${String(err)}\n${out}`);
  });
  return {
    name,
    http: url,
    child,
    output: () => out,
    exited,
    hasExited: () => exitedFlag,
    kill(signal) {
      if (!exitedFlag) child.kill(signal);
    },
  };
}

/** The JSON (pino) lines of an agent's output; other lines (the ready line, stack traces) are skipped. */
export function logLines(output: string): Array<Record<string, unknown>> {
  const lines: Array<Record<string, unknown>> = [];
  for (const line of output.split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      lines.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // An incomplete last line: the next chunk completes it.
    }
  }
  return lines;
}
