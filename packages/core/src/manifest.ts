import { LineCounter, parseAllDocuments } from "yaml";
import type { z } from "zod";
import { TernError } from "./errors.js";
import { closestMatch } from "./pipeline-refs.js";
import { API_VERSION, RESOURCE_KINDS, type Resource, type ResourceKind } from "./resources.js";
import { resourceSchemas } from "./schemas.js";

/**
 * Reading manifests: multi-document YAML (JSON is YAML too) → validated resources, or problems that each name the
 * document, the resource, the field and what is wrong. The CLI (`tern validate`, `tern apply`) and the scheduler
 * API share this code, so a person sees the same message wherever the manifest is checked.
 */

/** One thing wrong with one manifest document. */
export interface ManifestProblem {
  /** The file (or other origin) the text came from; omitted from the message when absent. */
  source?: string;
  /** 1-based position of the document in its stream (empty documents count, so the number matches the file). */
  index: number;
  kind?: string;
  name?: string;
  /** The field, e.g. `spec.steps[2].inputs[0]`; empty when the problem is the document as a whole. */
  path: string;
  message: string;
}

/** A resource together with where it came from, for messages that point back at it. */
export interface ManifestDocument {
  source?: string;
  index: number;
  resource: Resource;
}

export interface ParsedManifests {
  resources: Resource[];
  problems: ManifestProblem[];
}

/** Where a single object came from, for {@link validateResource}. */
export interface ResourceOrigin {
  source?: string;
  /** @default 1 */
  index?: number;
}

export type ResourceValidation = { ok: true; resource: Resource } | { ok: false; problems: ManifestProblem[] };

/**
 * The error thrown by {@link parseManifestsOrThrow} and {@link parseResourceOrThrow}: code `manifest.invalid`, a
 * message made of one {@link formatProblem} line per problem, and the problems themselves for structured replies.
 */
export class ManifestInvalidError extends TernError {
  readonly problems: readonly ManifestProblem[];

  constructor(problems: readonly ManifestProblem[]) {
    super("manifest.invalid", problems.map(formatProblem).join("\n"));
    this.name = "ManifestInvalidError";
    this.problems = problems;
  }
}

/**
 * Formats a problem as one line: `bad.yaml: document 2 (Model iris): spec.replicas: must be at least
 * spec.minReplicas (3 < 4)`. The source, the `(Kind name)` part and the path are left out when unknown.
 */
export function formatProblem(p: ManifestProblem): string {
  const where = p.source === undefined ? "" : `${p.source}: `;
  const what = p.kind === undefined ? "" : p.name === undefined ? ` (${p.kind})` : ` (${p.kind} ${p.name})`;
  const field = p.path === "" ? "" : `${p.path}: `;
  return `${where}document ${p.index}${what}: ${field}${p.message}`;
}

/** Formats a zod-style path: `["spec", "steps", 2, "inputs", 0]` → `spec.steps[2].inputs[0]`. */
export function formatFieldPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else if (typeof part === "string" && /^[A-Za-z_][A-Za-z0-9_-]*$/.test(part)) out += out === "" ? part : `.${part}`;
    else out += `[${JSON.stringify(String(part))}]`;
  }
  return out;
}

/**
 * Parses every document of a YAML or JSON text. Empty documents are skipped; a top-level list (or a Kubernetes
 * `kind: List`) contributes one document per item. Never throws: syntax errors become problems with the line.
 */
export function parseManifests(text: string, source?: string): ParsedManifests {
  const { documents, problems } = parseManifestDocuments(text, source);
  return { resources: documents.map((d) => d.resource), problems };
}

/** Like {@link parseManifests}, keeping each resource's document index (for messages that point back at it). */
export function parseManifestDocuments(
  text: string,
  source?: string,
): { documents: ManifestDocument[]; problems: ManifestProblem[] } {
  const documents: ManifestDocument[] = [];
  const problems: ManifestProblem[] = [];
  const at = (index: number) => (source === undefined ? { index } : { source, index });
  const lineCounter = new LineCounter();
  const yamlDocs = parseAllDocuments(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  let index = 0;
  for (const doc of yamlDocs) {
    index++;
    if (doc.errors.length > 0) {
      for (const error of doc.errors) {
        const { line, col } = lineCounter.linePos(error.pos[0]);
        problems.push({
          ...at(index),
          path: "",
          message: `YAML syntax error at line ${line}, column ${col}: ${error.message}`,
        });
      }
      continue;
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 1000 });
    } catch (err) {
      problems.push({ ...at(index), path: "", message: `cannot read YAML: ${(err as Error).message}` });
      continue;
    }
    // `---` followed by nothing (or only comments) is an empty document, not a broken one.
    if (value === null || value === undefined) continue;
    const items = listItems(value);
    if (items === undefined) {
      const result = validateResource(value, at(index));
      if (result.ok) documents.push({ ...at(index), resource: result.resource });
      else problems.push(...result.problems);
      continue;
    }
    // A list spreads over several documents; keep numbering so each item has its own index.
    index--;
    for (const item of items) {
      index++;
      const result = validateResource(item, at(index));
      if (result.ok) documents.push({ ...at(index), resource: result.resource });
      else problems.push(...result.problems);
    }
  }
  problems.push(...findDuplicateResources(documents));
  problems.sort((a, b) => a.index - b.index);
  return { documents, problems };
}

