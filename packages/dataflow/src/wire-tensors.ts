import {
  decodeModelInferRequest,
  decodeModelInferResponse,
  elementCount,
  encodeModelInferRequest,
  encodeModelInferResponse,
  type InferTensor,
  type OipTensor,
  type TensorData,
  TernError,
  tensorsFromOip,
  tensorsToOip,
} from "@tern/core";

/**
 * Tensors as they travel through a pipeline: the wire form of the OIP protobuf messages, so that a tensor read from
 * one record is written to the next without decoding its data — raw bytes stay views of the record they came in
 * (kafkajs keeps a fetched record's buffer alive while a view of it is held), typed `contents` stay typed arrays.
 * Only batching (concatenating and splitting along the first dimension) looks at the data.
 */

/** One tensor: its wire description, and its bytes when the message carried them in `raw_*_contents`. */
export interface WireTensor {
  tensor: InferTensor;
  raw?: Uint8Array;
}

/** A record's tensors by name, in the record's order. */
export type WireTensors = Map<string, WireTensor>;

/**
 * The tensors of a record value: a `ModelInferRequest` on an inputs topic, a `ModelInferResponse` on an outputs topic.
 * @throws TernError `bad_request` when the value is not such a message or its raw contents do not match its tensors.
 */
export function decodeTensors(value: Uint8Array, kind: "request" | "response"): WireTensors {
  let tensors: InferTensor[];
  let raw: Uint8Array[] | undefined;
  if (kind === "request") {
    const message = decodeModelInferRequest(value);
    tensors = message.inputs;
    raw = message.raw_input_contents;
  } else {
    const message = decodeModelInferResponse(value);
    tensors = message.outputs;
    raw = message.raw_output_contents;
  }
  if (raw !== undefined && raw.length !== tensors.length) {
    const field = kind === "request" ? "raw_input_contents" : "raw_output_contents";
    throw new TernError("bad_request", `${field} has ${raw.length} entries but there are ${tensors.length} tensors`);
  }
  const out: WireTensors = new Map();
  tensors.forEach((tensor, i) => {
    if (out.has(tensor.name)) return; // the first of two tensors with one name wins, as in a join
    out.set(tensor.name, raw === undefined ? { tensor } : { tensor, raw: raw[i]! });
  });
  return out;
}

/**
 * The message's tensor list and raw contents for `tensors` (named by the map's keys, the names a stage passes them
 * on under). All raw when every tensor came raw, all typed when none did; a mix (OIP forbids one) is made all raw, which
 * decodes only the typed ones.
 */
function wireLists(tensors: ReadonlyMap<string, WireTensor>, side: "input" | "output") {
  const list: InferTensor[] = [];
  let rawCount = 0;
  for (const w of tensors.values()) if (w.raw !== undefined) rawCount++;
  const raw: Uint8Array[] | undefined = rawCount === 0 ? undefined : [];
  for (const [name, w] of tensors) {
    const renamed = w.tensor.name === name ? w.tensor : { ...w.tensor, name };
    if (raw === undefined) {
      list.push(renamed);
    } else if (w.raw !== undefined) {
      list.push(renamed);
      raw.push(w.raw);
    } else {
      const [oip] = tensorsToOip(side, [renamed]);
      const {
        tensors: [wire],
        raw: [bytes] = [],
      } = tensorsFromOip([oip!], true);
      list.push(wire!);
      raw.push(bytes!);
    }
  }
  return { list, raw };
}

/** A `ModelInferRequest` carrying `tensors`. */
export function encodeRequest(model: string, id: string, tensors: ReadonlyMap<string, WireTensor>): Uint8Array {
  const { list, raw } = wireLists(tensors, "input");
  return encodeModelInferRequest({
    model_name: model,
    id,
    inputs: list,
    ...(raw === undefined ? {} : { raw_input_contents: raw }),
  });
}

