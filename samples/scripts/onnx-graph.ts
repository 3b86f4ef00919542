/**
 * A few helpers for writing small ONNX graphs by hand with the `onnx-proto` message classes. Only what the sample
 * models need: FP32/INT64 tensors, value infos with symbolic dims, nodes with int/graph attributes.
 */
import onnxProto from "onnx-proto";

const { onnx } = onnxProto;

export { onnx };

/** Opset 13: Softmax/ArgMax/ReduceSum semantics used below are the opset-13 ones (ReduceSum takes axes as an input). */
export const OPSET = 13;
/** IR version 7 pairs with opset 13 and loads in every onnxruntime release since 1.6. */
export const IR_VERSION = 7;

export type ElemType = "FLOAT" | "INT64" | "BOOL";

const ELEM: Record<ElemType, number> = {
  FLOAT: onnx.TensorProto.DataType.FLOAT,
  INT64: onnx.TensorProto.DataType.INT64,
  BOOL: onnx.TensorProto.DataType.BOOL,
};

/** A graph input/output. A string dim is symbolic (dynamic, reported as -1 by the agent). */
export function valueInfo(
  name: string,
  elem: ElemType,
  dims: Array<number | string>,
): InstanceType<typeof onnx.ValueInfoProto> {
  return onnx.ValueInfoProto.create({
    name,
    type: {
      tensorType: {
        elemType: ELEM[elem],
        shape: { dim: dims.map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d })) },
      },
    },
  });
}

export function floatTensor(name: string, dims: number[], values: number[]): InstanceType<typeof onnx.TensorProto> {
  return onnx.TensorProto.create({ name, dims, dataType: ELEM.FLOAT, floatData: values });
}

export function int64Tensor(name: string, dims: number[], values: number[]): InstanceType<typeof onnx.TensorProto> {
  return onnx.TensorProto.create({ name, dims, dataType: ELEM.INT64, int64Data: values });
}

type Attr = number | InstanceType<typeof onnx.GraphProto>;

export function node(
  opType: string,
  inputs: string[],
  outputs: string[],
  attributes: Record<string, Attr> = {},
): InstanceType<typeof onnx.NodeProto> {
  const attribute = Object.entries(attributes).map(([name, value]) =>
    typeof value === "number"
      ? onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.INT, i: value })
      : onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.GRAPH, g: value }),
  );
  return onnx.NodeProto.create({ opType, input: inputs, output: outputs, name: `${opType}_${outputs[0]}`, attribute });
}

export interface GraphOptions {
  name: string;
  nodes: InstanceType<typeof onnx.NodeProto>[];
  inputs: InstanceType<typeof onnx.ValueInfoProto>[];
  outputs: InstanceType<typeof onnx.ValueInfoProto>[];
  initializers?: InstanceType<typeof onnx.TensorProto>[];
  docString?: string;
}

export function graph(options: GraphOptions): InstanceType<typeof onnx.GraphProto> {
  return onnx.GraphProto.create({
    name: options.name,
    node: options.nodes,
    input: options.inputs,
    output: options.outputs,
    initializer: options.initializers ?? [],
    docString: options.docString ?? "",
  });
}

/** Serialises a model; the bytes are deterministic for the same graph (no timestamps are written). */
export function encodeModel(g: InstanceType<typeof onnx.GraphProto>, docString: string): Uint8Array {
  const model = onnx.ModelProto.create({
    irVersion: IR_VERSION,
    producerName: "tern-samples",
    producerVersion: "1",
    docString,
    opsetImport: [{ domain: "", version: OPSET }],
    graph: g,
  });
  return onnx.ModelProto.encode(model).finish();
}