function listItems(value: unknown): unknown[] | undefined {
  if (Array.isArray(value)) return value;
  if (isRecord(value) && value.kind === "List" && value.apiVersion === "v1" && Array.isArray(value.items)) {
    return value.items;
  }
  return undefined;
}

/**
 * Reports resources of the same kind and name given more than once (within one text or across files); the later
 * one is the problem. Namespaces are ignored: Tern has one namespace per installation.
 */
export function findDuplicateResources(documents: readonly ManifestDocument[]): ManifestProblem[] {
  const seen = new Map<string, ManifestDocument>();
  const problems: ManifestProblem[] = [];
  for (const doc of documents) {
    const { kind, metadata } = doc.resource;
    const key = `${kind}/${metadata.name}`;
    const first = seen.get(key);
    if (first === undefined) {
      seen.set(key, doc);
      continue;
    }
    const where =
      first.source === doc.source || first.source === undefined
        ? `document ${first.index}`
        : `${first.source} document ${first.index}`;
    problems.push({
      ...(doc.source === undefined ? {} : { source: doc.source }),
      index: doc.index,
      kind,
      name: metadata.name,
      path: "metadata.name",
      message: `${kind} "${metadata.name}" is defined twice (also in ${where})`,
    });
  }
  return problems;
}

/**
 * Parses manifests and returns the resources, or throws {@link ManifestInvalidError} (code `manifest.invalid`)
 * whose message has one formatted line per problem.
 */
export function parseManifestsOrThrow(text: string, source?: string): Resource[] {
  const { resources, problems } = parseManifests(text, source);
  if (problems.length > 0) throw new ManifestInvalidError(problems);
  return resources;
}

/** Validates one already-parsed object (e.g. a JSON request body); throws {@link ManifestInvalidError} if invalid. */
export function parseResourceOrThrow(obj: unknown, origin: ResourceOrigin = {}): Resource {
  const result = validateResource(obj, origin);
  if (!result.ok) throw new ManifestInvalidError(result.problems);
  return result.resource;
}

/** Validates one already-parsed object. Never throws. Empty (null) fields are treated as absent, as Kubernetes does. */
export function validateResource(obj: unknown, origin: ResourceOrigin = {}): ResourceValidation {
  const base = {
    ...(origin.source === undefined ? {} : { source: origin.source }),
    index: origin.index ?? 1,
  };
  if (!isRecord(obj)) {
    return {
      ok: false,
      problems: [
        {
          ...base,
          path: "",
          message: `a manifest must be a map with apiVersion, kind, metadata and spec (got ${describe(obj)})`,
        },
      ],
    };
  }
  const value = dropNulls(obj) as Record<string, unknown>;
  const kind = typeof value.kind === "string" ? value.kind : undefined;
  const meta = value.metadata;
  const name = isRecord(meta) && typeof meta.name === "string" && meta.name !== "" ? meta.name : undefined;
  const header = { ...base, ...(kind === undefined ? {} : { kind }), ...(name === undefined ? {} : { name }) };

  if (kind === undefined || !(RESOURCE_KINDS as readonly string[]).includes(kind)) {
    const problems: ManifestProblem[] = [];
    if (value.apiVersion !== API_VERSION) problems.push({ ...header, ...apiVersionProblem(value.apiVersion) });
    problems.push({ ...header, path: "kind", message: kindMessage(value.kind) });
    return { ok: false, problems };
  }
  const schema = resourceSchemas[kind as ResourceKind] as z.ZodType<Resource>;
  const result = schema.safeParse(value, { error: friendlyMessage, reportInput: true });
  if (result.success) return { ok: true, resource: result.data };
  const problems: ManifestProblem[] = [];
  for (const issue of result.error.issues) {
    if (issue.code === "unrecognized_keys") {
      const known = knownKeysAt(schema, issue.path);
      for (const key of issue.keys) {
        const close = closestMatch(key, known);
        const hint = close === undefined ? "" : ` (did you mean "${close}"?)`;
        problems.push({ ...header, path: formatFieldPath([...issue.path, key]), message: `unknown field${hint}` });
      }
    } else {
      problems.push({ ...header, path: formatFieldPath(issue.path), message: issue.message });
    }
  }
  return { ok: false, problems };
}

