import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { formatSummary, type InferIo, latencyStats } from "../../src/commands/infer.js";
import { main } from "../../src/main.js";

const repoRoot = fileURLToPath(new URL("../../../../", import.meta.url));
const REQUEST = { inputs: [{ name: "predict", shape: [1, 4], datatype: "FP32", data: [[5.1, 3.5, 1.4, 0.2]] }] };

interface Recorded {
  method: string;
  path: string;
  headers: IncomingMessage["headers"];
  body: string;
}

/**
 * A stand-in for the gateway, answering the way docs/gateway.md describes: models iris and flaky (503 on odd
 * calls), experiment split (candidates iris_a and iris_b, drawn in turn, pinned by x-seldon-route), pipeline chain,
 * model slow (never answers), and {"error"} bodies for anything else. It records every request.
 */
function createFakeGateway() {
  const requests: Recorded[] = [];
  let draws = 0;
  let flakyCalls = 0;
  const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, { "content-type": "application/json", ...headers });
    res.end(JSON.stringify(body));
  };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const path = req.url ?? "";
      requests.push({ method: req.method ?? "", path, headers: req.headers, body });
      const answer = (model: string) => {
        const inputs = (JSON.parse(body) as { inputs: unknown[] }).inputs;
        json(res, 200, { model_name: model, outputs: inputs }, { "x-seldon-route": `:${model}:` });
      };
      const seldonModel = req.headers["seldon-model"];
      const model = /^\/v2\/models\/([^/]+)\/infer$/.exec(path)?.[1];
      const pipeline = /^\/v2\/pipelines\/([^/]+)\/infer$/.exec(path)?.[1];
      if (req.method !== "POST") return json(res, 405, { error: "method not allowed" });
      if (typeof seldonModel === "string" && seldonModel.endsWith(".experiment") && model !== undefined) {
        const experiment = seldonModel.slice(0, -".experiment".length);
        if (experiment !== "split") return json(res, 404, { error: `experiment ${experiment} not found` });
        const candidates = ["iris_a", "iris_b"];
        const pinned = candidates.find((c) => String(req.headers["x-seldon-route"] ?? "").includes(`:${c}:`));
        return answer(pinned ?? candidates[draws++ % 2]!);
      }
      if (seldonModel !== undefined) return json(res, 400, { error: "unexpected seldon-model header" });
      if (model === "iris") return answer("iris");
      if (model === "flaky") {
        flakyCalls++;
        if (flakyCalls % 2 === 1) return json(res, 503, { error: "model flaky has no available replica" });
        return answer("flaky");
      }
      if (model === "slow") return; // holds the request until the client gives up
      if (model === "html") {
        res.writeHead(502, { "content-type": "text/html" });
        return res.end("<html>Bad Gateway</html>\n");
      }
      if (model !== undefined) return json(res, 404, { error: `model ${model} not found` });
      if (pipeline === "chain") return answer("chain");
      if (pipeline !== undefined) return json(res, 404, { error: `pipeline ${pipeline} not found` });
      return json(res, 404, { error: "not found" });
    });
  });
  return {
    requests,
    server,
    async start(): Promise<string> {
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

let gateway: ReturnType<typeof createFakeGateway>;
let url: string;
let dir: string;
beforeEach(async () => {
  gateway = createFakeGateway();
  url = await gateway.start();
  dir = await mkdtemp(join(tmpdir(), "tern-infer-"));
});
afterEach(async () => {
  await gateway.close();
  await rm(dir, { recursive: true, force: true });
});

/** Runs `tern infer <args>` in-process against the fake gateway (TERN_GATEWAY_URL), with captured output. */
async function infer(
  args: string[],
  options: { stdin?: string; stdinIsTTY?: boolean; env?: Record<string, string | undefined> } = {},
) {
  let stdout = "";
  let stderr = "";
  let stdinRead = false;
  const io: InferIo = {
    stdout: { write: (t: string) => (stdout += t) },
    stderr: { write: (t: string) => (stderr += t) },
    readStdin: async () => {
      stdinRead = true;
      return options.stdin ?? "";
    },
    cwd: dir,
    env: options.env ?? { TERN_GATEWAY_URL: url },
    ...(options.stdinIsTTY === undefined ? {} : { stdinIsTTY: options.stdinIsTTY }),
  };
  const code = await main(["infer", ...args], io);
  return { code, stdout, stderr, stdinRead };
}

/** A port nothing listens on: bound once, then released. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe("tern infer: where requests go", () => {
  it("posts a model request to /v2/models/NAME/infer and prints the answer as indented JSON", async () => {
    const result = await infer(["model", "iris", JSON.stringify(REQUEST)]);
    expect(result).toMatchObject({ code: 0, stderr: "" });
    expect(result.stdout).toBe(`${JSON.stringify({ model_name: "iris", outputs: REQUEST.inputs }, null, 2)}\n`);
    expect(gateway.requests).toHaveLength(1);
    const [sent] = gateway.requests;
    expect(sent).toMatchObject({ method: "POST", path: "/v2/models/iris/infer", body: JSON.stringify(REQUEST) });
    expect(sent!.headers["content-type"]).toBe("application/json");
    expect(sent!.headers["seldon-model"]).toBeUndefined();
  });

  it("addresses an experiment with the seldon-model header NAME.experiment on a model path", async () => {
    const result = await infer(["experiment", "split", JSON.stringify(REQUEST)]);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout).model_name).toBe("iris_a");
    const [sent] = gateway.requests;
    expect(sent!.path).toBe("/v2/models/split/infer");
    expect(sent!.headers["seldon-model"]).toBe("split.experiment");
  });

  it("posts a pipeline request to /v2/pipelines/NAME/infer", async () => {
    const result = await infer(["pipeline", "chain", JSON.stringify(REQUEST)]);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout).model_name).toBe("chain");
    expect(gateway.requests[0]!.path).toBe("/v2/pipelines/chain/infer");
    expect(gateway.requests[0]!.headers["seldon-model"]).toBeUndefined();
  });

  it("accepts plural and capitalised kinds", async () => {
    expect((await infer(["Models", "iris", "{}"])).code).toBe(0);
    expect((await infer(["PIPELINE", "chain", JSON.stringify(REQUEST)])).code).toBe(0);
    expect(gateway.requests.map((r) => r.path)).toEqual(["/v2/models/iris/infer", "/v2/pipelines/chain/infer"]);
  });

  it("uses --gateway over TERN_GATEWAY_URL, keeping a base path and dropping a trailing slash", async () => {
    const elsewhere = `http://127.0.0.1:${await closedPort()}`;
    const result = await infer(["model", "nope", "{}", "--gateway", `${url}/`], {
      env: { TERN_GATEWAY_URL: elsewhere },
    });
    expect(result.code).toBe(1);
    expect(gateway.requests[0]!.path).toBe("/v2/models/nope/infer");
    await infer(["model", "iris", "{}", "--gateway", `${url}/stage`]);
    expect(gateway.requests[1]!.path).toBe("/stage/v2/models/iris/infer");
  });

  it("sends --header values, repeatable, and lets them override the content type", async () => {
    const result = await infer([
      "model",
      "iris",
      "{}",
      "--header",
      "authorization=Bearer k=1",
      "-H",
      "x-request-id=abc",
      "-H",
      "Content-Type=application/json; charset=utf-8",
    ]);
    expect(result.code).toBe(0);
    const { headers } = gateway.requests[0]!;
    expect(headers.authorization).toBe("Bearer k=1");
    expect(headers["x-request-id"]).toBe("abc");
    expect(headers["content-type"]).toBe("application/json; charset=utf-8");
  });

  it("prints the answer's status and headers, x-seldon-route included, on stderr with --show-headers", async () => {
    const result = await infer(["model", "iris", "{}", "--show-headers"]);
    expect(result.code).toBe(0);
    expect(result.stderr.split("\n")[0]).toBe("200 OK");
    expect(result.stderr).toMatch(/^content-type: application\/json$/m);
    expect(result.stderr).toMatch(/^x-seldon-route: :iris:$/m);
    expect(JSON.parse(result.stdout).model_name).toBe("iris");
  });
});

describe("tern infer: DATA", () => {
  it("reads DATA from @FILE relative to the working directory", async () => {
    await writeFile(join(dir, "request.json"), JSON.stringify(REQUEST));
    const result = await infer(["model", "iris", "@request.json"]);
    expect(result.code).toBe(0);
    expect(JSON.parse(gateway.requests[0]!.body)).toEqual(REQUEST);
  });

  it("reads standard input for - and when DATA is absent", async () => {
    const dash = await infer(["model", "iris", "-"], { stdin: JSON.stringify(REQUEST) });
    expect(dash).toMatchObject({ code: 0, stdinRead: true });
    const absent = await infer(["model", "iris"], { stdin: JSON.stringify(REQUEST), stdinIsTTY: false });
    expect(absent).toMatchObject({ code: 0, stdinRead: true });
    expect(gateway.requests.map((r) => JSON.parse(r.body))).toEqual([REQUEST, REQUEST]);
  });

  it("refuses to wait on a terminal when DATA is absent (exit 2, stdin not read)", async () => {
    const result = await infer(["model", "iris"], { stdinIsTTY: true });
    expect(result).toMatchObject({ code: 2, stdout: "", stdinRead: false });
    expect(result.stderr).toMatch(/^tern infer: no DATA: give the request inline, as @FILE, or on standard input/);
    expect(gateway.requests).toEqual([]);
  });

  it("exits 2 on invalid JSON, naming where it came from, and sends nothing", async () => {
    const inline = await infer(["model", "iris", '{"inputs": ['], { stdin: "" });
    expect(inline.code).toBe(2);
    expect(inline.stderr).toMatch(/^tern infer: DATA from the DATA argument is not valid JSON: /);
    await writeFile(join(dir, "bad.json"), "{nope}");
    const file = await infer(["model", "iris", "@bad.json"]);
    expect(file.code).toBe(2);
    expect(file.stderr).toMatch(/^tern infer: DATA from bad\.json is not valid JSON: /);
    const stdin = await infer(["model", "iris", "-"], { stdin: "not json" });
    expect(stdin.code).toBe(2);
    expect(stdin.stderr).toMatch(/^tern infer: DATA from standard input is not valid JSON: /);
    const array = await infer(["model", "iris", "[1,2]"]);
    expect(array.code).toBe(2);
    expect(array.stderr).toMatch(/must be a JSON object/);
    const empty = await infer(["model", "iris", "-"], { stdin: "  \n" });
    expect(empty.code).toBe(2);
    expect(empty.stderr).toBe("tern infer: no DATA: standard input is empty\n");
    const missing = await infer(["model", "iris", "@missing.json"]);
    expect(missing).toMatchObject({
      code: 2,
      stderr: "tern infer: cannot read DATA from missing.json: no such file\n",
    });
    expect(gateway.requests).toEqual([]);
  });
});

describe("tern infer: --iterations and --sticky", () => {
  it("sends N requests, prints the last answer and a summary line on stderr", async () => {
    const result = await infer(["model", "iris", JSON.stringify(REQUEST), "--iterations", "5"]);
    expect(result.code).toBe(0);
    expect(gateway.requests).toHaveLength(5);
    expect(JSON.parse(result.stdout).model_name).toBe("iris");
    expect(result.stderr).toMatch(/^5 requests, status 200: 5; latency median \d+\.\d ms, p99 \d+\.\d ms\n$/);
  });

  it("counts answers by status and exits 1 when any was not 2xx, naming the first failure", async () => {
    // flaky answers 503, 200, 503, 200: the last answer is fine, two were not.
    const result = await infer(["model", "flaky", "{}", "-n", "4"]);
    expect(result.code).toBe(1);
    expect(JSON.parse(result.stdout).model_name).toBe("flaky");
    const lines = result.stderr.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^4 requests, status 200: 2, 503: 2; latency median/);
    expect(lines[1]).toBe("tern infer: 2 of 4 requests failed; the first: 503 model flaky has no available replica");
  });

  it("without --sticky, an experiment draws again on each request", async () => {
    const result = await infer(["experiment", "split", "{}", "-n", "4"]);
    expect(result.code).toBe(0);
    expect(gateway.requests.map((r) => r.headers["x-seldon-route"])).toEqual([
      undefined,
      undefined,
      undefined,
      undefined,
    ]);
    expect(JSON.parse(result.stdout).model_name).toBe("iris_b");
  });

  it("with --sticky, sends the first answer's x-seldon-route back so the candidate stays the same", async () => {
    const result = await infer(["experiment", "split", "{}", "-n", "4", "--sticky", "--show-headers"]);
    expect(result.code).toBe(0);
    expect(gateway.requests.map((r) => r.headers["x-seldon-route"])).toEqual([
      undefined,
      ":iris_a:",
      ":iris_a:",
      ":iris_a:",
    ]);
    expect(JSON.parse(result.stdout).model_name).toBe("iris_a");
    expect(result.stderr).toMatch(/^x-seldon-route: :iris_a:$/m);
  });
});

describe("tern infer: failures", () => {
  it("prints the gateway's error for a non-2xx answer and exits 1, with nothing on stdout", async () => {
    const result = await infer(["model", "nope", "{}"]);
    expect(result).toEqual({ code: 1, stdout: "", stderr: "tern infer: 404 model nope not found\n", stdinRead: false });
    const experiment = await infer(["experiment", "ghost", "{}"]);
    expect(experiment.stderr).toBe("tern infer: 404 experiment ghost not found\n");
  });

  it("prints the start of a body that is not the gateway's JSON", async () => {
    const result = await infer(["model", "html", "{}"]);
    expect(result).toMatchObject({ code: 1, stdout: "", stderr: "tern infer: 502 <html>Bad Gateway</html>\n" });
  });

  it("says in one line that the gateway cannot be reached, and exits 1", async () => {
    const down = `http://127.0.0.1:${await closedPort()}`;
    const result = await infer(["model", "iris", "{}"], { env: { TERN_GATEWAY_URL: down } });
    expect(result).toMatchObject({
      code: 1,
      stdout: "",
      stderr: `tern infer: cannot reach the gateway at ${down}: ECONNREFUSED\n`,
    });
  });

  it("gives up after --timeout with exit 1 and a clear message; --iterations stops there with a summary", async () => {
    const result = await infer(["model", "slow", "{}", "--timeout", "0.2"]);
    expect(result).toMatchObject({
      code: 1,
      stdout: "",
      stderr: `tern infer: the gateway at ${url} did not answer within 0.2 s (--timeout)\n`,
    });
    const iterated = await infer(["model", "slow", "{}", "--timeout", "0.2", "-n", "3"]);
    expect(iterated.code).toBe(1);
    expect(iterated.stderr.split("\n")[1]).toBe("0 of 3 requests");
    expect(gateway.requests.filter((r) => r.path === "/v2/models/slow/infer")).toHaveLength(2);
  });
});

describe("tern infer: usage", () => {
  it("exits 2 on an unknown kind, wrong arguments or bad option values, sending nothing", async () => {
    const cases: [string[], RegExp][] = [
      [["server", "mlserver", "{}"], /^tern infer: unknown kind "server": expected model, experiment or pipeline$/m],
      [["widget", "iris", "{}"], /^tern infer: unknown kind "widget"/m],
      [["model"], /^tern infer: expected KIND NAME \[DATA\]/m],
      [["model", "iris", "{}", "extra"], /^tern infer: expected KIND NAME \[DATA\]/m],
      [["model", "iris.v1", "{}"], /^tern infer: NAME must not contain "\."/m],
      [["model", "iris", "{}", "--iterations", "0"], /--iterations must be a whole number of at least 1 \(got "0"\)/],
      [["model", "iris", "{}", "-n", "2.5"], /--iterations must be a whole number/],
      [["model", "iris", "{}", "--timeout=-1"], /--timeout must be a positive number of seconds \(got "-1"\)/],
      [["model", "iris", "{}", "--timeout", "soon"], /--timeout must be a positive number of seconds/],
      [["model", "iris", "{}", "--header", "no-equals"], /--header must be NAME=VALUE .*\(got "no-equals"\)/],
      [["model", "iris", "{}", "--header", "bad name=1"], /--header must be NAME=VALUE/],
      [["model", "iris", "{}", "--header", "x-a=1\r\nx-b: 2"], /--header x-a: the value may not contain line breaks/],
      [["model", "iris", "{}", "--gateway", "localhost:9000"], /--gateway must be an http\(s\) URL/],
      [["model", "iris", "{}", "--bogus"], /^tern infer: Unknown option '--bogus'/m],
    ];
    for (const [args, message] of cases) {
      const result = await infer(args);
      expect(result.code, args.join(" ")).toBe(2);
      expect(result.stdout).toBe("");
      expect(result.stderr).toMatch(message);
    }
    const badEnv = await infer(["model", "iris", "{}"], { env: { TERN_GATEWAY_URL: "ftp://x" } });
    expect(badEnv.code).toBe(2);
    expect(badEnv.stderr).toMatch(/^tern infer: TERN_GATEWAY_URL must be an http\(s\) URL/);
    expect(gateway.requests).toEqual([]);
  });

  it("prints its help with --help and exits 0; tern --help lists it", async () => {
    const result = await infer(["--help"]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^Usage: tern infer KIND NAME \[DATA\] \[options\]/);
    expect(result.stdout).toContain("seldon-model: NAME.experiment");
    let top = "";
    await main(["--help"], { ...createNullIo(), stdout: { write: (t: string) => (top += t) } });
    expect(top).toMatch(/\n {2}infer {5}send an inference request/);
  });
});

describe("tern infer: pure helpers", () => {
  it("computes median and nearest-rank p99", () => {
    expect(latencyStats([])).toBeUndefined();
    expect(latencyStats([5])).toEqual({ median: 5, p99: 5 });
    expect(latencyStats([4, 1, 3, 2])).toEqual({ median: 2.5, p99: 4 });
    const hundred = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(latencyStats(hundred)).toEqual({ median: 50.5, p99: 99 });
  });

  it("formats the summary line", () => {
    expect(formatSummary([200, 503, 200], [1, 2, 3], 3)).toBe(
      "3 requests, status 200: 2, 503: 1; latency median 2.0 ms, p99 3.0 ms",
    );
    expect(formatSummary([200], [1.25], 1)).toBe("1 request, status 200: 1; latency median 1.3 ms, p99 1.3 ms");
    expect(formatSummary([], [], 3)).toBe("0 of 3 requests");
  });
});

function createNullIo(): InferIo {
  return { stdout: { write: () => true }, stderr: { write: () => true }, readStdin: async () => "", cwd: dir };
}

/** Runs bin/tern.mjs as a real process without blocking this event loop (the fake gateway must keep answering). */
function runBin(args: string[], input: string, env: Record<string, string>) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolveRun, reject) => {
    const child = spawn(process.execPath, [join(repoRoot, "packages/cli/bin/tern.mjs"), ...args], {
      cwd: repoRoot,
      env: { ...process.env, ...env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const killer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(killer);
      resolveRun({ code, stdout, stderr });
    });
    child.stdin.end(input);
  });
}

describe("tern infer as a real process", () => {
  it("reads piped standard input, answers with exit 0; an unreachable gateway is one line and exit 1", async () => {
    const ok = await runBin(["infer", "model", "iris"], JSON.stringify(REQUEST), { TERN_GATEWAY_URL: url });
    expect(ok.stderr).toBe("");
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toEqual({ model_name: "iris", outputs: REQUEST.inputs });
    const down = `http://127.0.0.1:${await closedPort()}`;
    const failed = await runBin(["infer", "model", "iris", "{}", "--gateway", down], "", {});
    expect(failed.code).toBe(1);
    expect(failed.stdout).toBe("");
    expect(failed.stderr).toBe(`tern infer: cannot reach the gateway at ${down}: ECONNREFUSED\n`);
  }, 60_000);
});
