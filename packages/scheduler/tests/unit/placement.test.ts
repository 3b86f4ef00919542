import { describe, expect, it } from "vitest";
import {
  applyDecision,
  formatBytes,
  type ModelDemand,
  type PlacementDecision,
  placeAll,
  placeModel,
  type ReplicaView,
  replicaCapacity,
  type ServerView,
} from "../../src/placement.js";

const Mi = 2 ** 20;
const Gi = 2 ** 30;
const NO_OVERCOMMIT = { overcommitPercent: 0 };

/** A replica with 1Gi, connected, empty; override what the case is about. */
function replica(index: number, over: Partial<ReplicaView> = {}): ReplicaView {
  return {
    index,
    connected: true,
    draining: false,
    memoryBytes: Gi,
    loadedBytes: 0,
    reservedBytes: 0,
    models: [],
    ...over,
  };
}

/** A server with `count` fresh replicas (indexes 0..count-1) offering onnx; override what the case is about. */
function server(name: string, count: number, over: Partial<ServerView> = {}): ServerView {
  return {
    name,
    capabilities: ["onnx"],
    deleting: false,
    desiredReplicas: count,
    replicas: Array.from({ length: count }, (_, i) => replica(i)),
    ...over,
  };
}

function model(over: Partial<ModelDemand> = {}): ModelDemand {
  return { name: "iris", version: 1, memoryBytes: 100 * 1024, replicas: 1, requirements: ["onnx"], ...over };
}

function place(m: ModelDemand, servers: ServerView[], overcommitPercent = 0): PlacementDecision {
  return placeModel(m, servers, { overcommitPercent });
}

function reasonOf(d: PlacementDecision): string {
  if (d.status === "placed") throw new Error(`expected a reason, got a placed decision: ${JSON.stringify(d)}`);
  return d.reason;
}

function codeOf(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return (err as { code?: unknown }).code;
  }
  return undefined;
}

describe("placeModel: replicas bounded by the server's replicas (the scaling specification's rule)", () => {
  it("fails a model asking 3 replicas of a server that has 2, naming both numbers", () => {
    const d = place(model({ replicas: 3 }), [server("mlserver", 2)]);
    expect(d.status).toBe("failed");
    expect(d.replicas).toEqual([]);
    expect(reasonOf(d)).toBe("model iris: 3 replicas requested, server mlserver has 2 replicas");
  });

  it("places the same model on 3 distinct replicas once the server has 3", () => {
    const d = place(model({ replicas: 3 }), [server("mlserver", 3)]);
    expect(d).toEqual({
      model: "iris",
      version: 1,
      status: "placed",
      server: "mlserver",
      replicas: [0, 1, 2],
      partial: false,
    });
  });

  it("puts all replicas of a version on one server, even when two servers together would fit them", () => {
    const d = place(model({ replicas: 3 }), [server("a", 2), server("b", 2)]);
    expect(d.status).toBe("failed");
    expect(reasonOf(d)).toContain("3 replicas requested");
  });

  it("places a model scaled to zero on no replica", () => {
    const d = place(model({ replicas: 0 }), [server("mlserver", 2)]);
    expect(d).toMatchObject({ status: "placed", server: "mlserver", replicas: [] });
  });
});

describe("placeModel: candidate servers", () => {
  it("fails a model requiring sklearn when the only server offers onnx, naming the missing capability", () => {
    const d = place(model({ requirements: ["sklearn"] }), [server("mlserver", 2)]);
    expect(d.status).toBe("failed");
    expect(reasonOf(d)).toBe("model iris: no server offers capability sklearn (server mlserver offers onnx)");
  });

  it("names the closest server when requirements are offered only separately", () => {
    const servers = [server("a", 1, { capabilities: ["sklearn"] }), server("b", 1, { capabilities: ["gpu", "onnx"] })];
    const d = place(model({ requirements: ["sklearn", "gpu"] }), servers);
    expect(reasonOf(d)).toBe(
      "model iris: no server offers all of sklearn, gpu (closest: server a lacks gpu; it offers sklearn)",
    );
  });

  it("chooses the server whose capabilities include every requirement", () => {
    const servers = [server("a", 3), server("b", 1, { capabilities: ["onnx", "sklearn"] })];
    expect(place(model({ requirements: ["onnx", "sklearn"] }), servers)).toMatchObject({
      status: "placed",
      server: "b",
    });
  });

  it("skips a server that is being deleted", () => {
    const servers = [server("a", 3, { deleting: true }), server("b", 1)];
    expect(place(model(), servers)).toMatchObject({ status: "placed", server: "b" });
  });

  it("fails when no server has a connected replica", () => {
    const servers = [
      server("a", 2, { replicas: [replica(0, { connected: false }), replica(1, { connected: false })] }),
    ];
    const d = place(model(), servers);
    expect(reasonOf(d)).toBe("model iris: no server has connected replicas");
  });

  it("fails with a clear reason when there are no servers at all", () => {
    expect(reasonOf(place(model(), []))).toBe("model iris: no servers exist to place it on");
  });

  it("prefers the server that can fit the most replicas, then name order", () => {
    expect(place(model(), [server("a", 2), server("b", 3)])).toMatchObject({ server: "b" });
    expect(place(model(), [server("b", 3), server("a", 3)])).toMatchObject({ server: "a" });
  });
});

