import { checkResourceName, type TopicDirection, type TopicNames } from "@tern/core";

/**
 * The expression of `tern pipeline inspect`, as Seldon's `seldon pipeline inspect` takes it:
 * `p`, `p.inputs|outputs`, `p.step`, `p.step.inputs|outputs`, `p.step.inputs|outputs.TENSOR`.
 */
export interface InspectPath {
  pipeline: string;
  /** Absent: the pipeline's own topics (and, without `direction`, every step's too). */
  step?: string;
  direction?: TopicDirection;
  /** Only this tensor of each record. Everything after the direction, so a tensor name may hold dots. */
  tensor?: string;
}

/** One topic to read and whose records on it belong to the pipeline. */
export interface InspectTopic {
  topic: string;
  /** What the topic is to the pipeline: `inputs`, `outputs`, `step add10 inputs`… */
  label: string;
  /**
   * Model topics are shared by every pipeline using the model: only records whose `pipeline` header names this
   * pipeline are its. The pipeline's own topics hold only its records.
   */
  shared: boolean;
}

const isDirection = (text: string | undefined): text is TopicDirection => text === "inputs" || text === "outputs";

/**
 * Parses the expression; a problem is a message naming the part that is wrong. The second segment `inputs` or
 * `outputs` means the pipeline's own topics (as Seldon reads it), so a step of that name cannot be addressed.
 */
export function parseInspectPath(text: string): InspectPath | { problem: string } {
  const parts = text.split(".");
  if (parts.some((p) => p === "")) {
    return { problem: `"${text}" has an empty part: expected PIPELINE[.STEP[.inputs|outputs[.TENSOR]]]` };
  }
  const [pipeline, second, third, ...rest] = parts as [string, string?, string?, ...string[]];
  const pipelineProblem = checkResourceName(pipeline);
  if (pipelineProblem !== undefined) return { problem: `pipeline name ${pipelineProblem}` };
  if (second === undefined) return { pipeline };
  if (isDirection(second)) {
    const tensor = [third, ...rest].filter((p) => p !== undefined).join(".");
    return tensor === "" ? { pipeline, direction: second } : { pipeline, direction: second, tensor };
  }
  const stepProblem = checkResourceName(second);
  if (stepProblem !== undefined) return { problem: `step name ${stepProblem}` };
  if (third === undefined) return { pipeline, step: second };
  if (!isDirection(third)) {
    return { problem: `"${third}" after step ${second}: expected inputs or outputs` };
  }
  const tensor = rest.join(".");
  return tensor === ""
    ? { pipeline, step: second, direction: third }
    : { pipeline, step: second, direction: third, tensor };
}

/**
 * The topics an expression reads, in the order a request flows: the pipeline's inputs, then each step's inputs and
 * outputs, then the pipeline's outputs. A step is named after its model, so its topics are the model's.
 * A problem names the step the pipeline does not have.
 */
export function inspectTopics(
  path: InspectPath,
  steps: readonly string[],
  topics: TopicNames,
): InspectTopic[] | { problem: string } {
  const { pipeline, step, direction } = path;
  const directions: TopicDirection[] = direction === undefined ? ["inputs", "outputs"] : [direction];
  const stepTopics = (s: string): InspectTopic[] =>
    directions.map((d) => ({
      topic: d === "inputs" ? topics.modelInputs(s) : topics.modelOutputs(s),
      label: `step ${s} ${d}`,
      shared: true,
    }));
  if (step !== undefined) {
    if (!steps.includes(step)) {
      const known = steps.length === 0 ? "none" : steps.join(", ");
      return { problem: `pipeline ${pipeline} has no step ${step} (its steps: ${known})` };
    }
    return stepTopics(step);
  }
  const own = (d: TopicDirection): InspectTopic => ({
    topic: d === "inputs" ? topics.pipelineInputs(pipeline) : topics.pipelineOutputs(pipeline),
    label: d,
    shared: false,
  });
  if (direction !== undefined) return [own(direction)];
  return [own("inputs"), ...steps.flatMap(stepTopics), own("outputs")];
}
