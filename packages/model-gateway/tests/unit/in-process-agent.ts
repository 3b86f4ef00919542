import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import {
  createAgentMetrics,
  createArtifactFetcher,
  createGrpcServer,
  createInferenceService,
  createModelRegistry,
  createOnnxRuntime,
  OIP_LOADER_OPTIONS,
  OIP_PROTO_PATH,
} from "@tern/agent";
import type { ModelRoute, RouteTable } from "@tern/core";

const REPO_ROOT = fileURLToPath(new URL("../../../../", import.meta.url));

/** A real agent in this process: the ONNX runtime, the sample iris model, its gRPC server on a free port. */
export async function startInProcessAgent() {
  const models = createModelRegistry({
    runtime: createOnnxRuntime(),
    fetcher: createArtifactFetcher({ cacheDir: "/tmp/tern-model-gateway-test-cache", fileBaseDir: REPO_ROOT }),
    capacityBytes: 1 << 30,
    overcommitPercent: 0,
    onStateChange: () => {},
  });
  const service = createInferenceService({
    models,
    serverName: "mlserver",
    serverVersion: "test",
    platform: "onnxruntime",
    isReady: () => true,
  });
  const server = createGrpcServer({ service, metrics: createAgentMetrics({ models }) });
  await models.load({ model: "iris", version: 1, storageUri: "file://samples/models/iris" });
  const port = await server.start("127.0.0.1", 0);
  return {
    address: `127.0.0.1:${port}`,
    async close() {
      await server.close(1000);
      await models.close();
    },
  };
}

export function irisRoute(grpcAddress: string): ModelRoute {
  return {
    name: "iris",
    version: 1,
    state: "ModelAvailable",
    endpoints: [{ server: "s", replica: 0, version: 1, http: "http://127.0.0.1:1", grpc: grpcAddress }],
  };
}

export function tableOf(...routes: ModelRoute[]): RouteTable {
  return { revision: 1, models: Object.fromEntries(routes.map((r) => [r.name, r])), pipelines: {}, experiments: {} };
}

/** protobufjs (through proto-loader) as an encoder independent of ours. */
const definition = protoLoader.loadSync(OIP_PROTO_PATH, OIP_LOADER_OPTIONS);
const infer = (definition["inference.GRPCInferenceService"] as protoLoader.ServiceDefinition).ModelInfer!;
export const encodeInferRequest = (request: object): Buffer => infer.requestSerialize(request);
// biome-ignore lint/suspicious/noExplicitAny: the decoded response is checked field by field
export const decodeInferResponse = (bytes: Uint8Array): any => infer.responseDeserialize(Buffer.from(bytes));

export const IRIS_ROWS = [
  { features: [5.1, 3.5, 1.4, 0.2], label: 0 },
  { features: [7.0, 3.2, 4.7, 1.4], label: 1 },
  { features: [6.3, 3.3, 6.0, 2.5], label: 2 },
];

/** A ModelInfer call as a {@link startCountingAgent} saw it. */
export interface AgentCall {
  model: string;
  /** The OIP request id (the dataflow puts the pipeline request's id there). */
  id: string;
}

/**
 * A gRPC agent that answers every model after `delayMs` (settable while it runs) by echoing its inputs as output `y`,
 * and records each call: a slow model whose calls can be counted.
 */
export async function startCountingAgent(options: { delayMs: number }) {
  const calls: AgentCall[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const state = { delayMs: options.delayMs };
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    inference: { GRPCInferenceService: grpc.ServiceClientConstructor };
  };
  const server = new grpc.Server();
  server.addService(loaded.inference.GRPCInferenceService.service, {
    ModelInfer(
      call: grpc.ServerUnaryCall<
        {
          model_name: string;
          id: string;
          inputs: Array<Record<string, unknown>>;
          raw_input_contents?: Buffer[];
        },
        unknown
      >,
      callback: grpc.sendUnaryData<unknown>,
    ) {
      const request = call.request;
      calls.push({ model: request.model_name, id: request.id });
      const timer = setTimeout(() => {
        timers.delete(timer);
        callback(null, {
          model_name: request.model_name,
          id: request.id,
          outputs: request.inputs.map((input) => ({ ...input, name: "y", parameters: {} })),
          raw_output_contents: request.raw_input_contents ?? [],
        });
      }, state.delayMs);
      timers.add(timer);
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  return {
    address: `127.0.0.1:${port}`,
    calls,
    setDelay(ms: number) {
      state.delayMs = ms;
    },
    close() {
      for (const t of timers) clearTimeout(t);
      server.forceShutdown();
    },
  };
}

/** A route to one gRPC address for each of `models`. */
export function routesTo(grpcAddress: string, ...models: string[]): ModelRoute[] {
  return models.map((name) => ({ ...irisRoute(grpcAddress), name }));
}
