/**
 * OIP protobuf codec benchmark (not a test): `@tern/core`'s hand-written codec against protobufjs reading the same
 * `packages/core/proto/oip.proto`, in the same process on the same messages:
 *
 *   npm run bench:codec        (node --import tsx bench/codec/run.ts)
 *
 * Implementations:
 *   ours          encodeModelInferRequest(msg, { allocate: Buffer.allocUnsafe }) / decodeModelInferRequest
 *                 (typed arrays, raw contents as views)
 *   protobufjs    Type.encode(plain object).finish() / Type.decode(bytes) (message objects, arrays of numbers)
 *   proto-loader  what @grpc/proto-loader does per call with the agent's options: Type.fromObject + encode /
 *                 decode + toObject (keepCase, longs as String, defaults, oneofs) — the agent's path before this codec
 * Messages: an iris request (4 FP32 in fp32_contents), an iris response (INT64 label + 3 FP32 probabilities), and a
 * 1 MiB FP32 tensor in raw_input_contents. Decoding reads a Buffer (what gRPC and kafkajs hand over).
 *
 * Times are CPU time of the process (process.cpuUsage), so that waiting for a core on a shared machine does not count.
 * Every operation is first warmed up (all of them, before any timing). Then each (message, operation, implementation)
 * runs in batches sized to about BENCH_BATCH_MS; rounds alternate the implementations, and each figure is the median
 * ns/op over BENCH_ROUNDS rounds.
 *
 * Environment (all optional): BENCH_ROUNDS (21), BENCH_BATCH_MS (40), BENCH_OUT (codec), BENCH_RENDER_ONLY=1.
 * Writes bench/results/<BENCH_OUT>.json and .md (the .md ends with bench/codec/notes.md).
 */
import { join } from "node:path";
import {
  decodeModelInferRequest,
  decodeModelInferResponse,
  encodeModelInferRequest,
  encodeModelInferResponse,
  type ModelInferRequest,
  type ModelInferResponse,
} from "@tern/core";
import protobuf from "protobufjs";
import { commandLine, envNumber } from "../lib/config.js";
import { REPO_ROOT } from "../lib/processes.js";
import { type MachineInfo, machineLines, notesLines, rerenderIfAsked, startRun, writeResults } from "../lib/report.js";
import { median, round2, round3 } from "../lib/stats.js";

const CONFIG = {
  rounds: envNumber("BENCH_ROUNDS", 21, 1),
  batchMs: envNumber("BENCH_BATCH_MS", 40, 1),
  out: process.env.BENCH_OUT ?? "codec",
};
const IMPLS = ["ours", "protobufjs", "proto-loader"] as const;
/** What a Node caller (the agent, the Kafka adapters) passes to our encoder. */
const NODE_ALLOC = { allocate: (size: number) => Buffer.allocUnsafe(size) };
type Impl = (typeof IMPLS)[number];

const root = new protobuf.Root();
root.loadSync(join(REPO_ROOT, "packages/core/proto/oip.proto"), { keepCase: true });
const PbRequest = root.lookupType("inference.ModelInferRequest");
const PbResponse = root.lookupType("inference.ModelInferResponse");
/** @grpc/proto-loader's conversion with the agent's loader options (packages/agent/src/grpc/oip-proto.ts). */
const LOADER_OBJECT: protobuf.IConversionOptions = { longs: String, enums: String, defaults: true, oneofs: true };

// ---------------------------------------------------------------------------------------------------------------
// Messages, each in our form and as the plain object protobufjs encodes

