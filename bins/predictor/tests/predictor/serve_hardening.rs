//! The cases a hostile probe found, against the real server: cross-site requests that change
//! deployments (CSRF), a server on a non-loopback address without a token, symlinks that lead
//! out of `--allow-origin`, path tricks in model names, and HEAD on read routes.
// Helpers outside #[test] functions panic on failed setup too, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::serve_support::*;
use reqwest::Method;
use serde_json::json;

const MODELS: &str = "/v1/projects/default/models";

/// Sends a request with the given headers; returns status, headers and body.
async fn send(
    server: &Server,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", server.url));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

fn model_names(server_list: &str) -> Vec<String> {
    json(server_list)["models"]
        .as_array()
        .map(|models| {
            models
                .iter()
                .map(|m| m["name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The probe's request: a web page at evil.example posting a form-like `text/plain` body to a
/// server without a token. Refused, and so is everything else a page could send without the
/// server's consent; the CLI, listed origins and predictions still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_requests_cannot_change_deployments() {
    let tmp = tempfile::tempdir().unwrap();
    let origin = tmp.path().join("model");
    copy_dir(&fixture("tf1-tutorial"), &origin);
    let server = Server::start_in(
        tmp.path(),
        &["--cors-allow-origin", "http://ui.example:3000"],
        &[],
    );
    let create = r#"{"name":"x"}"#;

    let evil = [
        ("origin", "http://evil.example"),
        ("content-type", "text/plain"),
    ];
    let (status, headers, body) = send(&server, Method::POST, MODELS, &evil, Some(create)).await;
    assert_eq!(status, 403, "{body}");
    assert!(headers.get("access-control-allow-origin").is_none());
    assert!(
        error_of(&body).contains("\"http://evil.example\""),
        "{body}"
    );
    // Same-site JSON from the page is refused for its origin too.
    let evil_json = [
        ("origin", "http://evil.example"),
        ("content-type", "application/json"),
    ];
    let (status, _, body) = send(&server, Method::POST, MODELS, &evil_json, Some(create)).await;
    assert_eq!(status, 403, "{body}");
    // Without an Origin, a body that is not declared JSON is refused.
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let (status, _, body) = send(
            &server,
            Method::POST,
            MODELS,
            &[("content-type", content_type)],
            Some(create),
        )
        .await;
        assert_eq!(status, 415, "{content_type}: {body}");
        assert!(error_of(&body).contains("Content-Type: application/json"));
    }
    let (status, _, body) = send(&server, Method::POST, MODELS, &[], Some(create)).await;
    assert_eq!(status, 415, "{body}");
    let (_, list) = server.get(MODELS).await;
    assert!(model_names(&list).is_empty(), "a model was created: {list}");

    // The preflight a page needs before sending JSON: no wildcard for changes.
    let preflight = |origin: &'static str, method: &'static str| {
        [
            ("origin", origin),
            ("access-control-request-method", method),
            ("access-control-request-headers", "content-type"),
        ]
    };
    let (status, headers, _) = send(
        &server,
        Method::OPTIONS,
        MODELS,
        &preflight("http://evil.example", "POST"),
        None,
    )
    .await;
    assert_eq!(status, 403);
    assert!(headers.get("access-control-allow-origin").is_none());
    let (status, headers, _) = send(
        &server,
        Method::OPTIONS,
        MODELS,
        &preflight("http://ui.example:3000", "POST"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["access-control-allow-origin"],
        "http://ui.example:3000"
    );
    // Predictions keep TF Serving's open answer.
    let (status, headers, _) = send(
        &server,
        Method::OPTIONS,
        "/v1/models/x:predict",
        &preflight("http://evil.example", "POST"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["access-control-allow-origin"], "*");

    // The listed origin, and the CLI (JSON, no Origin), may change deployments.
    let listed = [
        ("origin", "http://ui.example:3000"),
        ("content-type", "application/json"),
    ];
    let (status, _, body) = send(&server, Method::POST, MODELS, &listed, Some(create)).await;
    assert_eq!(status, 200, "{body}");
    server.deploy("mnist", "v1", origin.to_str().unwrap(), &[]);
    server.create_version("mnist", "v2", origin.to_str().unwrap(), &[]);

    // Flipping the default is a change too: a page cannot, the CLI can.
    let set_default = "/v1/projects/default/models/mnist/versions/v2:setDefault";
    let (status, _, body) = send(
        &server,
        Method::POST,
        set_default,
        &[("content-type", "text/plain")],
        Some("{}"),
    )
    .await;
    assert_eq!(status, 415, "{body}");
    let (status, _, body) = send(
        &server,
        Method::DELETE,
        "/v1/projects/default/models/mnist/versions/v2",
        &[("origin", "http://evil.example")],
        None,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    server.cli_ok(&["versions", "set-default", "v2", "--model", "mnist"]);
    let (_, model) = server.get("/v1/projects/default/models/mnist").await;
    assert_eq!(
        json(&model)["defaultVersion"]["name"],
        "projects/default/models/mnist/versions/v2"
    );

    // Predictions stay open to any content type and origin, as in TF Serving.
    let request = json!({"instances": [vec![0.5f32; 784]]}).to_string();
    let (status, _, body) = send(
        &server,
        Method::POST,
        "/v1/projects/default/models/mnist:predict",
        &evil,
        Some(&request),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// Listening on all interfaces without a token: anyone on the network could deploy, so changes
/// are off unless asked for; predictions and reads work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_loopback_server_without_a_token_refuses_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixture("tf1-tutorial");
    let model_flag = format!("mnist={}", model.display());
    for allow in [false, true] {
        let registry = tmp.path().join(format!("reg-{allow}"));
        let mut args = vec![
            "--host",
            "0.0.0.0",
            "--registry",
            registry.to_str().unwrap(),
            "--model",
            &model_flag,
        ];
        if allow {
            args.push("--allow-unauthenticated-changes");
        }
        let mut server = Server::start(&args, &[]);
        server.url = server.url.replace("0.0.0.0", "127.0.0.1");
        let (status, body) = server
            .request(Method::POST, MODELS, None, Some(r#"{"name":"x"}"#.into()))
            .await;
        if allow {
            assert_eq!(status, 200, "{body}");
        } else {
            assert_eq!(status, 403, "{body}");
            assert!(error_of(&body).contains("--auth-token-file"), "{body}");
            let out = server.cli(&["models", "create", "y"]);
            assert!(!out.status.success());
        }
        let (status, body) = server.get(MODELS).await;
        assert_eq!(status, 200, "{body}");
        server
            .wait_for_status("mnist", std::time::Duration::from_secs(60), |b| {
                b.contains("AVAILABLE")
            })
            .await;
        let (status, body) = server
            .post(
                "/v1/models/mnist:predict",
                json!({"instances": [vec![0.5f32; 784]]}).to_string(),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
}

/// A symlink inside an allowed folder that leads outside it is refused, whether it is the
/// model folder itself or a file or folder inside it; links that stay inside are fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_cannot_escape_the_allowed_origins() {
    let tmp = tempfile::tempdir().unwrap();
    let allowed = tmp.path().join("allowed");
    let outside = tmp.path().join("outside");
    copy_dir(&fixture("tf1-tutorial"), &outside.join("model"));
    copy_dir(&fixture("tf1-tutorial"), &allowed.join("real"));
    std::os::unix::fs::symlink(outside.join("model"), allowed.join("escape")).unwrap();
    std::fs::create_dir_all(allowed.join("mixed")).unwrap();
    std::fs::copy(
        allowed.join("real/saved_model.pb"),
        allowed.join("mixed/saved_model.pb"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        outside.join("model/variables"),
        allowed.join("mixed/variables"),
    )
    .unwrap();
    std::os::unix::fs::symlink(allowed.join("real"), allowed.join("inside")).unwrap();

    let server = Server::start_in(
        tmp.path(),
        &["--allow-origin", allowed.to_str().unwrap()],
        &[],
    );
    server.cli_ok(&["models", "create", "mnist"]);
    let versions = "/v1/projects/default/models/mnist/versions";
    let escape_url = format!("file://{}", allowed.join("escape").display());
    for (name, uri) in [
        ("v1", allowed.join("escape").to_str().unwrap().to_string()),
        ("v2", escape_url),
        ("v3", allowed.join("mixed").to_str().unwrap().to_string()),
    ] {
        let body = json!({"name": name, "deploymentUri": uri}).to_string();
        let (status, text) = server
            .request(Method::POST, versions, None, Some(body))
            .await;
        assert_eq!(status, 403, "{uri}: {text}");
        let message = error_of(&text);
        assert!(message.contains("is outside the allowed origins"), "{text}");
        assert!(
            message.contains("outside/model"),
            "names the target: {text}"
        );
    }
    let (_, list) = server.get(versions).await;
    assert!(json(&list).get("versions").is_none(), "created: {list}");
    server.create_version("mnist", "ok", allowed.join("inside").to_str().unwrap(), &[]);
    let (status, body) = server
        .post(
            "/v1/projects/default/models/mnist:predict",
            json!({"instances": [vec![0.5f32; 784]]}).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Names in URLs that are not valid names are refused as such, without touching the registry
/// (the probe got a 500 naming the registry's path); HEAD works wherever GET does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_in_urls_and_head_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let token = tmp.path().join("token");
    std::fs::write(&token, "t0ken").unwrap();
    let registry = tmp.path().join("reg");
    let model_flag = format!("mnist={}", fixture("tf1-tutorial").display());
    let server = Server::start(
        &[
            "--registry",
            registry.to_str().unwrap(),
            "--auth-token-file",
            token.to_str().unwrap(),
            "--model",
            &model_flag,
        ],
        &[],
    );
    let registry_text = registry.to_str().unwrap();
    for (method, path) in [
        (Method::DELETE, "/v1/projects/default/models/..%2f..%2fx"),
        (
            Method::DELETE,
            "/v1/projects/default/models/a/versions/..%2fb",
        ),
        (Method::POST, "/v1/projects/default/models/..%2fx/versions"),
        (Method::GET, "/v1/projects/default/models/%2fetc%2fpasswd"),
    ] {
        let (status, body) = server
            .request(method.clone(), path, Some("t0ken"), Some("{}".into()))
            .await;
        assert_eq!(status, 400, "{method} {path}: {body}");
        assert!(error_of(&body).contains("is not a valid"), "{body}");
        assert!(!body.contains(registry_text), "leaks the registry: {body}");
    }

    server
        .wait_for_status("mnist", std::time::Duration::from_secs(60), |b| {
            b.contains("AVAILABLE")
        })
        .await;
    for path in [
        "/v1/models/mnist",
        "/v1/models/mnist/metadata",
        MODELS,
        "/monitoring/prometheus/metrics",
    ] {
        let (get_status, get_headers, get_body) = send(&server, Method::GET, path, &[], None).await;
        let (status, headers, body) = send(&server, Method::HEAD, path, &[], None).await;
        assert_eq!((status, get_status), (200, 200), "HEAD {path}: {body}");
        assert!(body.is_empty(), "HEAD {path} has a body");
        if path.starts_with("/monitoring/") {
            // The metrics count the GET just made, so their length may differ by a digit.
            assert!(headers.contains_key("content-length"), "HEAD {path}");
        } else {
            assert_eq!(
                headers.get("content-length"),
                get_headers.get("content-length"),
                "HEAD {path}: {get_body}"
            );
        }
    }
}
