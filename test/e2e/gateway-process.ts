import type { ChildProcess } from "node:child_process";
import { jsonLines, startPlatformProcess } from "../helpers/platform-process.js";

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
  const started = await startPlatformProcess({
    script: "packages/gateway/src/server.ts",
    name: "gateway",
    env: {
      TERN_SCHEDULER_URL: options.schedulerUrl,
      TERN_GATEWAY_HOST: "127.0.0.1",
      TERN_GATEWAY_PORT: "0",
      TERN_GATEWAY_GRPC_PORT: "0",
      // The listening line is logged at info; keep it (output is only captured).
      LOG_LEVEL: "info",
      ...options.env,
    },
    // pino writes one JSON object per line; the listening line carries both addresses.
    ready: (stdout) => {
      const line = jsonLines(stdout).find((l) => l.msg === "gateway listening");
      return typeof line?.url === "string" && typeof line.grpc === "string"
        ? { url: line.url, grpc: line.grpc }
        : undefined;
    },
  });
  const { ready, ...rest } = started;
  return { url: ready.url, grpcAddress: ready.grpc, ...rest };
}
