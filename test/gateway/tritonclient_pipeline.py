"""The outside client of test/gateway/pipeline-grpc.test.ts: NVIDIA tritonclient's HTTP and gRPC clients calling a
pipeline through the Tern gateway, routed by the `seldon-model: <pipeline>.pipeline` header as Seldon's docs show.

    python tritonclient_pipeline.py < request.json  ->  {"rest": answer, "rest_json": answer, "grpc": answer}

request.json: {"http": "host:port", "grpc": "host:port", "pipeline": "p",
               "request_id": "caller id sent as x-request-id",
               "inputs": [{"name", "datatype", "shape", "data": [flat values]}], "outputs": ["name", ...]}
answer: {"model_name", "id", "outputs": {name: {"datatype", "shape", "data": [flat values]}},
         "binary_outputs": [names of the outputs that came as binary data] (REST only)}
     or {"error": {"status": str, "message": str}} when the client raised InferenceServerException.
"rest" is the HTTP client as it comes (binary tensors for inputs and outputs), "rest_json" the same with
binary_data=False for inputs and outputs (REST JSON); gRPC sends raw contents.
"""

import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, triton_to_np_dtype


def tensors(module, spec, binary):
    inputs = []
    for t in spec["inputs"]:
        tensor = module.InferInput(t["name"], t["shape"], t["datatype"])
        data = np.array(t["data"], dtype=triton_to_np_dtype(t["datatype"])).reshape(t["shape"])
        if binary is None:
            tensor.set_data_from_numpy(data)
        else:
            tensor.set_data_from_numpy(data, binary_data=binary)
        inputs.append(tensor)
    if binary is None:
        outputs = [module.InferRequestedOutput(name) for name in spec["outputs"]]
    else:
        outputs = [module.InferRequestedOutput(name, binary_data=binary) for name in spec["outputs"]]
    return inputs, outputs


def answer(result, names, model_name, request_id, binary_outputs=None):
    outputs = {}
    for name in names:
        array = result.as_numpy(name)
        if array is None:
            continue
        outputs[name] = {
            "datatype": str(array.dtype),
            "shape": list(array.shape),
            "data": array.flatten().tolist(),
        }
    out = {"model_name": model_name, "id": request_id, "outputs": outputs}
    if binary_outputs is not None:
        out["binary_outputs"] = binary_outputs
    return out


def call(fn):
    try:
        return fn()
    except InferenceServerException as e:
        return {"error": {"status": str(e.status()), "message": e.message()}}


def rest(spec, binary):
    client = httpclient.InferenceServerClient(url=spec["http"], network_timeout=60.0)
    try:
        inputs, outputs = tensors(httpclient, spec, binary)
        headers = {"seldon-model": f"{spec['pipeline']}.pipeline", "x-request-id": spec["request_id"]}
        result = client.infer(spec["pipeline"], inputs, outputs=outputs, headers=headers)
        response = result.get_response()
        # Outputs that came as binary data after the JSON (their JSON carries binary_data_size instead of data).
        binary_outputs = sorted(
            o["name"] for o in response.get("outputs", []) if "binary_data_size" in o.get("parameters", {})
        )
        return answer(result, spec["outputs"], response.get("model_name"), response.get("id"), binary_outputs)
    finally:
        client.close()


def grpc(spec):
    client = grpcclient.InferenceServerClient(url=spec["grpc"])
    try:
        inputs, outputs = tensors(grpcclient, spec, None)
        headers = {"seldon-model": f"{spec['pipeline']}.pipeline", "x-request-id": spec["request_id"]}
        result = client.infer(spec["pipeline"], inputs, outputs=outputs, headers=headers, client_timeout=60.0)
        response = result.get_response()
        return answer(result, spec["outputs"], response.model_name, response.id)
    finally:
        client.close()


def main():
    spec = json.load(sys.stdin)
    json.dump(
        {
            "rest": call(lambda: rest(spec, None)),
            "rest_json": call(lambda: rest(spec, False)),
            "grpc": call(lambda: grpc(spec)),
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
