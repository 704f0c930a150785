//! A gRPC load client for `bench/serve-load.sh` (PROTOCOL=grpc): TF Serving `Predict` calls from
//! `CONCURRENCY` streams spread over `CONNECTIONS` HTTP/2 connections, for `SECONDS` seconds,
//! each stream sending its next request when the previous answer arrived (a closed loop, like
//! wrk's and oha's connections). Prints one Markdown row: req/s, instances/s, p50/p99 latency
//! and failed calls.
//!
//! Usage: grpc_load ADDR BODY_ROWS_JSONL INSTANCES CONCURRENCY CONNECTIONS SECONDS LABEL MODE
//! (BODY_ROWS_JSONL: one instance per line, as testdata/sample.json; the request carries the first
//! INSTANCES rows, repeated as needed, as `tensor_content` like `tf.make_tensor_proto`.)
//!
//! Why HTTP/2 by hand (the `h2` crate) and not a tonic client: on the 2-core benchmark machine
//! the client shares the CPU with the server, so its cost per call is part of the result. wrk
//! spends about 5 µs of CPU per REST call; a tonic client spent about 35 µs per gRPC call
//! (message cloning and encoding per call, tower's buffer task, a multi-thread runtime's
//! wake-ups), which took CPU from the server it measured. This client encodes the request
//! frame once, sends the same bytes on every stream, and drives each connection from its own
//! single-threaded runtime, as ghz and wrk keep a connection on one thread. The server side is
//! unchanged: it is the tonic server that users' clients talk to. Every answer's `grpc-status`
//! is checked, so failed calls count as errors, never as throughput.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message as _;

