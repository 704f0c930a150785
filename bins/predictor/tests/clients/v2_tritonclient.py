"""KServe V2 with the official client (tritonclient[http]) against `predictor serve`.

Usage: v2_tritonclient.py HOST:PORT MODEL INSTANCES_JSON
Checks liveness, readiness, metadata, inference (all outputs, one selected output, a batch) and
that bad requests raise InferenceServerException with the server's message; prints one JSON
document with what it saw for the Rust test to compare against the REST API. Exits non-zero on
the first failed check.
"""
import json
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

url, model, instances_path = sys.argv[1], sys.argv[2], sys.argv[3]
instances = np.array(json.load(open(instances_path)), dtype=np.float32)
client = httpclient.InferenceServerClient(url=url)
# tritonclient sends JSON without a Content-Type; the server must take it as JSON anyway.
report = {}
assert client.is_server_live(), "server not live"
assert client.is_server_ready(), "server not ready"
assert client.is_model_ready(model), "model not ready"
assert not client.is_model_ready("nosuch"), "unknown model reported ready"
report["server_metadata"] = client.get_server_metadata()
report["metadata"] = client.get_model_metadata(model)


def infer(rows, outputs=None, request_id=""):
    inp = httpclient.InferInput("image", list(rows.shape), "FP32")
    inp.set_data_from_numpy(rows, binary_data=False)
    requested = None
    if outputs:
        requested = [httpclient.InferRequestedOutput(o, binary_data=False) for o in outputs]
    return client.infer(model, [inp], outputs=requested, request_id=request_id)


result = infer(instances, request_id="42")
response = result.get_response()
assert response["id"] == "42", response
report["classes"] = result.as_numpy("class").tolist()
report["probabilities"] = result.as_numpy("probabilities").tolist()
report["model_version"] = response.get("model_version")
one = infer(instances[:1], outputs=["class"])
report["selected_outputs"] = [o["name"] for o in one.get_response()["outputs"]]
assert one.as_numpy("probabilities") is None
assert one.as_numpy("class").tolist() == report["classes"][:1]


def error_of(call):
    try:
        call()
    except InferenceServerException as e:
        return {"status": e.status(), "message": e.message()}
    raise AssertionError("the bad request succeeded")


def wrong_dtype():
    inp = httpclient.InferInput("image", [1, 784], "FP64")
    inp.set_data_from_numpy(instances[:1].astype(np.float64), binary_data=False)
    client.infer(model, [inp])


def wrong_shape():
    inp = httpclient.InferInput("image", [1, 783], "FP32")
    inp.set_data_from_numpy(instances[:1, :783], binary_data=False)
    client.infer(model, [inp])


def unknown_model():
    inp = httpclient.InferInput("image", [1, 784], "FP32")
    inp.set_data_from_numpy(instances[:1], binary_data=False)
    client.infer("nosuch", [inp])


def unknown_version():
    inp = httpclient.InferInput("image", [1, 784], "FP32")
    inp.set_data_from_numpy(instances[:1], binary_data=False)
    client.infer(model, [inp], model_version="99")


def binary_data():
    inp = httpclient.InferInput("image", [1, 784], "FP32")
    inp.set_data_from_numpy(instances[:1], binary_data=True)
    client.infer(model, [inp])


report["errors"] = {
    "wrong_dtype": error_of(wrong_dtype),
    "wrong_shape": error_of(wrong_shape),
    "unknown_model": error_of(unknown_model),
    "unknown_version": error_of(unknown_version),
    "unknown_model_metadata": error_of(lambda: client.get_model_metadata("nosuch")),
    "binary_data": error_of(binary_data),
}
print(json.dumps(report))
