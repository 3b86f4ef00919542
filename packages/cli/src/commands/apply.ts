import { readdir, readFile, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { formatProblem, type ManifestProblem, parseManifestDocuments, type Resource } from "@tern/core";
import { clientFromEnv, SchedulerClientError } from "../client.js";
import { type Command, EXIT_FAILED, EXIT_OK, EXIT_USAGE, parseCommandArgs } from "../io.js";

/**
 * What the scheduler commands need of the outside world. `CliIo` fits; `env` is where TERN_SCHEDULER_URL and
 * TERN_SCHEDULER_TOKEN come from (process.env when absent).
 */
export interface SchedulerCommandIo {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
  env?: Record<string, string | undefined>;
  readStdin?: () => Promise<string>;
  cwd?: string;
  /** Injected for tests (e.g. a control app's `fetch`). @default globalThis.fetch */
  fetch?: typeof fetch;
}

/** The scheduler client for a command: TERN_SCHEDULER_URL / TERN_SCHEDULER_TOKEN from the environment. */
export function clientFor(io: SchedulerCommandIo) {
  return clientFromEnv(envOf(io), io.fetch === undefined ? {} : { fetch: io.fetch });
}

export function envOf(io: SchedulerCommandIo): Record<string, string | undefined> {
  return io.env ?? process.env;
}

/** Prints a client error as one line and returns exit code 1. */
export function reportError(io: SchedulerCommandIo, command: string, err: unknown): number {
  if (err instanceof SchedulerClientError || (err as { code?: unknown }).code !== undefined) {
    io.stderr.write(`tern ${command}: ${(err as Error).message}\n`);
    return EXIT_FAILED;
  }
  throw err;
}

const MANIFEST_EXTENSIONS = [".yaml", ".yml", ".json"];

/** Reads the manifests named by -f (files, directories searched recursively, `-` for stdin) and parses them. */
export async function readManifestArgs(
  names: readonly string[],
  io: SchedulerCommandIo,
): Promise<{ resources: Resource[]; problems: string[] }> {
  const resources: Resource[] = [];
  const problems: string[] = [];
  const found: ManifestProblem[] = [];
  const cwd = io.cwd ?? process.cwd();
  const add = (text: string, source: string) => {
    const parsed = parseManifestDocuments(text, source);
    resources.push(...parsed.documents.map((d) => d.resource));
    found.push(...parsed.problems);
  };
  for (const name of names) {
    if (name === "-") {
      if (io.readStdin === undefined) {
        problems.push("-: standard input is not available here");
        continue;
      }
      add(await io.readStdin(), "<stdin>");
      continue;
    }
    const path = resolve(cwd, name);
    try {
      const info = await stat(path);
      if (info.isDirectory()) {
        const files = await listFiles(path, name);
        if (files.length === 0) problems.push(`${name}: no .yaml, .yml or .json files in this directory`);
        for (const f of files) add(await readFile(f.path, "utf8"), f.shown);
      } else {
        add(await readFile(path, "utf8"), name);
      }
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      problems.push(
        `${name}: cannot read: ${code === "ENOENT" ? "no such file or directory" : (err as Error).message}`,
      );
    }
  }
  problems.push(...found.map(formatProblem));
  return { resources, problems };
}

async function listFiles(dir: string, shown: string): Promise<{ path: string; shown: string }[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const out: { path: string; shown: string }[] = [];
  for (const e of entries) {
    if (e.name.startsWith(".") || e.name === "node_modules") continue;
    const path = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await listFiles(path, join(shown, e.name))));
    else if (e.isFile() && MANIFEST_EXTENSIONS.some((ext) => e.name.endsWith(ext)))
      out.push({ path, shown: join(shown, e.name) });
  }
  return out;
}

const usage = `Usage: tern apply -f FILE|DIR|- [-f ...]

Sends Seldon Core v2 manifests (Model, Server, Pipeline, Experiment) to the scheduler, which creates or
updates them. Manifests are checked first, with the rules of "tern validate"; nothing is sent if one is invalid.

Options:
  -f, --filename PATH  a YAML or JSON file, a directory (searched recursively for .yaml, .yml, .json), or -
                       for standard input; repeatable
  -h, --help           show this help

Environment:
  TERN_SCHEDULER_URL    the scheduler (default http://127.0.0.1:9004)
  TERN_SCHEDULER_TOKEN  bearer token, when the scheduler requires one

Output: one line per resource: "Kind name created|configured|unchanged".
Exit status: 0 applied, 1 invalid manifest or the scheduler refused, 2 wrong usage.
`;

/** `tern apply -f FILE|DIR|-`. */
export async function runApply(argv: string[], io: SchedulerCommandIo): Promise<number> {
  const parsed = parseCommandArgs<{ filename?: string[] }>(
    "apply",
    argv,
    { filename: { type: "string", short: "f", multiple: true } },
    usage,
    io,
  );
  if ("exit" in parsed) return parsed.exit;
  const { values } = parsed;
  const names = values.filename ?? [];
  if (names.length === 0) {
    io.stderr.write(`tern apply: say what to apply with -f FILE, -f DIR or -f -\n\n${usage}`);
    return EXIT_USAGE;
  }
  const { resources, problems } = await readManifestArgs(names, io);
  if (problems.length > 0) {
    io.stderr.write(`${problems.join("\n")}\n`);
    io.stderr.write("tern apply: nothing applied\n");
    return EXIT_FAILED;
  }
  if (resources.length === 0) {
    io.stderr.write("tern apply: no resources found\n");
    return EXIT_FAILED;
  }
  try {
    // One request: the scheduler applies them together (one revision, in order).
    const response = await clientFor(io).apply(JSON.stringify(resources));
    for (const r of response.results) {
      io.stdout.write(`${r.kind} ${r.name} ${r.action}${r.version === undefined ? "" : ` (version ${r.version})`}\n`);
    }
    return EXIT_OK;
  } catch (err) {
    return reportError(io, "apply", err);
  }
}

export const applyCommand: Command = {
  name: "apply",
  summary: "create or update resources from manifests (files, directories or stdin)",
  usage,
  run: runApply,
};
