import { spawn, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { ProcessSpec } from "@tern/control";
import { TernError } from "@tern/core";
import { repoRoot } from "./config.js";
import { requireMaven } from "./tools.js";

/** The pom.xml whose dependencies are the broker's classpath. */
export const kafkaPomPath: string = resolve(repoRoot, "packages/devstack/kafka/pom.xml");

/** Settings of the single-node development broker. */
export interface KafkaBrokerSettings {
  /** PLAINTEXT listener port (clients). */
  port: number;
  /** KRaft controller listener port. */
  controllerPort: number;
  /** Where the broker keeps its log segments and `meta.properties`. */
  dataDir: string;
  /** Partitions of every topic (the one uniform count of the installation). */
  partitions: number;
  /**
   * Host the listeners bind to and advertise.
   * @default "localhost"
   */
  host?: string;
}

/**
 * Renders `server.properties` for a single-node KRaft broker that is its own controller. Topics are never created
 * implicitly: Tern creates each one with the uniform partition count, and an auto-created topic with another count
 * would silently break co-partitioned joins.
 */
export function renderServerProperties(settings: KafkaBrokerSettings): string {
  const host = settings.host ?? "localhost";
  const lines: Array<[string, string | number]> = [
    ["process.roles", "broker,controller"],
    ["node.id", 1],
    ["controller.quorum.voters", `1@${host}:${settings.controllerPort}`],
    ["listeners", `PLAINTEXT://${host}:${settings.port},CONTROLLER://${host}:${settings.controllerPort}`],
    ["advertised.listeners", `PLAINTEXT://${host}:${settings.port}`],
    ["controller.listener.names", "CONTROLLER"],
    ["inter.broker.listener.name", "PLAINTEXT"],
    ["listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"],
    ["log.dirs", settings.dataDir],
    ["num.partitions", settings.partitions],
    ["default.replication.factor", 1],
    ["auto.create.topics.enable", "false"],
    ["offsets.topic.replication.factor", 1],
    ["transaction.state.log.replication.factor", 1],
    ["transaction.state.log.min.isr", 1],
    ["min.insync.replicas", 1],
    // A new consumer group otherwise waits 3 s before its first assignment: slow tests, slow `npm start`.
    ["group.initial.rebalance.delay.ms", 0],
    // Development data: keep a day, in small segments, so the folder does not grow without bound.
    ["log.retention.hours", 24],
    ["log.segment.bytes", 64 * 1024 * 1024],
    ["num.network.threads", 2],
    ["num.io.threads", 4],
  ];
  return `# Written by the Tern dev stack on every start; edit packages/devstack/src/kafka-broker.ts instead.\n${lines
    .map(([key, value]) => `${key}=${value}`)
    .join("\n")}\n`;
}

/** log4j 1.x configuration: warnings and errors only, to stdout (which the supervisor sends to the log file). */
export const kafkaLog4jProperties = `log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
`;

/**
 * A random Kafka cluster id: 16 random bytes in unpadded base64url, the format of Kafka's `Uuid`. Kafka refuses ids
 * whose text starts with "-" (they read as command-line flags) and the all-zero and metadata-topic ids, so those are
 * drawn again. Generating it here saves a JVM start (`StorageTool random-uuid`) on the first run.
 */
export function randomKafkaClusterId(random: () => Buffer = () => randomBytes(16)): string {
  for (;;) {
    const bytes = random();
    const id = bytes.toString("base64url");
    const reserved = bytes.every((b, i) => b === 0 || (i === 15 && b === 1));
    if (!id.startsWith("-") && !reserved) return id;
  }
}

/** Options of {@link ensureKafkaJars}. */
export interface EnsureKafkaJarsOptions {
  libsDir: string;
  /** @default {@link kafkaPomPath} */
  pomPath?: string;
  /** Called before a download, which only happens on the first start (or after the pom changes). */
  onFetch?: (message: string) => void;
  /**
   * Deadline of the Maven run.
   * @default 600000
   */
  timeoutMs?: number;
  /** @default "mvn" */
  mavenCommand?: string;
  /** Aborting kills the Maven run. */
  signal?: AbortSignal;
}

const markerName = ".tern-pom.sha256";

/**
 * Makes sure `libsDir` holds the jars of the pom, fetching them with Maven when missing or when the pom changed
 * (a marker file records the pom's hash). Maven writes into a temporary folder that is renamed into place only when
 * complete, so an interrupted or concurrent fetch never leaves a half-filled classpath behind.
 */
export async function ensureKafkaJars(options: EnsureKafkaJarsOptions): Promise<void> {
  const pomPath = options.pomPath ?? kafkaPomPath;
  const wanted = createHash("sha256").update(readFileSync(pomPath)).digest("hex");
  if (jarsAreCurrent(options.libsDir, wanted)) return;
  const mavenCommand = options.mavenCommand ?? "mvn";
  requireMaven(mavenCommand);
  options.onFetch?.("fetching the Kafka broker jars from Maven Central (first start only, about 20 s)");
  const staging = `${options.libsDir}.tmp-${process.pid}-${Date.now()}`;
  mkdirSync(staging, { recursive: true });
  try {
    await runMaven(
      mavenCommand,
      [
        "-q",
        "-B",
        "--no-transfer-progress",
        "-f",
        pomPath,
        "dependency:copy-dependencies",
        `-DoutputDirectory=${staging}`,
      ],
      options.timeoutMs ?? 600_000,
      options.signal,
    );
    if (!readdirSync(staging).some(isBrokerJar)) {
      throw new TernError("unavailable", `Maven finished but ${staging} holds no kafka_2.13 jar`);
    }
    writeFileSync(join(staging, markerName), wanted);
    if (jarsAreCurrent(options.libsDir, wanted)) return; // another start won the race
    rmSync(options.libsDir, { recursive: true, force: true });
    renameSync(staging, options.libsDir);
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

function isBrokerJar(name: string): boolean {
  return /^kafka_2\.13-[\d.]+\.jar$/.test(name);
}

function jarsAreCurrent(libsDir: string, pomHash: string): boolean {
  try {
    return readFileSync(join(libsDir, markerName), "utf8").trim() === pomHash && readdirSync(libsDir).some(isBrokerJar);
  } catch {
    return false;
  }
}

function runMaven(command: string, args: string[], timeoutMs: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    signal?.throwIfAborted();
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    const onAbort = (): void => {
      child.kill("SIGKILL");
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    let output = "";
    const keep = (chunk: Buffer): void => {
      output = (output + chunk.toString("utf8")).slice(-8_000);
    };
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(new TernError("unavailable", `could not run \`${command}\`: ${err.message}`, { cause: err }));
    });
    child.once("exit", (code, exitSignal) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      if (code === 0) return resolvePromise();
      if (signal?.aborted) return reject(signal.reason);
      const why = exitSignal === "SIGKILL" ? `timed out after ${timeoutMs} ms` : `exit ${code ?? exitSignal}`;
      const tail = output.trim().split("\n").slice(-10).join("\n");
      reject(
        new TernError(
          "unavailable",
          `Maven could not fetch the Kafka broker (${why}); check network access to Maven Central${tail ? `:\n${tail}` : ""}`,
          { retriable: true },
        ),
      );
    });
  });
}

