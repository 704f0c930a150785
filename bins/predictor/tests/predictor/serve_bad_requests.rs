//! Bad requests against a real server: each gets TF Serving's (or the API's) status code and a
//! message that says what is wrong. Plus the safety limits: token, allowed origins, body size,
//! concurrency, timeouts and graceful shutdown.
// Helpers outside #[test] functions panic on failed setup too, like the tests themselves.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::serve_support::*;
use reqwest::Method;
use serde_json::json;

const TOKEN: &str = "s3cret-token";

/// Fields drop in order: the server stops before its folder is removed.
struct Setup {
    server: Server,
    models: std::path::PathBuf,
    _tmp: tempfile::TempDir,
}

/// A server with a token and an allowed-origin prefix, and model `mnist` version `v1` deployed.
async fn setup(extra: &[&str]) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    let origin = models.join("mnist");
    copy_dir(&fixture("tf1-tutorial"), &origin);
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let token_file = token_file.to_str().unwrap();
    let mut args = vec![
        "--auth-token-file",
        token_file,
        "--allow-origin",
        models.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let server = Server::start_in(tmp.path(), &args, &[]);
    server.deploy(
        "mnist",
        "v1",
        origin.to_str().unwrap(),
        &["--auth-token-file", token_file],
    );
    Setup {
        _tmp: tmp,
        server,
        models,
    }
}

