//! The server's request limits over real HTTP connections, in-process with a fake model whose
//! forward pass takes a set time (so a request can be held in flight on purpose): in-flight
//! permits are taken only once a body has arrived, 503 when they are all taken, 504 on the
//! request timeout, 408 for bodies that stall, 429 past the slow-body cap of one client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::lifecycle::predictor::fake::Affine;
use crate::lifecycle::predictor::{LoadFuture, ModelLoader, Predictor};
use crate::server::{ServeConfig, serve};

struct SlowLoader(Duration);

impl ModelLoader for SlowLoader {
    fn load(&self, _location: storage::Location) -> LoadFuture {
        let mut model = Affine::new();
        model.delay = self.0;
        Box::pin(async move { Ok(Arc::new(model) as Arc<dyn Predictor>) })
    }
}

const BODY: &str = r#"{"instances": [[1.0, 2.0]]}"#;

/// Starts a server for model `m` (the fake, each run taking `delay`) and waits until it serves.
async fn start(configure: impl FnOnce(&mut ServeConfig), delay: Duration) -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let mut config = ServeConfig::new(format!("memory://http-tests-{n}/registry"));
    config.models = vec![("m".into(), format!("memory://http-tests-{n}/m"))];
    config.batching = None;
    configure(&mut config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(serve(
        config,
        Some(Arc::new(SlowLoader(delay))),
        listener,
        None,
        std::future::pending(),
    ));
    for _ in 0..200 {
        if let Ok(answer) = tokio::time::timeout(
            Duration::from_secs(2),
            exchange(&address, "GET /v1/models/m HTTP/1.1\r\nHost: t\r\n\r\n"),
        )
        .await
            && answer.contains("AVAILABLE")
        {
            return address;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("model m never became AVAILABLE");
}

/// Sends `raw` (a whole request; `Connection: close` is added) and reads the whole answer.
async fn exchange(address: &str, raw: &str) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let raw = raw.replacen("\r\n", "\r\nConnection: close\r\n", 1);
    stream.write_all(raw.as_bytes()).await.unwrap();
    read_all(&mut stream).await
}

async fn read_all(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn predict_request(body: &str) -> String {
    format!(
        "POST /v1/models/m:predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Connects and sends a predict request whose body stops after 5 bytes.
async fn stalled_body(address: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let request = predict_request(BODY);
    let cut = request.len() - BODY.len() + 5;
    stream.write_all(&request.as_bytes()[..cut]).await.unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permits_are_taken_once_the_body_is_in() {
    let address = start(
        |c| {
            c.max_concurrent_requests = 1;
            c.request_timeout = Duration::from_secs(5);
            // The stalled body below is finished a second or so later: no rate limit here.
            c.min_body_rate = 0;
        },
        Duration::from_millis(600),
    )
    .await;

    // A body that stalls holds no permit: the only permit still serves a complete request.
    let mut stalled = stalled_body(&address).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answer = exchange(&address, &predict_request(BODY)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // A request being computed does hold it: a second one meanwhile gets 503 + Retry-After.
    let first = {
        let address = address.clone();
        tokio::spawn(async move { exchange(&address, &predict_request(BODY)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = exchange(&address, &predict_request(BODY)).await;
    assert!(second.starts_with("HTTP/1.1 503"), "{second}");
    assert!(
        second.to_ascii_lowercase().contains("retry-after: 1"),
        "{second}"
    );
    assert!(second.contains("too many requests in flight"), "{second}");
    let first = first.await.unwrap();
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");

    // The stalled body finishes late but still within the limits: it is answered normally.
    stalled.write_all(&BODY.as_bytes()[5..]).await.unwrap();
    let answer = read_all(&mut stalled).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_computation_runs_into_the_request_timeout() {
    let address = start(
        |c| c.request_timeout = Duration::from_millis(300),
        Duration::from_millis(1000),
    )
    .await;
    let answer = exchange(&address, &predict_request(BODY)).await;
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    assert!(
        answer.contains("Request timed out after 300 ms"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_and_too_many_slow_bodies_are_refused() {
    let address = start(
        |c| {
            c.body_read_timeout = Duration::from_millis(1500);
            c.max_slow_bodies_per_client = 2;
        },
        Duration::ZERO,
    )
    .await;
    let started = std::time::Instant::now();
    let mut slow = Vec::new();
    for _ in 0..3 {
        slow.push(stalled_body(&address).await);
    }
    // A client sending whole requests is served while its address has slow bodies pending.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let answer = exchange(&address, &predict_request(BODY)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let mut answers = Vec::new();
    for stream in &mut slow {
        answers.push(read_all(stream).await);
    }
    let refused: Vec<&String> = answers
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 429"))
        .collect();
    assert_eq!(refused.len(), 1, "{answers:#?}");
    assert!(
        refused[0].contains("Too many slow request bodies from 127.0.0.1"),
        "{}",
        refused[0]
    );
    let timed_out: Vec<&String> = answers
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 408"))
        .collect();
    assert_eq!(timed_out.len(), 2, "{answers:#?}");
    for answer in timed_out {
        assert!(
            answer.contains("did not arrive within 1500 ms (--body-read-timeout); 5 bytes came"),
            "{answer}"
        );
        assert!(answer.to_ascii_lowercase().contains("connection: close"));
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_below_the_minimum_rate_are_cut_off() {
    let address = start(|c| c.min_body_rate = 1000, Duration::ZERO).await;
    let started = std::time::Instant::now();
    // 1,000 bytes per second are due after the 2 s allowance; one byte every 200 ms is too few.
    let long_body = format!(
        r#"{{"instances": [[1.0, 2.0]], "pad": "{}"}}"#,
        "x".repeat(5000)
    );
    let stream = TcpStream::connect(&address).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // Read while writing: the answer comes while bytes are still being sent.
    let answer = tokio::spawn(async move {
        let mut answer = Vec::new();
        let _ = reader.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    });
    let request = predict_request(&long_body);
    let head = request.len() - long_body.len();
    writer.write_all(&request.as_bytes()[..head]).await.unwrap();
    for byte in long_body.bytes() {
        if answer.is_finished() || started.elapsed() > Duration::from_secs(10) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        if writer.write_all(&[byte]).await.is_err() {
            break;
        }
    }
    let answer = answer.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("below the minimum of 1000 bytes per second"),
        "{answer}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
