import type { OipDatatype, PipelineIo, PipelineIoSource, PipelineRoute } from "@tern/core";
import { GatewayError } from "./errors.js";

/** A tensor of a pipeline's metadata: datatype and shape where a step's model metadata gives them. */
export interface PipelineTensorMetadata {
  name: string;
  datatype?: OipDatatype | string;
  shape?: number[];
}

/** The answer of `GET /v2/pipelines/{p}`: OIP model metadata, for a pipeline. */
export interface PipelineMetadata {
  name: string;
  platform: "tern-pipeline";
  inputs: PipelineTensorMetadata[];
  outputs: PipelineTensorMetadata[];
}

/** The part of a model's OIP metadata the pipeline's is built from (agents and MLServer may leave fields out). */
export interface ModelTensorLists {
  inputs?: Array<{ name: string; datatype?: string; shape?: number[] }>;
  outputs?: Array<{ name: string; datatype?: string; shape?: number[] }>;
}

/** The models whose metadata {@link pipelineMetadata} needs, each once. */
export function metadataModels(io: PipelineIo): string[] {
  const models = new Set<string>();
  for (const s of [...io.inputs, ...io.outputs]) if (s.model !== undefined) models.add(s.model);
  return [...models].sort();
}

/**
 * A pipeline's metadata from its interface (`PipelineRoute.io`) and its step models' metadata. Pure. A tensor named by
 * the spec keeps its name even when its model does not list it (then without datatype and shape); a whole side of a
 * model contributes the tensors its metadata lists, under the pipeline's names. A name comes once, first source wins.
 */
export function pipelineMetadata(
  pipeline: string,
  io: PipelineIo,
  models: ReadonlyMap<string, ModelTensorLists>,
): PipelineMetadata {
  const side = (sources: PipelineIoSource[]): PipelineTensorMetadata[] => {
    const out: PipelineTensorMetadata[] = [];
    const seen = new Set<string>();
    const add = (t: PipelineTensorMetadata) => {
      if (seen.has(t.name)) return;
      seen.add(t.name);
      out.push(t);
    };
    for (const s of sources) {
      const listed = s.model !== undefined && s.side !== undefined ? (models.get(s.model)?.[s.side] ?? []) : [];
      if (s.tensor === undefined && s.model !== undefined) {
        for (const t of listed) add(described(s.renames?.[t.name] ?? t.name, t));
        continue;
      }
      const name = s.name ?? s.tensor;
      if (name === undefined) continue;
      const t = s.tensor === undefined ? undefined : listed.find((m) => m.name === s.tensor);
      add(t ? described(name, t) : { name });
    }
    return out;
  };
  return { name: pipeline, platform: "tern-pipeline", inputs: side(io.inputs), outputs: side(io.outputs) };
}

function described(name: string, t: { datatype?: string; shape?: number[] }): PipelineTensorMetadata {
  return {
    name,
    ...(t.datatype === undefined ? {} : { datatype: t.datatype }),
    ...(Array.isArray(t.shape) ? { shape: t.shape } : {}),
  };
}

/**
 * A pipeline's metadata as `GET /v2/pipelines/{p}` and gRPC ModelMetadata answer it: {@link pipelineMetadata} of the
 * route's `io` and of its step models' metadata, each read once by `readModel`, in parallel.
 * @throws GatewayError `unavailable` for a route without `io` (a table written before it); what `readModel` throws
 */
export async function readPipelineMetadata(
  route: PipelineRoute,
  readModel: (model: string) => Promise<ModelTensorLists>,
): Promise<PipelineMetadata> {
  const io = route.io;
  if (!io) {
    throw new GatewayError(
      "unavailable",
      `pipeline ${route.name}: the route table does not describe its inputs and outputs (the scheduler predates it)`,
      { retriable: true },
    );
  }
  const models = new Map<string, ModelTensorLists>();
  await Promise.all(
    metadataModels(io).map(async (model) => {
      models.set(model, await readModel(model));
    }),
  );
  return pipelineMetadata(route.name, io, models);
}

/** The error of a step model whose metadata cannot be read (`why`: "it is not deployed", "no replica answered", …). */
export function stepMetadataUnavailable(pipeline: string, model: string, why: string, cause?: unknown): GatewayError {
  return new GatewayError(
    "unavailable",
    `pipeline ${pipeline}: the metadata of its model ${model} is unavailable: ${why}`,
    {
      retriable: true,
      ...(cause === undefined ? {} : { cause }),
    },
  );
}
