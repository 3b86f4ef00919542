import type { OipDatatype, PipelineIo, PipelineIoSource } from "@tern/core";

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
