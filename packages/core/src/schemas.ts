import { z } from "zod";
import { RESOURCE_NAME_RE, validatePipelineGraph } from "./pipeline-refs.js";
import { safeParseQuantity } from "./quantity.js";
import {
  API_VERSION,
  type ExperimentCandidate,
  type ExperimentResource,
  type ExperimentSpec,
  type ModelResource,
  type PipelineResource,
  type Resource,
  type ResourceKind,
  type ScalingSpec,
  type ServerResource,
} from "./resources.js";

/**
 * zod schemas for the four resource kinds. Objects are strict: an unknown field is an error, so a typo such as
 * `replica:` is reported instead of silently ignored (manifest.ts turns those into "did you mean" hints). Metadata is
 * the exception: Kubernetes adds fields there (uid, generation, managedFields, ...) and we keep them as given.
 * Cross-field rules (replica bounds, pipeline graph, experiment candidates) are refinements, so they run once the
 * fields themselves are well-formed.
 */

/** The longest name accepted: Kubernetes' limit for object names. */
export const MAX_RESOURCE_NAME_LENGTH = 253;

/** Returns the problem with a resource or step name, or undefined when it is fine. */
export function checkResourceName(name: string): string | undefined {
  if (name.length === 0) return "must not be empty";
  if (name.length > MAX_RESOURCE_NAME_LENGTH) {
    return `must be at most ${MAX_RESOURCE_NAME_LENGTH} characters (got ${name.length})`;
  }
  if (name.includes(".")) {
    return `must not contain "." (got ${JSON.stringify(name)}); use letters, digits, "-" and "_"`;
  }
  if (!RESOURCE_NAME_RE.test(name))
    return `may contain only letters, digits, "-" and "_" (got ${JSON.stringify(name)})`;
  return undefined;
}

/**
 * The replica count a scaling spec asks for: `replicas`, else `minReplicas` when only that is set, else 1.
 */
export function effectiveReplicas(spec: ScalingSpec): number {
  return spec.replicas ?? spec.minReplicas ?? 1;
}

/**
 * The candidates traffic is split over. A mirror-only experiment (Seldon accepts one) has none: its `default` takes
 * all the traffic, so the scheduler (readiness, route table) and the gateway treat it as the one candidate.
 */
export function experimentCandidates(spec: ExperimentSpec): ExperimentCandidate[] {
  if (spec.candidates !== undefined && spec.candidates.length > 0) return spec.candidates;
  return spec.default === undefined ? [] : [{ name: spec.default, weight: 100 }];
}

const nameSchema = z.string().superRefine((value, ctx) => {
  const problem = checkResourceName(value);
  if (problem !== undefined) ctx.addIssue({ code: "custom", message: problem });
});

const nonEmptyString = z.string().min(1, { error: "must not be empty" });

const nonNegativeInt = z.number().superRefine((value, ctx) => {
  if (!Number.isInteger(value) || value < 0) {
    ctx.addIssue({ code: "custom", message: `must be a non-negative integer (got ${value})` });
  }
});

const percent = z.number().superRefine((value, ctx) => {
  if (!Number.isInteger(value) || value < 0 || value > 100) {
    ctx.addIssue({ code: "custom", message: `must be an integer from 0 to 100 (got ${value})` });
  }
});

const stringList = z.array(nonEmptyString);
const stringMap = z.record(z.string(), z.string());
const joinType = z.enum(["inner", "outer", "any"]);
const dataflowSchema = z.strictObject({ cleanTopicsOnDelete: z.boolean().optional() });

/** Kubernetes quantity; YAML may give a bare number (`memory: 1000`), which is kept as its string form. */
const quantitySchema = z
  .union([z.string(), z.number()], { error: "must be a Kubernetes quantity such as 100Ki or 1.5Gi" })
  .superRefine((value, ctx) => {
    const result = safeParseQuantity(value);
    if (!result.ok) ctx.addIssue({ code: "custom", message: result.message });
  })
  .transform((value) => String(value));