describe("placeModel: pinned server", () => {
  it("places on the pinned server even when another has more room", () => {
    const d = place(model({ server: "small", replicas: 2 }), [server("big", 5), server("small", 2)]);
    expect(d).toMatchObject({ status: "placed", server: "small", replicas: [0, 1] });
  });

  it("fails when the pinned server does not exist", () => {
    const d = place(model({ server: "ghost" }), [server("mlserver", 3)]);
    expect(reasonOf(d)).toBe("model iris: pinned server ghost does not exist");
  });

  it("fails when the pinned server is being deleted", () => {
    const d = place(model({ server: "mlserver" }), [server("mlserver", 3, { deleting: true }), server("other", 3)]);
    expect(reasonOf(d)).toBe("model iris: pinned server mlserver is being deleted");
  });

  it("fails when the pinned server lacks a requirement", () => {
    const d = place(model({ server: "mlserver", requirements: ["sklearn"] }), [server("mlserver", 1)]);
    expect(reasonOf(d)).toBe("model iris: pinned server mlserver lacks capability sklearn (it offers onnx)");
  });

  it("fails when the pinned server has no connected replica", () => {
    const pinned = server("mlserver", 1, { replicas: [replica(0, { connected: false })] });
    expect(reasonOf(place(model({ server: "mlserver" }), [pinned]))).toBe(
      "model iris: pinned server mlserver has no connected replicas",
    );
  });
});

describe("placeModel: candidate replicas", () => {
  it("excludes draining, disconnected and leaving (index ≥ desired replicas) replicas", () => {
    const s = server("mlserver", 4, {
      desiredReplicas: 3,
      replicas: [replica(0, { draining: true }), replica(1, { connected: false }), replica(2), replica(3)],
    });
    expect(place(model(), [s])).toMatchObject({ status: "placed", replicas: [2] });
    const d = place(model({ replicas: 2 }), [s]);
    expect(reasonOf(d)).toBe(
      "model iris: 2 replicas requested, server mlserver has 1 usable replica (1 draining, 1 disconnected, 1 leaving in scale-down)",
    );
  });

  it("orders replicas by most free memory, then lowest index", () => {
    const s = server("mlserver", 4, {
      replicas: [
        replica(0, { loadedBytes: 512 * Mi }),
        replica(1, { reservedBytes: 100 * Mi }),
        replica(2),
        replica(3),
      ],
    });
    expect(place(model({ replicas: 3 }), [s])).toMatchObject({ replicas: [1, 2, 3] });
    expect(place(model({ replicas: 2 }), [s])).toMatchObject({ replicas: [2, 3] });
  });

  it("keeps the replicas that already hold the version before emptier ones", () => {
    const s = server("mlserver", 4, {
      replicas: [replica(0), replica(1), replica(2, { loadedBytes: 900 * Mi }), replica(3, { loadedBytes: 900 * Mi })],
    });
    const d = place(model({ replicas: 2, current: { server: "mlserver", replicas: [2, 3] } }), [s]);
    expect(d).toMatchObject({ status: "placed", replicas: [2, 3] });
  });

  it("counts a replica that already holds the version as fitting, with no memory left over", () => {
    const full = replica(0, { loadedBytes: Gi, models: [{ model: "iris", version: 1 }] });
    const d = place(model({ memoryBytes: 512 * Mi }), [server("mlserver", 1, { replicas: [full] })]);
    expect(d).toMatchObject({ status: "placed", server: "mlserver", replicas: [0] });
  });

  it("does not count another version of the model as already held", () => {
    const full = replica(0, { loadedBytes: Gi, models: [{ model: "iris", version: 1 }] });
    const d = place(model({ version: 2, memoryBytes: 512 * Mi }), [server("mlserver", 1, { replicas: [full] })]);
    expect(d.status).toBe("failed");
  });
});

