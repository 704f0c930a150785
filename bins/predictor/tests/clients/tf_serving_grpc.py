"""TF Serving's gRPC API with the official client (tensorflow-serving-api) against `predictor serve`.

Usage: tf_serving_grpc.py HOST:PORT MODEL INSTANCES_JSON MAX_MESSAGE_BYTES
Predicts with tensor_content (tf.make_tensor_proto, the usual client), with float_val, with a pinned
version and an output filter, with 10,000 instances (a message over gRPC's 4 MB default), reads
GetModelMetadata and GetModelStatus, and sends bad requests (unknown model and version, wrong dtype
and shape, a message over MAX_MESSAGE_BYTES, malformed protobuf, missing fields), recording each
status code and message. Prints one JSON document for the Rust test to check against the REST API;
exits non-zero on the first failed check.
"""
import json
import sys

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

address, model, instances_path, max_message = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
instances = np.array(json.load(open(instances_path)), dtype=np.float32)
options = [("grpc.max_receive_message_length", 256 << 20), ("grpc.max_send_message_length", 256 << 20)]
channel = grpc.insecure_channel(address, options=options)
predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)
models = model_service_pb2_grpc.ModelServiceStub(channel)
report = {}


def request(rows=None, name=model, version=None, outputs=()):
    req = predict_pb2.PredictRequest()
    req.model_spec.name = name
    req.model_spec.signature_name = "serving_default"
    if version is not None:
        req.model_spec.version.value = version
    if rows is not None:
        req.inputs["image"].CopyFrom(tf.make_tensor_proto(rows))
    req.output_filter.extend(outputs)
    return req


# tensor_content: what tf.make_tensor_proto writes for an array.
req = request(instances)
assert req.inputs["image"].tensor_content, "make_tensor_proto did not use tensor_content"
resp = predictions.Predict(req, timeout=60)
report["classes"] = tf.make_ndarray(resp.outputs["class"]).tolist()
report["probabilities"] = tf.make_ndarray(resp.outputs["probabilities"]).tolist()
report["model_spec"] = {
    "name": resp.model_spec.name,
    "version": resp.model_spec.version.value,
    "signature_name": resp.model_spec.signature_name,
}
# TF Serving answers in the typed fields, not tensor_content.
report["answer_fields"] = sorted(f.name for f, _ in resp.outputs["probabilities"].ListFields())

# float_val: the typed field, filled in by hand.
req = request()
tensor = req.inputs["image"]
tensor.dtype = tf.float32.as_datatype_enum
tensor.tensor_shape.dim.add().size = instances.shape[0]
tensor.tensor_shape.dim.add().size = instances.shape[1]
tensor.float_val.extend(instances.flatten().tolist())
resp = predictions.Predict(req, timeout=60)
report["float_val_classes"] = tf.make_ndarray(resp.outputs["class"]).tolist()

# A pinned version and an output filter.
resp = predictions.Predict(request(instances[:1], version=1, outputs=["class"]), timeout=60)
report["filtered_outputs"] = sorted(resp.outputs.keys())
report["pinned_version"] = resp.model_spec.version.value

# 10,000 instances: a request of 31 MB, far over gRPC's 4 MB default.
many = np.tile(instances, (10_000 // len(instances) + 1, 1))[:10_000]
req = request(many)
report["many_request_bytes"] = req.ByteSize()
resp = predictions.Predict(req, timeout=300)
many_classes = tf.make_ndarray(resp.outputs["class"]).tolist()
report["many_count"] = len(many_classes)
expected = (report["classes"] * (10_000 // len(instances) + 1))[:10_000]
report["many_match"] = many_classes == expected

meta_req = get_model_metadata_pb2.GetModelMetadataRequest()
meta_req.model_spec.name = model
meta_req.metadata_field.append("signature_def")
meta = predictions.GetModelMetadata(meta_req, timeout=60)
signatures = get_model_metadata_pb2.SignatureDefMap()
assert meta.metadata["signature_def"].Unpack(signatures), meta.metadata["signature_def"].type_url
default = signatures.signature_def["serving_default"]
report["metadata"] = {
    "model_spec": {"name": meta.model_spec.name, "version": meta.model_spec.version.value},
    "signatures": sorted(signatures.signature_def.keys()),
    "inputs": {
        k: {"dtype": v.dtype, "shape": [d.size for d in v.tensor_shape.dim]}
        for k, v in default.inputs.items()
    },
    "outputs": sorted(default.outputs.keys()),
    "method_name": default.method_name,
}

status_req = get_model_status_pb2.GetModelStatusRequest()
status_req.model_spec.name = model
status = models.GetModelStatus(status_req, timeout=60)
report["status"] = [
    {
        "version": s.version,
        "state": get_model_status_pb2.ModelVersionStatus.State.Name(s.state),
        "error_code": int(s.status.error_code),
    }
    for s in status.model_version_status
]


def error_of(call):
    try:
        call()
    except grpc.RpcError as e:
        return {"code": e.code().name, "message": e.details()}
    raise AssertionError("the bad request succeeded")


def wrong_dtype():
    predictions.Predict(request(instances[:1].astype(np.float64)), timeout=60)


def wrong_shape():
    predictions.Predict(request(instances[:1, :783]), timeout=60)


def wrong_input_name():
    req = request()
    req.inputs["pixels"].CopyFrom(tf.make_tensor_proto(instances[:1]))
    predictions.Predict(req, timeout=60)


def oversized():
    rows = max_message // (784 * 4) + 100
    predictions.Predict(request(np.zeros((rows, 784), np.float32)), timeout=120)


def malformed():
    # Bytes that are no PredictRequest: field 1 (model_spec) claims 100 bytes, 2 follow.
    raw = channel.unary_unary(
        "/tensorflow.serving.PredictionService/Predict",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    raw(b"\x0a\x64\x0a\x01", timeout=60)


def metadata_without_field():
    req = get_model_metadata_pb2.GetModelMetadataRequest()
    req.model_spec.name = model
    predictions.GetModelMetadata(req, timeout=60)


def status_unknown_model():
    req = get_model_status_pb2.GetModelStatusRequest()
    req.model_spec.name = "nosuch"
    models.GetModelStatus(req, timeout=60)


report["errors"] = {
    "unknown_model": error_of(lambda: predictions.Predict(request(instances[:1], name="nosuch"), timeout=60)),
    "unknown_version": error_of(lambda: predictions.Predict(request(instances[:1], version=99), timeout=60)),
    "wrong_dtype": error_of(wrong_dtype),
    "wrong_shape": error_of(wrong_shape),
    "wrong_input_name": error_of(wrong_input_name),
    "unknown_output": error_of(lambda: predictions.Predict(request(instances[:1], outputs=["nosuch"]), timeout=60)),
    "missing_model_spec": error_of(lambda: predictions.Predict(predict_pb2.PredictRequest(), timeout=60)),
    "oversized": error_of(oversized),
    "malformed": error_of(malformed),
    "metadata_without_field": error_of(metadata_without_field),
    "status_unknown_model": error_of(status_unknown_model),
}
# The server is still there after every error.
resp = predictions.Predict(request(instances[:1]), timeout=60)
report["after_errors"] = tf.make_ndarray(resp.outputs["class"]).tolist()
print(json.dumps(report))