fn image(len: usize) -> Vec<f32> {
    vec![0.5; len]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_predict_requests() {
    let s = setup(&[]).await;
    let server = &s.server;
    let tfs = "/v1/models/mnist:predict";
    let cmle = "/v1/projects/default/models/mnist:predict";

    // Malformed JSON.
    for path in [tfs, cmle] {
        let (status, body) = server.post(path, "{\"instances\": [1, 2,]}").await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(
            error_of(&body),
            "JSON Parse error: Invalid value. at offset: 20"
        );
        assert_eq!(
            body,
            "{\n    \"error\": \"JSON Parse error: Invalid value. at offset: 20\"\n}"
        );
    }
    let (status, body) = server.post(tfs, "").await;
    assert_eq!(
        (status, error_of(&body).as_str()),
        (400, "JSON Parse error: The document is empty. at offset: 0")
    );

    // Wrong instance length.
    let (status, body) = server
        .post(tfs, json!({"instances": [image(783)]}).to_string())
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        error_of(&body),
        "input \"image\" of signature \"serving_default\" expects shape [-1, 784] but the request gives [1, 783]"
    );
    let (status, body) = server
        .post(
            cmle,
            json!({"instances": [image(784), image(783)]}).to_string(),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        error_of(&body),
        "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: Encountered list at unexpected size: 783 at level: 0 expected size: 784"
    );
    let (status, body) = server
        .post(tfs, json!({"instances": [vec!["a"; 784]]}).to_string())
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        error_of(&body),
        "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: JSON Value: \"a\" Type: String is not of expected type: float"
    );

    // Both `instances` and `inputs`; neither.
    let (status, body) = server
        .post(
            tfs,
            json!({"instances": [image(784)], "inputs": [image(784)]}).to_string(),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        error_of(&body).contains("expecting only one of 'inputs' or 'instances' keys to exist"),
        "{body}"
    );
    let (status, body) = server.post(tfs, "{}").await;
    assert_eq!(
        (status, error_of(&body).as_str()),
        (400, "Missing 'inputs' or 'instances' key")
    );

    // Unknown signature.
    let (status, body) = server
        .post(
            tfs,
            json!({"signature_name": "nope", "instances": [image(784)]}).to_string(),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        error_of(&body),
        "Serving signature name: \"nope\" not found in signature def"
    );

    // Unknown model / version.
    let ok = json!({"instances": [image(784)]}).to_string();
    let (status, body) = server.post("/v1/models/nope:predict", ok.clone()).await;
    assert_eq!(
        (status, error_of(&body).as_str()),
        (404, "Servable not found for request: Latest(nope)")
    );
    let (status, body) = server
        .post("/v1/models/mnist/versions/9:predict", ok.clone())
        .await;
    assert_eq!(
        (status, error_of(&body).as_str()),
        (404, "Servable not found for request: Specific(mnist, 9)")
    );
    let (status, body) = server
        .post("/v1/models/mnist/labels/v9:predict", ok.clone())
        .await;
    assert_eq!(
        (status, error_of(&body).as_str()),
        (400, "Unrecognized servable version label: v9")
    );
    let (status, body) = server
        .post(
            "/v1/projects/default/models/mnist/versions/v9:predict",
            ok.clone(),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        error_of(&body),
        "Version \"projects/default/models/mnist/versions/v9\" not found"
    );
    let (status, body) = server
        .post("/v1/projects/default/models/nope:predict", ok.clone())
        .await;
    assert_eq!(
        (status, error_of(&body).as_str()),
        (404, "Model \"projects/default/models/nope\" not found")
    );
    let (status, body) = server.get("/v1/models/nope").await;
    assert_eq!(
        (status, error_of(&body).as_str()),
        (404, "Could not find any versions of model nope")
    );
    let (status, body) = server.get("/v1/models/mnist/versions/7").await;
    assert_eq!(
        (status, error_of(&body).as_str()),
        (404, "Could not find version 7 of model mnist")
    );
    let (status, body) = server.get("/v1/projects/default/models/nope").await;
    assert_eq!(status, 404);
    assert_eq!(json(&body)["error"]["status"], "NOT_FOUND");
    assert_eq!(
        error_of(&body),
        "Model \"projects/default/models/nope\" not found"
    );
    let (status, body) = server.post("/v1/models/mnist", ok.clone()).await;
    assert_eq!(
        (status, error_of(&body).as_str()),
        (400, "Malformed request: POST /v1/models/mnist")
    );

    // A 2 MB body.
    let big = format!("{{\"instances\": [[{}]]}}", "0.5, ".repeat(400_000) + "0.5");
    assert!(big.len() > 2_000_000);
    for path in [tfs, cmle] {
        // The server answers 413 as soon as it sees the Content-Length and closes the connection
        // without reading the body, so the client can hit a broken pipe while still writing it,
        // before it reads the answer. Retry a few times; one answer must come back.
        let mut answer = None;
        for _ in 0..10 {
            if let Ok(reply) = server.try_post(path, big.clone()).await {
                answer = Some(reply);
                break;
            }
        }
        let (status, body) = answer.expect("no answer to a 2 MB body in 10 tries");
        assert_eq!(status, 413, "{body}");
        assert_eq!(
            error_of(&body),
            "Request payload size exceeds the limit: 1572864 bytes."
        );
    }

    // The server still answers well-formed requests.
    let (status, body) = server.post(tfs, ok).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_and_origin_checks() {
    let s = setup(&[]).await;
    let server = &s.server;
    let create = json!({"name": "v2", "deploymentUri": s.models.join("mnist")}).to_string();
    let versions = "/v1/projects/default/models/mnist/versions";

    // Missing or wrong token on mutating calls → 401; reads and predictions need none.
    let (status, body) = server
        .request(Method::POST, versions, None, Some(create.clone()))
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(json(&body)["error"]["status"], "UNAUTHENTICATED");
    assert!(error_of(&body).contains("Authorization: Bearer"), "{body}");
    let (status, _) = server
        .request(Method::POST, versions, Some("wrong"), Some(create.clone()))
        .await;
    assert_eq!(status, 401);
    for (method, path) in [
        (
            Method::DELETE,
            "/v1/projects/default/models/mnist/versions/v1",
        ),
        (Method::DELETE, "/v1/projects/default/models/mnist"),
        (
            Method::POST,
            "/v1/projects/default/models/mnist/versions/v1:setDefault",
        ),
        (Method::POST, "/v1/projects/default/models"),
    ] {
        let (status, body) = server
            .request(method.clone(), path, None, Some("{}".into()))
            .await;
        assert_eq!(status, 401, "{method} {path}: {body}");
    }
    let out = server.cli(&["models", "create", "other"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, _) = server.get("/v1/projects/default/models").await;
    assert_eq!(status, 200);
    let (status, _) = server
        .post(
            "/v1/projects/default/models/mnist:predict",
            json!({"instances": [image(784)]}).to_string(),
        )
        .await;
    assert_eq!(status, 200);

    // Origins outside the allowed prefix, or escaping it with `..`, are refused.
    let outside = tempfile::tempdir().unwrap();
    copy_dir(&fixture("tf1-tutorial"), outside.path());
    let sneaky = format!(
        "{}/mnist/../../{}",
        s.models.display(),
        outside.path().file_name().unwrap().to_string_lossy()
    );
    let sibling = format!("{}-evil/mnist", s.models.display());
    for uri in [
        outside.path().to_str().unwrap(),
        sneaky.as_str(),
        sibling.as_str(),
        "gs://elsewhere/model",
    ] {
        let body = json!({"name": "v3", "deploymentUri": uri}).to_string();
        let (status, text) = server
            .request(Method::POST, versions, Some(TOKEN), Some(body))
            .await;
        assert_eq!(status, 403, "{uri}: {text}");
        assert_eq!(json(&text)["error"]["status"], "PERMISSION_DENIED");
        assert!(error_of(&text).contains(&format!("{uri:?}")), "{text}");
    }
    let (_, text) = server.get(versions).await;
    assert_eq!(
        json(&text)["versions"].as_array().unwrap().len(),
        1,
        "nothing was created: {text}"
    );
    let (status, text) = server
        .request(Method::POST, versions, Some(TOKEN), Some(create))
        .await;
    assert_eq!(status, 200, "{text}");
}

/// Opens a connection and sends only part of a predict request, so it stays in flight.
fn half_request(server: &Server, path: &str) -> TcpStream {
    let address = server.url.strip_prefix("http://").unwrap();
    let mut stream = TcpStream::connect(address).unwrap();
    let body = json!({"instances": [image(784)]}).to_string();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        &body[..10]
    )
    .unwrap();
    stream.flush().unwrap();
    stream
}

