//! The Vertex AI custom-container contract: `predictor serve` started with nothing but the
//! `AIP_*` variables Vertex sets (no flags, no other environment) listens on
//! `0.0.0.0:$AIP_HTTP_PORT`, answers its health route with 200 only once the model from `$AIP_STORAGE_URI` serves, and
//! predicts on its predict route with Vertex's request and response shapes.

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::serve_support::*;

const HEALTH: &str = "/v1/endpoints/123/deployedModels/456";
const PREDICT: &str = "/v1/endpoints/123/deployedModels/456:predict";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `predictor serve` with a cleared environment plus the given `AIP_*` variables.
fn vertex_command(storage_uri: &str, port: u16) -> Command {
    let mut command = Command::new(PREDICTOR);
    command
        .arg("serve")
        .env_clear()
        .env("AIP_HTTP_PORT", port.to_string())
        .env("AIP_HEALTH_ROUTE", HEALTH)
        .env("AIP_PREDICT_ROUTE", PREDICT)
        .env("AIP_STORAGE_URI", storage_uri)
        .env("AIP_MODE", "PREDICTION");
    command
}

async fn wait_healthy(server: &Server, limit: Duration) -> (u16, String) {
    let started = Instant::now();
    loop {
        let answer = server.get(HEALTH).await;
        if answer.0 == 200 || started.elapsed() > limit {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_the_storage_uri_model_with_only_aip_variables() {
    let port = free_port();
    let mut server = Server::spawn(vertex_command(
        fixture("tf1-tutorial").to_str().unwrap(),
        port,
    ));
    assert_eq!(
        server.url,
        format!("http://0.0.0.0:{port}"),
        "Vertex needs 0.0.0.0:$AIP_HTTP_PORT"
    );
    server.url = format!("http://127.0.0.1:{port}");
    let (status, body) = wait_healthy(&server, Duration::from_secs(60)).await;
    assert_eq!(status, 200, "{body}\n{}", server.log());

    let rows = sample_instances();
    let request = json!({ "instances": rows, "parameters": {"ignored": true} });
    let (status, body) = server.post(PREDICT, request.to_string()).await;
    assert_eq!(status, 200, "{body}");
    let predictions = json(&body)["predictions"].as_array().unwrap().clone();
    assert_eq!(predictions.len(), rows.len());
    let classes: Vec<i64> = predictions
        .iter()
        .map(|p| p["class"].as_i64().unwrap())
        .collect();
    // The same answer as the TF Serving REST route of the same server; TensorFlow's exported
    // tutorial model is right on all but the ninth sample image.
    let (status, rest) = server
        .post(
            "/v1/models/model:predict",
            json!({ "instances": rows }).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{rest}");
    assert_eq!(json(&body), json(&rest));
    assert_eq!(classes[..8], SAMPLE_LABELS[..8]);
    assert_eq!(
        predictions[0]["probabilities"].as_array().unwrap().len(),
        10
    );

    // Bad input gets Vertex's (online prediction's) error shape.
    let (status, body) = server
        .post(PREDICT, json!({"instances": [[1.0, 2.0]]}).to_string())
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        error_of(&body).contains("expects shape [-1, 784]"),
        "{body}"
    );
    let (status, body) = server.post(PREDICT, "{not json").await;
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).starts_with("JSON Parse error"), "{body}");
    let (status, body) = server.get(PREDICT).await;
    assert_eq!(status, 400, "{body}");
    // The other APIs still answer beside Vertex's routes.
    let (status, _) = server.get("/v1/models/model").await;
    assert_eq!(status, 200);
    assert!(server.terminate(Duration::from_secs(10)).is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn health_is_503_while_the_model_cannot_serve() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = Server::spawn(vertex_command(dir.path().to_str().unwrap(), port));
    server.url = format!("http://127.0.0.1:{port}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, body) = server.get(HEALTH).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(error_of(&body), "model model is not ready yet");
    let (status, body) = server
        .post(PREDICT, json!({"instances": [vec![0.0; 784]]}).to_string())
        .await;
    assert_eq!(status, 404, "{body}");
}

#[test]
fn some_aip_variables_without_the_others_are_an_error() {
    let output = Command::new(PREDICTOR)
        .arg("serve")
        .env_clear()
        .env("AIP_HTTP_PORT", "8080")
        .env("AIP_PREDICT_ROUTE", PREDICT)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("AIP_HEALTH_ROUTE, AIP_STORAGE_URI are missing or empty"),
        "{stderr}"
    );
}
