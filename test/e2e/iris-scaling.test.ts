import type { ModelStatus } from "@tern/core";
import { waitFor } from "@tern/devstack";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type E2eStack, irisManifest, serverManifest, startE2eStack } from "./harness.js";
import { inferIris, knownIrisRows, parseIrisAnswer } from "./iris-data.js";
import { describeOutcome, startTraffic, type TrafficOutcome } from "./traffic.js";

// DESIGN §0's scaling example end to end: Server mlserver (4 replicas, 4 agent processes) + Model iris (3 replicas),
// served through the gateway process. The tests run in order on one stack (each starts from the previous state).

const rows = knownIrisRows();
let stack: E2eStack;

beforeAll(async () => {
  stack = await startE2eStack({ name: "scaling", agents: 4 });
});

afterAll(async () => {
  await stack?.close();
});

const available = (replicas: number) => (s: ModelStatus) =>
  s.state === "ModelAvailable" && s.availableReplicas === replicas && s.placement.length === replicas;

/** Replica indexes whose agent answers 200 to `GET /v2/models/iris/ready`. */
async function agentsReady(): Promise<number[]> {
  const out: number[] = [];
  for (const [replica, agent] of stack.agents) {
    const res = await fetch(`${agent.http}/v2/models/iris/ready`, { signal: AbortSignal.timeout(3000) });
    await res.body?.cancel();
    if (res.status === 200) out.push(replica);
  }
  return out.sort();
}

/** Sum of the agent's `tern_agent_inference_requests_total` samples for iris (its Prometheus `/metrics`). */
async function irisRequestsServed(agentHttp: string): Promise<number> {
  const text = await (await fetch(`${agentHttp}/metrics`, { signal: AbortSignal.timeout(3000) })).text();
  let total = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith("tern_agent_inference_requests_total{") && line.includes('model="iris"')) {
      total += Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return total;
}

/** Every known row through the gateway, in one batch, checked against the CSV's classes. */
async function expectRightClasses(): Promise<void> {
  const { status, body } = await inferIris(stack.gateway.url, rows);
  expect(status, JSON.stringify(body)).toBe(200);
  const answer = parseIrisAnswer(body);
  expect(answer.labels).toEqual(rows.map((r) => r.label));
  for (const [i, p] of answer.probabilities.entries()) {
    expect(p.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 4);
    expect(p.indexOf(Math.max(...p))).toBe(rows[i]!.label);
  }
}

function expectNoFailures(outcome: TrafficOutcome): void {
  const summary = describeOutcome(outcome);
  expect(outcome.total, summary).toBeGreaterThan(0);
  expect(outcome.ok, summary).toBe(outcome.total);
}

/** Every request got 200 or a clear OIP error (status + `{"error"}`), none hung, and 200s dominate. */
function expectClearOrOk(outcome: TrafficOutcome): void {
  const summary = describeOutcome(outcome);
  expect(outcome.total, summary).toBeGreaterThan(0);
  expect(outcome.timeouts, summary).toBe(0);
  expect(outcome.unclearErrors.size, summary).toBe(0);
  expect(outcome.networkErrors.size, summary).toBe(0);
  expect(outcome.wrongAnswer, summary).toBe(0);
  expect(outcome.ok, summary).toBeGreaterThan(outcome.total * 0.9);
}

