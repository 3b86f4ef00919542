import type { OipTensor, RouteTable } from "@tern/core";
import type { Logger } from "pino";
import type { GatewayMetrics } from "./metrics.js";
import type { PipelineFront } from "./pipeline-front.js";
import { isServedPipeline } from "./routing.js";

/** Mirror copies in flight on one entry (REST or gRPC), models' and pipelines' together; more than `max` are dropped. */
export interface MirrorSlots {
  inFlight: number;
  readonly max: number;
}

export interface PipelineMirrorOptions {
  front: PipelineFront;
  slots: MirrorSlots;
  metrics: GatewayMetrics;
  logger: Logger;
  /** Epoch milliseconds: the copy's own deadline. */
  deadline: number;
}

/**
 * A pipeline experiment's mirror: the request's tensors and carried `x-*` headers to the mirror pipeline through the
 * front, under a request id of its own; bounded by the slots, never awaited, its outcome only counted. A mirror that is
 * not served (unknown, or in another state) gets no copy. Shared by the REST and gRPC paths.
 */
export function mirrorPipeline(
  table: RouteTable,
  pipeline: string,
  inputs: OipTensor[],
  headers: Record<string, string>,
  options: PipelineMirrorOptions,
): void {
  const { slots, metrics } = options;
  const route = table.pipelines[pipeline];
  if (!route || !isServedPipeline(route)) return;
  if (slots.inFlight >= slots.max) {
    metrics.mirror("dropped");
    return;
  }
  slots.inFlight++;
  metrics.mirror("sent");
  options.front
    .infer(pipeline, inputs, { deadline: options.deadline, headers })
    .then((reply) => {
      if (!reply.ok) metrics.mirror("failed");
    })
    .catch((err: unknown) => {
      metrics.mirror("failed");
      options.logger.debug({ err, pipeline }, "pipeline mirror request failed");
    })
    .finally(() => {
      slots.inFlight--;
    });
}