use savedmodel_format::proto::TensorProto;
use savedmodel_format::{DataType, HostTensor, TensorData};
use serving::grpc::proto::{ModelSpec, PredictRequest};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [
        addr,
        rows_path,
        instances,
        concurrency,
        connections,
        seconds,
        label,
        mode,
    ] = args.as_slice()
    else {
        eprintln!(
            "usage: grpc_load ADDR ROWS_JSONL INSTANCES CONCURRENCY CONNECTIONS SECONDS LABEL MODE"
        );
        std::process::exit(2);
    };
    let instances: usize = instances.parse().expect("INSTANCES");
    let concurrency: usize = concurrency.parse().expect("CONCURRENCY");
    let connections: usize = connections.parse::<usize>().expect("CONNECTIONS").max(1);
    let duration = Duration::from_secs_f64(seconds.parse().expect("SECONDS"));

    let text = std::fs::read_to_string(rows_path).expect("cannot read the rows");
    let rows: Vec<Vec<f32>> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("a row of numbers"))
        .collect();
    let width = rows[0].len();
    let values: Vec<f32> = rows
        .iter()
        .cycle()
        .take(instances)
        .flatten()
        .copied()
        .collect();
    let tensor = HostTensor::new(vec![instances, width], TensorData::F32(values)).unwrap();
    let mut proto: TensorProto = tensor.to_tensor_proto();
    if proto.tensor_content.is_empty() {
        proto = tensor.to_typed_tensor_proto();
    }
    assert_eq!(proto.dtype, DataType::Float as i32);
    let request = PredictRequest {
        model_spec: Some(ModelSpec {
            name: "mnist".into(),
            version_choice: None,
            signature_name: "serving_default".into(),
        }),
        inputs: [("image".to_string(), proto)].into_iter().collect(),
        output_filter: Vec::new(),
    };

    // The gRPC message frame (uncompressed flag, big-endian length, protobuf), encoded once.
    let message = request.encode_to_vec();
    let mut frame = Vec::with_capacity(5 + message.len());
    frame.push(0);
    frame.extend_from_slice(
        &u32::try_from(message.len())
            .expect("request under 4 GiB")
            .to_be_bytes(),
    );
    frame.extend_from_slice(&message);
    let frame = Bytes::from(frame);
    let uri: http::Uri = format!("http://{addr}/tensorflow.serving.PredictionService/Predict")
        .parse()
        .expect("ADDR is HOST:PORT");

    let started = Instant::now();
    let deadline = started + duration;
    let threads: Vec<_> = (0..connections)
        .map(|connection| {
            let streams =
                concurrency / connections + usize::from(connection < concurrency % connections);
            let (addr, uri, frame) = (addr.clone(), uri.clone(), frame.clone());
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(load_one_connection(addr, uri, frame, streams, deadline))
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut failed = 0;
    for thread in threads {
        let (mine, bad) = thread.join().unwrap();
        latencies.extend(mine);
        failed += bad;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let rps = latencies.len() as f64 / elapsed;
    println!(
        "| {label} | {mode} | {concurrency} | {rps:.0} | {:.0} | {:.2} | {:.2} | {failed} |",
        rps * instances as f64,
        percentile(0.50),
        percentile(0.99),
    );
}

/// Runs `streams` closed-loop callers over one HTTP/2 connection until `deadline`; returns the
/// latencies of the calls that succeeded and the number that failed.
async fn load_one_connection(
    addr: String,
    uri: http::Uri,
    frame: Bytes,
    streams: usize,
    deadline: Instant,
) -> (Vec<Duration>, usize) {
    let tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("cannot connect");
    tcp.set_nodelay(true).unwrap();
    // Windows large enough that flow control never stalls a 10,000-instance answer.
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(1 << 24)
        .initial_connection_window_size(1 << 26)
        .handshake::<_, Bytes>(tcp)
        .await
        .expect("HTTP/2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let callers: Vec<_> = (0..streams)
        .map(|_| {
            let (mut client, uri, frame) = (client.clone(), uri.clone(), frame.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut failed = 0usize;
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    match predict(&mut client, &uri, &frame).await {
                        Ok(()) => latencies.push(sent.elapsed()),
                        Err(why) => {
                            if failed == 0 {
                                eprintln!("grpc_load: a call failed: {why}");
                            }
                            failed += 1;
                        }
                    }
                }
                (latencies, failed)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut failed = 0;
    for caller in callers {
        let (mine, bad) = caller.await.unwrap();
        latencies.extend(mine);
        failed += bad;
    }
    (latencies, failed)
}

/// One unary gRPC call: the request frame out, the whole answer in, and its `grpc-status`
/// (in the trailers, or in the headers of a trailers-only answer) checked.
async fn predict(
    client: &mut h2::client::SendRequest<Bytes>,
    uri: &http::Uri,
    frame: &Bytes,
) -> Result<(), String> {
    let request = http::Request::post(uri.clone())
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .map_err(|e| e.to_string())?;
    let mut ready = client.clone().ready().await.map_err(|e| e.to_string())?;
    let (answer, mut body_out) = ready
        .send_request(request, false)
        .map_err(|e| e.to_string())?;
    // Sent as flow control grants capacity: data queued beyond the peer's window can sit in h2's
    // buffer until the server's request timeout (seen with 16 streams of 100 instances).
    let mut rest = frame.clone();
    while !rest.is_empty() {
        body_out.reserve_capacity(rest.len());
        let granted = std::future::poll_fn(|cx| body_out.poll_capacity(cx))
            .await
            .ok_or("the stream closed before the request was sent")?
            .map_err(|e| e.to_string())?;
        if granted == 0 {
            continue;
        }
        let chunk = rest.split_to(granted.min(rest.len()));
        body_out
            .send_data(chunk, rest.is_empty())
            .map_err(|e| e.to_string())?;
    }
    let answer = answer.await.map_err(|e| e.to_string())?;
    if !answer.status().is_success() {
        return Err(format!("HTTP {}", answer.status()));
    }
    if let Some(status) = answer.headers().get("grpc-status") {
        return if status == "0" {
            Ok(())
        } else {
            Err(format!("grpc-status {status:?}"))
        };
    }
    let mut body = answer.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.map_err(|e| e.to_string())?;
    match trailers.as_ref().and_then(|t| t.get("grpc-status")) {
        Some(status) if status == "0" => Ok(()),
        other => Err(format!("grpc-status {other:?}")),
    }
}