describe("placeModel: memory", () => {
  it("fails when memory is exhausted, saying how much is needed and how many replicas have room", () => {
    const s = server("mlserver", 3, {
      replicas: [replica(0), replica(1, { loadedBytes: 768 * Mi }), replica(2, { reservedBytes: 900 * Mi })],
    });
    const d = place(model({ replicas: 3, memoryBytes: 512 * Mi }), [s]);
    expect(d.status).toBe("failed");
    expect(reasonOf(d)).toBe(
      "model iris: needs 512Mi per replica; server mlserver has 1 replica with room (3 requested; the others have at most 256Mi free)",
    );
  });

  it("counts memory reserved by loads in flight as used", () => {
    const s = server("mlserver", 1, { replicas: [replica(0, { reservedBytes: 600 * Mi })] });
    expect(place(model({ memoryBytes: 512 * Mi }), [s]).status).toBe("failed");
  });

  it("admits more with over-commit", () => {
    const s = server("mlserver", 1, { replicas: [replica(0, { loadedBytes: 900 * Mi })] });
    const m = model({ memoryBytes: 200 * Mi });
    expect(place(m, [s], 0).status).toBe("failed");
    expect(place(m, [s], 10).status).toBe("placed");
  });

  it("admits an exact fit under over-commit despite floating point (100 × 1.15)", () => {
    expect(replicaCapacity(100, { overcommitPercent: 15 })).toBe(115);
    const s = server("mlserver", 1, { replicas: [replica(0, { memoryBytes: 100 })] });
    expect(place(model({ memoryBytes: 115 }), [s], 15).status).toBe("placed");
  });
});

describe("placeModel: partial placement with minReplicas", () => {
  it("places as many as fit when at least minReplicas fit, and says what is missing", () => {
    const d = place(model({ replicas: 3, minReplicas: 2 }), [server("mlserver", 2)]);
    expect(d).toMatchObject({ status: "partial", partial: true, server: "mlserver", replicas: [0, 1] });
    expect(reasonOf(d)).toBe(
      "model iris: 3 replicas requested, server mlserver has 2 replicas; running 2 of 3 (minReplicas 2)",
    );
  });

  it("fails when fewer than minReplicas fit", () => {
    const d = place(model({ replicas: 3, minReplicas: 3 }), [server("mlserver", 2)]);
    expect(d.status).toBe("failed");
    expect(reasonOf(d)).toBe(
      "model iris: 3 replicas requested, server mlserver has 2 replicas; at least 3 needed (minReplicas)",
    );
  });

  it("prefers a server that takes every replica over a partial fit", () => {
    const d = place(model({ replicas: 3, minReplicas: 1 }), [server("a", 2), server("b", 3)]);
    expect(d).toMatchObject({ status: "placed", server: "b" });
  });
});

describe("placeModel: no ping-pong", () => {
  it("stays on the server that already hosts the model when it still fits there", () => {
    const servers = [server("a", 5), server("b", 2)];
    const d = place(model({ replicas: 2, current: { server: "b", replicas: [0, 1] } }), servers);
    expect(d).toMatchObject({ status: "placed", server: "b", replicas: [0, 1] });
  });

  it("finds the current server from the replicas' model lists when current is not given", () => {
    const holder = server("b", 2, {
      replicas: [replica(0), replica(1, { loadedBytes: 100 * 1024, models: [{ model: "iris", version: 1 }] })],
    });
    const d = place(model(), [server("a", 5), holder]);
    expect(d).toMatchObject({ status: "placed", server: "b", replicas: [1] });
  });

  it("moves to another server when the current one can no longer take every replica", () => {
    const servers = [server("a", 3), server("b", 2)];
    const d = place(model({ replicas: 3, current: { server: "b", replicas: [0, 1] } }), servers);
    expect(d).toMatchObject({ status: "placed", server: "a" });
  });
});

describe("placeModel: a server scaled below a model's replicas (better than Seldon)", () => {
  it("keeps the replicas that still hold the model serving while reporting the failure", () => {
    // The model ran on 3 replicas; the server was scaled to 2, so replica 2 is leaving.
    const s = server("mlserver", 3, { desiredReplicas: 2 });
    const d = place(model({ replicas: 3, current: { server: "mlserver", replicas: [0, 1, 2] } }), [s]);
    expect(d).toEqual({
      model: "iris",
      version: 1,
      status: "failed",
      server: "mlserver",
      replicas: [0, 1],
      reason: "model iris: 3 replicas requested, server mlserver has 2 usable replicas (1 leaving in scale-down)",
    });
  });

  it("lists no replicas when the holding replicas are gone too", () => {
    const s = server("mlserver", 1);
    const d = place(model({ replicas: 3, current: { server: "mlserver", replicas: [1, 2] } }), [s]);
    expect(d).toMatchObject({ status: "failed", replicas: [] });
    expect(d).not.toHaveProperty("server");
  });

  it("recovers by itself once the server has enough replicas again", () => {
    const s = server("mlserver", 3);
    const d = place(model({ replicas: 3, current: { server: "mlserver", replicas: [0, 1] } }), [s]);
    expect(d).toMatchObject({ status: "placed", server: "mlserver", replicas: [0, 1, 2] });
  });
});

