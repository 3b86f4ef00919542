import { brotliCompressSync, brotliDecompressSync, constants } from "node:zlib";
import { TernError } from "./errors.js";
import type { PipelineIo } from "./pipeline-io.js";
import type { ExperimentCandidate } from "./resources.js";
import type { ModelState, PipelineState } from "./status.js";

/**
 * The route table the scheduler publishes for gateways: `GET /v1/routes` on the control API (and its watch stream),
 * and the item `pk="routes", sk="current"` in DynamoDB for Lambda gateways (plain, or a {@link PackedRouteTable} when
 * large). Only endpoints that can serve are listed.
 */
export interface RouteTable {
  /** Scheduler revision this table was built at; increases monotonically. */
  revision: number;
  models: Record<string, ModelRoute>;
  pipelines: Record<string, PipelineRoute>;
  experiments: Record<string, ExperimentRoute>;
}

export interface ReplicaEndpoint {
  server: string;
  replica: number;
  /** Model version this replica serves. */
  version: number;
  /** Base URL of the agent's OIP REST server. */
  http: string;
  /** `host:port` of the agent's gRPC server. */
  grpc?: string;
}

export interface ModelRoute {
  name: string;
  /** Latest version with available replicas (traffic moves to a new version only once it can serve). */
  version: number;
  state: ModelState;
  endpoints: ReplicaEndpoint[];
}

export interface PipelineRoute {
  name: string;
  state: PipelineState;
  /** What the pipeline takes and answers, from its spec (`GET /v2/pipelines/{p}`); absent in tables built before it. */
  io?: PipelineIo;
}

export interface ExperimentRoute {
  name: string;
  resourceType: "model" | "pipeline";
  /** When set, the experiment takes over this model's (or pipeline's) endpoint. */
  default?: string;
  candidates: ExperimentCandidate[];
  mirror?: { name: string; percent: number };
  /** False while a candidate is not ready; the gateway then serves the default as if there were no experiment. */
  active: boolean;
}

export function emptyRouteTable(): RouteTable {
  return { revision: 0, models: {}, pipelines: {}, experiments: {} };
}

/**
 * A route table as stored when its JSON is too large for one store item: Brotli-compressed, base64 in `brotliBase64`.
 * The table's JSON is repetitive (server names, URLs, states), and Brotli's large window sees repeats across the whole
 * table: 10 000 two-replica models placed at random, 2.9 MB of JSON, pack to about 210 KB (gzip level 1: 295 KB), so
 * one item holds roughly 18 000 such models. Readers take either form through {@link unpackRouteTable}.
 */
export interface PackedRouteTable {
  revision: number;
  brotliBase64: string;
}

/** Quality 4 of 11: 30–75 ms for 10 000 models on this write path (bench/results/scheduler.md); 3 is slower, 5 twice as slow. */
const PACK_QUALITY = 4;

/** Packs a route table for storage. */
export function packRouteTable(table: RouteTable): PackedRouteTable {
  const bytes = brotliCompressSync(JSON.stringify(table), {
    params: { [constants.BROTLI_PARAM_QUALITY]: PACK_QUALITY },
  });
  return { revision: table.revision, brotliBase64: bytes.toString("base64") };
}

/**
 * The stored value of the routes item as a plain object: a packed table is unpacked, anything else is returned as it
 * is (callers check its shape). Throws a TernError `internal` when a packed value does not decompress to JSON.
 */
export function unpackRouteTable(value: unknown): unknown {
  if (typeof value !== "object" || value === null || !("brotliBase64" in value)) return value;
  const data = (value as { brotliBase64: unknown }).brotliBase64;
  try {
    if (typeof data !== "string") throw new TypeError("brotliBase64 is not a string");
    return JSON.parse(brotliDecompressSync(Buffer.from(data, "base64")).toString("utf8"));
  } catch (err) {
    throw new TernError("internal", `the stored route table cannot be unpacked: ${(err as Error).message}`, {
      cause: err,
    });
  }
}
