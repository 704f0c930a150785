//! End to end: a real `predictor serve` process, the real runtime, the client CLI, raw HTTP, and
//! `gs://` on a real fake-gcs-server. The tutorial's deployment serves a model written by our own
//! trainer (and must answer exactly what `predictor local` answers for it); the other tests use
//! SavedModels made by TensorFlow, checked against TensorFlow's own outputs.
// Helpers outside #[test] functions panic on failed setup too, like the tests themselves.

use std::time::Duration;

use crate::serve_support::*;
use reqwest::Method;
use serde_json::{Value, json};

const MODEL: &str = "tf1-tutorial";

/// TF's outputs for the 10 sample images as online-prediction rows.
fn tf_predictions() -> Value {
    let probabilities = expected(MODEL)["outputs"]["probabilities"]["values"].clone();
    let probabilities = probabilities.as_array().unwrap();
    let rows: Vec<Value> = fixture_classes(MODEL)
        .into_iter()
        .enumerate()
        .map(|(row, class)| {
            json!({"class": class, "probabilities": probabilities[row * 10..row * 10 + 10]})
        })
        .collect();
    Value::Array(rows)
}

/// Checks predictions for the 10 sample images: the same classes as `want` and every
/// probability within `tolerance` (a forward pass over another batch may sum in another order).
fn assert_same_predictions(got: &Value, want: &Value, tolerance: f64) {
    assert_eq!(classes(got), classes(want), "{got}");
    let probabilities = |p: &Value| -> Vec<f64> {
        p["probabilities"]
            .as_array()
            .unwrap_or_else(|| panic!("no probabilities in {p}"))
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let (got, want) = (got.as_array().unwrap(), want.as_array().unwrap());
    assert_eq!(got.len(), 10);
    for (row, (g, w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (probabilities(g), probabilities(w));
        assert_eq!(g.len(), w.len(), "row {row}");
        for (a, b) in g.iter().zip(&w) {
            assert!((a - b).abs() <= tolerance, "row {row}: {a} vs {b}");
        }
    }
}

/// Checks an online-prediction answer for the 10 sample images against TF's outputs.
fn assert_matches_tf(predictions: &Value) {
    assert_same_predictions(predictions, &tf_predictions(), 1e-5);
}

/// The tutorial's last part with the model our trainer wrote: deploy it from a local folder and
/// from `gs://`, list, predict through the CLI and raw HTTP on both APIs, restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trainer_model_deployed_locally_and_from_gcs_predicts_through_both_apis() {
    let tmp = tempfile::tempdir().unwrap();
    let model_dir = trainer_model(tmp.path(), 3);
    let local = local_predictions(&model_dir);
    let correct = classes(&local)
        .iter()
        .zip(SAMPLE_LABELS)
        .filter(|(got, label)| **got == *label)
        .count();
    assert!(
        correct >= 8,
        "three epochs should read most of sample.json: {:?} vs labels {SAMPLE_LABELS:?}",
        classes(&local)
    );
    let emulator = gcs_emulator::GcsEmulator::start_with_buckets(&["tutorial"]).unwrap();
    upload_to_gcs(&emulator, &model_dir, "gs://tutorial/job/model").await;
    let env = [("STORAGE_EMULATOR_HOST", emulator.endpoint())];

    let mut server = Server::start_in(tmp.path(), &[], &env);
    assert!(free_port_is_loopback(&server.url), "{}", server.url);

    // The tutorial's deployment, with our CLI.
    server.deploy("mnist", "v1", model_dir.to_str().unwrap(), &[]);
    server.deploy("mnist_gcs", "v1", "gs://tutorial/job/model", &[]);
    let models_table = "NAME       DEFAULT_VERSION_NAME\nmnist      v1\nmnist_gcs  v1\n";
    assert_eq!(server.cli_ok(&["models", "list"]), models_table);
    assert_eq!(
        server.cli_ok(&["versions", "list", "--model", "mnist_gcs"]),
        "NAME  DEPLOYMENT_URI           STATE\nv1    gs://tutorial/job/model  READY\n"
    );

    // Predict with the tutorial's sample.json through the CLI: what `predictor local` says.
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
        assert_same_predictions(&json(&out)["predictions"], &local, 1e-6);
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
    assert_eq!(table_classes, classes(&local));

    // Raw HTTP, Cloud ML Engine API.
    let body = json!({"instances": sample_instances()}).to_string();
    for path in [
        "/v1/projects/default/models/mnist:predict",
        "/v1/projects/default/models/mnist/versions/v1:predict",
        "/v1/projects/default/models/mnist_gcs:predict",
        "/v1/projects/default/models/mnist_gcs/versions/v1:predict",
    ] {
        let (status, text) = server.post(path, body.clone()).await;
        assert_eq!(status, 200, "{path}: {text}");
        assert_same_predictions(&json(&text)["predictions"], &local, 1e-6);
    }

    // TF Serving REST API for the same model: TF Serving's documents, to the byte where TF
    // Serving fixes the layout (protobuf's JSON printer for status, its skeleton for metadata).
    for model in ["mnist", "mnist_gcs"] {
        let (status, text) = server.get(&format!("/v1/models/{model}")).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(
            text,
            "{\n \"model_version_status\": [\n  {\n   \"version\": \"1\",\n   \"state\": \"AVAILABLE\",\n   \
             \"status\": {\n    \"error_code\": \"OK\",\n    \"error_message\": \"\"\n   }\n  }\n ]\n}\n"
        );
        let (status, text) = server.get(&format!("/v1/models/{model}/metadata")).await;
        assert_eq!(status, 200, "{text}");
        assert!(text.starts_with("{\n\"model_spec\":"), "{text}");
        assert!(
            text.contains(",\n\"metadata\": {\"signature_def\": "),
            "{text}"
        );
        let dims = |sizes: &[&str]| -> Value {
            json!({
                "dim": sizes.iter().map(|s| json!({"size": s, "name": ""})).collect::<Vec<_>>(),
                "unknown_rank": false
            })
        };
        assert_eq!(
            json(&text),
            json!({
                "model_spec": {"name": model, "signature_name": "", "version": "1"},
                "metadata": {"signature_def": {"signature_def": {"serving_default": {
                    "inputs": {"image": {
                        "dtype": "DT_FLOAT", "tensor_shape": dims(&["-1", "784"]), "name": "image:0"
                    }},
                    "outputs": {
                        "class": {
                            "dtype": "DT_INT64", "tensor_shape": dims(&["-1"]), "name": "class:0"
                        },
                        "probabilities": {
                            "dtype": "DT_FLOAT",
                            "tensor_shape": dims(&["-1", "10"]),
                            "name": "probabilities:0"
                        }
                    },
                    "method_name": "tensorflow/serving/predict",
                    "defaults": {}
                }}}}
            })
        );
    }
    for path in [
        "/v1/models/mnist:predict",
        "/v1/models/mnist/versions/1:predict",
        "/v1/models/mnist/labels/v1:predict",
        "/v1/models/mnist_gcs:predict",
    ] {
        let (status, text) = server.post(path, body.clone()).await;
        assert_eq!(status, 200, "{path}: {text}");
        // TF Serving's row-format writer: 4-space indent, outputs in signature order.
        let first_class = classes(&local)[0];
        assert!(
            text.starts_with(&format!(
                "{{\n    \"predictions\": [\n        {{\n            \"class\": {first_class},"
            )),
            "{text}"
        );
        assert_same_predictions(&json(&text)["predictions"], &local, 1e-6);
    }
    let columnar = json!({"inputs": {"image": sample_instances()}}).to_string();
    let (status, text) = server.post("/v1/models/mnist:predict", columnar).await;
    assert_eq!(status, 200, "{text}");
    let outputs = &json(&text)["outputs"];
    let columnar_rows: Vec<Value> = (0..10)
        .map(|row| {
            json!({"class": outputs["class"][row], "probabilities": outputs["probabilities"][row]})
        })
        .collect();
    assert_same_predictions(&Value::Array(columnar_rows), &local, 1e-6);

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
    let server = Server::start_in(tmp.path(), &[], &env);
    assert_eq!(server.cli_ok(&["models", "list"]), models_table);
    server
        .wait_for_status("mnist_gcs", Duration::from_secs(60), |b| {
            b.contains("AVAILABLE")
        })
        .await;
    let (status, text) = server
        .post("/v1/projects/default/models/mnist_gcs:predict", body)
        .await;
    assert_eq!(status, 200, "{text}");
    assert_same_predictions(&json(&text)["predictions"], &local, 1e-6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_lifecycle_default_and_failures() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good");
    copy_dir(&fixture(MODEL), &good);
    let broken = tmp.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("saved_model.pb"), b"this is not a protobuf").unwrap();
    let server = Server::start_in(tmp.path(), &[], &[]);
    server.deploy("mnist", "v1", good.to_str().unwrap(), &[]);

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
            // Calls that change deployments need a JSON body (the CSRF rule).
            Some("{}".into()),
        )
        .await;
    assert_eq!(status, 400, "{text}");

    // Second version, set as default, then the first one can go.
    server.create_version("mnist", "v2", good.to_str().unwrap(), &[]);
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
    let server = Server::start_in(tmp.path(), &[], &[]);
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
                .header("content-type", "application/json")
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

    first.deploy("mnist", "v1", "gs://deployments/models/mnist", &[]);
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