const storageUriSchema = z.string().superRefine((value, ctx) => {
  if (value.trim() === "") {
    ctx.addIssue({ code: "custom", message: "must not be empty" });
  } else if (!/^[A-Za-z][A-Za-z0-9+.-]*:\/\/\S+$/.test(value) && !/^\/\S*$/.test(value)) {
    // A bare absolute path (`/mnt/models/iris`) is a local path, as in Seldon; a relative one is more likely a
    // forgotten scheme than a path relative to some agent's working directory.
    ctx.addIssue({
      code: "custom",
      message: `must be a URI with a scheme (e.g. s3://bucket/path, file:///path) or an absolute path (got ${JSON.stringify(value)})`,
    });
  }
});

const scalingShape = {
  replicas: nonNegativeInt.optional(),
  minReplicas: nonNegativeInt.optional(),
  maxReplicas: nonNegativeInt.optional(),
};

/** `minReplicas ≤ replicas ≤ maxReplicas`, with `replicas` defaulting as {@link effectiveReplicas} says. */
function checkScaling(spec: ScalingSpec, ctx: z.RefinementCtx): void {
  const { minReplicas: min, maxReplicas: max, replicas } = spec;
  if (min !== undefined && max !== undefined && min > max) {
    ctx.addIssue({
      code: "custom",
      path: ["minReplicas"],
      message: `must be at most spec.maxReplicas (${min} > ${max})`,
    });
    return;
  }
  if (replicas !== undefined && min !== undefined && replicas < min) {
    ctx.addIssue({
      code: "custom",
      path: ["replicas"],
      message: `must be at least spec.minReplicas (${replicas} < ${min})`,
    });
  }
  const effective = effectiveReplicas(spec);
  if (max !== undefined && effective > max) {
    ctx.addIssue(
      replicas !== undefined
        ? { code: "custom", path: ["replicas"], message: `must be at most spec.maxReplicas (${replicas} > ${max})` }
        : {
            code: "custom",
            path: ["maxReplicas"],
            message: `must be at least the default replica count ${effective} (${max} < ${effective}); set spec.replicas`,
          },
    );
  }
}

function checkUniqueNames(items: readonly { name: string }[], ctx: z.RefinementCtx, what: string, at: string): void {
  const seen = new Map<string, number>();
  items.forEach((item, i) => {
    const first = seen.get(item.name);
    if (first === undefined) seen.set(item.name, i);
    else
      ctx.addIssue({
        code: "custom",
        path: [i, "name"],
        message: `duplicate ${what} "${item.name}" (also ${at}[${first}])`,
      });
  });
}

/** Kubernetes object metadata: `name` is checked, everything else Kubernetes may put there is kept. */
export const objectMetaSchema = z.looseObject({
  name: nameSchema,
  namespace: nonEmptyString.optional(),
  labels: stringMap.optional(),
  annotations: stringMap.optional(),
});

const parameterSchema = z.strictObject({ name: nonEmptyString, value: z.string() });

export const modelSpecSchema = z
  .strictObject({
    storageUri: storageUriSchema,
    modelType: z.string().optional(),
    artifactVersion: nonNegativeInt.optional(),
    schemaUri: z.string().optional(),
    secretName: z.string().optional(),
    requirements: stringList.optional(),
    memory: quantitySchema.optional(),
    server: nameSchema.optional(),
    preloaded: z.boolean().optional(),
    dedicated: z.boolean().optional(),
    logger: z.strictObject({ percent: percent.optional(), uri: z.string().optional() }).optional(),
    explainer: z
      .strictObject({
        type: z.string().optional(),
        modelRef: z.string().optional(),
        pipelineRef: z.string().optional(),
      })
      .optional(),
    llm: z.strictObject({ modelRef: z.string().optional(), pipelineRef: z.string().optional() }).optional(),
    parameters: z
      .array(parameterSchema)
      .superRefine((items, ctx) => checkUniqueNames(items, ctx, "parameter", "spec.parameters"))
      .optional(),
    dataflow: dataflowSchema.optional(),
    ...scalingShape,
  })
  .superRefine(checkScaling);

