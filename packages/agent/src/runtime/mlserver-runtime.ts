import { execFile } from "node:child_process";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import {
  isOipDatatype,
  type OipTensor,
  type OipTensorMetadata,
  TernError,
  tensorDataFromJson,
  tensorDataToJson,
} from "@tern/core";
import type { Logger } from "pino";
import { answerJson, createMlserverProcess, type MlserverAnswer, type MlserverProcess } from "./mlserver-process.js";
import type { LoadedModel, LoadOptions, ModelRuntime, ModelSignature } from "./model-runtime.js";

/** The file a Seldon MLServer artifact folder carries its settings in; it wins over what the agent would choose. */
export const MODEL_SETTINGS_FILE = "model-settings.json";

/**
 * The MLServer inference runtimes Tern installs (scripts/python/mlserver.txt), by the capability a Model's
 * `requirements` names. Each is offered only when its Python module is importable in the venv (checked at start).
 */
const IMPLEMENTATIONS: ReadonlyArray<{ capability: string; module: string; implementation: string }> = [
  { capability: "sklearn", module: "mlserver_sklearn", implementation: "mlserver_sklearn.SKLearnModel" },
  { capability: "xgboost", module: "mlserver_xgboost", implementation: "mlserver_xgboost.XGBoostModel" },
  { capability: "lightgbm", module: "mlserver_lightgbm", implementation: "mlserver_lightgbm.LightGBMModel" },
  { capability: "mlflow", module: "mlserver_mlflow", implementation: "mlserver_mlflow.MLflowRuntime" },
];

/** What the pinned install serves: the `mlserver` marker (a shipped model-settings.json) and its three runtimes. */
export const MLSERVER_CAPABILITIES = ["mlserver", "sklearn", "xgboost", "lightgbm"] as const;

/** Model files whose extension names the framework without doubt (`.bst` is both xgboost's and lightgbm's). */
const BY_EXTENSION: Readonly<Record<string, string>> = {
  ".joblib": "sklearn",
  ".pkl": "sklearn",
  ".pickle": "sklearn",
  ".ubj": "xgboost",
};

export interface MlserverRuntimeOptions {
  /** The venv's python with MLServer (TERN_MLSERVER_PYTHON). */
  python: string;
  /** This replica's MLServer folder (settings, model repository), under the agent's cache. */
  workDir: string;
  /** @default "127.0.0.1" */
  host?: string;
  /** Deadline for MLServer to come up, ms. @default 120000 */
  startTimeoutMs?: number;
  /** Deadline of each load/unload call and each inference call to MLServer, ms. @default 60000 */
  requestTimeoutMs?: number;
  /** Health-check interval, ms. @default 2000 */
  healthIntervalMs?: number;
  logger?: Logger;
}

/** The MLServer runtime with its process, for tests that must see (or kill) the process. */
export interface MlserverRuntime extends ModelRuntime {
  readonly process: MlserverProcess;
}

interface Held {
  mlserverName: string;
  model: string;
  version: number;
  onStateChange?: LoadOptions["onStateChange"];
  state: "Loading" | "Available" | "LoadFailed";
}

const utf8 = new TextDecoder();

/** MLServer's `{"error": "..."}` (or FastAPI's `{"detail": ...}`) as text. */
function errorText(res: MlserverAnswer): string {
  const text = utf8.decode(res.body);
  try {
    const body = JSON.parse(text) as { error?: unknown; detail?: unknown };
    if (typeof body.error === "string") return body.error;
    if (body.detail !== undefined) return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch {
    // not JSON
  }
  return text.slice(0, 300) || `HTTP ${res.status}`;
}

const utf8Encoder = new TextEncoder();

/**
 * MLServer's answer under the caller's names: its `model_name` is the agent's `<model>-v<version>`, the caller asked
 * for `<model>` (version `<version>`). MLServer (orjson) starts every answer with `{"model_name":"<name>",` and gives
 * no `model_version` for an unversioned model, so the bytes are spliced there; any other shape is parsed and the two
 * fields set. Everything else (outputs, id, parameters) is MLServer's, byte for byte.
 */
export function renameAnswer(
  answer: Uint8Array,
  mlserverName: string,
  model: string,
  version: string,
): Uint8Array<ArrayBuffer> {
  const prefix = utf8Encoder.encode(`{"model_name":${JSON.stringify(mlserverName)},`);
  const matches = answer.length > prefix.length && prefix.every((b, i) => answer[i] === b);
  if (matches && !includes(answer, MODEL_VERSION_KEY)) {
    const head = utf8Encoder.encode(
      `{"model_name":${JSON.stringify(model)},"model_version":${JSON.stringify(version)},`,
    );
    const out = new Uint8Array(head.length + answer.length - prefix.length);
    out.set(head, 0);
    out.set(answer.subarray(prefix.length), head.length);
    return out;
  }
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(utf8.decode(answer)) as Record<string, unknown>;
  } catch (err) {
    throw new TernError("internal", `MLServer answered ${model} with a body that is not JSON`, { cause: err });
  }
  return utf8Encoder.encode(JSON.stringify({ ...parsed, model_name: model, model_version: version }));
}

