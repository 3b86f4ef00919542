import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { checkResourceName, SELDON_MODEL_HEADER, SELDON_ROUTE_HEADER } from "@tern/core";
import { parseKindArg } from "../client.js";
import { type CliIo, type Command, EXIT_FAILED, EXIT_OK, EXIT_USAGE, parseCommandArgs } from "../io.js";

/** Where `tern infer` sends requests when neither `--gateway` nor TERN_GATEWAY_URL says otherwise. */
export const DEFAULT_GATEWAY_URL = "http://localhost:9000";
/** The environment variable naming the gateway. */
export const GATEWAY_URL_ENV = "TERN_GATEWAY_URL";
const DEFAULT_TIMEOUT_SECONDS = 60;

/** What `tern infer` needs of the outside world: `CliIo`, plus the environment (process.env when absent). */
export interface InferIo extends CliIo {
  env?: Record<string, string | undefined>;
}

/** The three things an inference request can name. */
export type InferKind = "model" | "experiment" | "pipeline";

const usage = `Usage: tern infer KIND NAME [DATA] [options]

Sends an Open Inference Protocol (V2) request through the gateway and prints the answer on stdout as
indented JSON.

Arguments:
  KIND                 model, experiment or pipeline (plural and capitalised forms work too)
  NAME                 the resource's metadata.name
  DATA                 the JSON request, e.g.
                         '{"inputs":[{"name":"predict","shape":[1,4],"datatype":"FP32","data":[[5.1,3.5,1.4,0.2]]}]}'
                       @FILE reads it from a file; - or nothing reads standard input (which must not be a terminal)

Options:
  --gateway URL        the gateway (default: $${GATEWAY_URL_ENV}, else ${DEFAULT_GATEWAY_URL})
  -H, --header K=V     add a request header, e.g. --header authorization="Bearer KEY"; repeatable
  --show-headers       print the answer's status and headers on stderr (x-seldon-route names the model that
                       served it)
  -n, --iterations N   send N requests one after another; print the last answer on stdout and one line on stderr:
                         N requests, status 200: N; latency median M ms, p99 P ms
  --sticky             send the first x-seldon-route received back on the following requests, so that an
                       experiment keeps the candidate it drew
  --timeout SECONDS    give up on a request that has not been answered after this long (default ${DEFAULT_TIMEOUT_SECONDS})
  -h, --help           show this help

Requests:
  model       POST /v2/models/NAME/infer
  experiment  POST /v2/models/NAME/infer with the header ${SELDON_MODEL_HEADER}: NAME.experiment
  pipeline    POST /v2/pipelines/NAME/infer

Environment:
  ${GATEWAY_URL_ENV}     the gateway, when --gateway is not given

Output: the answer's JSON on stdout. An answer that is not 2xx prints its error on stderr instead, e.g.
  tern infer: 404 model nope not found
Exit status: 0 every answer was 2xx, 1 an answer was not, or the gateway could not be reached or did not answer
in time, 2 wrong usage or DATA that cannot be read or is not a JSON object.
`;

/** Method-less description of one request: the path under the gateway and the headers that select the target. */
export function inferTarget(kind: InferKind, name: string): { path: string; headers: Record<string, string> } {
  const segment = encodeURIComponent(name);
  switch (kind) {
    case "model":
      return { path: `/v2/models/${segment}/infer`, headers: {} };
    case "pipeline":
      return { path: `/v2/pipelines/${segment}/infer`, headers: {} };
    case "experiment":
      // The gateway routes by this header instead of the path's name (docs/gateway.md); the path must still be a
      // model path, so it names the experiment too.
      return { path: `/v2/models/${segment}/infer`, headers: { [SELDON_MODEL_HEADER]: `${name}.experiment` } };
  }
}

/** Median and p99 (nearest rank) of latencies in ms; undefined for none. */
export function latencyStats(latenciesMs: readonly number[]): { median: number; p99: number } | undefined {
  if (latenciesMs.length === 0) return undefined;
  const sorted = [...latenciesMs].sort((a, b) => a - b);
  const n = sorted.length;
  const median = n % 2 === 1 ? sorted[(n - 1) / 2]! : (sorted[n / 2 - 1]! + sorted[n / 2]!) / 2;
  const p99 = sorted[Math.ceil(0.99 * n) - 1]!;
  return { median, p99 };
}

