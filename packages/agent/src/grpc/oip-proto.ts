import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

/** The OIP gRPC schema, shared with the gateway: packages/core/proto/oip.proto. */
export const OIP_PROTO_PATH = fileURLToPath(new URL("../../../core/proto/oip.proto", import.meta.url));

/**
 * Loader options: field names as in the proto (snake_case, like the REST JSON), 64-bit integers as decimal strings
 * (no precision loss), bytes as Buffers, `parameter_choice` set on InferParameter.
 */
export const OIP_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

/** Loads the proto and returns the `inference.GRPCInferenceService` definition (server side) and client constructor. */
export function loadOipService(): { service: grpc.ServiceDefinition; Client: grpc.ServiceClientConstructor } {
  const definition = protoLoader.loadSync(OIP_PROTO_PATH, OIP_LOADER_OPTIONS);
  const pkg = grpc.loadPackageDefinition(definition) as unknown as {
    inference: { GRPCInferenceService: grpc.ServiceClientConstructor };
  };
  const Client = pkg.inference.GRPCInferenceService;
  return { service: Client.service, Client };
}