describe("iris on a 4-replica server, through the gateway process", () => {
  it("places 3 replicas on 3 distinct agents and answers known iris rows with their classes", async () => {
    await stack.apply(`${serverManifest("mlserver", 4)}---\n${irisManifest(3)}`);
    const status = await stack.waitModel("iris", available(3), "iris ModelAvailable with 3 replicas");
    expect(status.server).toBe("mlserver");
    const replicas = status.placement.map((p) => p.replica);
    expect(new Set(replicas).size).toBe(3);
    expect(status.placement.every((p) => p.server === "mlserver" && p.state === "Available")).toBe(true);
    // The agents agree with the scheduler: exactly the placed ones hold iris.
    expect(await agentsReady()).toEqual([...replicas].sort());

    // The gateway learns the route from the scheduler's watch stream.
    await waitFor(async () => (await inferIris(stack.gateway.url, rows.slice(0, 1))).status === 200, {
      timeoutMs: 10_000,
      intervalMs: 100,
      description: "iris served through the gateway",
    });
    await expectRightClasses();
    // One row at a time as well (batch 1 is what clients mostly send).
    for (const row of rows) {
      const { status: code, body } = await inferIris(stack.gateway.url, [row]);
      expect(code).toBe(200);
      expect(body.model_name).toBe("iris");
      expect(parseIrisAnswer(body).labels).toEqual([row.label]);
    }
  });

  it("raised to 5 replicas: ScheduleFailed naming 5 and 4 while the loaded replicas keep serving; lowered to 2: exactly 2", async () => {
    const traffic = startTraffic({
      url: stack.gateway.url,
      rows,
      concurrency: 2,
      timeoutMs: 5000,
      maxDurationMs: 30_000,
      maxRequests: 5000,
    });
    try {
      await stack.apply(irisManifest(5));
      const failed = await stack.waitModel(
        "iris",
        (s) => s.state === "ScheduleFailed" && s.replicas === 5,
        "iris ScheduleFailed at 5 replicas",
      );
      expect(failed.reason).toMatch(/\b5\b/);
      expect(failed.reason).toMatch(/\b4\b/);
      expect(failed.availableReplicas).toBeGreaterThanOrEqual(3);
      // A few more requests while it stays failed.
      const seen = traffic.completed();
      await waitFor(() => traffic.completed() >= seen + 20, {
        timeoutMs: 10_000,
        intervalMs: 20,
        description: "20 requests while ScheduleFailed",
      });
      expect((await stack.modelStatus("iris"))?.state).toBe("ScheduleFailed");
    } finally {
      traffic.stop();
    }
    const during = await traffic.done;
    console.log(`[e2e scaling] while ScheduleFailed: ${describeOutcome(during)}`);
    expectNoFailures(during);
    await expectRightClasses();

    const before = await agentsReady();
    expect(before.length).toBeGreaterThanOrEqual(3);
    const down = startTraffic({
      url: stack.gateway.url,
      rows,
      concurrency: 2,
      timeoutMs: 5000,
      maxDurationMs: 30_000,
      maxRequests: 5000,
    });
    let two: ModelStatus;
    try {
      await stack.apply(irisManifest(2));
      two = await stack.waitModel("iris", available(2), "iris ModelAvailable with exactly 2 replicas");
      // The replicas that were dropped unload: only the 2 placed agents still hold iris.
      const placed = two.placement.map((p) => p.replica).sort();
      expect(new Set(placed).size).toBe(2);
      await waitFor(async () => JSON.stringify(await agentsReady()) === JSON.stringify(placed), {
        timeoutMs: 15_000,
        intervalMs: 100,
        description: `only replicas ${placed} hold iris`,
      });
    } finally {
      down.stop();
    }
    const scaledDown = await down.done;
    console.log(`[e2e scaling] while scaling 5 → 2: ${describeOutcome(scaledDown)}`);
    // A dropped replica may unload before the gateway has the table without it; its agent then answers a 404
    // marked as a replica miss and the gateway sends the request to a replica that kept iris. So nothing fails.
    expectNoFailures(scaledDown);
    const unloaded = before.filter((r) => !two.placement.some((p) => p.replica === r));
    expect(unloaded.length).toBeGreaterThanOrEqual(1);
    await expectRightClasses();
  });

  it("SIGKILL of an agent holding iris under traffic: rescheduled to the spare, every request 200 or a clear error, none hangs", async () => {
    await stack.apply(irisManifest(3));
    const three = await stack.waitModel("iris", available(3), "iris back at 3 replicas");
    const holders = three.placement.map((p) => p.replica);
    const spare = [...stack.agents.keys()].find((r) => !holders.includes(r));
    expect(spare).toBeDefined();
    // Wait until the gateway's table has the third replica too, so the kill hits a replica that takes traffic.
    await waitFor(
      async () => {
        const routes = (await (await fetch(`${stack.scheduler.url}/v1/routes`)).json()) as {
          models: Record<string, { endpoints: unknown[] }>;
        };
        return routes.models.iris?.endpoints.length === 3;
      },
      { timeoutMs: 10_000, intervalMs: 100, description: "3 iris endpoints in the route table" },
    );
    const victim = holders[0]!;
    const victimHttp = stack.agents.get(victim)!.http;
    const servedBefore = await irisRequestsServed(victimHttp);

    const traffic = startTraffic({
      url: stack.gateway.url,
      rows,
      concurrency: 8,
      timeoutMs: 5000,
      maxDurationMs: 30_000,
      maxRequests: 20_000,
    });
    let rescheduled: ModelStatus;
    try {
      await waitFor(() => traffic.completed() >= 100, {
        timeoutMs: 10_000,
        intervalMs: 10,
        description: "traffic flowing before the kill",
      });
      // The victim really takes a share of the traffic when it dies.
      const victimServed = await waitFor(
        async () => ((await irisRequestsServed(victimHttp)) > servedBefore ? true : undefined),
        { timeoutMs: 5000, intervalMs: 50, description: `replica ${victim} serving gateway traffic` },
      );
      expect(victimServed).toBe(true);
      await stack.stopAgent(victim, "SIGKILL");
      rescheduled = await stack.waitModel(
        "iris",
        (s) => available(3)(s) && !s.placement.some((p) => p.replica === victim),
        `iris back at 3 replicas without replica ${victim}`,
        20_000,
      );
      // Keep the traffic on a little longer so it also crosses the gateway's switch to the new table.
      const seen = traffic.completed();
      await waitFor(() => traffic.completed() >= seen + 200, {
        timeoutMs: 15_000,
        intervalMs: 10,
        description: "200 requests after the reschedule",
      });
    } finally {
      traffic.stop();
    }
    const outcome = await traffic.done;
    console.log(`[e2e scaling] SIGKILL of replica ${victim} under traffic: ${describeOutcome(outcome)}`);
    // 200s dominate: the gateway retries a refused connection on another replica.
    expectClearOrOk(outcome);

    const placed = rescheduled.placement.map((p) => p.replica).sort();
    expect(placed).toContain(spare);
    expect(new Set(placed).size).toBe(3);
    expect(await agentsReady()).toEqual(placed);
    await expectRightClasses();
  });
});
