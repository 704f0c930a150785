//! KServe V2 / Open Inference Protocol on `predictor serve`: health, metadata, readiness and
//! inference over raw HTTP, each bad input with V2's `{"error": …}` shape and its status, and the
//! official client (`tritonclient[http]`, from `$PYTHON`'s environment) end to end. Answers must
//! equal the TF Serving REST API's for the same instances.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::serve_support::*;

fn tutorial() -> String {
    fixture("tf1-tutorial").to_str().unwrap().to_string()
}

async fn ready_server(args: &[&str]) -> Server {
    let mut all = vec!["--registry", "memory://v2-test"];
    all.extend_from_slice(args);
    let server = Server::start(&all, &[]);
    let started = Instant::now();
    loop {
        let (status, _) = server.get("/v2/health/ready").await;
        if status == 200 {
            return server;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never ready\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn infer_body(rows: &[Value], datatype: &str, width: usize) -> String {
    let data: Vec<Value> = rows.to_vec();
    json!({
        "id": "req-1",
        "inputs": [{"name": "image", "shape": [rows.len(), width], "datatype": datatype, "data": data}],
    })
    .to_string()
}

/// REST row-format predictions for the same rows, as `(classes, probabilities)`.
pub(crate) async fn rest_answers(server: &Server, rows: &[Value]) -> (Vec<i64>, Vec<Vec<f64>>) {
    let (status, body) = server
        .post(
            "/v1/models/mnist:predict",
            json!({ "instances": rows }).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let predictions = json(&body)["predictions"].as_array().unwrap().clone();
    let classes = predictions
        .iter()
        .map(|p| p["class"].as_i64().unwrap())
        .collect();
    let probabilities = predictions
        .iter()
        .map(|p| {
            p["probabilities"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect();
    (classes, probabilities)
}

#[tokio::test(flavor = "multi_thread")]
async fn v2_health_metadata_and_infer_match_rest() {
    let model = format!("mnist={}", tutorial());
    let server = ready_server(&["--model", &model]).await;
    let (status, body) = server.get("/v2/health/live").await;
    assert_eq!((status, json(&body)), (200, json!({"live": true})));
    let (status, body) = server.get("/v2/health/ready").await;
    assert_eq!((status, json(&body)), (200, json!({"ready": true})));
    let (status, body) = server.get("/v2/models/mnist/ready").await;
    assert_eq!(
        (status, json(&body)),
        (200, json!({"name": "mnist", "ready": true}))
    );
    let (status, body) = server.get("/v2/models/mnist/versions/1/ready").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.get("/v2/models/mnist").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        json(&body),
        json!({
            "name": "mnist",
            "versions": ["1"],
            "platform": "tensorflow_savedmodel",
            "inputs": [{"name": "image", "datatype": "FP32", "shape": [-1, 784]}],
            "outputs": [
                {"name": "class", "datatype": "INT64", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}
            ]
        })
    );

    let rows = sample_instances();
    let (classes, probabilities) = rest_answers(&server, &rows).await;
    // TensorFlow's exported tutorial model: right on all but the ninth sample image.
    assert_eq!(classes[..8], SAMPLE_LABELS[..8]);
    let (status, body) = server
        .post("/v2/models/mnist/infer", infer_body(&rows, "FP32", 784))
        .await;
    assert_eq!(status, 200, "{body}");
    let answer = json(&body);
    assert_eq!(answer["model_name"], "mnist");
    assert_eq!(answer["model_version"], "1");
    assert_eq!(answer["id"], "req-1");
    let outputs = answer["outputs"].as_array().unwrap();
    assert_eq!(outputs[0]["name"], "class");
    assert_eq!(outputs[0]["shape"], json!([rows.len()]));
    let v2_classes: Vec<i64> = outputs[0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_i64().unwrap())
        .collect();
    assert_eq!(v2_classes, classes);
    assert_eq!(outputs[1]["datatype"], "FP32");
    assert_eq!(outputs[1]["shape"], json!([rows.len(), 10]));
    let flat: Vec<f64> = probabilities.concat();
    let v2_flat: Vec<f64> = outputs[1]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    // The same float32 values, printed by two writers: equal as float32.
    let as_f32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
    assert_eq!(as_f32(&v2_flat), as_f32(&flat));

    // Nested data, one selected output, a version by number: single-instance requests go through
    // the batcher like REST rows and must give the same answer.
    let nested = json!({
        "inputs": [{"name": "image", "shape": [1, 784], "datatype": "FP32", "data": [rows[0].clone()]}],
        "outputs": [{"name": "class"}],
    });
    let (status, body) = server
        .post("/v2/models/mnist/versions/1/infer", nested.to_string())
        .await;
    assert_eq!(status, 200, "{body}");
    let answer = json(&body);
    assert_eq!(answer["outputs"].as_array().unwrap().len(), 1);
    assert_eq!(answer["outputs"][0]["data"], json!([classes[0]]));
}

#[tokio::test(flavor = "multi_thread")]
async fn v2_bad_requests_get_v2_errors() {
    let model = format!("mnist={}", tutorial());
    let server = ready_server(&["--model", &model, "--max-body-bytes", "20000"]).await;
    let rows = sample_instances();
    let short: Vec<Value> = vec![Value::Array(rows[0].as_array().unwrap()[..783].to_vec())];
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "/v2/models/mnist/infer",
            infer_body(&rows[..1], "FP64", 784),
            400,
            "input \"image\" has datatype FP64, but the model expects FP32",
        ),
        (
            "/v2/models/mnist/infer",
            infer_body(&short, "FP32", 783),
            400,
            "input \"image\" has shape [1, 783], but the model expects [-1, 784] (-1: any size)",
        ),
        (
            "/v2/models/mnist/infer",
            infer_body(&short, "FP32", 784),
            400,
            "input \"image\" has 783 elements in \"data\", but shape [1, 784] needs 784",
        ),
        (
            "/v2/models/nosuch/infer",
            infer_body(&rows[..1], "FP32", 784),
            404,
            "Model with name nosuch does not exist.",
        ),
        (
            "/v2/models/mnist/versions/7/infer",
            infer_body(&rows[..1], "FP32", 784),
            404,
            "Model mnist has no available version 7.",
        ),
        (
            "/v2/models/mnist/infer",
            "{\"inputs\": [".to_string(),
            400,
            "invalid JSON in the request body",
        ),
        (
            "/v2/models/mnist/infer",
            infer_body(&rows, "FP32", 784),
            413,
            "Request payload size exceeds the limit: 20000 bytes.",
        ),
    ];
    for (path, body, want_status, want_message) in cases {
        let (status, answer) = server.post(path, body).await;
        assert_eq!(status, want_status, "{path}: {answer}");
        let message = error_of(&answer);
        assert!(
            message.starts_with(want_message),
            "{path}: {message:?} does not start with {want_message:?}"
        );
    }
    let (status, body) = server.get("/v2/models/nosuch").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(error_of(&body), "Model with name nosuch does not exist.");
    let (status, body) = server.get("/v2/models/mnist/nonsense").await;
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).starts_with("Malformed request: GET"));
    // Still serving after all that.
    let (status, body) = server
        .post(
            "/v2/models/mnist/infer",
            infer_body(&rows[..1], "FP32", 784),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn v2_readiness_waits_for_every_model() {
    let dir = tempfile::tempdir().unwrap();
    // A folder that never holds a SavedModel: the model is configured but can never serve.
    std::fs::create_dir_all(dir.path().join("empty")).unwrap();
    let good = format!("mnist={}", tutorial());
    let bad = format!("broken={}", dir.path().join("empty").display());
    let server = Server::start(
        &[
            "--registry",
            "memory://v2-ready",
            "--model",
            &good,
            "--model",
            &bad,
        ],
        &[],
    );
    let started = Instant::now();
    loop {
        let (status, _) = server.get("/v2/models/mnist/ready").await;
        if status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = server.get("/v2/health/ready").await;
    assert_eq!((status, json(&body)), (503, json!({"ready": false})));
    let (status, body) = server.get("/v2/models/broken/ready").await;
    assert_eq!(
        (status, json(&body)),
        (503, json!({"name": "broken", "ready": false}))
    );
    let (status, body) = server.get("/v2/health/live").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn v2_official_tritonclient() {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| {
        workspace_root()
            .join(".venv/bin/python")
            .to_string_lossy()
            .into_owned()
    });
    let model = format!("mnist={}", tutorial());
    let server = ready_server(&["--model", &model]).await;
    let rows = sample_instances();
    let (classes, probabilities) = rest_answers(&server, &rows).await;
    let dir = tempfile::tempdir().unwrap();
    let instances = dir.path().join("instances.json");
    std::fs::write(&instances, Value::Array(rows.clone()).to_string()).unwrap();
    let script = workspace_root().join("bins/predictor/tests/clients/v2_tritonclient.py");
    let host = server.url.trim_start_matches("http://").to_string();
    let output = Command::new(&python)
        .arg(&script)
        .args([host.as_str(), "mnist", instances.to_str().unwrap()])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        output.status.success(),
        "tritonclient script failed:\n{}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        server.log()
    );
    let report = json(String::from_utf8_lossy(&output.stdout).trim());
    assert_eq!(report["classes"], json!(classes));
    let got: Vec<Vec<f32>> = serde_json::from_value(report["probabilities"].clone()).unwrap();
    let want: Vec<Vec<f32>> = probabilities
        .iter()
        .map(|row| row.iter().map(|&x| x as f32).collect())
        .collect();
    assert_eq!(got, want);
    assert_eq!(report["model_version"], "1");
    assert_eq!(report["selected_outputs"], json!(["class"]));
    assert_eq!(report["metadata"]["inputs"][0]["shape"], json!([-1, 784]));
    assert_eq!(report["server_metadata"]["name"], "predictor");
    let errors = &report["errors"];
    let expect = |case: &str, status: &str, start: &str| {
        assert_eq!(errors[case]["status"], status, "{case}: {}", errors[case]);
        let message = errors[case]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(start), "{case}: {message}");
    };
    expect(
        "wrong_dtype",
        "400",
        "input \"image\" has datatype FP64, but the model expects FP32",
    );
    expect("wrong_shape", "400", "input \"image\" has shape [1, 783]");
    expect(
        "unknown_model",
        "404",
        "Model with name nosuch does not exist.",
    );
    expect(
        "unknown_version",
        "404",
        "Model mnist has no available version 99.",
    );
    expect(
        "unknown_model_metadata",
        "404",
        "Model with name nosuch does not exist.",
    );
    expect("binary_data", "501", "the binary tensor data extension");
}
