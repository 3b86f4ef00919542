import * as grpc from "@grpc/grpc-js";
import {
  decodeModelInferRequest,
  encodeModelInferResponse,
  type OipTensor,
  type PipelineRoute,
  REQUEST_ID_HEADER,
  type RouteTable,
  requestInputsToOip,
  tensorsFromOip,
} from "@tern/core";
import { GatewayError } from "./errors.js";
import type { PipelineFront } from "./pipeline-front.js";

// The gRPC side of a pipeline request (`seldon-model: <p>.pipeline` on ModelInfer/ModelReady): unlike a model request,
// which the proxy forwards as bytes, the gateway decodes it, since its tensors go on Kafka through the pipeline front.

/** Pipeline states in which requests are served (Rebalancing: owners are changing, the pipeline still answers). */
const SERVED_PIPELINE_STATES = new Set(["PipelineReady", "PipelineRebalancing"]);

/** Response metadata key with the gateway's own id of a pipeline request, next to the caller's `x-request-id`. */
const GATEWAY_REQUEST_ID_KEY = "x-tern-request-id";

/**
 * The pipeline's route when it may be served now.
 * @throws GatewayError `not_found` (unknown pipeline), `unavailable` naming the state of one that is not ready
 */
export function servedPipeline(table: RouteTable, pipeline: string): PipelineRoute {
  const route = table.pipelines[pipeline];
  if (!route) throw new GatewayError("not_found", `pipeline ${pipeline} not found`);
  if (!SERVED_PIPELINE_STATES.has(route.state)) {
    throw new GatewayError("unavailable", `pipeline ${pipeline} is not ready (state ${route.state})`, {
      retriable: true,
    });
  }
  return route;
}

/** `ModelReadyResponse.ready` of a pipeline: true while it is served. @throws GatewayError `not_found` */
export function pipelineReady(table: RouteTable, pipeline: string): boolean {
  const route = table.pipelines[pipeline];
  if (!route) throw new GatewayError("not_found", `pipeline ${pipeline} not found`);
  return SERVED_PIPELINE_STATES.has(route.state);
}

/**
 * The gRPC code for the status name an error record carries (`tern-error-status`, a gRPC status name such as
 * `INVALID_ARGUMENT`): the same code, so a step's error keeps its meaning over REST and gRPC alike. A record without
 * one, or with a name that is no gRPC status, is INTERNAL (REST: 500).
 */
export function grpcStatusForErrorRecord(status: string | undefined): grpc.status {
  const name = status?.trim().toUpperCase();
  if (!name || name === "OK") return grpc.status.INTERNAL;
  const code = (grpc.status as unknown as Record<string, unknown>)[name];
  return typeof code === "number" ? (code as grpc.status) : grpc.status.INTERNAL;
}

/** An error answer of the pipeline (a step failed), as a gRPC status with the pipeline's own message. */
export interface PipelineStatusError {
  code: grpc.status;
  details: string;
  metadata: grpc.Metadata;
}

export interface GrpcPipelineInferOptions {
  /** Epoch milliseconds: the earlier of the pipeline deadline and the caller's own. */
  deadline: number;
  /** The gateway's id of this request (the record key). */
  requestId: string;
  /**
   * The caller's metadata the record carries (its `x-*` keys but the gateway's own `x-tern-*`, as REST's `x-*`
   * headers); its `x-request-id` is also answered back.
   */
  headers: Record<string, string>;
  /** Receives the response metadata (`x-request-id`, `x-tern-request-id`) once the request id is known. */
  sendMetadata(metadata: grpc.Metadata): void;
}

/**
 * One ModelInfer to a pipeline: decodes the request (raw_input_contents, else typed contents), sends its tensors
 * through the pipeline front, and encodes the pipeline's outputs as a ModelInferResponse (`model_name` = the pipeline,
 * `id` = the gateway's request id). Outputs travel the way the caller sent its inputs: raw contents for a request with
 * raw_input_contents (what Triton's clients send and read), typed contents otherwise; FP16, which has no typed field,
 * always raw. The request's `model_name` is not used: the `seldon-model` metadata named the pipeline.
 * @throws GatewayError `bad_request` for a malformed request, the front's `timeout`/`unavailable`; a
 * {@link PipelineStatusError} for the pipeline's error answer
 */
export async function inferPipelineGrpc(
  front: PipelineFront,
  pipeline: string,
  body: Uint8Array,
  options: GrpcPipelineInferOptions,
): Promise<Buffer> {
  const request = decodeModelInferRequest(body);
  if (request.inputs.length === 0) throw new GatewayError("bad_request", "ModelInferRequest has no inputs");
  const inputs = requestInputsToOip(request);
  const raw = (request.raw_input_contents?.length ?? 0) > 0;

  const callerRequestId = options.headers[REQUEST_ID_HEADER];
  const metadata = new grpc.Metadata();
  metadata.set(REQUEST_ID_HEADER, callerRequestId ?? options.requestId);
  metadata.set(GATEWAY_REQUEST_ID_KEY, options.requestId);
  options.sendMetadata(metadata);

  const reply = await front.infer(pipeline, inputs, {
    requestId: options.requestId,
    deadline: options.deadline,
    headers: options.headers,
  });
  if (!reply.ok) {
    const error: PipelineStatusError = {
      code: grpcStatusForErrorRecord(reply.status),
      details: reply.message,
      metadata: new grpc.Metadata(),
    };
    throw Object.assign(new Error(reply.message), error);
  }
  return encodeResponse(pipeline, options.requestId, reply.outputs, raw);
}

function encodeResponse(pipeline: string, requestId: string, outputs: OipTensor[], raw: boolean): Buffer {
  const wire = tensorsFromOip(outputs, raw || outputs.some((t) => t.datatype === "FP16"));
  // A Buffer of its own (not a view of the encoder's shared slab): grpc-js writes it after this returns.
  return encodeModelInferResponse(
    {
      model_name: pipeline,
      id: requestId,
      outputs: wire.tensors,
      ...(wire.raw ? { raw_output_contents: wire.raw } : {}),
    },
    { allocate: (size) => Buffer.allocUnsafe(size) },
  ) as Buffer;
}
