//! In-process inference benchmark: `LoadedModel::run` against TensorFlow and PyTorch, in one go.
//!
//! ```text
//! cargo run --release -p savedmodel-runtime --example inference_bench -- \
//!     --model checkpoints/model [--data testdata/mnist] [--batches 1,32,256,10000] \
//!     [--seconds 1.5] [--peers-python .venv-peers/bin/python] [--threads 2] [--no-peers]
//! ```
//!
//! The model must take `[batch, 784]` floats (the trainer's export, the tutorial fixtures).
//! Inputs are the first rows of the MNIST t10k images, pixel/255. Every batch size is warmed up
//! and then timed in 5 rounds of about `--seconds / 5`; the best round's mean time per call is
//! reported (the same rule as `bench/peers/inference.py`). Rounds of the three contenders are
//! interleaved per batch size: ours, then TensorFlow, then PyTorch, so that a burst of load on
//! the machine hits all of them. Prints a Markdown table with the CPU, load average and thread
//! settings.

// A benchmark driver: a failure should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

use candle_core::Device;
use savedmodel_runtime::{HostTensor, LoadedModel, TensorData};

struct Args {
    model: String,
    data: String,
    batches: Vec<usize>,
    seconds: f64,
    peers_python: String,
    threads: usize,
    peers: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        model: String::new(),
        data: "testdata/mnist".into(),
        batches: vec![1, 32, 256, 10_000],
        seconds: 1.5,
        peers_python: ".venv-peers/bin/python".into(),
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        peers: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => args.model = value(),
            "--data" => args.data = value(),
            "--batches" => {
                args.batches = value()
                    .split(',')
                    .map(|b| b.trim().parse().expect("--batches: comma-separated sizes"))
                    .collect()
            }
            "--seconds" => args.seconds = value().parse().expect("--seconds: a number"),
            "--peers-python" => args.peers_python = value(),
            "--threads" => args.threads = value().parse().expect("--threads: a number"),
            "--no-peers" => args.peers = false,
            other => panic!("unknown flag {other} (see the example's doc comment)"),
        }
    }
    assert!(!args.model.is_empty(), "--model DIR is required");
    args
}

fn mnist_test_images(dir: &str) -> Vec<f32> {
    let read = |name: &str| std::fs::read(format!("{dir}/{name}")).expect("MNIST file");
    let images = read("t10k-images-idx3-ubyte.gz");
    let labels = read("t10k-labels-idx1-ubyte.gz");
    let set = idx_dataset::Dataset::from_idx_bytes("images", &images, "labels", &labels)
        .expect("MNIST t10k");
    set.pixels().iter().map(|&p| f32::from(p) / 255.0).collect()
}

/// Best mean seconds per call over 5 rounds (after one warm-up call), and the number of calls.
fn timed(mut call: impl FnMut(), seconds: f64) -> (f64, usize) {
    let start = Instant::now();
    call();
    let one = start.elapsed().as_secs_f64().max(1e-7);
    let per_round = ((seconds / 5.0 / one) as usize).max(1);
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..per_round {
            call();
        }
        best = best.min(start.elapsed().as_secs_f64() / per_round as f64);
    }
    (best, per_round * 5)
}

/// Runs a peer for one batch size; `None` (with a note on stderr) if it cannot run.
fn peer(args: &Args, framework: &str, batch: usize) -> Option<(String, f64)> {
    let output = Command::new(&args.peers_python)
        .args(["bench/peers/inference.py", "--framework", framework])
        .args(["--model", &args.model, "--data", &args.data])
        .args(["--batches", &batch.to_string()])
        .args(["--threads", &args.threads.to_string()])
        .args(["--seconds", &args.seconds.to_string()])
        .output();
    let output = match output {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            eprintln!(
                "{framework} peer failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            return None;
        }
        Err(e) => {
            eprintln!("{framework} peer: cannot run {}: {e}", args.peers_python);
            return None;
        }
    };
    let line = String::from_utf8_lossy(&output.stdout);
    let doc: serde_json::Value = serde_json::from_str(line.lines().last()?).ok()?;
    Some((
        format!(
            "{} {}",
            doc["framework"].as_str()?,
            doc["version"].as_str()?
        ),
        doc["seconds_per_call"].as_f64()?,
    ))
}

fn main() {
    let args = parse_args();
    let images = mnist_test_images(&args.data);
    let location = storage::Location::parse(&args.model).expect("--model location");
    let model = LoadedModel::load_blocking(&location, &["serve"], &Device::Cpu).expect("model");
    let signature = model.signature("serving_default").expect("serving_default");
    let (input, _) = signature
        .inputs
        .iter()
        .next()
        .expect("the signature has an input");
    let input = input.clone();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let mut rows = Vec::new();
    let mut names = BTreeMap::new();
    for &batch in &args.batches {
        let x = HostTensor::new(
            vec![batch, 784],
            TensorData::F32(images[..batch * 784].to_vec()),
        )
        .expect("batch");
        let feeds = BTreeMap::from([(input.clone(), x)]);
        let (ours, _) = timed(
            || {
                model.run("serving_default", &feeds).expect("run");
            },
            args.seconds,
        );
        let mut row = vec![("ours", Some(ours))];
        if args.peers {
            for (key, framework) in [("tf", "tf"), ("torch", "torch")] {
                let result = peer(&args, framework, batch);
                if let Some((name, _)) = &result {
                    names.insert(key, name.clone());
                }
                row.push((key, result.map(|r| r.1)));
            }
        }
        eprintln!("batch {batch}: {row:?}");
        rows.push((batch, row));
    }
    println!(
        "Model: {}; MNIST t10k rows; CPU: {cpu} ({} threads for the peers; ours: see cpu-kernels `infer`); load average at start: {}",
        args.model,
        args.threads,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "Peers: {}",
        names.values().cloned().collect::<Vec<_>>().join(", ")
    );
    println!();
    println!(
        "| batch | ours: µs/call | ours: inst/s | TF: µs/call | TF: inst/s | PyTorch: µs/call | PyTorch: inst/s | ours / TF | ours / PyTorch |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (batch, row) in rows {
        let get = |k: &str| row.iter().find(|(n, _)| *n == k).and_then(|(_, v)| *v);
        let cell = |v: Option<f64>| match v {
            Some(s) => format!("{:.1} | {:.0}", s * 1e6, batch as f64 / s),
            None => "– | –".to_string(),
        };
        let ratio = |peer: Option<f64>| match (get("ours"), peer) {
            (Some(o), Some(p)) => format!("{:.2}×", p / o),
            _ => "–".into(),
        };
        println!(
            "| {batch} | {} | {} | {} | {} | {} |",
            cell(get("ours")),
            cell(get("tf")),
            cell(get("torch")),
            ratio(get("tf")),
            ratio(get("torch"))
        );
    }
}
