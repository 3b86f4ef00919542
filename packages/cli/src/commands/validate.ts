import { readdir, readFile, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import {
  findDuplicateResources,
  formatProblem,
  type ManifestDocument,
  type ManifestProblem,
  manifestWarnings,
  parseManifestDocuments,
} from "@tern/core";
import { type CliIo, type Command, EXIT_FAILED, EXIT_OK, EXIT_USAGE, parseCommandArgs } from "../io.js";

const MANIFEST_EXTENSIONS = [".yaml", ".yml", ".json"];
/** How a manifest read from standard input is named in messages. */
export const STDIN_SOURCE = "<stdin>";
/** Beyond this many resources the ok line says "... and N more" instead of naming them all. */
const MAX_NAMED = 10;

const usage = `Usage: tern validate -f FILE|DIR|- [-f ...]

Checks Seldon Core v2 manifests (apiVersion mlops.seldon.io/v1alpha1; kinds Model, Server, Pipeline,
Experiment) offline, with the same rules the scheduler applies when they are applied.

Options:
  -f, --filename PATH  a YAML or JSON file (several documents separated by ---), a directory (searched
                       recursively for .yaml, .yml and .json files), or - for standard input; repeatable
  -h, --help           show this help

Output:
  valid     one line on stdout: ok: N resources in M files (Kind name, ...)
  warnings  on stderr, one line per field accepted for Seldon compatibility that Tern ignores, or acts
            on only in some deployments:
              warning: FILE: document N (Kind name): FIELD: WHY
            (e.g. Server.spec.deploymentStrategy, applied on ECS only); they do not change the exit status
  invalid   one line per problem on stdout, and nothing else there, so it can be grepped:
              FILE: document N (Kind name): FIELD: WHAT IS WRONG
            e.g. bad.yaml: document 2 (Model iris): spec.replicas: must be at least spec.minReplicas (3 < 4)
            then a count of the problems on stderr
  Documents are numbered from 1 in file order, counting empty ones.

Exit status: 0 all valid, 1 a problem or an unreadable input, 2 wrong usage.
`;

interface Input {
  source: string;
  text: string;
}

/** Finds manifest files under a directory, sorted so that output is stable; hidden entries are skipped. */
async function listManifestFiles(dir: string, shown: string): Promise<{ path: string; shown: string }[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  entries.sort((a, b) => a.name.localeCompare(b.name));
  const files: { path: string; shown: string }[] = [];
  for (const entry of entries) {
    if (entry.name.startsWith(".") || entry.name === "node_modules") continue;
    const path = join(dir, entry.name);
    const childShown = join(shown, entry.name);
    if (entry.isDirectory()) files.push(...(await listManifestFiles(path, childShown)));
    else if (entry.isFile() && MANIFEST_EXTENSIONS.some((ext) => entry.name.endsWith(ext))) {
      files.push({ path, shown: childShown });
    }
  }
  return files;
}

function describeFsError(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  if (code === "ENOENT") return "no such file or directory";
  if (code === "EACCES") return "permission denied";
  return err instanceof Error ? err.message : String(err);
}

/** Reads every input named by -f; unreadable ones become error lines instead of stopping the run. */
async function readInputs(names: readonly string[], io: CliIo): Promise<{ inputs: Input[]; errors: string[] }> {
  const inputs: Input[] = [];
  const errors: string[] = [];
  let stdinRead = false;
  for (const name of names) {
    if (name === "-") {
      if (stdinRead) continue;
      stdinRead = true;
      inputs.push({ source: STDIN_SOURCE, text: await io.readStdin() });
      continue;
    }
    const path = resolve(io.cwd, name);
    try {
      const info = await stat(path);
      if (info.isDirectory()) {
        const files = await listManifestFiles(path, name);
        if (files.length === 0) errors.push(`${name}: no .yaml, .yml or .json files in this directory`);
        for (const file of files) inputs.push({ source: file.shown, text: await readFile(file.path, "utf8") });
      } else {
        inputs.push({ source: name, text: await readFile(path, "utf8") });
      }
    } catch (err) {
      errors.push(`${name}: cannot read: ${describeFsError(err)}`);
    }
  }
  return { inputs, errors };
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

async function run(args: string[], io: CliIo): Promise<number> {
  const parsed = parseCommandArgs<{ filename?: string[] }>(
    "validate",
    args,
    {
      filename: { type: "string", short: "f", multiple: true },
    },
    usage,
    io,
  );
  if ("exit" in parsed) return parsed.exit;
  const { values } = parsed;
  const names = values.filename ?? [];
  if (names.length === 0) {
    io.stderr.write(`tern validate: say what to check with -f FILE, -f DIR or -f -\n\n${usage}`);
    return EXIT_USAGE;
  }

  const { inputs, errors } = await readInputs(names, io);
  const documents: ManifestDocument[] = [];
  const problems: ManifestProblem[] = [];
  for (const input of inputs) {
    const parsed = parseManifestDocuments(input.text, input.source);
    documents.push(...parsed.documents);
    problems.push(...parsed.problems);
  }
  // Duplicates inside one file are already reported; add only those that span files.
  const seen = new Set(problems.map(formatProblem));
  for (const duplicate of findDuplicateResources(documents)) {
    if (!seen.has(formatProblem(duplicate))) problems.push(duplicate);
  }
  const lines = problems.map(formatProblem);

  for (const error of errors) io.stderr.write(`tern validate: ${error}\n`);
  for (const doc of documents) {
    for (const warning of manifestWarnings(doc.resource, doc)) io.stderr.write(`warning: ${formatProblem(warning)}\n`);
  }
  if (lines.length > 0) {
    io.stdout.write(`${lines.join("\n")}\n`);
    const files = new Set(problems.map((p) => p.source)).size;
    io.stderr.write(`invalid: ${plural(lines.length, "problem")} in ${plural(files, "file")}\n`);
    return EXIT_FAILED;
  }
  if (errors.length > 0) return EXIT_FAILED;
  if (documents.length === 0) {
    io.stderr.write(`tern validate: no resources found in ${plural(inputs.length, "file")}\n`);
    return EXIT_FAILED;
  }
  const named = documents.slice(0, MAX_NAMED).map((d) => `${d.resource.kind} ${d.resource.metadata.name}`);
  if (documents.length > MAX_NAMED) named.push(`and ${documents.length - MAX_NAMED} more`);
  io.stdout.write(
    `ok: ${plural(documents.length, "resource")} in ${plural(inputs.length, "file")} (${named.join(", ")})\n`,
  );
  return EXIT_OK;
}

/** `tern validate -f FILE|DIR|-`: checks manifests offline. */
export const validateCommand: Command = {
  name: "validate",
  summary: "check manifests (files, directories or stdin) without contacting the scheduler",
  usage,
  run,
};
