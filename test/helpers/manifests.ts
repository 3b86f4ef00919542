/** Manifests the integration tests apply, in Seldon's format with Tern's ONNX server type. */

/** A Server as in the scaling specification (DESIGN §0), with Tern's ONNX server type. */
export function serverManifest(name: string, replicas: number): string {
  return `apiVersion: mlops.seldon.io/v1alpha1
kind: Server
metadata: {name: ${name}}
spec: {serverConfig: tern-onnx, replicas: ${replicas}}
`;
}

/** The ONNX iris of samples/manifests/iris-onnx.yaml, named `iris` here, with a chosen replica count. */
export function irisManifest(replicas: number): string {
  return `apiVersion: mlops.seldon.io/v1alpha1
kind: Model
metadata: {name: iris}
spec:
  storageUri: "file://./samples/models/iris"
  requirements: [onnx]
  memory: 100Ki
  replicas: ${replicas}
`;
}
