import * as grpc from "@grpc/grpc-js";
import {
  decodeModelInferRequest,
  encodeModelInferResponse,
  type OipTensor,
  PIPELINE_REQUEST_ID_HEADER,
  type PipelineRoute,
  REQUEST_ID_HEADER,
  type RouteTable,
  requestInputsToOip,
  SELDON_ROUTE_HEADER,
  tensorsFromOip,
} from "@tern/core";
import { codeOf, GatewayError } from "./errors.js";
import type { GrpcUpstream } from "./grpc-upstream.js";
import { decodeModelMetadataTensors, encodeModelMetadataResponse } from "./metadata-protobuf.js";
import type { PipelineFront } from "./pipeline-front.js";
import { type ModelTensorLists, readPipelineMetadata, stepMetadataUnavailable } from "./pipeline-metadata.js";
import { encodeFields } from "./protobuf-fields.js";
import { resolveModelDirect } from "./routing.js";

// The gRPC side of a pipeline request (`seldon-model: <p>.pipeline` or `<e>.experiment` on ModelInfer/ModelReady/
// ModelMetadata): unlike a model request, which the proxy forwards as bytes, the gateway decodes it, since its tensors
// go on Kafka through the pipeline front. Which pipeline serves it is routing.ts's decision, as for REST.

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
  /** `x-seldon-route` of the answer: the pipeline that serves it (an experiment may have chosen it). */
  route: string;
  /** Receives the response metadata (`x-request-id`, `x-tern-request-id`, `x-seldon-route`) once the request id is known. */
  sendMetadata(metadata: grpc.Metadata): void;
  /** An experiment's mirror: gets the decoded inputs before the request is sent, and must not wait. */
  mirror?: (inputs: OipTensor[]) => void;
}

/**
 * One ModelInfer to a pipeline: decodes the request (raw_input_contents, else typed contents), sends its tensors
 * through the pipeline front, and encodes the pipeline's outputs as a ModelInferResponse (`model_name` = the pipeline,
 * `id` = the gateway's request id). Outputs travel the way the caller sent its inputs: raw contents for a request with
 * raw_input_contents (what Triton's clients send and read), typed contents otherwise; FP16, which has no typed field,
 * always raw. The request's `model_name` is not used: the `seldon-model` metadata named the pipeline (or an experiment
 * that chose it).
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
  metadata.set(PIPELINE_REQUEST_ID_HEADER, options.requestId);
  metadata.set(SELDON_ROUTE_HEADER, options.route);
  options.sendMetadata(metadata);
  options.mirror?.(inputs);

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

/**
 * ModelMetadata of a pipeline: what REST's `GET /v2/pipelines/{p}` answers (`pipelineMetadata` of the route's `io` and
 * its step models' metadata), as a `ModelMetadataResponse`. The step models' metadata is read over gRPC from a replica
 * of each, in parallel, by the deadline. Answered in any state of the pipeline.
 * @throws GatewayError `unavailable` for a route without `io` or a step model whose metadata cannot be read (naming it),
 * `timeout`
 */
export async function pipelineMetadataGrpc(
  upstream: GrpcUpstream,
  table: RouteTable,
  route: PipelineRoute,
  deadline: number,
): Promise<Buffer> {
  const metadata = await readPipelineMetadata(route, (model) =>
    stepModelMetadata(upstream, table, route.name, model, deadline),
  );
  return encodeModelMetadataResponse(metadata);
}

/** A step model's metadata over gRPC; any failure is the pipeline's UNAVAILABLE naming the model, as over REST. */
async function stepModelMetadata(
  upstream: GrpcUpstream,
  table: RouteTable,
  pipeline: string,
  model: string,
  deadline: number,
): Promise<ModelTensorLists> {
  const fail = (why: string, cause?: unknown) => stepMetadataUnavailable(pipeline, model, why, cause);
  let endpoints: ReturnType<typeof resolveModelDirect>["endpoints"];
  try {
    endpoints = resolveModelDirect(table, model).endpoints.filter((e) => e.grpc);
  } catch (err) {
    throw fail(codeOf(err) === "not_found" ? "it is not deployed" : "no replica answered", err);
  }
  const result = await upstream.call(model, endpoints, "ModelMetadata", encodeFields([[1, model]]), deadline);
  if ("error" in result) {
    if (result.error.code === grpc.status.DEADLINE_EXCEEDED) {
      throw new GatewayError(
        "timeout",
        `pipeline ${pipeline}: the metadata of its model ${model} did not come in time`,
      );
    }
    // UNAVAILABLE's details are grpc-js's own, with the replica's address: never passed on.
    throw fail(
      result.error.code === grpc.status.UNAVAILABLE
        ? "no replica answered"
        : `its replica answered ${grpc.status[result.error.code]}`,
      result.error,
    );
  }
  try {
    return decodeModelMetadataTensors(result.value);
  } catch (err) {
    throw fail("its replica's answer is not a ModelMetadataResponse", err);
  }
}