/** A Kubernetes IntOrString bound: a non-negative integer or `N%`. */
function intOrPercent(maxPercent?: number) {
  return z.union([z.number(), z.string()]).superRefine((value, ctx) => {
    const shown = JSON.stringify(value);
    const match = typeof value === "string" ? /^(\d+)%$/.exec(value) : null;
    const ok = typeof value === "number" ? Number.isInteger(value) && value >= 0 : match !== null;
    if (!ok) {
      ctx.addIssue({
        code: "custom",
        message: `must be a non-negative integer or a percentage such as 25% (got ${shown})`,
      });
    } else if (match && maxPercent !== undefined && Number(match[1]) > maxPercent) {
      ctx.addIssue({ code: "custom", message: `must be at most ${maxPercent}% (got ${shown})` });
    }
  });
}

/** Zero in either form (`0`, `"0%"`). */
function isZeroBound(value: number | string | undefined): boolean {
  return value === 0 || (typeof value === "string" && /^0+%$/.test(value));
}

/** Kubernetes' own Deployment strategy rules, so a manifest Tern accepts is one Kubernetes would accept. */
const deploymentStrategySchema = z
  .strictObject({
    type: z.enum(["RollingUpdate", "Recreate"]).optional(),
    rollingUpdate: z
      .strictObject({ maxUnavailable: intOrPercent(100).optional(), maxSurge: intOrPercent().optional() })
      .optional(),
  })
  .superRefine((strategy, ctx) => {
    const rolling = strategy.rollingUpdate;
    if (rolling === undefined) return;
    if (strategy.type === "Recreate") {
      ctx.addIssue({ code: "custom", path: ["rollingUpdate"], message: "must not be set when type is Recreate" });
    } else if (isZeroBound(rolling.maxUnavailable) && isZeroBound(rolling.maxSurge)) {
      ctx.addIssue({
        code: "custom",
        path: ["rollingUpdate", "maxUnavailable"],
        message: "must not be 0 when maxSurge is 0 (no replica could ever be replaced)",
      });
    }
  });

export const serverSpecSchema = z
  .strictObject({
    serverConfig: nonEmptyString,
    capabilities: stringList.optional(),
    extraCapabilities: stringList.optional(),
    disableAutoUpdate: z.boolean().optional(),
    deploymentStrategy: deploymentStrategySchema.optional(),
    imageOverrides: z.record(z.string(), z.unknown()).optional(),
    podSpec: z.record(z.string(), z.unknown()).optional(),
    statefulSetPersistentVolumeClaimRetentionPolicy: z.record(z.string(), z.unknown()).optional(),
    ...scalingShape,
  })
  .superRefine(checkScaling);

const batchSchema = z.strictObject({
  size: nonNegativeInt.optional(),
  windowMs: nonNegativeInt.optional(),
  rolling: z.boolean().optional(),
});

const pipelineStepSchema = z.strictObject({
  name: nameSchema,
  inputs: stringList.optional(),
  joinWindowMs: nonNegativeInt.optional(),
  tensorMap: stringMap.optional(),
  triggers: stringList.optional(),
  inputsJoinType: joinType.optional(),
  triggersJoinType: joinType.optional(),
  batch: batchSchema.optional(),
});

export const pipelineSpecSchema = z.strictObject({
  input: z
    .strictObject({
      externalInputs: stringList.optional(),
      externalTriggers: stringList.optional(),
      joinWindowMs: nonNegativeInt.optional(),
      joinType: joinType.optional(),
      triggersJoinType: joinType.optional(),
      tensorMap: stringMap.optional(),
    })
    .optional(),
  steps: z.array(pipelineStepSchema, {
    error: (issue) => (issue.input === undefined ? "a pipeline needs at least one step" : undefined),
  }),
  output: z
    .strictObject({
      steps: stringList.optional(),
      joinWindowMs: nonNegativeInt.optional(),
      stepsJoin: joinType.optional(),
      tensorMap: stringMap.optional(),
    })
    .optional(),
  dataflow: dataflowSchema.optional(),
  allowCycles: z.boolean().optional(),
  maxStepRevisits: nonNegativeInt.optional(),
});