/** Files and settings of one broker installation under a dev folder. */
export interface KafkaBrokerFiles {
  libsDir: string;
  /** Folder of server.properties, log4j.properties and the broker's log. */
  confDir: string;
  dataDir: string;
}

/** The broker's classpath and JVM flags (the jars of `libsDir`, quiet log4j, a modest heap). */
function javaArgs(files: KafkaBrokerFiles, heap: string): string[] {
  return [
    `-Xmx${heap}`,
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
    `-Dlog4j.configuration=file:${join(files.confDir, "log4j.properties")}`,
    "-cp",
    `${files.libsDir}/*`,
  ];
}

/**
 * Writes the configuration files and formats the storage if it was never formatted (`meta.properties` is absent),
 * so data survives restarts. Synchronous: formatting is a short JVM run that must finish before the broker starts.
 */
export function prepareKafkaBroker(
  files: KafkaBrokerFiles,
  settings: Omit<KafkaBrokerSettings, "dataDir">,
  javaCommand = "java",
): void {
  mkdirSync(files.confDir, { recursive: true });
  mkdirSync(files.dataDir, { recursive: true });
  const propsFile = join(files.confDir, "server.properties");
  writeFileSync(propsFile, renderServerProperties({ ...settings, dataDir: files.dataDir }));
  writeFileSync(join(files.confDir, "log4j.properties"), kafkaLog4jProperties);
  if (existsSync(join(files.dataDir, "meta.properties"))) return;
  const result = spawnSync(
    javaCommand,
    [
      ...javaArgs(files, "256m"),
      "kafka.tools.StorageTool",
      "format",
      "--ignore-formatted",
      "-t",
      randomKafkaClusterId(),
      "-c",
      propsFile,
    ],
    { encoding: "utf8", timeout: 120_000 },
  );
  if (result.error !== undefined || result.status !== 0) {
    const detail = `${result.stderr ?? ""}${result.stdout ?? ""}`.trim().split("\n").slice(-10).join("\n");
    throw new TernError(
      "internal",
      `formatting the Kafka storage in ${files.dataDir} failed (exit ${result.status})${detail ? `:\n${detail}` : ""}`,
      { cause: result.error },
    );
  }
}

/** The process spec that runs the broker prepared by {@link prepareKafkaBroker}. */
export function kafkaBrokerProcessSpec(files: KafkaBrokerFiles, heap: string, javaCommand = "java"): ProcessSpec {
  return {
    name: "kafka",
    command: javaCommand,
    args: [...javaArgs(files, heap), "kafka.Kafka", join(files.confDir, "server.properties")],
    cwd: files.confDir,
    logFile: join(files.confDir, "kafka.log"),
  };
}