const IRIS = [5.1, 3.5, 1.4, 0.2];
const irisRequest: ModelInferRequest = {
  model_name: "iris",
  id: "3f1c2a9e-6b1d-4c55-9a3e-0d2f6c1b7e42",
  inputs: [{ name: "predict", datatype: "FP32", shape: [1, 4], contents: { fp32_contents: Float32Array.from(IRIS) } }],
};
const irisRequestPb = {
  model_name: "iris",
  id: irisRequest.id,
  inputs: [{ name: "predict", datatype: "FP32", shape: [1, 4], contents: { fp32_contents: IRIS } }],
};
const PROBS = [0.97, 0.02, 0.01];
const irisResponse: ModelInferResponse = {
  model_name: "iris",
  model_version: "1",
  id: irisRequest.id,
  outputs: [
    { name: "label", datatype: "INT64", shape: [1], contents: { int64_contents: BigInt64Array.of(0n) } },
    { name: "probabilities", datatype: "FP32", shape: [1, 3], contents: { fp32_contents: Float32Array.from(PROBS) } },
  ],
};
const irisResponsePb = {
  model_name: "iris",
  model_version: "1",
  id: irisRequest.id,
  outputs: [
    { name: "label", datatype: "INT64", shape: [1], contents: { int64_contents: [0] } },
    { name: "probabilities", datatype: "FP32", shape: [1, 3], contents: { fp32_contents: PROBS } },
  ],
};
const MIB = 1024 * 1024;
const bigRaw = new Uint8Array(new Float32Array(MIB / 4).map((_, i) => Math.sin(i)).buffer);
const bigRequest: ModelInferRequest = {
  model_name: "embedder",
  id: "big-1",
  inputs: [{ name: "x", datatype: "FP32", shape: [1, MIB / 4] }],
  raw_input_contents: [bigRaw],
};
const bigRequestPb = {
  model_name: "embedder",
  id: "big-1",
  inputs: [{ name: "x", datatype: "FP32", shape: [1, MIB / 4] }],
  raw_input_contents: [bigRaw],
};

interface Case {
  name: string;
  /** The operation of each implementation; each returns something so the work cannot be optimised away. */
  ops: Record<Impl, () => unknown>;
}

function cases(): Case[] {
  const reqCase = (name: string, ours: ModelInferRequest, pb: object): Case[] => {
    const bytes = Buffer.from(encodeModelInferRequest(ours));
    return [
      {
        name: `${name}: encode`,
        ops: {
          ours: () => encodeModelInferRequest(ours, NODE_ALLOC),
          protobufjs: () => PbRequest.encode(pb).finish(),
          "proto-loader": () => PbRequest.encode(PbRequest.fromObject(pb)).finish(),
        },
      },
      {
        name: `${name}: decode`,
        ops: {
          ours: () => decodeModelInferRequest(bytes),
          protobufjs: () => PbRequest.decode(bytes),
          "proto-loader": () => PbRequest.toObject(PbRequest.decode(bytes), LOADER_OBJECT),
        },
      },
    ];
  };
  const resBytes = Buffer.from(encodeModelInferResponse(irisResponse));
  return [
    ...reqCase("iris request (4 FP32, contents)", irisRequest, irisRequestPb),
    {
      name: "iris response (INT64 + 3 FP32, contents): encode",
      ops: {
        ours: () => encodeModelInferResponse(irisResponse, NODE_ALLOC),
        protobufjs: () => PbResponse.encode(irisResponsePb).finish(),
        "proto-loader": () => PbResponse.encode(PbResponse.fromObject(irisResponsePb)).finish(),
      },
    },
    {
      name: "iris response (INT64 + 3 FP32, contents): decode",
      ops: {
        ours: () => decodeModelInferResponse(resBytes),
        protobufjs: () => PbResponse.decode(resBytes),
        "proto-loader": () => PbResponse.toObject(PbResponse.decode(resBytes), LOADER_OBJECT),
      },
    },
    ...reqCase("1 MiB FP32 tensor (raw_input_contents)", bigRequest, bigRequestPb),
  ];
}

/** Before timing: every implementation's bytes decode (by ours) to the same message, and ours reads theirs. */
function check(): void {
  const same = (a: Uint8Array, b: Uint8Array, what: string) => {
    if (Buffer.compare(Buffer.from(a), Buffer.from(b)) !== 0) throw new Error(`${what}: the encoders disagree`);
  };
  same(encodeModelInferRequest(irisRequest), PbRequest.encode(irisRequestPb).finish(), "iris request");
  same(encodeModelInferResponse(irisResponse), PbResponse.encode(irisResponsePb).finish(), "iris response");
  same(encodeModelInferRequest(bigRequest), PbRequest.encode(bigRequestPb).finish(), "1 MiB request");
}

// ---------------------------------------------------------------------------------------------------------------
// Timing

let sink: unknown;

/**
 * CPU ns per op of one batch of `n` calls: this process's user + system CPU time, not wall time, because the machine
 * is shared and wall time counts the waits for a core (with a load average of 10 on 2 cores, most of it).
 */
function batch(op: () => unknown, n: number): number {
  const start = process.cpuUsage();
  for (let i = 0; i < n; i++) sink = op();
  const used = process.cpuUsage(start);
  return ((used.user + used.system) * 1000) / n;
}