export const experimentSpecSchema = z
  .strictObject({
    default: nameSchema.optional(),
    candidates: z.array(z.strictObject({ name: nameSchema, weight: nonNegativeInt })).optional(),
    mirror: z.strictObject({ name: nameSchema, percent: percent.optional() }).optional(),
    resourceType: z.enum(["model", "pipeline"]).optional(),
  })
  .superRefine((spec, ctx) => {
    const candidates = spec.candidates ?? [];
    if (candidates.length === 0) {
      // Mirror-only, as Seldon allows: the default serves everything and the mirror gets a copy.
      if (spec.mirror === undefined) {
        ctx.addIssue({
          code: "custom",
          path: ["candidates"],
          message: "an experiment needs at least one candidate, or a mirror",
        });
      } else if (spec.default === undefined) {
        ctx.addIssue({
          code: "custom",
          path: ["default"],
          message:
            "required when the experiment has a mirror and no candidates (the model whose traffic is served and mirrored)",
        });
      } else if (spec.mirror.name === spec.default) {
        ctx.addIssue({
          code: "custom",
          path: ["mirror", "name"],
          message: `must not be spec.default (got ${JSON.stringify(spec.mirror.name)})`,
        });
      }
      return;
    }
    const seen = new Map<string, number>();
    candidates.forEach((c, i) => {
      const first = seen.get(c.name);
      if (first === undefined) seen.set(c.name, i);
      else {
        ctx.addIssue({
          code: "custom",
          path: ["candidates", i, "name"],
          message: `duplicate candidate "${c.name}" (also spec.candidates[${first}])`,
        });
      }
    });
    // A bad weight has its own message already; a total made from it would only repeat that.
    const weightsValid = candidates.every((c) => Number.isInteger(c.weight) && c.weight >= 0);
    const total = candidates.reduce((sum, c) => sum + c.weight, 0);
    if (weightsValid && total <= 0) {
      ctx.addIssue({
        code: "custom",
        path: ["candidates"],
        message: "the candidates' weights must add up to more than 0",
      });
    }
    const names = [...seen.keys()];
    if (spec.default !== undefined && !seen.has(spec.default)) {
      ctx.addIssue({
        code: "custom",
        path: ["default"],
        message: `must be one of the candidates (${names.join(", ")}) (got ${JSON.stringify(spec.default)})`,
      });
    }
    if (spec.mirror !== undefined && seen.has(spec.mirror.name)) {
      ctx.addIssue({
        code: "custom",
        path: ["mirror", "name"],
        message: `must not be one of the candidates (got ${JSON.stringify(spec.mirror.name)})`,
      });
    }
  });

/**
 * The envelope shared by all kinds. `status` (as `kubectl get -o yaml` prints it) is accepted and dropped: status is
 * the platform's to report, never the user's to set.
 */
function resourceSchema<K extends ResourceKind, S extends z.ZodType>(kind: K, spec: S) {
  return z
    .strictObject({
      apiVersion: z.literal(API_VERSION),
      kind: z.literal(kind),
      metadata: objectMetaSchema,
      spec,
      status: z.unknown().optional(),
    })
    .transform(({ status: _status, ...resource }) => resource);
}

export const modelSchema = resourceSchema("Model", modelSpecSchema);
export const serverSchema = resourceSchema("Server", serverSpecSchema);
export const pipelineSchema = resourceSchema("Pipeline", pipelineSpecSchema).superRefine((pipeline, ctx) => {
  for (const problem of validatePipelineGraph(pipeline.metadata.name, pipeline.spec)) {
    ctx.addIssue({ code: "custom", path: problem.path, message: problem.message });
  }
});
export const experimentSchema = resourceSchema("Experiment", experimentSpecSchema);

/** The schema for each kind, for callers that dispatch on `kind` themselves. */
export const resourceSchemas = {
  Model: modelSchema,
  Server: serverSchema,
  Pipeline: pipelineSchema,
  Experiment: experimentSchema,
} as const satisfies Record<ResourceKind, z.ZodType<Resource>>;

// Compile-time proof that the schemas produce exactly the hand-written types in resources.ts (both directions).
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const _modelTypeMatches: Same<z.output<typeof modelSchema>, ModelResource> = true;
const _serverTypeMatches: Same<z.output<typeof serverSchema>, ServerResource> = true;
const _pipelineTypeMatches: Same<z.output<typeof pipelineSchema>, PipelineResource> = true;
const _experimentTypeMatches: Same<z.output<typeof experimentSchema>, ExperimentResource> = true;
void [_modelTypeMatches, _serverTypeMatches, _pipelineTypeMatches, _experimentTypeMatches];
