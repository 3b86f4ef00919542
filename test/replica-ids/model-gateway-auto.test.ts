import { claimReplicaIndex, LOST_REPLICA_ID_EXIT_CODE, type StateStore } from "@tern/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDynamoDbStore, ensureTable } from "../../packages/scheduler/src/store/dynamodb-store.js";
import { type PlatformProcess, startPlatformProcess } from "../helpers/platform-process.js";
import { dynamodbEndpoint, kafkaBrokers } from "../helpers/services.js";

/**
 * The real model-gateway process with TERN_MODELGATEWAY_ID=auto. No scheduler runs: the id is claimed before the
 * model gateway registers, and registration retries in the background.
 */
describe("model-gateway processes with TERN_MODELGATEWAY_ID=auto", () => {
  const table = `tern-mgw-auto-${Date.now().toString(36)}-${process.pid}`;
  let store: StateStore;
  const processes: PlatformProcess<string>[] = [];

  beforeAll(async () => {
    const options = { endpoint: dynamodbEndpoint(), region: "us-east-1", table };
    await ensureTable(options);
    store = createDynamoDbStore(options);
  });
  afterAll(async () => {
    for (const p of processes) {
      p.kill("SIGCONT");
      p.kill("SIGKILL");
    }
    await store?.close();
  });

  async function start(env: Record<string, string> = {}): Promise<PlatformProcess<string>> {
    const p = await startPlatformProcess({
      script: "packages/model-gateway/src/main.ts",
      name: "model-gateway (auto)",
      env: {
        TERN_MODELGATEWAY_ID: "auto",
        KAFKA_BROKERS: kafkaBrokers().join(","),
        KAFKA_PARTITIONS: "2",
        DYNAMODB_ENDPOINT: dynamodbEndpoint(),
        TERN_TABLE: table,
        TERN_NAMESPACE: `mgwauto${Date.now().toString(36)}`,
        TERN_SCHEDULER_URL: "http://127.0.0.1:9",
        TERN_REPLICA_ID_TTL_MS: "2000",
        TERN_MODELGATEWAY_DRAIN_MS: "3000",
        LOG_LEVEL: "warn",
        ...env,
      },
      ready: (out) => /tern model-gateway (modelgateway-\d+) running/.exec(out)?.[1],
      timeoutMs: 60_000,
    });
    processes.push(p);
    return p;
  }

  it("runs two as modelgateway-0 and -1; a frozen one loses its id to a newcomer and exits; SIGTERM releases", async () => {
    const a = await start();
    const b = await start();
    expect([a.ready, b.ready].sort()).toEqual(["modelgateway-0", "modelgateway-1"]);

    // Freeze a (as a paused task would be) past its ttl: a newcomer waits for the lapsed id and takes it.
    a.kill("SIGSTOP");
    const c = await start({ TERN_REPLICA_ID_WAIT_MS: "20000" });
    expect(c.ready).toBe(a.ready);
    a.kill("SIGCONT");
    expect(await a.exited).toBe(LOST_REPLICA_ID_EXIT_CODE);
    expect(a.output()).toMatch(/lost replica index \d of model-gateway/);

    // A clean stop releases the id at once (well before its ttl would free it).
    b.kill("SIGTERM");
    expect(await b.exited).toBe(0);
    const index = Number(b.ready.slice("modelgateway-".length));
    const claim = await claimReplicaIndex({
      store,
      kind: "modelgateway",
      max: 2,
      ttlMs: 60_000,
      waitMs: 0,
      onLost: () => {},
    });
    expect(claim.index).toBe(index);
    await claim.release();
    c.kill("SIGTERM");
    expect(await c.exited).toBe(0);
  });
});
