import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { createDevStack, findFreePort, loadDevStackConfig } from "@tern/devstack";
import type { TestProject } from "vitest/node";
import { startInstallWarmUp } from "./install-warm-up.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** Brokers of the integration Kafka (`host:port`). */
    kafkaBrokers: string[];
    /** Endpoint of the integration DynamoDB. */
    dynamodbEndpoint: string;
    /** The uniform partition count of the installation (KAFKA_PARTITIONS). */
    kafkaPartitions: number;
    awsRegion: string;
  }
}

/**
 * Starts a Kafka broker and DynamoDB Local for the integration tests, unless KAFKA_BROKERS / DYNAMODB_ENDPOINT name
 * existing ones. They run on free ports with data in a temporary folder, so a developer's `npm start` (9092, 8000,
 * `.tern/`) is neither disturbed nor reused; only the Kafka jar cache in `.tern/kafka/libs` is shared, so the Maven
 * fetch happens once per checkout. Tests read the addresses with `inject("kafkaBrokers")` etc.
 *
 * vitest applies no timeout to global setup; each step has its own deadline (Maven 10 min, readiness 90 s).
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  // Both integration projects (the parallel one and the serial one) list this file; vitest runs each project's global
  // setup in the same main process, before any test file and tears them down after the last one, so the second call
  // reuses the first one's broker and DynamoDB (one JVM pair, not two) and the last teardown stops them.
  const holder = globalThis as Record<symbol, SharedServices | undefined>;
  const shared = holder[SHARED] ?? { users: 0, services: startServices() };
  holder[SHARED] = shared;
  shared.users++;
  const { endpoints, stop } = await shared.services;
  project.provide("kafkaBrokers", endpoints.kafkaBrokers);
  project.provide("dynamodbEndpoint", endpoints.dynamodbEndpoint);
  project.provide("kafkaPartitions", endpoints.partitions);
  project.provide("awsRegion", endpoints.region);
  return async () => {
    if (--shared.users > 0) return;
    delete holder[SHARED];
    await stop();
  };
}

const SHARED = Symbol.for("tern.integration.services");

interface Services {
  endpoints: DevStackEndpoints;
  stop(): Promise<void>;
}

interface SharedServices {
  /** Projects whose teardown has not run yet. */
  users: number;
  services: Promise<Services>;
}

/** TERN_TEST_WARM_UP (1/true or 0/false) decides; unset, a CI run (CI set and not "false") warms up. */
function warmUpWanted(): boolean {
  const asked = process.env.TERN_TEST_WARM_UP;
  if (asked !== undefined && asked !== "") return asked === "1" || asked === "true";
  return process.env.CI !== undefined && process.env.CI !== "" && process.env.CI !== "false";
}

type DevStackEndpoints = Awaited<ReturnType<ReturnType<typeof createDevStack>["start"]>>;

/**
 * The broker and DynamoDB Local, plus the background warm-up of the slow first-time installs (./install-warm-up.ts),
 * which the returned `stop` ends before stopping the services.
 */
async function startServices(): Promise<Services> {
  // Quiet the AWS SDK's "Node 22 needed from 2027" warning in every test worker (they inherit this environment).
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
  // Only for whole-suite runs (CI sets CI=true; TERN_TEST_WARM_UP=1 asks for it elsewhere): a developer running one
  // file should not start a 560 MB venv and a Go build that file may not need.
  const warmUp = warmUpWanted() ? startInstallWarmUp() : { stop: async () => undefined };
  const config = loadDevStackConfig();
  const ports = await distinctFreePorts(3);
  const dir = mkdtempSync(join(tmpdir(), "tern-it-"));
  const stack = createDevStack({
    dir,
    kafkaLibsDir: join(config.TERN_DEV_DIR, "kafka", "libs"),
    ...(config.KAFKA_BROKERS === undefined ? {} : { kafkaBrokers: config.KAFKA_BROKERS }),
    ...(config.DYNAMODB_ENDPOINT === undefined ? {} : { dynamodbEndpoint: config.DYNAMODB_ENDPOINT }),
    kafkaPort: ports[0]!,
    kafkaControllerPort: ports[1]!,
    dynamodbPort: ports[2]!,
    partitions: config.KAFKA_PARTITIONS,
    region: config.AWS_REGION,
    kafkaHeap: config.KAFKA_HEAP,
    readyTimeoutMs: config.TERN_DEV_READY_TIMEOUT_MS,
    stopGraceMs: 5_000,
    lock: false,
    logger: {
      info: (message) => console.log(`[integration setup] ${message}`),
      warn: (message) => console.warn(`[integration setup] ${message}`),
    },
  });
  let endpoints: DevStackEndpoints;
  const startedAt = performance.now();
  try {
    endpoints = await stack.start();
    const where = stack.services().map((service) => `${service.name} ${service.address} (${service.kind})`);
    const seconds = ((performance.now() - startedAt) / 1000).toFixed(1);
    console.log(`[integration setup] ready in ${seconds} s: ${where.join(", ")}`);
  } catch (err) {
    await warmUp.stop();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const stop = async () => {
    try {
      await warmUp.stop();
      await stack.stop();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  return { endpoints, stop };
}

async function distinctFreePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await findFreePort());
  return [...ports];
}
