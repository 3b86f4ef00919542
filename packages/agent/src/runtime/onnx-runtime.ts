import type { OipDatatype, OipTensor, OipTensorMetadata, TensorData } from "@tern/core";
import { TernError } from "@tern/core";
import ort from "onnxruntime-node";
import type { LoadedModel, LoadOptions, ModelRuntime } from "./model-runtime.js";

// The only file that imports onnxruntime-node.

const ORT_TO_OIP: Partial<Record<string, OipDatatype>> = {
  bool: "BOOL",
  uint8: "UINT8",
  uint16: "UINT16",
  uint32: "UINT32",
  uint64: "UINT64",
  int8: "INT8",
  int16: "INT16",
  int32: "INT32",
  int64: "INT64",
  float16: "FP16",
  float32: "FP32",
  float64: "FP64",
  string: "BYTES",
};

const OIP_TO_ORT: Record<OipDatatype, ort.Tensor.Type> = {
  BOOL: "bool",
  UINT8: "uint8",
  UINT16: "uint16",
  UINT32: "uint32",
  UINT64: "uint64",
  INT8: "int8",
  INT16: "int16",
  INT32: "int32",
  INT64: "int64",
  FP16: "float16",
  FP32: "float32",
  FP64: "float64",
  BYTES: "string",
};

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder();

/** Symbolic or unknown dimensions become -1, the OIP marker for "any size". */
function toOipShape(shape: ReadonlyArray<number | string>): number[] {
  return shape.map((d) => (typeof d === "number" && d >= 0 ? d : -1));
}

function toMetadata(values: readonly ort.InferenceSession.ValueMetadata[], kind: string): OipTensorMetadata[] {
  return values.map((v) => {
    if (!v.isTensor)
      throw new TernError("unsupported", `${kind} "${v.name}" is not a tensor; Tern serves tensor models only`);
    const datatype = ORT_TO_OIP[v.type];
    if (datatype === undefined)
      throw new TernError("unsupported", `${kind} "${v.name}" has ONNX type ${v.type}, which OIP cannot carry`);
    return { name: v.name, datatype, shape: toOipShape(v.shape) };
  });
}

function toOrtTensor(t: OipTensor): ort.Tensor {
  const type = OIP_TO_ORT[t.datatype];
  if (t.datatype === "BYTES") {
    return new ort.Tensor(
      "string",
      (t.data as Uint8Array[]).map((b) => utf8Decoder.decode(b)),
      t.shape,
    );
  }
  return new ort.Tensor(type, t.data as Exclude<TensorData, Uint8Array[]>, t.shape);
}

function fromOrtTensor(name: string, datatype: OipDatatype, value: ort.Tensor): OipTensor {
  const shape = [...value.dims];
  if (datatype === "BYTES") {
    return { name, datatype, shape, data: (value.data as string[]).map((s) => utf8Encoder.encode(s)) };
  }
  let data = value.data as Exclude<TensorData, Uint8Array[]>;
  // ORT may hand back Float16Array-like or Int8 views for some types; normalise to the codec's representation.
  if (datatype === "FP16" && !(data instanceof Uint16Array))
    data = new Uint16Array(data.buffer, data.byteOffset, data.length);
  if (datatype === "BOOL" && !(data instanceof Uint8Array))
    data = Uint8Array.from(data as unknown as ArrayLike<number>);
  return { name, datatype, shape, data };
}

export interface OnnxRuntimeOptions {
  /**
   * Threads ORT uses inside one operator. Tiny models run faster single-threaded, and agents share the machine.
   * A model can override it with the parameter `intra_op_threads`.
   * @default 1
   */
  intraOpThreads?: number;
}

/** The built-in ONNX runtime: server type `tern-onnx`, capability `onnx`. */
export function createOnnxRuntime(options: OnnxRuntimeOptions = {}): ModelRuntime {
  const defaultThreads = options.intraOpThreads ?? 1;
  return {
    serverType: "tern-onnx",
    capabilities: ["onnx"],
    platform: "onnxruntime",
    async load(artifactPath: string, load: LoadOptions): Promise<LoadedModel> {
      const threadsParam = load.parameters.intra_op_threads;
      const threads = threadsParam === undefined ? defaultThreads : Number(threadsParam);
      if (!Number.isInteger(threads) || threads < 0)
        throw new TernError(
          "bad_request",
          `parameter intra_op_threads must be a non-negative integer, got "${threadsParam}"`,
        );
      let session: ort.InferenceSession;
      try {
        session = await ort.InferenceSession.create(artifactPath, {
          intraOpNumThreads: threads,
          interOpNumThreads: 1,
          executionMode: "sequential",
          graphOptimizationLevel: "all",
        });
      } catch (err) {
        const detail = err instanceof Error ? err.message : String(err);
        throw new TernError(
          "bad_request",
          `corrupt or unsupported ONNX model ${artifactPath}: onnxruntime could not load it (${detail})`,
          {
            cause: err,
          },
        );
      }
      let inputs: OipTensorMetadata[];
      let outputs: OipTensorMetadata[];
      try {
        inputs = toMetadata(session.inputMetadata, "input");
        outputs = toMetadata(session.outputMetadata, "output");
      } catch (err) {
        await session.release();
        throw err;
      }
      const outputTypes = new Map(outputs.map((o) => [o.name, o.datatype]));
      return {
        signature: { inputs, outputs },
        async infer(tensors: OipTensor[], wanted: readonly string[]): Promise<OipTensor[]> {
          const feeds: Record<string, ort.Tensor> = {};
          for (const t of tensors) feeds[t.name] = toOrtTensor(t);
          const names = wanted.length > 0 ? [...wanted] : outputs.map((o) => o.name);
          let result: ort.InferenceSession.OnnxValueMapType;
          try {
            result = await session.run(feeds, names);
          } catch (err) {
            // Inputs were checked against the signature, so what is left are value errors (e.g. mismatched dims
            // between two inputs): the caller's to fix.
            const detail = err instanceof Error ? err.message : String(err);
            throw new TernError("bad_request", `model ${load.model} rejected the request: ${detail}`, { cause: err });
          }
          return names.map((name) => fromOrtTensor(name, outputTypes.get(name)!, result[name] as ort.Tensor));
        },
        async unload(): Promise<void> {
          await session.release();
        },
      };
    },
  };
}