const MODEL_VERSION_KEY = Buffer.from('"model_version"');

function includes(haystack: Uint8Array, needle: Buffer): boolean {
  return Buffer.from(haystack.buffer, haystack.byteOffset, haystack.byteLength).includes(needle);
}

function toMetadata(list: unknown): OipTensorMetadata[] {
  if (!Array.isArray(list)) return [];
  const out: OipTensorMetadata[] = [];
  for (const t of list as Array<{ name?: unknown; datatype?: unknown; shape?: unknown }>) {
    if (typeof t.name !== "string" || !isOipDatatype(t.datatype) || !Array.isArray(t.shape)) return [];
    out.push({ name: t.name, datatype: t.datatype, shape: t.shape.map((d) => (typeof d === "number" ? d : -1)) });
  }
  return out;
}

/**
 * Server type `mlserver`: one MLServer process per agent (Seldon's own Python server), models written into its
 * repository as `model-settings.json` and loaded through `POST /v2/repository/models/{name}/load`, inference
 * forwarded to its REST API. When the process dies it is restarted and every model it held is loaded again; the
 * replica states say `Loading` meanwhile (and `LoadFailed` with the reason if a model does not come back).
 */
export function createMlserverRuntime(options: MlserverRuntimeOptions): MlserverRuntime {
  const log = options.logger;
  const held = new Map<string, Held>();
  let installed = new Set<string>();

  const proc = createMlserverProcess({
    python: options.python,
    workDir: options.workDir,
    ...(options.host ? { host: options.host } : {}),
    ...(options.startTimeoutMs ? { startTimeoutMs: options.startTimeoutMs } : {}),
    ...(options.requestTimeoutMs ? { requestTimeoutMs: options.requestTimeoutMs } : {}),
    ...(options.healthIntervalMs ? { healthIntervalMs: options.healthIntervalMs } : {}),
    ...(log ? { logger: log.child({ scope: "mlserver" }) } : {}),
    onDied(reason) {
      for (const h of held.values()) {
        h.state = "Loading";
        h.onStateChange?.("Loading", `MLServer is restarting (${reason}); the model is loaded again once it is up`);
      }
    },
    async onRestarted() {
      await Promise.all(
        [...held.values()].map(async (h) => {
          try {
            await repositoryCall(h.mlserverName, "load");
            h.state = "Available";
            log?.info({ model: h.model, version: h.version }, "reloaded into the restarted MLServer");
            h.onStateChange?.("Available");
          } catch (err) {
            h.state = "LoadFailed";
            h.onStateChange?.("LoadFailed", err instanceof Error ? err.message : String(err));
          }
        }),
      );
    },
  });

  async function repositoryCall(name: string, action: "load" | "unload"): Promise<void> {
    const res = await proc.request("POST", `/v2/repository/models/${encodeURIComponent(name)}/${action}`, {});
    if (res.ok) return;
    throw new TernError("bad_request", `MLServer could not ${action} ${name}: ${errorText(res)}`);
  }

  /** The settings the agent writes for MLServer: the shipped ones (paths made absolute) or its own choice. */
  async function settingsFor(artifactPath: string, name: string, load: LoadOptions): Promise<Record<string, unknown>> {
    const shipped = basename(artifactPath) === MODEL_SETTINGS_FILE;
    const folder = dirname(artifactPath);
    if (shipped) {
      let settings: Record<string, unknown>;
      try {
        settings = JSON.parse(await readFile(artifactPath, "utf8")) as Record<string, unknown>;
        if (typeof settings !== "object" || settings === null || Array.isArray(settings))
          throw new Error("not an object");
      } catch (err) {
        throw new TernError(
          "bad_request",
          `${artifactPath} is not a valid ${MODEL_SETTINGS_FILE}: ${err instanceof Error ? err.message : err}`,
        );
      }
      if (typeof settings.implementation !== "string")
        throw new TernError("bad_request", `${artifactPath} names no "implementation"`);
      checkInstalled(settings.implementation, load.model);
      const parameters = { ...((settings.parameters as Record<string, unknown> | undefined) ?? {}) };
      // MLServer resolves a relative uri against the settings file; the agent's copy lives in the repository, so the
      // uri points back into the artifact folder (a folder uri makes MLServer look for its well-known file names).
      const uri = typeof parameters.uri === "string" ? parameters.uri : ".";
      parameters.uri = isAbsolute(uri) ? uri : resolve(folder, uri);
      delete parameters.version;
      return { ...settings, name, parameters };
    }
    const framework = chooseFramework(artifactPath, load);
    const impl = IMPLEMENTATIONS.find((i) => i.capability === framework)!;
    checkInstalled(impl.implementation, load.model);
    return { name, implementation: impl.implementation, parameters: { uri: artifactPath } };
  }

  function chooseFramework(artifactPath: string, load: LoadOptions): string {
    const wanted = (load.requirements ?? []).filter((r) => IMPLEMENTATIONS.some((i) => i.capability === r));
    if (wanted.length > 1)
      throw new TernError(
        "bad_request",
        `model ${load.model} requires ${wanted.join(" and ")}: name one framework, or ship a ${MODEL_SETTINGS_FILE}`,
      );
    if (wanted.length === 1) return wanted[0]!;
    const ext = /\.[^.]+$/.exec(basename(artifactPath))?.[0]?.toLowerCase() ?? "";
    const guessed = BY_EXTENSION[ext];
    if (guessed) return guessed;
    throw new TernError(
      "bad_request",
      `cannot tell which MLServer runtime serves ${artifactPath}: add sklearn, xgboost or lightgbm to the model's requirements, or ship a ${MODEL_SETTINGS_FILE}`,
    );
  }

  function checkInstalled(implementation: string, model: string): void {
    const module = implementation.split(".")[0]!;
    const known = IMPLEMENTATIONS.find((i) => i.module === module);
    if (known && !installed.has(module))
      throw new TernError(
        "unsupported",
        `model ${model} needs ${implementation} (${known.capability}), which this MLServer installation does not include (scripts/python/mlserver.txt)`,
      );
  }

  async function probeInstalled(): Promise<Set<string>> {
    const modules = IMPLEMENTATIONS.map((i) => i.module);
    const script = `import importlib.util, sys\nprint(",".join(m for m in sys.argv[1:] if importlib.util.find_spec(m)))`;
    return new Promise((resolvePromise) => {
      execFile(options.python, ["-c", script, ...modules], { timeout: 60_000 }, (err, stdout) => {
        if (err) {
          log?.warn({ err }, "could not list the installed MLServer runtimes");
          return resolvePromise(new Set());
        }
        resolvePromise(new Set(stdout.trim().split(",").filter(Boolean)));
      });
    });
  }

  /** What MLServer's metadata declares; nothing declared (or no answer) leaves the checks to MLServer. */
  async function signatureOf(name: string): Promise<ModelSignature> {
    try {
      const res = await proc.request("GET", `/v2/models/${encodeURIComponent(name)}`);
      if (!res.ok) return { inputs: [], outputs: [] };
      const body = answerJson(res) as { inputs?: unknown; outputs?: unknown };
      return { inputs: toMetadata(body.inputs), outputs: toMetadata(body.outputs) };
    } catch {
      return { inputs: [], outputs: [] };
    }
  }

  return {
    serverType: "mlserver",
    capabilities: MLSERVER_CAPABILITIES,
    platform: "mlserver",
    forwardsJson: true,
    process: proc,

    async start() {
      await mkdir(options.workDir, { recursive: true });
      installed = await probeInstalled();
      log?.info({ runtimes: [...installed] }, "MLServer runtimes installed");
      await proc.start();
    },

    stop: () => proc.stop(),

    processBytes: () => proc.lastRssBytes(),

    async load(artifactPath: string, load: LoadOptions): Promise<LoadedModel> {
      const name = `${load.model}-v${load.version}`;
      const settings = await settingsFor(artifactPath, name, load);
      const dir = join(proc.repositoryDir, name);
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, MODEL_SETTINGS_FILE), JSON.stringify(settings, null, 2));
      await proc.ready();
      try {
        // MLServer dying under the load: once its replacement is up, load there (a restart reloads only the models
        // it already held). Its exit may be seen a moment after the failed call, hence a few tries.
        for (let attempt = 1; ; attempt++) {
          try {
            await repositoryCall(name, "load");
            break;
          } catch (err) {
            if (!(err instanceof TernError && err.code === "unavailable") || attempt >= 3) throw err;
            log?.warn({ model: load.model, err: err.message }, "MLServer went away during a load: loading again");
            await new Promise((r) => setTimeout(r, 500));
            await proc.ready();
          }
        }
      } catch (err) {
        await rm(dir, { recursive: true, force: true });
        throw err;
      }
      const entry: Held = {
        mlserverName: name,
        model: load.model,
        version: load.version,
        ...(load.onStateChange ? { onStateChange: load.onStateChange } : {}),
        state: "Available",
      };
      held.set(name, entry);
      const signature = await signatureOf(name);
      const inferPath = `/v2/models/${encodeURIComponent(name)}/infer`;
      return {
        signature,
        async infer(inputs: OipTensor[], wanted: readonly string[]): Promise<OipTensor[]> {
          if (entry.state !== "Available")
            throw new TernError("unavailable", `model ${load.model} is being loaded again into a restarted MLServer`, {
              retriable: true,
            });
          const body = {
            inputs: inputs.map((t) => ({
              name: t.name,
              datatype: t.datatype,
              shape: t.shape,
              data: tensorDataToJson(t.datatype, t.data),
            })),
            ...(wanted.length > 0 ? { outputs: wanted.map((n) => ({ name: n })) } : {}),
          };
          const res = await proc.request("POST", inferPath, body);
          if (!res.ok) {
            const detail = errorText(res);
            // 404: MLServer no longer has it (it restarted under us); 503: not ready. Another replica can answer.
            if (res.status === 404 || res.status === 503)
              throw new TernError("unavailable", `model ${load.model} is not served by MLServer now: ${detail}`, {
                retriable: true,
              });
            throw new TernError("bad_request", `model ${load.model} rejected the request: ${detail}`);
          }
          const answer = answerJson(res) as { outputs?: Array<Record<string, unknown>> };
          return (answer.outputs ?? []).map((o) => {
            const outName = String(o.name);
            if (!isOipDatatype(o.datatype) || !Array.isArray(o.shape))
              throw new TernError(
                "internal",
                `MLServer answered output "${outName}" without a valid datatype or shape`,
              );
            return {
              name: outName,
              datatype: o.datatype,
              shape: o.shape as number[],
              data: tensorDataFromJson(outName, o.datatype, o.data),
            };
          });
        },
        async forwardJson(body: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
          if (entry.state !== "Available")
            throw new TernError("unavailable", `model ${load.model} is being loaded again into a restarted MLServer`, {
              retriable: true,
            });
          const res = await proc.forward(inferPath, body);
          if (!res.ok) {
            const detail = errorText(res);
            if (res.status === 404 || res.status === 503)
              throw new TernError("unavailable", `model ${load.model} is not served by MLServer now: ${detail}`, {
                retriable: true,
              });
            throw new TernError("bad_request", `model ${load.model} rejected the request: ${detail}`);
          }
          return renameAnswer(res.body, name, load.model, String(load.version));
        },
        async unload(): Promise<void> {
          held.delete(name);
          try {
            await repositoryCall(name, "unload");
          } catch (err) {
            // A model MLServer no longer holds (it is down, or restarted and the reload failed) is unloaded already;
            // it is out of `held`, so a restart does not bring it back.
            const gone = err instanceof TernError && (err.code === "unavailable" || /not found/i.test(err.message));
            if (!gone) throw err;
          } finally {
            await rm(dir, { recursive: true, force: true });
          }
        },
      };
    },
  };
}