describe("placeModel: bad input", () => {
  it("rejects minReplicas above replicas, naming the field", () => {
    expect(codeOf(() => place(model({ replicas: 1, minReplicas: 2 }), []))).toBe("bad_request");
    expect(() => place(model({ replicas: 1, minReplicas: 2 }), [])).toThrow(/minReplicas/);
  });

  it("rejects negative or fractional replicas and negative memory", () => {
    expect(() => place(model({ replicas: -1 }), [])).toThrow(/replicas/);
    expect(() => place(model({ replicas: 1.5 }), [])).toThrow(/replicas/);
    expect(() => place(model({ memoryBytes: -1 }), [])).toThrow(/memoryBytes/);
  });

  it("rejects a negative over-commit percentage", () => {
    expect(() => placeModel(model(), [], { overcommitPercent: -5 })).toThrow(/overcommitPercent/);
  });

  it("rejects two servers with the same name", () => {
    expect(codeOf(() => place(model(), [server("a", 1), server("a", 1)]))).toBe("bad_request");
  });
});

describe("placeAll", () => {
  it("accounts for the memory each decision reserves", () => {
    const s = server("mlserver", 2);
    const models = [model({ name: "a", memoryBytes: 600 * Mi }), model({ name: "b", memoryBytes: 600 * Mi })];
    const { decisions, servers } = placeAll(models, [s], NO_OVERCOMMIT);
    const used = decisions.map((d) => d.replicas[0]);
    expect(new Set(used).size).toBe(2);
    expect(servers[0]!.replicas.map((r) => r.reservedBytes)).toEqual([600 * Mi, 600 * Mi]);
    expect(servers[0]!.replicas.flatMap((r) => r.models.map((m) => m.model)).sort()).toEqual(["a", "b"]);
  });

  it("returns decisions in input order and leaves the input untouched", () => {
    const s = server("mlserver", 1);
    const before = JSON.stringify(s);
    const models = [model({ name: "small", memoryBytes: Mi }), model({ name: "big", memoryBytes: 512 * Mi })];
    const { decisions } = placeAll(models, [s], NO_OVERCOMMIT);
    expect(decisions.map((d) => d.model)).toEqual(["small", "big"]);
    expect(JSON.stringify(s)).toBe(before);
  });

  it("places bigger models first, so the input order does not decide who gets the memory", () => {
    const s = server("mlserver", 1);
    const big = model({ name: "big", memoryBytes: 800 * Mi });
    const small = model({ name: "small", memoryBytes: 300 * Mi });
    const one = placeAll([small, big], [s], NO_OVERCOMMIT).decisions;
    const two = placeAll([big, small], [s], NO_OVERCOMMIT).decisions;
    expect(one.find((d) => d.model === "big")!.status).toBe("placed");
    expect(two.find((d) => d.model === "big")!.status).toBe("placed");
    expect(one.find((d) => d.model === "small")!.status).toBe("failed");
  });

  it("does not reserve memory again on replicas that already hold the version", () => {
    const holder = replica(0, { loadedBytes: 512 * Mi, models: [{ model: "iris", version: 1 }] });
    const { servers } = placeAll(
      [model({ memoryBytes: 512 * Mi })],
      [server("mlserver", 1, { replicas: [holder] })],
      NO_OVERCOMMIT,
    );
    expect(servers[0]!.replicas[0]!.reservedBytes).toBe(0);
  });

  it("rejects a version listed twice", () => {
    expect(codeOf(() => placeAll([model(), model()], [], NO_OVERCOMMIT))).toBe("bad_request");
  });
});

describe("applyDecision", () => {
  it("reserves memory on the new replicas only and shares untouched servers", () => {
    const servers = [server("a", 2), server("b", 2)];
    const m = model({ replicas: 2, memoryBytes: 100 * Mi, current: { server: "a", replicas: [0] } });
    const next = applyDecision(servers, m, place(m, servers));
    expect(next[0]!.replicas.map((r) => r.reservedBytes)).toEqual([0, 100 * Mi]);
    expect(next[0]!.replicas[1]!.models).toEqual([{ model: "iris", version: 1 }]);
    expect(next[1]).toBe(servers[1]);
    expect(servers[0]!.replicas[1]!.reservedBytes).toBe(0);
  });
});

describe("formatBytes", () => {
  it("uses binary units, exact when it can be", () => {
    expect(formatBytes(2 * Gi)).toBe("2Gi");
    expect(formatBytes(100 * 1024)).toBe("100Ki");
    expect(formatBytes(1.5 * Gi)).toBe("1.5Gi");
    expect(formatBytes(2 * Gi - 1)).toBe("2.0Gi");
    expect(formatBytes(512)).toBe("512B");
  });
});