/**
 * Fields of a valid resource that Tern accepts for Seldon compatibility but does not act on everywhere, as problems to
 * print as warnings (`tern validate` shows them and still exits 0). Empty when nothing is ignored.
 */
export function manifestWarnings(resource: Resource, origin: ResourceOrigin = {}): ManifestProblem[] {
  const base = {
    ...(origin.source === undefined ? {} : { source: origin.source }),
    index: origin.index ?? 1,
    kind: resource.kind,
    name: resource.metadata.name,
  };
  const warnings: ManifestProblem[] = [];
  if (resource.kind === "Server" && resource.spec.deploymentStrategy !== undefined) {
    warnings.push({
      ...base,
      path: "spec.deploymentStrategy",
      message:
        "applied on ECS only, as the agent service's deployment configuration; the local controller never replaces a running agent, so locally it has no effect",
    });
  }
  return warnings;
}

function apiVersionProblem(apiVersion: unknown): { path: string; message: string } {
  return {
    path: "apiVersion",
    message:
      apiVersion === undefined ? `required (${API_VERSION})` : `must be ${API_VERSION} (got ${describe(apiVersion)})`,
  };
}

function kindMessage(kind: unknown): string {
  const expected = `expected one of ${RESOURCE_KINDS.join(", ")}`;
  if (kind === undefined) return `required (${expected})`;
  if (typeof kind !== "string") return `must be a string (got ${describe(kind)}); ${expected}`;
  const close = closestMatch(kind, RESOURCE_KINDS);
  const hint = close === undefined ? "" : ` (did you mean "${close}"?)`;
  return `unknown kind "${kind}"${hint}; ${expected}`;
}

/** Per-parse zod messages, worded for people editing YAML. Messages set on a schema itself take precedence. */
function friendlyMessage(issue: z.core.$ZodRawIssue): string | undefined {
  const input = issue.input;
  switch (issue.code) {
    case "invalid_type":
      if (input === undefined) return "required";
      return `must be ${typeName(issue.expected)} (got ${describe(input)})`;
    case "invalid_value": {
      const values = issue.values.map(String);
      if (input === undefined) return `required (${values.join(", ")})`;
      if (values.length === 1) return `must be ${values[0]} (got ${describe(input)})`;
      const close = typeof input === "string" ? closestMatch(input, values) : undefined;
      const hint = close === undefined ? "" : `; did you mean "${close}"?`;
      return `must be one of ${values.join(", ")} (got ${describe(input)}${hint})`;
    }
    case "invalid_key":
      return "keys must be strings";
    default:
      return undefined;
  }
}

function typeName(expected: string): string {
  switch (expected) {
    case "array":
      return "a list";
    case "object":
    case "record":
    case "map":
      return "a map";
    case "boolean":
      return "true or false";
    case "int":
      return "an integer";
    default:
      return `a ${expected}`;
  }
}

/** A short, quoted description of a value for messages: `"3"`, `3`, `a list`, `a map`, `null`. */
function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "string") return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  if (typeof value === "object") return "a map";
  return String(value);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Removes null-valued map entries recursively: `labels:` with nothing after it means "no labels", as in Kubernetes. */
function dropNulls(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(dropNulls);
  if (!isRecord(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) if (v !== null) out[k] = dropNulls(v);
  return out;
}

/** The fields an object schema accepts at `path`, found by walking the schema; used for "did you mean" hints. */
function knownKeysAt(schema: z.core.$ZodType, path: readonly PropertyKey[]): string[] {
  let current: z.core.$ZodType | undefined = schema;
  for (const part of path) {
    current = current === undefined ? undefined : childSchema(current, part);
  }
  const obj = current === undefined ? undefined : unwrap(current);
  const def = obj?._zod.def as { type: string; shape?: Record<string, unknown> } | undefined;
  return def?.type === "object" && def.shape !== undefined ? Object.keys(def.shape) : [];
}

function unwrap(schema: z.core.$ZodType): z.core.$ZodType {
  let current = schema;
  for (let depth = 0; depth < 20; depth++) {
    const def = current._zod.def as { type: string; innerType?: z.core.$ZodType; in?: z.core.$ZodType };
    if (def.innerType !== undefined) current = def.innerType;
    else if (def.type === "pipe" && def.in !== undefined) current = def.in;
    else break;
  }
  return current;
}

function childSchema(schema: z.core.$ZodType, part: PropertyKey): z.core.$ZodType | undefined {
  const def = unwrap(schema)._zod.def as {
    type: string;
    shape?: Record<string, z.core.$ZodType>;
    element?: z.core.$ZodType;
    valueType?: z.core.$ZodType;
  };
  if (def.type === "object" && typeof part === "string") return def.shape?.[part];
  if (def.type === "array") return def.element;
  if (def.type === "record") return def.valueType;
  return undefined;
}
