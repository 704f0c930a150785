//! A gRPC load client for `bench/serve-load.sh` (PROTOCOL=grpc): TF Serving `Predict` calls from
//! `--concurrency` tasks spread over `--connections` HTTP/2 connections, for `--duration`
//! seconds, each task sending its next request when the previous answer arrived (a closed loop,
//! like wrk's and oha's connections). Prints one Markdown row: req/s, instances/s, p50/p99
//! latency and failed calls.
//!
//! Usage: grpc_load ADDR BODY_ROWS_JSONL INSTANCES CONCURRENCY CONNECTIONS SECONDS LABEL MODE
//! (BODY_ROWS_JSONL: one instance per line, as testdata/sample.json; the request carries the first
//! INSTANCES rows, repeated as needed, as `tensor_content` like `tf.make_tensor_proto`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use savedmodel_format::proto::TensorProto;
use savedmodel_format::{DataType, HostTensor, TensorData};
use serving::grpc::proto::prediction_service_client::PredictionServiceClient;
use serving::grpc::proto::{ModelSpec, PredictRequest};

#[tokio::main]
async fn main() {
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

    let mut channels = Vec::new();
    for _ in 0..connections {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .tcp_nodelay(true)
            .connect()
            .await
            .expect("cannot connect");
        channels.push(channel);
    }
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let mut client = PredictionServiceClient::new(channels[i % connections].clone())
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failed = 0usize;
            while Instant::now() < deadline {
                let sent = Instant::now();
                match client.predict(request.clone()).await {
                    Ok(_) => latencies.push(sent.elapsed()),
                    Err(_) => failed += 1,
                }
            }
            (latencies, failed)
        }));
    }
    let mut latencies = Vec::new();
    let mut failed = 0;
    for task in tasks {
        let (mine, bad) = task.await.unwrap();
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
