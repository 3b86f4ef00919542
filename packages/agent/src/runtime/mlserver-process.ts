import { type ChildProcess, spawn } from "node:child_process";
import { access, mkdir, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { TernError } from "@tern/core";
import { createHttpUpstream, UpstreamError, type UpstreamResponse } from "@tern/http";
import type { Logger } from "pino";
import { treeRssBytes } from "./process-memory.js";

/**
 * Runs MLServer from its Python module with the Python of the venv, and makes the MLServer process end when its agent
 * ends, however the agent ends (even SIGKILL): a thread of the launcher reads stdin, which is a pipe from the agent,
 * and exits the process at end of file. `parallel_workers` is 0 in its settings, so MLServer serves from this one
 * process (no worker processes to leave behind, and its RSS is everything it holds).
 */
const LAUNCHER = [
  "import os, sys, threading",
  "def watch():",
  "    sys.stdin.buffer.read()",
  "    os._exit(0)",
  "threading.Thread(target=watch, daemon=True).start()",
  "from mlserver.cli.main import main",
  "sys.argv = ['mlserver', 'start', sys.argv[1]]",
  "main()",
].join("\n");

export interface MlserverProcessOptions {
  /** The venv's python (with `mlserver` installed), e.g. `.tern/python/mlserver/bin/python`. */
  python: string;
  /** This process's folder: `settings.json` and the model repository (`models/`) live there. */
  workDir: string;
  /** @default "127.0.0.1" */
  host?: string;
  /** Deadline for MLServer to answer its liveness probe after a (re)start, ms. @default 120000 */
  startTimeoutMs?: number;
  /** Interval of the health check while it runs, ms. @default 2000 */
  healthIntervalMs?: number;
  /**
   * A running process whose liveness probe has failed for this long is killed (and restarted). Generous, because a
   * busy MLServer (a model loading, a loaded machine) answers late without being broken. @default 30000
   */
  unresponsiveMs?: number;
  /** Deadline of each call to MLServer's control API (health, repository load/unload), ms. @default 60000 */
  requestTimeoutMs?: number;
  logger?: Logger;
  /** Called when the process died (or stopped answering) and a new one is up, with the models it had lost. */
  onRestarted?: () => Promise<void> | void;
  /** Called as soon as the process is found dead, before the restart. */
  onDied?: (reason: string) => void;
}

/** One answer of MLServer's REST API, read whole. */
export interface MlserverAnswer {
  status: number;
  /** A 2xx status. */
  ok: boolean;
  body: Uint8Array;
}

/** The answer's body as JSON; throws (SyntaxError) when it is not. */
export function answerJson(answer: MlserverAnswer): unknown {
  return JSON.parse(Buffer.from(answer.body.buffer, answer.body.byteOffset, answer.body.byteLength).toString());
}

/** One MLServer process supervised by its agent. */
export interface MlserverProcess {
  /** Starts MLServer on free ports and resolves once it answers `GET /v2/health/live`. */
  start(): Promise<void>;
  /** SIGTERM, then SIGKILL after `graceMs`; no restart afterwards. */
  stop(graceMs?: number): Promise<void>;
  /** `http://host:port` of MLServer's REST API (known once started). */
  readonly restUrl: string;
  /** `host:port` of MLServer's gRPC API (known once started). */
  readonly grpcAddress: string;
  /** The model repository folder MLServer loads `model-settings.json` files from. */
  readonly repositoryDir: string;
  /** The operating-system pid, while a process runs. */
  pid(): number | undefined;
  /** Resident memory of the MLServer process and its children (Linux `/proc`), bytes; undefined where unknown. */
  rssBytes(): Promise<number | undefined>;
  /** The resident memory read by the last health check (every `healthIntervalMs`). */
  lastRssBytes(): number | undefined;
  /** Resolves once a process is up (immediately when it is); rejects when stopped or the restart failed. */
  ready(): Promise<void>;
  /** Calls MLServer's REST API with the control deadline. */
  request(method: "GET" | "POST", path: string, body?: unknown, timeoutMs?: number): Promise<MlserverAnswer>;
  /** POSTs a JSON body that is already bytes (a caller's inference request, forwarded as it is). */
  forward(path: string, body: Uint8Array, timeoutMs?: number): Promise<MlserverAnswer>;
}

/** A port free right now (the OS picks it); MLServer binds it a moment later. */
async function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function createMlserverProcess(options: MlserverProcessOptions): MlserverProcess {
  const host = options.host ?? "127.0.0.1";
  const startTimeoutMs = options.startTimeoutMs ?? 120_000;
  const healthIntervalMs = options.healthIntervalMs ?? 2000;
  const unresponsiveMs = options.unresponsiveMs ?? 30_000;
  let lastAnswer = Date.now();
  const requestTimeoutMs = options.requestTimeoutMs ?? 60_000;
  const log = options.logger;
  const repositoryDir = join(options.workDir, "models");
  let child: ChildProcess | undefined;
  let restUrl = "";
  let grpcAddress = "";
  let stopped = false;
  /** Last lines MLServer wrote, for the reason when it fails to start. */
  let tail: string[] = [];
  /** Settles when the current (re)start is done; replaced by each restart. */
  let up: Promise<void> = Promise.reject(new TernError("unavailable", "MLServer has not been started"));
  up.catch(() => undefined);
  let healthTimer: NodeJS.Timeout | undefined;
  let restarting = false;
  let restarts = 0;
  let lastRss: number | undefined;
  // node:http with keep-alive, as the gateway calls agents: less CPU per inference call than fetch
  // (bench/results/inference-mlserver.md). Uvicorn closes a connection idle 5 s without announcing it; the agent lets
  // go of its idle ones sooner.
  const upstream = createHttpUpstream({ idleSocketTimeoutMs: 2000 });
  const JSON_HEADERS = { "content-type": "application/json" };

  async function writeSettings(httpPort: number, grpcPort: number): Promise<void> {
    await mkdir(repositoryDir, { recursive: true });
    // Metrics off (the agent has its own), request logging off (MLServer logs every request by default), models only
    // through the repository API, inference in this process.
    const settings = {
      host,
      http_port: httpPort,
      grpc_port: grpcPort,
      metrics_endpoint: null,
      model_repository_root: repositoryDir,
      load_models_at_startup: false,
      parallel_workers: 0,
      debug: false,
    };
    await writeFile(join(options.workDir, "settings.json"), JSON.stringify(settings, null, 2));
  }

  function keepTail(chunk: Buffer): void {
    for (const line of chunk.toString().split("\n")) {
      if (line.trim() === "") continue;
      tail.push(line.trim());
      log?.debug({ mlserver: line.trim() }, "mlserver output");
    }
    if (tail.length > 20) tail = tail.slice(-20);
  }

  async function probe(timeoutMs: number): Promise<boolean> {
    try {
      const res = await upstream.call({
        method: "GET",
        url: `${restUrl}/v2/health/live`,
        headers: {},
        deadline: Date.now() + timeoutMs,
      });
      return res.status >= 200 && res.status < 300;
    } catch {
      return false;
    }
  }

  async function launch(): Promise<void> {
    try {
      await access(options.python);
    } catch {
      throw new TernError(
        "unavailable",
        `MLServer is not installed: ${options.python} does not exist (run scripts/python-env.sh mlserver, or set TERN_MLSERVER_PYTHON)`,
      );
    }
    const httpPort = await freePort(host);
    const grpcPort = await freePort(host);
    restUrl = `http://${host}:${httpPort}`;
    grpcAddress = `${host}:${grpcPort}`;
    await writeSettings(httpPort, grpcPort);
    tail = [];
    const proc = spawn(options.python, ["-c", LAUNCHER, options.workDir], {
      cwd: options.workDir,
      stdio: ["pipe", "pipe", "pipe"],
      env: { ...process.env, PYTHONUNBUFFERED: "1" },
    });
    child = proc;
    proc.stdout?.on("data", keepTail);
    proc.stderr?.on("data", keepTail);
    // The pipe is the lifeline (see LAUNCHER); an EPIPE once MLServer is gone must not crash the agent.
    proc.stdin?.on("error", () => undefined);
    let exited: string | undefined;
    proc.once("exit", (code, signal) => {
      exited = signal ? `killed by ${signal}` : `exited with code ${code}`;
      if (child === proc) child = undefined;
      if (!stopped) onDeath(`MLServer (pid ${proc.pid}) ${exited}`);
    });
    proc.once("error", (err) => {
      exited = err.message;
    });
    const deadline = Date.now() + startTimeoutMs;
    while (Date.now() < deadline) {
      if (exited !== undefined)
        throw new TernError("unavailable", `MLServer ${exited} while starting: ${tail.slice(-3).join(" | ")}`);
      if (stopped) throw new TernError("unavailable", "MLServer was stopped while starting");
      if (await probe(2000)) {
        lastAnswer = Date.now();
        log?.info({ pid: proc.pid, rest: restUrl, grpc: grpcAddress }, "mlserver running");
        return;
      }
      await delay(200);
    }
    proc.kill("SIGKILL");
    throw new TernError(
      "timeout",
      `MLServer did not answer on ${restUrl} within ${startTimeoutMs} ms: ${tail.slice(-3).join(" | ")}`,
    );
  }

  function onDeath(reason: string): void {
    if (stopped || restarting) return;
    restarting = true;
    log?.warn({ reason }, "mlserver died: restarting it");
    options.onDied?.(reason);
    up = (async () => {
      // Backoff grows with restarts in a row, so a process that dies at once does not spin the CPU.
      await delay(Math.min(5000, 250 * 2 ** Math.min(restarts, 5)));
      restarts++;
      await launch();
    })();
    up.then(
      async () => {
        restarting = false;
        restarts = 0;
        await options.onRestarted?.();
      },
      (err: unknown) => {
        restarting = false;
        if (stopped) return;
        log?.error({ err }, "mlserver restart failed: trying again");
        onDeath(err instanceof Error ? err.message : String(err));
      },
    );
    up.catch(() => undefined);
  }

  async function readRss(): Promise<number | undefined> {
    const pid = child?.pid;
    if (pid === undefined) return undefined;
    // With its children: parallel_workers is 0 today, but a model-settings.json may still make MLServer fork.
    return treeRssBytes(pid);
  }

  async function healthCheck(): Promise<void> {
    if (stopped || restarting || child === undefined) return;
    lastRss = await readRss();
    if (await probe(Math.max(5000, healthIntervalMs))) {
      lastAnswer = Date.now();
      return;
    }
    if (stopped || restarting || child === undefined || Date.now() - lastAnswer < unresponsiveMs) return;
    // Alive but silent for long: replace it (its exit then reports the death).
    log?.warn(
      { pid: child.pid, silentMs: Date.now() - lastAnswer },
      "mlserver does not answer its liveness probe: killing it",
    );
    child.kill("SIGKILL");
  }

  async function call(
    method: "GET" | "POST",
    path: string,
    body: Uint8Array | undefined,
    timeoutMs: number,
  ): Promise<MlserverAnswer> {
    try {
      const request = {
        method,
        url: `${restUrl}${path}`,
        headers: body === undefined ? {} : JSON_HEADERS,
        ...(body === undefined ? {} : { body }),
        deadline: Date.now() + timeoutMs,
      };
      let res: UpstreamResponse;
      try {
        res = await upstream.call(request);
      } catch (err) {
        // Nothing reached MLServer (a pooled socket it had just closed): once more, on a connection of its own.
        if (!(err instanceof UpstreamError) || !err.connectFailed) throw err;
        res = await upstream.call({ ...request, freshConnection: true });
      }
      return { status: res.status, ok: res.status >= 200 && res.status < 300, body: res.body };
    } catch (err) {
      const timedOut = err instanceof UpstreamError && err.code === "timeout";
      const cause = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
      throw new TernError(
        timedOut ? "timeout" : "unavailable",
        timedOut
          ? `MLServer did not answer ${method} ${path} within ${timeoutMs} ms`
          : `MLServer is unreachable (${method} ${path}): ${cause}`,
        { cause: err, retriable: true },
      );
    }
  }

  return {
    get restUrl() {
      return restUrl;
    },
    get grpcAddress() {
      return grpcAddress;
    },
    repositoryDir,

    async start() {
      stopped = false;
      await rm(repositoryDir, { recursive: true, force: true });
      up = launch();
      await up;
      lastRss = await readRss();
      healthTimer = setInterval(() => {
        healthCheck().catch(() => undefined);
      }, healthIntervalMs);
      healthTimer.unref();
    },

    async stop(graceMs = 5000) {
      stopped = true;
      if (healthTimer) clearInterval(healthTimer);
      await upstream.close();
      const proc = child;
      if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
      const gone = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
      proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), graceMs);
      await gone;
      clearTimeout(timer);
      log?.info({ pid: proc.pid }, "mlserver stopped");
    },

    pid: () => child?.pid,

    async rssBytes() {
      lastRss = await readRss();
      return lastRss;
    },

    lastRssBytes: () => lastRss,

    ready: () => up,

    request(method, path, body, timeoutMs = requestTimeoutMs) {
      return call(method, path, body === undefined ? undefined : Buffer.from(JSON.stringify(body)), timeoutMs);
    },

    forward: (path, body, timeoutMs = requestTimeoutMs) => call("POST", path, body, timeoutMs),
  };
}