fn finish_request(mut stream: TcpStream) -> String {
    let body = json!({"instances": [image(784)]}).to_string();
    stream.write_all(&body.as_bytes()[10..]).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    read_response(&mut stream)
}

fn read_response(stream: &mut TcpStream) -> String {
    let mut response = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                response.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&response);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head.lines().find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    });
                    if length.is_some_and(|n| body.len() >= n) {
                        break;
                    }
                }
            }
            Err(e) => panic!("reading the response: {e}"),
        }
    }
    String::from_utf8_lossy(&response).to_string()
}

/// A body that stalls no longer holds the only in-flight permit (requests count as in flight
/// once their body is in), and is cut off with 408 at --body-read-timeout. (503 for a full
/// server and 504 for a slow computation are tested in-process in `serving`, with a model that
/// can be made slow.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_body_holds_no_permit_and_times_out() {
    let s = setup(&[
        "--max-concurrent-requests",
        "1",
        "--body-read-timeout",
        "1.5",
    ])
    .await;
    let server = &s.server;
    let path = "/v1/models/mnist:predict";

    let mut slow = half_request(server, path);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) = server
        .post(path, json!({"instances": [image(784)]}).to_string())
        .await;
    assert_eq!(status, 200, "{body}");

    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let answer = read_response(&mut slow);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("The request body did not arrive within 1500 ms (--body-read-timeout)"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests() {
    let mut s = setup(&[]).await;
    let in_flight = half_request(&s.server, "/v1/models/mnist:predict");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pid = s.server.pid();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // New connections are no longer accepted...
    let address = s.server.url.strip_prefix("http://").unwrap().to_string();
    assert!(
        TcpStream::connect(&address).is_err(),
        "still accepting after SIGTERM"
    );
    // ...but the request that was in flight is answered in full.
    let answer = finish_request(in_flight);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"predictions\""), "{answer}");
    let status = s.server.wait_exit(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        s.server.log()
    );
}

