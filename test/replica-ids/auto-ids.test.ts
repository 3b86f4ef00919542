import { hasCode, type ReplicaIndexClaim } from "@tern/core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { loadAgentConfig } from "../../packages/agent/src/config.js";
import {
  createReplicaIdStore as createAgentIdStore,
  resolveAgentReplica,
} from "../../packages/agent/src/replica-id.js";
import { loadDataflowConfig } from "../../packages/dataflow/src/config.js";
import {
  createReplicaIdStore as createDataflowIdStore,
  resolveDataflowId,
} from "../../packages/dataflow/src/replica-id.js";
import { loadModelGatewayConfig } from "../../packages/model-gateway/src/config.js";
import { createReplicaIdStore, resolveModelGatewayId } from "../../packages/model-gateway/src/replica-id.js";
import { ensureTable } from "../../packages/scheduler/src/store/dynamodb-store.js";
import { dynamodbEndpoint } from "../helpers/services.js";

describe("TERN_*_ID=auto on DynamoDB Local", () => {
  const table = `tern-auto-ids-${Date.now().toString(36)}-${process.pid}`;
  let env: Record<string, string>;
  const claims: ReplicaIndexClaim[] = [];
  const stores: Array<{ close(): Promise<void> }> = [];

  beforeAll(async () => {
    await ensureTable({ endpoint: dynamodbEndpoint(), region: "us-east-1", table });
    env = { DYNAMODB_ENDPOINT: dynamodbEndpoint(), TERN_TABLE: table, TERN_REPLICA_ID_WAIT_MS: "300" };
  });
  afterEach(async () => {
    await Promise.all(claims.splice(0).map((c) => c.release()));
  });
  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
  });

  function track<S extends { close(): Promise<void> }>(store: S): S {
    stores.push(store);
    return store;
  }

  /** What the model gateway's main does with its environment before it registers with the scheduler. */
  async function startModelGateway(vars: Record<string, string>): Promise<string> {
    const config = loadModelGatewayConfig({ ...env, ...vars });
    const resolved = await resolveModelGatewayId(config, {
      store: track(createReplicaIdStore(config)),
      onLost: () => {},
    });
    if (resolved.claim) claims.push(resolved.claim);
    return resolved.id;
  }

  it("gives two model gateways started with auto modelgateway-0 and modelgateway-1", async () => {
    const vars = { TERN_MODELGATEWAY_ID: "auto", KAFKA_PARTITIONS: "2" };
    expect(await startModelGateway(vars)).toBe("modelgateway-0");
    expect(await startModelGateway(vars)).toBe("modelgateway-1");
    const err = await startModelGateway(vars).catch((e: unknown) => e);
    expect(hasCode(err, "unavailable")).toBe(true);
    expect((err as Error).message).toMatch(/all 2 model-gateway ids are taken.*KAFKA_PARTITIONS/);
  });

  /** What the dataflow worker's main does with its environment before it registers with the scheduler. */
  async function startDataflow(vars: Record<string, string>): Promise<string> {
    const config = loadDataflowConfig({ ...env, ...vars });
    const resolved = await resolveDataflowId(config, { store: track(createDataflowIdStore(config)), onLost: () => {} });
    if (resolved.claim) claims.push(resolved.claim);
    return resolved.id;
  }

  it("gives dataflow workers started with auto dataflow-0, dataflow-1, up to TERN_DATAFLOW_ID_MAX", async () => {
    const vars = { TERN_DATAFLOW_ID: "auto", TERN_DATAFLOW_ID_MAX: "2" };
    expect(await startDataflow(vars)).toBe("dataflow-0");
    expect(await startDataflow(vars)).toBe("dataflow-1");
    const err = await startDataflow(vars).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/all 2 dataflow ids are taken.*TERN_DATAFLOW_ID_MAX/);
    expect(await startDataflow({ TERN_DATAFLOW_ID: "dataflow-7" })).toBe("dataflow-7");
  });

  /** What the agent's main does with its environment before it registers with the scheduler. */
  async function startAgent(vars: Record<string, string>): Promise<number> {
    const config = loadAgentConfig({ ...env, ...vars });
    const resolved = await resolveAgentReplica(config, { store: track(createAgentIdStore(config)), onLost: () => {} });
    if (resolved.claim) claims.push(resolved.claim);
    return resolved.replica;
  }

  it("numbers agents started with auto per Server, up to TERN_AGENT_REPLICA_MAX", async () => {
    const a = { TERN_AGENT_SERVER: "auto-a", TERN_AGENT_REPLICA: "auto", TERN_AGENT_REPLICA_MAX: "2" };
    expect(await startAgent(a)).toBe(0);
    expect(await startAgent(a)).toBe(1);
    expect(await startAgent({ ...a, TERN_AGENT_SERVER: "auto-b" })).toBe(0);
    const err = await startAgent(a).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/all 2 auto-a agent ids are taken.*TERN_AGENT_REPLICA_MAX/);
    expect(await startAgent({ TERN_AGENT_SERVER: "auto-a", TERN_AGENT_REPLICA: "5" })).toBe(5);
  });

  it("keeps an explicit model-gateway id as it is, claiming nothing", async () => {
    expect(await startModelGateway({ TERN_MODELGATEWAY_ID: "modelgateway-1", KAFKA_PARTITIONS: "2" })).toBe(
      "modelgateway-1",
    );
    expect(claims).toHaveLength(0);
  });
});
