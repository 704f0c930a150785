//! `predictor serve` loads its configured models before it listens, as TF Serving does: the
//! first requests after `listening on` already predict, with no wait for `AVAILABLE`, and a
//! configured model that fails to load is reported by then (and readiness stays false).

use serde_json::json;

use crate::serve_support::*;

const MODEL: &str = "tf1-tutorial";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_requests_after_listening_find_the_configured_models() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("polled");
    copy_dir(&fixture(MODEL), &base.join("3"));
    let single = format!("mnist={}", fixture(MODEL).display());
    let polled = format!("polled={}", base.display());
    let server = Server::start(
        &[
            "--registry",
            "memory://startup-test",
            "--model",
            &single,
            "--model-base-path",
            &polled,
        ],
        &[],
    );
    // No wait: these are the first requests the server sees.
    let body = json!({"instances": sample_instances()}).to_string();
    for path in [
        "/v1/models/mnist:predict",
        "/v1/models/polled:predict",
        "/v1/models/polled/versions/3:predict",
    ] {
        let (status, text) = server.post(path, body.clone()).await;
        assert_eq!(status, 200, "{path}: {text}\n{}", server.log());
        assert_eq!(
            classes(&json(&text)["predictions"]),
            fixture_classes(MODEL),
            "{path}"
        );
    }
    let (status, text) = server.get("/v2/health/ready").await;
    assert_eq!(status, 200, "{text}");
    let (_, text) = server.get("/v1/models/polled").await;
    assert!(text.contains("AVAILABLE"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_model_that_fails_to_load_is_reported_when_the_port_opens() {
    let tmp = tempfile::tempdir().unwrap();
    let broken = tmp.path().join("broken-model");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("saved_model.pb"), b"not a SavedModel").unwrap();
    let good = format!("mnist={}", fixture(MODEL).display());
    let bad = format!("broken={}", broken.display());
    let server = Server::start(
        &[
            "--registry",
            "memory://startup-broken",
            "--model",
            &good,
            "--model",
            &bad,
        ],
        &[],
    );
    // The failure is already in the status (TF Serving's END with the error), not LOADING.
    let (status, text) = server.get("/v1/models/broken").await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("END") && text.contains("broken-model"),
        "{text}"
    );
    // Readiness keeps its meaning: not every configured model serves.
    let (status, text) = server.get("/v2/health/ready").await;
    assert_eq!(status, 503, "{text}");
    // The model that loaded answers at once.
    let body = json!({"instances": sample_instances()}).to_string();
    let (status, text) = server.post("/v1/models/mnist:predict", body).await;
    assert_eq!(status, 200, "{text}");
}
