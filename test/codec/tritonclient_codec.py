"""The outside side of test/codec/tritonclient-codec.test.ts: NVIDIA tritonclient's generated protobuf classes
(tritonclient.grpc.service_pb2) writing and reading OIP ModelInferRequest / ModelInferResponse messages.

    python tritonclient_codec.py write < specs.json   # {"<key>": spec}  -> {"<key>": base64 protobuf}
    python tritonclient_codec.py read  < messages.json # {"<key>": {"kind", "bytes": base64}} -> {"<key>": spec}

A spec (JSON, the same shape both ways): {"kind": "request"|"response", "model_name", "model_version", "id",
"parameters": {key: {"kind": "bool"|"int64"|"string"|"double"|"uint64", "value"}}, "raw": bool,
"tensors": [{"name", "datatype", "shape", "parameters", "values", "field"}], "requested": [{"name", "parameters"}]}.
64-bit integers are decimal strings, BYTES elements base64, floats exact (an FP32 value is a float32's value).
`field` is what carried the tensor's data: "raw" or the contents field name (only reported by `read`).
"""

import base64
import json
import sys

import numpy as np
from tritonclient.grpc import service_pb2
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

NUMPY = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
FIELD = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
CHOICE = {"bool": "bool_param", "int64": "int64_param", "string": "string_param", "double": "double_param", "uint64": "uint64_param"}


def element(datatype, value):
    """A spec value as the Python value protobuf and numpy take."""
    if datatype == "BYTES":
        return base64.b64decode(value)
    if datatype in ("INT64", "UINT64"):
        return int(value)
    return value


def set_parameters(target, params):
    for key, p in (params or {}).items():
        value = int(p["value"]) if p["kind"] in ("int64", "uint64") else p["value"]
        setattr(target[key], CHOICE[p["kind"]], value)


def write(spec):
    msg = service_pb2.ModelInferRequest() if spec["kind"] == "request" else service_pb2.ModelInferResponse()
    msg.model_name = spec["model_name"]
    msg.model_version = spec.get("model_version", "")
    msg.id = spec.get("id", "")
    set_parameters(msg.parameters, spec.get("parameters"))
    tensors = msg.inputs if spec["kind"] == "request" else msg.outputs
    raw = msg.raw_input_contents if spec["kind"] == "request" else msg.raw_output_contents
    for t in spec["tensors"]:
        wire = tensors.add()
        wire.name = t["name"]
        wire.datatype = t["datatype"]
        wire.shape.extend(t["shape"])
        set_parameters(wire.parameters, t.get("parameters"))
        values = [element(t["datatype"], v) for v in t["values"]]
        if spec["raw"]:
            if t["datatype"] == "BYTES":
                # Triton's own serializer: each element with a 4-byte little-endian length prefix.
                raw.append(serialize_byte_tensor(np.array(values, dtype=np.object_)).item())
            else:
                raw.append(np.array(values, dtype=NUMPY[t["datatype"]]).tobytes())
        else:
            getattr(wire.contents, FIELD[t["datatype"]]).extend(values)
    for o in spec.get("requested", []):
        wire = msg.outputs.add()
        wire.name = o["name"]
        set_parameters(wire.parameters, o.get("parameters"))
    return base64.b64encode(msg.SerializeToString()).decode()


def get_parameters(params):
    out = {}
    for key, p in params.items():
        choice = p.WhichOneof("parameter_choice")
        kind = choice[: -len("_param")]
        value = getattr(p, choice)
        out[key] = {"kind": kind, "value": str(value) if kind in ("int64", "uint64") else value}
    return out


def plain(datatype, value):
    """A numpy or protobuf element as a spec value."""
    if datatype == "BYTES":
        return base64.b64encode(bytes(value)).decode()
    if datatype in ("INT64", "UINT64"):
        return str(int(value))
    if datatype == "BOOL":
        return bool(value)
    if datatype in ("FP16", "FP32", "FP64"):
        return float(value)
    return int(value)


def read(kind, data):
    msg = service_pb2.ModelInferRequest() if kind == "request" else service_pb2.ModelInferResponse()
    msg.ParseFromString(base64.b64decode(data))
    tensors = msg.inputs if kind == "request" else msg.outputs
    raw = msg.raw_input_contents if kind == "request" else msg.raw_output_contents
    spec = {"kind": kind, "model_name": msg.model_name, "model_version": msg.model_version, "id": msg.id}
    spec["parameters"] = get_parameters(msg.parameters)
    spec["raw"] = len(raw) > 0
    spec["tensors"] = []
    for i, t in enumerate(tensors):
        if len(raw) > 0:
            if t.datatype == "BYTES":
                values = deserialize_bytes_tensor(raw[i])
            else:
                values = np.frombuffer(raw[i], dtype=NUMPY[t.datatype])
            field = "raw"
        else:
            field = FIELD[t.datatype]
            values = getattr(t.contents, field)
        spec["tensors"].append(
            {
                "name": t.name,
                "datatype": t.datatype,
                "shape": list(t.shape),
                "parameters": get_parameters(t.parameters),
                "values": [plain(t.datatype, v) for v in values],
                "field": field,
            }
        )
    if kind == "request":
        spec["requested"] = [{"name": o.name, "parameters": get_parameters(o.parameters)} for o in msg.outputs]
    return spec


def main():
    mode = sys.argv[1]
    given = json.load(sys.stdin)
    if mode == "write":
        out = {key: write(spec) for key, spec in given.items()}
    else:
        out = {key: read(m["kind"], m["bytes"]) for key, m in given.items()}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
