//! TF Serving's gRPC API on `predictor serve --grpc-port`, with the official client
//! (`tensorflow-serving-api` in `$PYTHON`'s environment, driven by tests/clients/tf_serving_grpc.py):
//! predictions with tensor_content and float_val equal the REST API's for the same instances, a
//! 10,000-instance request passes, metadata and status describe the model, and every bad request
//! gets TF Serving's status code and message while the server keeps serving.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::serve_support::*;

/// The largest gRPC message the test server takes: above the 10,000-instance request (31 MB).
const MAX_MESSAGE: &str = "40000000";

#[tokio::test(flavor = "multi_thread")]
async fn grpc_official_tensorflow_serving_api() {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| {
        workspace_root()
            .join(".venv/bin/python")
            .to_string_lossy()
            .into_owned()
    });
    let model = format!("mnist={}", fixture("tf1-tutorial").display());
    let server = Server::start(
        &[
            "--registry",
            "memory://grpc-test",
            "--model",
            &model,
            "--grpc-port",
            "0",
            "--grpc-max-message-bytes",
            MAX_MESSAGE,
        ],
        &[],
    );
    let grpc = server.grpc.clone().expect("no gRPC address printed");
    assert!(grpc.starts_with("127.0.0.1:"), "{grpc}");
    let started = Instant::now();
    while server.get("/v2/health/ready").await.0 != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never ready\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rows = sample_instances();
    let (classes, probabilities) = crate::serve_v2::rest_answers(&server, &rows).await;
    let probabilities: Vec<Vec<f32>> = probabilities
        .iter()
        .map(|row| row.iter().map(|&x| x as f32).collect())
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let instances = dir.path().join("instances.json");
    std::fs::write(&instances, Value::Array(rows.clone()).to_string()).unwrap();
    let script = workspace_root().join("bins/predictor/tests/clients/tf_serving_grpc.py");
    let output = Command::new(&python)
        .arg(&script)
        .args([
            grpc.as_str(),
            "mnist",
            instances.to_str().unwrap(),
            MAX_MESSAGE,
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        output.status.success(),
        "tensorflow-serving-api script failed:\n{}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        server.log()
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = json(stdout.lines().last().unwrap_or_default());

    assert_eq!(report["classes"], json!(classes));
    let got: Vec<Vec<f32>> = serde_json::from_value(report["probabilities"].clone()).unwrap();
    assert_eq!(got, probabilities);
    assert_eq!(
        report["model_spec"],
        json!({"name": "mnist", "version": 1, "signature_name": "serving_default"})
    );
    assert_eq!(
        report["answer_fields"],
        json!(["dtype", "float_val", "tensor_shape"])
    );
    assert_eq!(report["float_val_classes"], json!(classes));
    assert_eq!(report["filtered_outputs"], json!(["class"]));
    assert_eq!(report["pinned_version"], 1);
    assert!(
        report["many_request_bytes"].as_u64().unwrap() > 4 << 20,
        "{report}"
    );
    assert_eq!(report["many_count"], 10_000);
    assert_eq!(report["many_match"], true);

    let metadata = &report["metadata"];
    assert_eq!(
        metadata["model_spec"],
        json!({"name": "mnist", "version": 1})
    );
    assert!(
        metadata["signatures"]
            .as_array()
            .unwrap()
            .contains(&json!("serving_default")),
        "{metadata}"
    );
    // DT_FLOAT (1), any number of rows of 784.
    assert_eq!(
        metadata["inputs"],
        json!({"image": {"dtype": 1, "shape": [-1, 784]}})
    );
    assert_eq!(metadata["outputs"], json!(["class", "probabilities"]));
    assert_eq!(metadata["method_name"], "tensorflow/serving/predict");
    assert_eq!(
        report["status"],
        json!([{"version": 1, "state": "AVAILABLE", "error_code": 0}])
    );

    let errors = &report["errors"];
    let error = |name: &str| {
        let e = &errors[name];
        (
            e["code"].as_str().unwrap_or_default().to_string(),
            e["message"].as_str().unwrap_or_default().to_string(),
        )
    };
    assert_eq!(
        error("unknown_model"),
        (
            "NOT_FOUND".into(),
            "Servable not found for request: Latest(nosuch)".into()
        )
    );
    assert_eq!(
        error("unknown_version"),
        (
            "NOT_FOUND".into(),
            "Servable not found for request: Specific(mnist, 99)".into()
        )
    );
    let (code, message) = error("wrong_dtype");
    assert_eq!(code, "INVALID_ARGUMENT");
    assert!(
        message.contains("image") && message.contains("DT_DOUBLE"),
        "{message}"
    );
    let (code, message) = error("wrong_shape");
    assert_eq!(code, "INVALID_ARGUMENT");
    assert!(
        message.contains("[1, 783]") && message.contains("[-1, 784]"),
        "{message}"
    );
    let (code, message) = error("wrong_input_name");
    assert_eq!(code, "INVALID_ARGUMENT");
    assert!(
        message.contains("Sent extra: {pixels}")
            && message.contains("Missing but required: {image}"),
        "{message}"
    );
    let (code, message) = error("unknown_output");
    assert_eq!(code, "INVALID_ARGUMENT");
    assert!(
        message.starts_with("output tensor alias not found in signature: nosuch"),
        "{message}"
    );
    assert_eq!(
        error("missing_model_spec"),
        ("INVALID_ARGUMENT".into(), "Missing ModelSpec".into())
    );
    let (code, message) = error("oversized");
    assert_eq!(code, "RESOURCE_EXHAUSTED");
    assert!(
        message.starts_with("Received message larger than max (")
            && message.ends_with(" vs. 40000000)"),
        "{message}"
    );
    // gRPC's status-code guide, which tonic follows: a message that does not parse is INTERNAL.
    let (code, message) = error("malformed");
    assert_eq!(code, "INTERNAL", "{message}");
    assert!(
        message.starts_with("failed to decode Protobuf message"),
        "{message}"
    );
    assert_eq!(
        error("metadata_without_field"),
        (
            "INVALID_ARGUMENT".into(),
            "GetModelMetadataRequest must specify at least one metadata_field".into()
        )
    );
    let (code, message) = error("status_unknown_model");
    assert_eq!(code, "NOT_FOUND");
    assert!(message.contains("nosuch"), "{message}");
    assert_eq!(report["after_errors"], json!(classes[..1]));
}