/** The `--iterations` summary line, e.g. `10 requests, status 200: 9, 503: 1; latency median 2.1 ms, p99 4.0 ms`. */
export function formatSummary(statuses: readonly number[], latenciesMs: readonly number[], planned: number): string {
  const counts = new Map<number, number>();
  for (const s of statuses) counts.set(s, (counts.get(s) ?? 0) + 1);
  const byStatus = [...counts.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([status, count]) => `${status}: ${count}`)
    .join(", ");
  const done = statuses.length;
  const head = done === planned ? `${done} request${done === 1 ? "" : "s"}` : `${done} of ${planned} requests`;
  const stats = latencyStats(latenciesMs);
  const latency =
    stats === undefined ? "" : `; latency median ${stats.median.toFixed(1)} ms, p99 ${stats.p99.toFixed(1)} ms`;
  return `${head}${byStatus === "" ? "" : `, status ${byStatus}`}${latency}`;
}

/** The one-line reason of a non-2xx answer: the gateway's `{"error"}` message, else the start of the body. */
export function errorMessageOf(status: number, statusText: string, body: string): string {
  let message: string | undefined;
  try {
    const error = (JSON.parse(body) as { error?: unknown } | null)?.error;
    if (typeof error === "string" && error !== "") message = error;
  } catch {
    // Not JSON: a proxy's HTML page or plain text; fall through to the text.
  }
  if (message === undefined) {
    const firstLine = body.trim().split("\n")[0]?.trim() ?? "";
    message = firstLine !== "" ? firstLine.slice(0, 200) : statusText !== "" ? statusText : "no error message";
  }
  return `${status} ${message}`;
}

/** Why a fetch failed before any answer, in a few words (the system error code when there is one). */
function transportReason(err: unknown): string {
  const cause = (err as { cause?: unknown }).cause as
    | { code?: unknown; message?: unknown; errors?: unknown }
    | undefined;
  if (typeof cause?.code === "string") return cause.code;
  const first = Array.isArray(cause?.errors) ? (cause.errors[0] as { code?: unknown } | undefined) : undefined;
  if (typeof first?.code === "string") return first.code;
  if (typeof cause?.message === "string" && cause.message !== "") return cause.message;
  return err instanceof Error ? err.message : String(err);
}

/** RFC 9110 token: what a header name may contain. */
const HEADER_NAME_RE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** What a header value may contain: visible Latin-1 characters, spaces and tabs. */
const HEADER_VALUE_RE = /^[\t\x20-\x7e\x80-\xff]*$/;

type Parsed = { exit: number } | { kind: InferKind; name: string; data: string };

/** Reads DATA: inline JSON, `@FILE`, or `-`/absent for standard input. Any problem is a usage error (exit 2). */
async function readData(arg: string | undefined, io: InferIo): Promise<{ text: string; source: string } | string> {
  if (arg === undefined || arg === "-") {
    if (arg === undefined && io.stdinIsTTY === true) {
      return "no DATA: give the request inline, as @FILE, or on standard input (e.g. < request.json)";
    }
    return { text: await io.readStdin(), source: "standard input" };
  }
  if (arg.startsWith("@")) {
    const file = arg.slice(1);
    if (file === "") return 'DATA "@" names no file: use @path/to/request.json';
    try {
      return { text: await readFile(resolve(io.cwd, file), "utf8"), source: file };
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      const why =
        code === "ENOENT"
          ? "no such file"
          : code === "EISDIR"
            ? "is a directory"
            : code === "EACCES"
              ? "permission denied"
              : (err as Error).message;
      return `cannot read DATA from ${file}: ${why}`;
    }
  }
  return { text: arg, source: "the DATA argument" };
}

