//! End to end: a real `predictor serve` process, real SavedModels made by TensorFlow, the real
//! runtime, the client CLI, raw HTTP, and `gs://` on a real fake-gcs-server.
// Helpers outside #[test] functions panic on failed setup too, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod serve_support;

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use serve_support::*;

const MODEL: &str = "tf1-tutorial";

/// TF's classes for the first 10 test images (the rows of testdata/sample.json).
fn tf_classes() -> Vec<i64> {
    expected(MODEL)["outputs"]["class"]["values"]
        .as_array()
        .unwrap()[..10]
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect()
}

fn tf_probabilities(row: usize) -> Vec<f64> {
    let values = expected(MODEL)["outputs"]["probabilities"]["values"]
        .as_array()
        .unwrap()
        .clone();
    values[row * 10..row * 10 + 10]
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

/// Checks an online-prediction answer for the 10 sample images against TF's outputs.
fn assert_matches_tf(predictions: &Value) {
    let predictions = predictions
        .as_array()
        .unwrap_or_else(|| panic!("no predictions: {predictions}"));
    assert_eq!(predictions.len(), 10);
    let classes: Vec<i64> = predictions
        .iter()
        .map(|p| p["class"].as_i64().unwrap())
        .collect();
    assert_eq!(classes, tf_classes());
    for (row, p) in predictions.iter().enumerate() {
        let probs: Vec<f64> = p["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        for (got, want) in probs.iter().zip(tf_probabilities(row)) {
            assert!((got - want).abs() < 1e-5, "row {row}: {got} vs TF {want}");
        }
    }
}

async fn upload_to_gcs(emulator: &gcs_emulator::GcsEmulator, dir: &std::path::Path, url: &str) {
    let location = storage::Location::parse_with(url, &emulator.storage_options()).unwrap();
    let mut files = Vec::new();
    fn walk(
        root: &std::path::Path,
        dir: &std::path::Path,
        files: &mut Vec<(String, bytes::Bytes)>,
    ) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, files);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                files.push((rel, bytes::Bytes::from(std::fs::read(&path).unwrap())));
            }
        }
    }
    walk(dir, dir, &mut files);
    location.write_tree(files, "saved_model.pb").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_locally_and_from_gcs_then_predict_through_both_apis() {
    let tmp = tempfile::tempdir().unwrap();
    let model_dir = tmp.path().join("checkpoints/model");
    copy_dir(&fixture(MODEL), &model_dir);
    let emulator = gcs_emulator::GcsEmulator::start_with_buckets(&["tutorial"]).unwrap();
    upload_to_gcs(&emulator, &model_dir, "gs://tutorial/checkpoints/model").await;
    let registry = tmp.path().join("registry");
    let registry_arg = registry.to_str().unwrap();

    let mut server = Server::start(
        &["--registry", registry_arg],
        &[("STORAGE_EMULATOR_HOST", emulator.endpoint())],
    );
    assert!(free_port_is_loopback(&server.url), "{}", server.url);

    // The tutorial's deployment, with our CLI.
    server.cli_ok(&["models", "create", "mnist"]);
    server.cli_ok(&[
        "versions",
        "create",
        "v1",
        "--model",
        "mnist",
        "--origin",
        model_dir.to_str().unwrap(),
    ]);
    server.cli_ok(&["models", "create", "mnist_gcs"]);
    server.cli_ok(&[
        "versions",
        "create",
        "v1",
        "--model",
        "mnist_gcs",
        "--origin",
        "gs://tutorial/checkpoints/model",
    ]);
    assert_eq!(
        server.cli_ok(&["models", "list"]),
        "NAME       DEFAULT_VERSION_NAME\nmnist      v1\nmnist_gcs  v1\n"
    );
    let versions = server.cli_ok(&["versions", "list", "--model", "mnist_gcs"]);
    assert_eq!(
        versions,
        "NAME  DEPLOYMENT_URI                   STATE\nv1    gs://tutorial/checkpoints/model  READY\n"
    );

    // Predict with the tutorial's sample.json through the CLI.
    let sample = sample_json();
    let sample = sample.to_str().unwrap();
    for model in ["mnist", "mnist_gcs"] {
        let out = server.cli_ok(&[
            "predict",
            "--model",
            model,
            "--json-instances",
            sample,
            "--format",
            "json",
        ]);
        assert_matches_tf(&json(&out)["predictions"]);
    }
    let table = server.cli_ok(&[
        "predict",
        "--model",
        "mnist",
        "--version",
        "v1",
        "--json-instances",
        sample,
    ]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 11, "{table}");
    assert!(lines[0].starts_with("CLASS  PROBABILITIES"), "{table}");
    let table_classes: Vec<i64> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(table_classes, tf_classes());

    // Same classes as `predictor local` on the same files.
    let local = std::process::Command::new(PREDICTOR)
        .args([
            "local",
            "--model-dir",
            model_dir.to_str().unwrap(),
            "--json-instances",
            sample,
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        local.status.success(),
        "predictor local: {}",
        String::from_utf8_lossy(&local.stderr)
    );
    let local = json(&String::from_utf8(local.stdout).unwrap());
    let local_classes: Vec<i64> = local["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["class"].as_i64().unwrap())
        .collect();
    assert_eq!(local_classes, tf_classes());

    // Raw HTTP, Cloud ML Engine API.
    let body = json!({"instances": sample_instances()}).to_string();
    for path in [
        "/v1/projects/default/models/mnist:predict",
        "/v1/projects/default/models/mnist/versions/v1:predict",
        "/v1/projects/default/models/mnist_gcs:predict",
    ] {
        let (status, text) = server.post(path, body.clone()).await;
        assert_eq!(status, 200, "{path}: {text}");
        assert_matches_tf(&json(&text)["predictions"]);
    }

    // TF Serving REST API for the same model.
    let (status, text) = server.get("/v1/models/mnist").await;
    assert_eq!(status, 200);
    assert_eq!(
        json(&text),
        json!({"model_version_status": [{"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]})
    );
    let (status, text) = server.get("/v1/models/mnist/metadata").await;
    assert_eq!(status, 200, "{text}");
    let metadata = json(&text);
    assert_eq!(
        metadata["model_spec"],
        json!({"name": "mnist", "signature_name": "", "version": "1"})
    );
    let signature = &metadata["metadata"]["signature_def"]["signature_def"]["serving_default"];
    assert_eq!(signature["inputs"]["image"]["dtype"], "DT_FLOAT");
    assert_eq!(
        signature["inputs"]["image"]["tensor_shape"]["dim"],
        json!([{"size": "-1", "name": ""}, {"size": "784", "name": ""}])
    );
    assert_eq!(signature["outputs"]["class"]["dtype"], "DT_INT64");
    assert_eq!(signature["method_name"], "tensorflow/serving/predict");
    for path in [
        "/v1/models/mnist:predict",
        "/v1/models/mnist/versions/1:predict",
        "/v1/models/mnist/labels/v1:predict",
    ] {
        let (status, text) = server.post(path, body.clone()).await;
        assert_eq!(status, 200, "{path}: {text}");
        assert!(
            text.starts_with("{\n    \"predictions\": [\n        {\n            \"class\": 7,"),
            "{text}"
        );
        assert_matches_tf(&json(&text)["predictions"]);
    }
    let columnar = json!({"inputs": {"image": sample_instances()}}).to_string();
    let (status, text) = server.post("/v1/models/mnist:predict", columnar).await;
    assert_eq!(status, 200, "{text}");
    let outputs = &json(&text)["outputs"];
    let classes: Vec<i64> = outputs["class"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(classes, tf_classes());
    assert_eq!(outputs["probabilities"].as_array().unwrap().len(), 10);

    // Metrics saw the requests and the two loaded versions.
    let (_, metrics) = server.get("/monitoring/prometheus/metrics").await;
    assert!(
        metrics.contains("predictor_requests_total{code=\"200\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("predictor_loaded_versions 2"), "{metrics}");
    assert!(
        metrics.contains("predictor_request_latency_seconds_bucket"),
        "{metrics}"
    );
    assert!(metrics.contains("predictor_batch_size_count"), "{metrics}");
    assert!(
        server.log().contains("status=200"),
        "per-request log lines missing:\n{}",
        server.log()
    );

    // A restart serves the same deployments from the registry.
    let status = server
        .terminate(Duration::from_secs(20))
        .expect("server did not stop on SIGTERM");
    assert!(status.success(), "{status:?}");
    let server = Server::start(
        &["--registry", registry_arg],
        &[("STORAGE_EMULATOR_HOST", emulator.endpoint())],
    );
    assert_eq!(
        server.cli_ok(&["models", "list"]),
        "NAME       DEFAULT_VERSION_NAME\nmnist      v1\nmnist_gcs  v1\n"
    );
    server
        .wait_for_status("mnist_gcs", Duration::from_secs(60), |b| {
            b.contains("AVAILABLE")
        })
        .await;
    let (status, text) = server
        .post(
            "/v1/projects/default/models/mnist_gcs:predict",
            body.clone(),
        )
        .await;
    assert_eq!(status, 200, "{text}");
    assert_matches_tf(&json(&text)["predictions"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_lifecycle_default_and_failures() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good");
    copy_dir(&fixture(MODEL), &good);
    let broken = tmp.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("saved_model.pb"), b"this is not a protobuf").unwrap();
    let server = Server::start(
        &["--registry", tmp.path().join("reg").to_str().unwrap()],
        &[],
    );
    server.cli_ok(&["models", "create", "mnist"]);
    server.cli_ok(&[
        "versions",
        "create",
        "v1",
        "--model",
        "mnist",
        "--origin",
        good.to_str().unwrap(),
    ]);

    // A version that cannot load ends FAILED with the reason, and is never served.
    let out = server.cli(&[
        "versions",
        "create",
        "bad",
        "--model",
        "mnist",
        "--origin",
        broken.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("version bad FAILED") && stderr.contains("broken"),
        "{stderr}"
    );
    let (status, text) = server
        .get("/v1/projects/default/models/mnist/versions/bad")
        .await;
    assert_eq!(status, 200);
    let bad = json(&text);
    assert_eq!(bad["state"], "FAILED");
    assert!(
        bad["errorMessage"]
            .as_str()
            .unwrap()
            .contains("cannot load the model"),
        "{bad}"
    );
    let body = json!({"instances": sample_instances()}).to_string();
    let (status, text) = server
        .post(
            "/v1/projects/default/models/mnist/versions/bad:predict",
            body.clone(),
        )
        .await;
    assert_eq!(status, 400, "{text}");
    assert!(
        error_of(&text).starts_with(
            "Version \"projects/default/models/mnist/versions/bad\" failed to deploy: "
        ),
        "{text}"
    );
    let (status, _) = server
        .post("/v1/projects/default/models/mnist:predict", body.clone())
        .await;
    assert_eq!(status, 200, "the default version keeps serving");
    let status_text = server
        .wait_for_status("mnist", Duration::from_secs(5), |b| b.contains("END"))
        .await;
    assert!(
        status_text.contains("cannot load the model"),
        "{status_text}"
    );
    let (status, text) = server
        .request(
            Method::POST,
            "/v1/projects/default/models/mnist/versions/bad:setDefault",
            None,
            None,
        )
        .await;
    assert_eq!(status, 400, "{text}");

    // Second version, set as default, then the first one can go.
    server.cli_ok(&[
        "versions",
        "create",
        "v2",
        "--model",
        "mnist",
        "--origin",
        good.to_str().unwrap(),
    ]);
    let out = server.cli(&["versions", "delete", "v1", "--model", "mnist"]);
    assert!(
        !out.status.success(),
        "deleting the default version while others exist must fail"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("default version"));
    server.cli_ok(&["versions", "set-default", "v2", "--model", "mnist"]);
    assert_eq!(
        server.cli_ok(&["models", "list"]),
        "NAME   DEFAULT_VERSION_NAME\nmnist  v2\n"
    );
    server.cli_ok(&["versions", "delete", "v1", "--model", "mnist"]);
    let (status, text) = server
        .post("/v1/models/mnist/versions/1:predict", body.clone())
        .await;
    assert_eq!(status, 404, "{text}");
    assert_eq!(
        error_of(&text),
        "Servable not found for request: Specific(mnist, 1)"
    );
    let (status, text) = server.post("/v1/models/mnist:predict", body.clone()).await;
    assert_eq!(status, 200, "{text}");
    let (status, text) = server.get("/v1/models/mnist/metadata").await;
    assert_eq!(status, 200);
    assert_eq!(
        json(&text)["model_spec"]["version"],
        "3",
        "v2 got TF Serving number 3 (bad was 2)"
    );

    // A model with versions cannot be deleted; without them it can.
    let out = server.cli(&["models", "delete", "mnist"]);
    assert!(!out.status.success());
    server.cli_ok(&["versions", "delete", "bad", "--model", "mnist"]);
    server.cli_ok(&["versions", "delete", "v2", "--model", "mnist"]);
    server.cli_ok(&["models", "delete", "mnist"]);
    let out = server.cli(&["models", "list"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Listed 0 items."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_mutations_keep_every_version() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good");
    copy_dir(&fixture(MODEL), &good);
    let server = Server::start(
        &["--registry", tmp.path().join("reg").to_str().unwrap()],
        &[],
    );
    let (status, text) = server
        .request(
            Method::POST,
            "/v1/projects/default/models",
            None,
            Some(json!({"name": "m"}).to_string()),
        )
        .await;
    assert_eq!(status, 200, "{text}");
    let mut tasks = Vec::new();
    for i in 0..8 {
        let url = server.url.clone();
        let origin = good.to_str().unwrap().to_string();
        tasks.push(tokio::spawn(async move {
            let response = reqwest::Client::new()
                .post(format!("{url}/v1/projects/default/models/m/versions"))
                .body(json!({"name": format!("v{i}"), "deploymentUri": origin}).to_string())
                .send()
                .await
                .unwrap();
            response.status().as_u16()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    // Same name twice → 409.
    let (status, text) = server
        .request(
            Method::POST,
            "/v1/projects/default/models/m/versions",
            None,
            Some(json!({"name": "v0", "deploymentUri": good}).to_string()),
        )
        .await;
    assert_eq!(status, 409, "{text}");
    let (_, text) = server.get("/v1/projects/default/models/m/versions").await;
    let versions = json(&text)["versions"].as_array().unwrap().clone();
    assert_eq!(versions.len(), 8, "{text}");
    let status = server
        .wait_for_status("m", Duration::from_secs(120), |b| {
            b.matches("AVAILABLE").count() == 8
        })
        .await;
    let numbers: std::collections::BTreeSet<String> = json(&status)["model_version_status"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(numbers.len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_replica_follows_a_registry_on_gcs() {
    let emulator = gcs_emulator::GcsEmulator::start_with_buckets(&["deployments"]).unwrap();
    upload_to_gcs(&emulator, &fixture(MODEL), "gs://deployments/models/mnist").await;
    let env = [("STORAGE_EMULATOR_HOST", emulator.endpoint())];
    let args = [
        "--registry",
        "gs://deployments/registry",
        "--registry-poll-seconds",
        "0.3",
    ];
    let first = Server::start(&args, &env);
    let second = Server::start(&args, &env);

    first.cli_ok(&["models", "create", "mnist"]);
    first.cli_ok(&[
        "versions",
        "create",
        "v1",
        "--model",
        "mnist",
        "--origin",
        "gs://deployments/models/mnist",
    ]);
    // The second replica picks the deployment up from the shared registry and serves it.
    second
        .wait_for_status("mnist", Duration::from_secs(30), |b| {
            b.contains("AVAILABLE")
        })
        .await;
    assert_eq!(
        second.cli_ok(&["models", "list"]),
        "NAME   DEFAULT_VERSION_NAME\nmnist  v1\n"
    );
    let body = json!({"instances": sample_instances()}).to_string();
    let (status, text) = second
        .post("/v1/projects/default/models/mnist:predict", body)
        .await;
    assert_eq!(status, 200, "{text}");
    assert_matches_tf(&json(&text)["predictions"]);

    // A deletion on one replica is followed by the other.
    first.cli_ok(&["versions", "delete", "v1", "--model", "mnist"]);
    second
        .wait_for_status("mnist", Duration::from_secs(30), |b| {
            b.contains("Could not find any versions")
        })
        .await;
}