/** A batch size that takes about `ms` for `op`. */
function calibrate(op: () => unknown, ms: number): number {
  let n = 1;
  for (;;) {
    const ns = batch(op, n) * n;
    if (ns >= (ms * 1e6) / 4 || n >= 1 << 24) return Math.max(1, Math.round((n * ms * 1e6) / Math.max(ns, 1)));
    n *= 2;
  }
}

interface CaseResult {
  name: string;
  /** Median ns/op per implementation. */
  ns: Record<Impl, number>;
  batch: Record<Impl, number>;
}

function measure(c: Case): CaseResult {
  const sizes = {} as Record<Impl, number>;
  for (const impl of IMPLS) sizes[impl] = calibrate(c.ops[impl], CONFIG.batchMs);
  const samples = Object.fromEntries(IMPLS.map((i) => [i, [] as number[]])) as Record<Impl, number[]>;
  for (let r = 0; r < CONFIG.rounds; r++) {
    // Rotate the order so that no implementation always runs first after the previous case.
    for (let k = 0; k < IMPLS.length; k++) {
      const impl = IMPLS[(r + k) % IMPLS.length]!;
      samples[impl].push(batch(c.ops[impl], sizes[impl]));
    }
  }
  const ns = Object.fromEntries(IMPLS.map((i) => [i, round2(median(samples[i]))])) as Record<Impl, number>;
  return { name: c.name, ns, batch: sizes };
}

// ---------------------------------------------------------------------------------------------------------------

interface Result {
  command: string;
  startedAt: string;
  machine: MachineInfo;
  rounds: number;
  batchMs: number;
  cases: CaseResult[];
}

function main(): void {
  if (rerenderIfAsked<Result>(CONFIG.out, renderMarkdown)) return;
  const run = startRun("codec");
  check();
  const all = cases();
  // Warm-up: every operation of every implementation runs (and gets optimised) before anything is timed, so the
  // first case measured is not the one that pays for the JIT.
  for (let k = 0; k < 2; k++) for (const c of all) for (const impl of IMPLS) calibrate(c.ops[impl], CONFIG.batchMs);
  const results: CaseResult[] = [];
  for (const c of all) {
    const r = measure(c);
    results.push(r);
    console.log(
      `${r.name}: ours ${fmt(r.ns.ours)}, protobufjs ${fmt(r.ns.protobufjs)} (×${ratio(r, "protobufjs")}), ` +
        `proto-loader ${fmt(r.ns["proto-loader"])} (×${ratio(r, "proto-loader")})`,
    );
  }
  if (sink === undefined) throw new Error("nothing was computed");
  const result: Result = {
    command: commandLine("npm run bench:codec"),
    startedAt: run.startedAt.toISOString(),
    machine: run.machine(),
    rounds: CONFIG.rounds,
    batchMs: CONFIG.batchMs,
    cases: results,
  };
  writeResults(CONFIG.out, result, renderMarkdown);
}

const fmt = (ns: number) => (ns >= 10_000 ? `${round2(ns / 1000)} µs` : `${Math.round(ns)} ns`);
/** How many times slower the other implementation is than ours. */
const ratio = (r: CaseResult, other: Impl) => round3(r.ns[other] / r.ns.ours);

function renderMarkdown(r: Result): string {
  const rows = r.cases.map(
    (c) =>
      `| ${c.name} | ${fmt(c.ns.ours)} | ${fmt(c.ns.protobufjs)} | ×${ratio(c, "protobufjs")} | ` +
      `${fmt(c.ns["proto-loader"])} | ×${ratio(c, "proto-loader")} |`,
  );
  return [
    "# OIP protobuf codec benchmark",
    "",
    `Produced by \`${r.command}\` (\`node --import tsx bench/codec/run.ts\`) on ${r.startedAt}.`,
    ...machineLines(r.machine),
    `Every figure is the median CPU time (user + system, all threads of the process) per operation over ${r.rounds} rounds of batches of about ${r.batchMs} ms ` +
      "(after a warm-up of every operation), the implementations alternating within each round. The ratios say how many times " +
      "longer the other implementation took than ours (above 1: ours is faster).",
    "",
    "| Message: operation | ours | protobufjs | ratio | protobufjs as proto-loader | ratio |",
    "|---|---|---|---|---|---|",
    ...rows,
    "",
    ...notesLines(join(REPO_ROOT, "bench/codec/notes.md")),
  ].join("\n");
}

main();
