//! `--model-base-path`: numbered version folders are watched like TF Serving does: a new version
//! is loaded and served without a restart, a removed one is unloaded, and a version that fails
//! to load never replaces the one serving. Also `--model NAME=DIR` and batching under load.
// Helpers outside #[test] functions panic on failed setup too, like the tests themselves.

use std::time::Duration;

use crate::serve_support::*;
use serde_json::{Value, json};

fn served_version(metadata: &str) -> String {
    json(metadata)["model_spec"]["version"]
        .as_str()
        .unwrap()
        .to_string()
}

fn states(status: &str) -> Vec<(String, String)> {
    json(status)["model_version_status"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_str().unwrap().to_string(),
                v["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_appear_fail_and_disappear_without_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("mnist");
    copy_dir(&fixture("tf1-tutorial"), &base.join("1"));
    std::fs::create_dir_all(base.join("not-a-version")).unwrap();
    let base_arg = format!("mnist={}", base.display());
    let server = Server::start_in(
        tmp.path(),
        &[
            "--model-base-path",
            &base_arg,
            "--file-system-poll-wait-seconds",
            "0.2",
        ],
        &[],
    );
    let body = json!({"instances": sample_instances()[..2]}).to_string();
    let status = server
        .wait_for_status("mnist", Duration::from_secs(30), |b| {
            b.contains("AVAILABLE")
        })
        .await;
    assert_eq!(
        states(&status),
        vec![("1".to_string(), "AVAILABLE".to_string())]
    );
    let (code, text) = server.post("/v1/models/mnist:predict", body.clone()).await;
    assert_eq!(code, 200, "{text}");

    // Version 2 is broken: it ends in END with the error, version 1 keeps serving.
    std::fs::create_dir_all(base.join("2")).unwrap();
    std::fs::write(base.join("2/saved_model.pb"), b"garbage").unwrap();
    let status = server
        .wait_for_status("mnist", Duration::from_secs(30), |b| b.contains("END"))
        .await;
    let parsed = json(&status);
    let v2 = parsed["model_version_status"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version"] == "2")
        .unwrap()
        .clone();
    assert_eq!(v2["state"], "END");
    assert_ne!(v2["status"]["error_code"], "OK");
    assert!(
        v2["status"]["error_message"]
            .as_str()
            .unwrap()
            .contains("cannot load the model"),
        "{status}"
    );
    let (_, metadata) = server.get("/v1/models/mnist/metadata").await;
    assert_eq!(served_version(&metadata), "1");
    let (code, _) = server.post("/v1/models/mnist:predict", body.clone()).await;
    assert_eq!(code, 200);

    // Version 3 is good: it replaces version 1, which is unloaded.
    let staging = tmp.path().join("staging");
    copy_dir(&fixture("tf1-tutorial"), &staging);
    std::fs::rename(&staging, base.join("3")).unwrap();
    let status = server
        .wait_for_status("mnist", Duration::from_secs(30), |b| {
            states(b).iter().any(|(v, s)| v == "3" && s == "AVAILABLE")
                && !states(b).iter().any(|(v, _)| v == "1")
        })
        .await;
    assert!(
        states(&status).contains(&("2".to_string(), "END".to_string())),
        "{status}"
    );
    let (_, metadata) = server.get("/v1/models/mnist/metadata").await;
    assert_eq!(served_version(&metadata), "3");
    let (code, text) = server
        .post("/v1/models/mnist/versions/1:predict", body.clone())
        .await;
    assert_eq!(code, 404, "{text}");
    let (code, text) = server
        .post("/v1/models/mnist/versions/3:predict", body.clone())
        .await;
    assert_eq!(code, 200, "{text}");

    // Version 3 is removed: the newest loadable one (1) comes back.
    std::fs::remove_dir_all(base.join("3")).unwrap();
    server
        .wait_for_status("mnist", Duration::from_secs(30), |b| {
            states(b).iter().any(|(v, s)| v == "1" && s == "AVAILABLE")
                && !states(b).iter().any(|(v, _)| v == "3")
        })
        .await;
    let (code, text) = server.post("/v1/models/mnist:predict", body.clone()).await;
    assert_eq!(code, 200, "{text}");
    // The CMLE route names file-system versions by number.
    let (code, text) = server
        .post("/v1/projects/default/models/mnist/versions/1:predict", body)
        .await;
    assert_eq!(code, 200, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_model_flag_and_batched_concurrent_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let model_arg = format!("mnist={}", fixture("tf1-tutorial").display());
    let mut answers = Vec::new();
    for batching in [true, false] {
        let mut args = vec!["--model", &model_arg];
        if !batching {
            args.push("--no-batching");
        }
        let server = Server::start_in(tmp.path(), &args, &[]);
        server
            .wait_for_status("mnist", Duration::from_secs(30), |b| {
                b.contains("AVAILABLE")
            })
            .await;
        // 64 concurrent single-instance requests: each must get its own image's answer.
        let instances = sample_instances();
        let mut tasks = Vec::new();
        for i in 0..64 {
            let url = format!("{}/v1/models/mnist:predict", server.url);
            let body = json!({"instances": [instances[i % 10].clone()]}).to_string();
            tasks.push(tokio::spawn(async move {
                let response = reqwest::Client::new()
                    .post(url)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status().as_u16(), 200);
                json(&response.text().await.unwrap())["predictions"][0].clone()
            }));
        }
        let mut results: Vec<Value> = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap());
        }
        let tf = fixture_classes("tf1-tutorial");
        let expected: Vec<i64> = (0..64).map(|i| tf[i % 10]).collect();
        assert_eq!(classes(&Value::Array(results.clone())), expected);
        let (_, metrics) = server.get("/monitoring/prometheus/metrics").await;
        assert!(
            metrics.contains("predictor_predictions_total 64\n"),
            "{metrics}"
        );
        let batches: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("predictor_batch_size_count "))
            .unwrap()
            .parse()
            .unwrap();
        if batching {
            assert!(batches <= 64, "{metrics}");
        } else {
            assert_eq!(
                batches, 64,
                "without batching every request is its own forward pass"
            );
        }
        answers.push(results);
    }
    // Batched and unbatched answers agree (up to float rounding: a matrix product of another
    // batch size may sum in another order).
    for (i, (a, b)) in answers[0].iter().zip(&answers[1]).enumerate() {
        assert_eq!(a["class"], b["class"], "request {i}");
        let (a, b) = (
            a["probabilities"].as_array().unwrap(),
            b["probabilities"].as_array().unwrap(),
        );
        for (x, y) in a.iter().zip(b) {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!((x - y).abs() <= 1e-6, "request {i}: {x} vs {y}");
        }
    }
}
