//! The slow-body attack a hostile probe found: 1,100 connections send their headers and then
//! trickle their bodies, reconnecting whenever they are cut off. Before the fix they held all
//! 1,024 in-flight permits and every other client got 503 for 30 s; now a normal client
//! predicting meanwhile sees only 200s. Its latency percentiles are printed (bench/slow-body.sh
//! records them in BENCHMARKS.md); the assertion on them is deliberately loose, since this
//! machine may be shared.
// Helpers outside #[test] functions panic on failed setup too, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::serve_support::*;
use tokio::io::AsyncWriteExt;

const ATTACKERS: usize = 1_100;

/// Raises this process's open-file limit to what 1,100 connections need (children inherit it).
fn raise_open_file_limit(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < wanted {
            limit.rlim_cur = wanted.min(limit.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
    assert!(
        limit.rlim_cur >= wanted,
        "the open-file limit is {} (hard {}); this test needs {wanted}",
        limit.rlim_cur,
        limit.rlim_max
    );
}

/// One attacker: connect, send a predict request's head announcing an 8 kB body, trickle it one
/// byte every 250 ms, and reconnect when the server cuts the connection.
async fn attacker(address: String, stop: Arc<AtomicBool>, connections: Arc<AtomicUsize>) {
    let head = format!(
        "POST /v1/models/mnist:predict HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: 8000\r\n\r\n{{\"instances\": [["
    );
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = tokio::net::TcpStream::connect(&address).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        connections.fetch_add(1, Ordering::Relaxed);
        if stream.write_all(head.as_bytes()).await.is_err() {
            continue;
        }
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if stream.write_all(b"0").await.is_err() {
                break;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_do_not_shut_out_a_normal_client() {
    raise_open_file_limit(4 * ATTACKERS as u64);
    let tmp = tempfile::tempdir().unwrap();
    let model_flag = format!("mnist={}", fixture("tf1-tutorial").display());
    let server = Server::start_in(tmp.path(), &["--model", &model_flag], &[]);
    server
        .wait_for_status("mnist", Duration::from_secs(60), |b| {
            b.contains("AVAILABLE")
        })
        .await;
    let address = server.url.strip_prefix("http://").unwrap().to_string();

    let stop = Arc::new(AtomicBool::new(false));
    let connections = Arc::new(AtomicUsize::new(0));
    let mut attackers = Vec::new();
    for _ in 0..ATTACKERS {
        attackers.push(tokio::spawn(attacker(
            address.clone(),
            stop.clone(),
            connections.clone(),
        )));
    }
    // Let every attacker connect and start trickling.
    let ramp = Instant::now();
    while connections.load(Ordering::Relaxed) < ATTACKERS
        && ramp.elapsed() < Duration::from_secs(20)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        connections.load(Ordering::Relaxed) >= ATTACKERS,
        "only {} attackers connected",
        connections.load(Ordering::Relaxed)
    );

    // A normal client predicts, one request at a time, while the attack goes on.
    let client = reqwest::Client::new();
    let body = serde_json::json!({"instances": [sample_instances()[0]]}).to_string();
    let url = format!("{}/v1/models/mnist:predict", server.url);
    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(8) {
        let started = Instant::now();
        let response = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        let latency = started.elapsed();
        match response {
            Ok(r) if r.status().is_success() => {
                let text = r.text().await.unwrap();
                assert!(text.contains("\"predictions\""), "{text}");
                latencies.push(latency);
            }
            Ok(r) => failures.push(format!("{}: {}", r.status(), r.text().await.unwrap())),
            Err(e) => failures.push(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let attacker_connections = connections.load(Ordering::Relaxed);
    for task in attackers {
        task.abort();
    }

    latencies.sort();
    let percentile = |p: f64| {
        let index = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[index].as_secs_f64() * 1e3
    };
    assert!(
        failures.is_empty(),
        "{} of {} requests failed, first: {:?}\n{}",
        failures.len(),
        failures.len() + latencies.len(),
        failures.first(),
        server
            .log()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        latencies.len() >= 50,
        "only {} requests in 8 s",
        latencies.len()
    );
    println!(
        "slow-body attack: {ATTACKERS} attackers, {attacker_connections} attacker connections; \
         normal client: {} requests, 0 non-2xx, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        percentile(0.50),
        percentile(0.99),
        percentile(1.0)
    );
    // Loose on purpose (the figure to meet, 50 ms, is checked by bench/slow-body.sh): before the
    // fix the client got 503s, not slow answers.
    assert!(percentile(0.99) < 1000.0, "p99 {:.1} ms", percentile(0.99));
}