/// Waits (at most `limit`) for the server to close `stream`; returns how long that took, or
/// `None` if the connection was still open at the end.
fn closed_within(stream: &TcpStream, limit: Duration) -> Option<Duration> {
    let started = std::time::Instant::now();
    let mut stream = stream.try_clone().unwrap();
    let mut buf = [0u8; 4096];
    while started.elapsed() < limit {
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        match stream.read(&mut buf) {
            // The server closed (EOF), or reset because our unread bytes were still queued.
            Ok(0) => return Some(started.elapsed()),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(started.elapsed());
            }
            // Anything the server sends before closing (there is nothing to answer) is skipped.
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("reading from the server: {e}"),
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_cut_off_while_others_are_served() {
    let s = setup(&["--header-read-timeout", "1"]).await;
    let server = &s.server;
    let address = server.url.strip_prefix("http://").unwrap().to_string();
    let limit = Duration::from_secs(4);

    // Slow loris: a request line and headers trickled one byte every 100 ms, never finished.
    // The timeout covers the whole head, so trickling does not keep the connection alive.
    let trickler = TcpStream::connect(&address).unwrap();
    let mut writer = trickler.try_clone().unwrap();
    let head = format!(
        "POST /v1/models/mnist:predict HTTP/1.1\r\nHost: {address}\r\nX-Padding: {}",
        "a".repeat(1000)
    );
    let trickling = std::thread::spawn(move || {
        for byte in head.bytes() {
            if writer.write_all(&[byte]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    // A partial request line, then silence.
    let mut stalled = TcpStream::connect(&address).unwrap();
    stalled.write_all(b"GET /v1/models/mn").unwrap();
    // A keep-alive connection that makes two requests half a second apart (kept open: the
    // timeout only limits the wait for a request) and then idles.
    let mut idle = TcpStream::connect(&address).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for pause in [Duration::ZERO, Duration::from_millis(500)] {
        std::thread::sleep(pause);
        write!(
            idle,
            "GET /v1/models/mnist HTTP/1.1\r\nHost: {address}\r\n\r\n"
        )
        .unwrap();
        let answer = read_response(&mut idle);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    // Meanwhile a normal client is served, on fresh connections and on one kept alive while it
    // sends requests less than the timeout apart.
    let client = reqwest::Client::new();
    let started = std::time::Instant::now();
    let mut answered = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        let response = client
            .post(format!("{}/v1/models/mnist:predict", server.url))
            .body(json!({"instances": [image(784)]}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        answered += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(answered >= 4, "only {answered} answers");

    // Every bad connection is closed about one second after it began to wait for a request.
    for (name, stream) in [
        ("trickling", &trickler),
        ("stalled", &stalled),
        ("idle", &idle),
    ] {
        let closed = closed_within(stream, limit);
        assert!(
            closed.is_some(),
            "the {name} connection was still open {limit:?} later\n{}",
            server.log()
        );
    }
    let total = started.elapsed();
    assert!(total < Duration::from_secs(5), "closing took {total:?}");
    trickling.join().unwrap();

    // The server itself is fine.
    let (status, body) = server.get("/v1/models/mnist").await;
    assert_eq!(status, 200, "{body}");
}

/// Flags that cannot work stop `predictor serve` with a message naming the flag, before it
/// listens (a server that is still running after 30 s fails the test).
#[test]
fn bad_serve_flags_fail_before_listening() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = tmp.path().join("registry");
    let empty_token = tmp.path().join("empty-token");
    std::fs::write(&empty_token, "  \n").unwrap();
    let cases: [(&[&str], String); 2] = [
        (
            &["--header-read-timeout", "0"],
            "--header-read-timeout must be more than 0 seconds".to_string(),
        ),
        (
            &["--auth-token-file", empty_token.to_str().unwrap()],
            format!("--auth-token-file {} is empty", empty_token.display()),
        ),
    ];
    for (flags, message) in cases {
        let mut child = std::process::Command::new(PREDICTOR)
            .args([
                "serve",
                "--port",
                "0",
                "--registry",
                registry.to_str().unwrap(),
            ])
            .args(flags)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                child.kill().unwrap();
                panic!("predictor serve {flags:?} kept running");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flags:?} succeeded");
        assert!(stderr.contains(&message), "{flags:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{flags:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{flags:?} printed to stdout");
    }
}