/** Parses the positionals and DATA; on a problem prints it and returns the exit code. */
async function parseRequest(positionals: string[], io: InferIo): Promise<Parsed> {
  const fail = (message: string, withUsage = false): Parsed => {
    io.stderr.write(`tern infer: ${message}\n${withUsage ? `\n${usage}` : ""}`);
    return { exit: EXIT_USAGE };
  };
  if (positionals.length < 2 || positionals.length > 3) return fail("expected KIND NAME [DATA]", true);
  const [kindArg, name, dataArg] = positionals as [string, string, string | undefined];
  const kind = parseKindArg(kindArg);
  if (kind === undefined || kind === "Server") {
    return fail(`unknown kind "${kindArg}": expected model, experiment or pipeline`);
  }
  const nameProblem = checkResourceName(name);
  if (nameProblem !== undefined) return fail(`NAME ${nameProblem}`);
  const data = await readData(dataArg, io);
  if (typeof data === "string") return fail(data);
  if (data.text.trim() === "") return fail(`no DATA: ${data.source} is empty`);
  let value: unknown;
  try {
    value = JSON.parse(data.text);
  } catch (err) {
    return fail(`DATA from ${data.source} is not valid JSON: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return fail(`DATA from ${data.source} must be a JSON object, an OIP request such as {"inputs":[...]}`);
  }
  return { kind: kind.toLowerCase() as InferKind, name, data: data.text };
}

/** The gateway's base URL from --gateway or the environment, or the problem with it. */
function gatewayUrl(option: string | undefined, env: Record<string, string | undefined>): string | { problem: string } {
  const fromEnv = env[GATEWAY_URL_ENV];
  const [raw, origin] =
    option !== undefined
      ? [option, "--gateway"]
      : fromEnv !== undefined && fromEnv !== ""
        ? [fromEnv, GATEWAY_URL_ENV]
        : [DEFAULT_GATEWAY_URL, "default"];
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { problem: `${origin} must be an http(s) URL such as ${DEFAULT_GATEWAY_URL} (got "${raw}")` };
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return { problem: `${origin} must be an http(s) URL such as ${DEFAULT_GATEWAY_URL} (got "${raw}")` };
  }
  // A base path (an API Gateway stage, say) is kept; only trailing slashes go, so that "/v2/..." joins cleanly.
  return raw.replace(/\/+$/, "");
}

/** `--header K=V` values → a header object (names lowercased; a repeated name keeps its last value). */
function parseHeaders(values: readonly string[]): { headers: Record<string, string> } | { problem: string } {
  const headers: Record<string, string> = {};
  for (const value of values) {
    const eq = value.indexOf("=");
    const name = eq < 0 ? "" : value.slice(0, eq).trim();
    if (!HEADER_NAME_RE.test(name)) {
      return { problem: `--header must be NAME=VALUE with a valid header name (got "${value}")` };
    }
    const headerValue = value.slice(eq + 1);
    // fetch would reject these only when sending, where the failure would look like a network problem.
    if (!HEADER_VALUE_RE.test(headerValue)) {
      return { problem: `--header ${name}: the value may not contain line breaks or other control characters` };
    }
    headers[name.toLowerCase()] = headerValue;
  }
  return { headers };
}

interface Answer {
  status: number;
  statusText: string;
  headers: Headers;
  body: string;
}

/** `tern infer KIND NAME [DATA]`. */
export async function runInfer(argv: string[], io: InferIo): Promise<number> {
  const parsed = parseCommandArgs<{
    gateway?: string;
    header?: string[];
    "show-headers"?: boolean;
    iterations?: string;
    sticky?: boolean;
    timeout?: string;
  }>(
    "infer",
    argv,
    {
      gateway: { type: "string" },
      header: { type: "string", short: "H", multiple: true },
      "show-headers": { type: "boolean" },
      iterations: { type: "string", short: "n" },
      sticky: { type: "boolean" },
      timeout: { type: "string" },
    },
    usage,
    io,
    true,
  );
  if ("exit" in parsed) return parsed.exit;
  const { values, positionals } = parsed;
  const usageError = (message: string) => {
    io.stderr.write(`tern infer: ${message}\n`);
    return EXIT_USAGE;
  };

  // Options are checked before DATA so that a mistyped option never waits on standard input.
  const base = gatewayUrl(values.gateway, io.env ?? process.env);
  if (typeof base !== "string") return usageError(base.problem);
  const extra = parseHeaders(values.header ?? []);
  if ("problem" in extra) return usageError(extra.problem);
  let iterations = 1;
  if (values.iterations !== undefined) {
    iterations = Number(values.iterations);
    if (!Number.isSafeInteger(iterations) || iterations < 1 || values.iterations.trim() === "") {
      return usageError(`--iterations must be a whole number of at least 1 (got "${values.iterations}")`);
    }
  }
  let timeoutMs = DEFAULT_TIMEOUT_SECONDS * 1000;
  if (values.timeout !== undefined) {
    const seconds = Number(values.timeout);
    if (!Number.isFinite(seconds) || seconds <= 0 || values.timeout.trim() === "") {
      return usageError(`--timeout must be a positive number of seconds (got "${values.timeout}")`);
    }
    timeoutMs = seconds * 1000;
  }

  const request = await parseRequest(positionals, io);
  if ("exit" in request) return request.exit;
  const target = inferTarget(request.kind, request.name);
  const url = `${base}${target.path}`;
  const headers: Record<string, string> = {
    "content-type": "application/json",
    ...target.headers,
    ...extra.headers,
  };

  const statuses: number[] = [];
  const latencies: number[] = [];
  let firstFailure: string | undefined;
  let last: Answer | undefined;
  let stickyRoute: string | undefined;
  const summarize = () => {
    if (values.iterations !== undefined) io.stderr.write(`${formatSummary(statuses, latencies, iterations)}\n`);
  };

  for (let i = 0; i < iterations; i++) {
    const sent = stickyRoute === undefined ? headers : { ...headers, [SELDON_ROUTE_HEADER]: stickyRoute };
    const started = performance.now();
    try {
      // One signal covers the connection, the answer's headers and its body.
      const res = await fetch(url, {
        method: "POST",
        headers: sent,
        body: request.data,
        signal: AbortSignal.timeout(timeoutMs),
      });
      const body = await res.text();
      latencies.push(performance.now() - started);
      last = { status: res.status, statusText: res.statusText, headers: res.headers, body };
    } catch (err) {
      const name = (err as { name?: unknown }).name;
      const message =
        name === "TimeoutError" || name === "AbortError"
          ? `the gateway at ${base} did not answer within ${timeoutMs / 1000} s (--timeout)`
          : `cannot reach the gateway at ${base}: ${transportReason(err)}`;
      // Further requests would meet the same wall; stop, and say how far it got.
      io.stderr.write(`tern infer: ${message}\n`);
      summarize();
      return EXIT_FAILED;
    }
    statuses.push(last.status);
    if (last.status < 200 || last.status > 299) {
      firstFailure ??= errorMessageOf(last.status, last.statusText, last.body);
    }
    if (values.sticky === true && stickyRoute === undefined) {
      const route = last.headers.get(SELDON_ROUTE_HEADER);
      if (route !== null && route !== "") stickyRoute = route;
    }
  }

  // Reached only after at least one answer (iterations >= 1).
  const answer = last!;
  if (values["show-headers"] === true) {
    const lines = [`${answer.status} ${answer.statusText}`.trimEnd()];
    answer.headers.forEach((value, name) => {
      lines.push(`${name}: ${value}`);
    });
    io.stderr.write(`${lines.join("\n")}\n`);
  }
  const ok = answer.status >= 200 && answer.status <= 299;
  if (ok) io.stdout.write(prettyBody(answer.body));
  else io.stderr.write(`tern infer: ${errorMessageOf(answer.status, answer.statusText, answer.body)}\n`);
  summarize();
  if (firstFailure === undefined) return EXIT_OK;
  if (ok) {
    const failed = statuses.filter((s) => s < 200 || s > 299).length;
    io.stderr.write(`tern infer: ${failed} of ${statuses.length} requests failed; the first: ${firstFailure}\n`);
  }
  return EXIT_FAILED;
}

/** Indented JSON when the body is JSON; otherwise the text as it came, ending with a newline. */
function prettyBody(body: string): string {
  try {
    return `${JSON.stringify(JSON.parse(body), null, 2)}\n`;
  } catch {
    return body.endsWith("\n") || body === "" ? body : `${body}\n`;
  }
}

export const inferCommand: Command = {
  name: "infer",
  summary: "send an inference request to a model, experiment or pipeline through the gateway",
  usage,
  run: runInfer,
};