/** A `ModelInferResponse` carrying `tensors`. */
export function encodeResponse(model: string, id: string, tensors: ReadonlyMap<string, WireTensor>): Uint8Array {
  const { list, raw } = wireLists(tensors, "output");
  return encodeModelInferResponse({
    model_name: model,
    id,
    outputs: list,
    ...(raw === undefined ? {} : { raw_output_contents: raw }),
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Batching: several requests' tensors as one, along the first dimension, and back.

/**
 * What must agree for requests to share a model call: the tensor names in order, each tensor's datatype and every
 * dimension after the first. Undefined when the request cannot be batched (a tensor without dimensions, or tensors
 * whose first dimensions differ): it then goes to the model alone.
 */
export function batchSignature(tensors: ReadonlyMap<string, WireTensor>): { key: string; rows: number } | undefined {
  let rows: number | undefined;
  const parts: string[] = [];
  for (const [name, w] of tensors) {
    const shape = w.tensor.shape;
    if (shape.length === 0) return undefined;
    if (rows === undefined) rows = shape[0]!;
    else if (shape[0] !== rows) return undefined;
    parts.push(`${name}\u0000${w.tensor.datatype}\u0000${shape.slice(1).join(",")}`);
  }
  if (rows === undefined) return undefined;
  return { key: parts.join("\u0001"), rows };
}

function oipOf(name: string, w: WireTensor, side: "input" | "output"): OipTensor {
  const renamed = w.tensor.name === name ? w.tensor : { ...w.tensor, name };
  return tensorsToOip(side, [renamed], w.raw === undefined ? [] : [w.raw])[0]!;
}

function concatData(parts: TensorData[]): TensorData {
  const first = parts[0]!;
  if (Array.isArray(first)) return (parts as Uint8Array[][]).flat();
  const total = parts.reduce((n, p) => n + (p as ArrayLike<unknown>).length, 0);
  const Type = first.constructor as new (length: number) => Exclude<TensorData, Uint8Array[]>;
  const out = new Type(total);
  let at = 0;
  for (const p of parts as Exclude<TensorData, Uint8Array[]>[]) {
    (out as unknown as { set(a: ArrayLike<unknown>, at: number): void }).set(p as ArrayLike<unknown>, at);
    at += p.length;
  }
  return out;
}

function sliceData(data: TensorData, from: number, to: number): TensorData {
  return Array.isArray(data) ? data.slice(from, to) : data.subarray(from, to);
}

function toWire(oip: OipTensor): WireTensor {
  const { tensors, raw } = tensorsFromOip([oip], true);
  return { tensor: tensors[0]!, raw: raw![0]! };
}

/**
 * One request's worth of tensors out of several with the same {@link batchSignature}: each tensor is the members'
 * tensors of that name concatenated along the first dimension, in member order. Sent as raw contents.
 * @throws TernError `bad_request` when a tensor's data does not match its shape.
 */
export function concatBatch(members: ReadonlyMap<string, WireTensor>[]): WireTensors {
  const out: WireTensors = new Map();
  for (const name of members[0]!.keys()) {
    const parts = members.map((m) => oipOf(name, m.get(name)!, "input"));
    const first = parts[0]!;
    const rows = parts.reduce((n, p) => n + p.shape[0]!, 0);
    out.set(
      name,
      toWire({
        name,
        datatype: first.datatype,
        shape: [rows, ...first.shape.slice(1)],
        data: concatData(parts.map((p) => p.data)),
      }),
    );
  }
  return out;
}

/**
 * Splits a batched message's tensors back into one set per member, by the members' row counts (in member order):
 * member i gets rows [sum of earlier rows, + rows_i) of every tensor.
 * @throws TernError `bad_request` naming the tensor when its first dimension is not the sum of the rows.
 */
export function splitBatch(tensors: WireTensors, rows: readonly number[], side: "input" | "output"): WireTensors[] {
  const total = rows.reduce((n, r) => n + r, 0);
  const out = rows.map((): WireTensors => new Map());
  for (const [name, w] of tensors) {
    const oip = oipOf(name, w, side);
    if (oip.shape.length === 0 || oip.shape[0] !== total) {
      throw new TernError(
        "bad_request",
        `${side} "${name}" has shape [${oip.shape.join(",")}], but the batch has ${total} rows`,
      );
    }
    const perRow = total === 0 ? 0 : elementCount(oip.shape) / total;
    let row = 0;
    rows.forEach((n, i) => {
      const shape = [n, ...oip.shape.slice(1)];
      const data = sliceData(oip.data, row * perRow, (row + n) * perRow);
      out[i]!.set(
        name,
        toWire({
          name,
          datatype: oip.datatype,
          shape,
          data,
          ...(oip.parameters ? { parameters: oip.parameters } : {}),
        }),
      );
      row += n;
    });
  }
  return out;
}
