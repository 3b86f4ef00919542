import { formatPipelineRef, type PipelineRef, parsePipelineRef } from "./pipeline-refs.js";
import type { PipelineSpec } from "./resources.js";

/**
 * Where one part of a pipeline's inputs or outputs is described: a side of a step's model metadata (a step runs the
 * model of its name), all of it or one tensor, under the pipeline's names for its tensors. The gateway answers
 * `GET /v2/pipelines/{p}` from these and the models' own metadata.
 */
export interface PipelineIoSource {
  /** The model whose metadata describes the tensors; absent when no model does (a trigger tensor: a name only). */
  model?: string;
  /** Which side of that model's metadata. */
  side?: "inputs" | "outputs";
  /** Only this tensor of the model's side; absent: every tensor of it. */
  tensor?: string;
  /** The pipeline's name for `tensor` (for a trigger, the only thing known). */
  name?: string;
  /** For a whole side: the model's tensor name → the pipeline's name, for the tensors that tensorMap renames. */
  renames?: Record<string, string>;
}

/** The pipeline's request tensors (`inputs`) and answer tensors (`outputs`), in spec order; see {@link pipelineIo}. */
export interface PipelineIo {
  inputs: PipelineIoSource[];
  outputs: PipelineIoSource[];
}

interface ParsedKey {
  id: string;
  tensor: string;
  to: string;
}

function parsedRenames(pipelineName: string, tensorMap: Readonly<Record<string, string>> | undefined): ParsedKey[] {
  const out: ParsedKey[] = [];
  for (const [key, to] of Object.entries(tensorMap ?? {})) {
    const parsed = parsePipelineRef(key, { pipelineName });
    if (!parsed.ok || parsed.ref.tensor === undefined) continue;
    out.push({
      id: formatPipelineRef({ ...parsed.ref, tensor: undefined } as PipelineRef),
      tensor: parsed.ref.tensor,
      to,
    });
  }
  return out;
}

/**
 * What a pipeline takes and answers, read from its spec alone (pure; the dataflow's compile rules): its inputs are the
 * tensors its steps read from `<p>.inputs` — a step without inputs reads all of them — described by the step model's
 * inputs under the step's tensorMap (which renames a pipeline tensor to the model's name for it), plus the pipeline
 * tensors its triggers name (names only: a trigger is not passed to a model). Its outputs are those of `output.steps`
 * (without it, the last step's outputs), renamed by `output.tensorMap`. References that do not parse are skipped:
 * specs are validated before they are stored.
 */
export function pipelineIo(pipelineName: string, spec: PipelineSpec): PipelineIo {
  const context = { pipelineName };
  const inputs: PipelineIoSource[] = [];
  for (const step of spec.steps) {
    const refs = step.inputs === undefined || step.inputs.length === 0 ? [`${pipelineName}.inputs`] : step.inputs;
    const renames = parsedRenames(pipelineName, step.tensorMap).filter((r) => r.id === `${pipelineName}.inputs`);
    for (const text of refs) {
      const parsed = parsePipelineRef(text, context);
      if (!parsed.ok) continue;
      const ref = parsed.ref;
      if (ref.kind !== "pipeline" || ref.pipeline !== pipelineName || ref.io !== "inputs") continue;
      if (ref.tensor === undefined) {
        const source: PipelineIoSource = { model: step.name, side: "inputs" };
        // tensorMap here says pipeline tensor → the model's name for it; the model's metadata is read the other way.
        if (renames.length > 0) source.renames = Object.fromEntries(renames.map((r) => [r.to, r.tensor]));
        inputs.push(source);
      } else {
        const modelName = renames.find((r) => r.tensor === ref.tensor)?.to ?? ref.tensor;
        inputs.push({ model: step.name, side: "inputs", tensor: modelName, name: ref.tensor });
      }
    }
    for (const text of step.triggers ?? []) {
      const parsed = parsePipelineRef(text, context);
      if (!parsed.ok) continue;
      const ref = parsed.ref;
      if (ref.kind === "pipeline" && ref.pipeline === pipelineName && ref.io === "inputs" && ref.tensor !== undefined) {
        inputs.push({ name: ref.tensor });
      }
    }
  }
  const outputs: PipelineIoSource[] = [];
  const last = spec.steps[spec.steps.length - 1];
  const outputRefs = spec.output?.steps?.length ? spec.output.steps : last ? [last.name] : [];
  const outputRenames = parsedRenames(pipelineName, spec.output?.tensorMap);
  for (const text of outputRefs) {
    const parsed = parsePipelineRef(text, context);
    if (!parsed.ok) continue;
    const ref = parsed.ref;
    const id = formatPipelineRef({ ...ref, tensor: undefined } as PipelineRef);
    const renames = outputRenames.filter((r) => r.id === id);
    if (ref.kind !== "step") {
      // The pipeline's own inputs passed through: named only when one tensor is.
      if (ref.tensor !== undefined)
        outputs.push({ name: renames.find((r) => r.tensor === ref.tensor)?.to ?? ref.tensor });
      continue;
    }
    if (ref.tensor === undefined) {
      const source: PipelineIoSource = { model: ref.step, side: ref.io };
      if (renames.length > 0) source.renames = Object.fromEntries(renames.map((r) => [r.tensor, r.to]));
      outputs.push(source);
    } else {
      const name = renames.find((r) => r.tensor === ref.tensor)?.to ?? ref.tensor;
      outputs.push({ model: ref.step, side: ref.io, tensor: ref.tensor, name });
    }
  }
  return { inputs, outputs };
}
