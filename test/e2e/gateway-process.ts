import { type ChildProcess, spawn } from "node:child_process";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { waitFor } from "@tern/devstack";

const repoRoot = resolve(fileURLToPath(new URL(".", import.meta.url)), "../..");

/** The Node gateway entry started as users run it: `node --import tsx packages/gateway/src/server.ts`. */
export interface GatewayProcess {
  /** REST base URL from its "gateway listening" line, e.g. `http://127.0.0.1:41234`. */
  readonly url: string;
  /** `host:port` of its OIP gRPC server. */
  readonly grpcAddress: string;
  readonly child: ChildProcess;
  output(): string;
  readonly exited: Promise<number | string>;
  hasExited(): boolean;
  kill(signal: NodeJS.Signals): void;
}

export interface GatewayProcessOptions {
  schedulerUrl: string;
  /** Extra variables (see packages/gateway/src/config.ts), e.g. TERN_GATEWAY_BODY_LIMIT_BYTES. */
  env?: Record<string, string>;
}

/** Starts the gateway on free REST and gRPC ports, following the scheduler, and waits for its listening line. */
export async function startGatewayProcess(options: GatewayProcessOptions): Promise<GatewayProcess> {
  const child = spawn(process.execPath, ["--import", "tsx", "packages/gateway/src/server.ts"], {
    cwd: repoRoot,
    env: {
      ...process.env,
      TERN_SCHEDULER_URL: options.schedulerUrl,
      TERN_GATEWAY_HOST: "127.0.0.1",
      TERN_GATEWAY_PORT: "0",
      TERN_GATEWAY_GRPC_PORT: "0",
      // The listening line is logged at info; keep it (output is only captured).
      LOG_LEVEL: "info",
      ...options.env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let listening: { url: string; grpc: string } | undefined;
  child.stdout!.setEncoding("utf8");
  child.stderr!.setEncoding("utf8");
  child.stdout!.on("data", (chunk: string) => {
    out += chunk;
    if (listening) return;
    // pino writes one JSON object per line; the listening line carries both addresses.
    for (const line of out.split("\n")) {
      if (!line.includes('"gateway listening"')) continue;
      try {
        const parsed = JSON.parse(line) as { url?: string; grpc?: string };
        if (parsed.url && parsed.grpc) listening = { url: parsed.url, grpc: parsed.grpc };
      } catch {
        // An incomplete line; the next chunk completes it.
      }
    }
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
  // waitFor treats a throwing check as "not yet", so an early exit is raced separately to fail at once.
  const stopWaiting = new AbortController();
  const found = await Promise.race([
    waitFor(() => listening, {
      timeoutMs: 30_000,
      intervalMs: 50,
      description: "gateway listening",
      signal: stopWaiting.signal,
    }),
    exited.then((code) => {
      throw new Error(`gateway exited (${code}) before listening`);
    }),
  ])
    .catch(async (err: unknown) => {
      child.kill("SIGKILL");
      await exited;
      throw new Error(`${String(err)}\n${out}`);
    })
    .finally(() => stopWaiting.abort());
  return {
    url: found.url,
    grpcAddress: found.grpc,
    child,
    output: () => out,
    exited,
    hasExited: () => exitedFlag,
    kill(signal) {
      if (!exitedFlag) child.kill(signal);
    },
  };
}
