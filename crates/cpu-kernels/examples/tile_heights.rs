//! What a multiply-add costs in each inference tile height, per ISA: the measurement behind
//! the cost table in `src/infer.rs` (`height_costs`) that picks each block's tile height.
//!
//! ```text
//! cargo run --release -p cpu-kernels --example tile_heights -- [--data testdata/mnist] [--rounds 15]
//! ```
//!
//! Runs the reference MLP's two wide layers (784 -> 512 on the MNIST t10k images / 255, then
//! 512 -> 256 on that layer's ReLU output), with seeded random weights, on 10,000 rows with
//! every tile height forced in turn ([`DenseLayer::forward_with_tile_height`]). Heights are
//! interleaved within each round so that a burst of load on the machine hits all of them; the
//! best round counts. A tile runs over the union of its rows' non-zero inputs, so the
//! multiply-adds actually run are counted per height, and the cost reported is nanoseconds
//! per 1000 of them, and relative to the tallest tile: the numbers `height_costs` holds.

// A benchmark driver: a failure should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use cpu_kernels::infer::{MAX_TILE_ROWS, ROW_BLOCK};
use cpu_kernels::{Activation, DenseLayer, Isa, PANEL};
use test_rng::TestRng;

fn main() {
    let mut data = "testdata/mnist".to_string();
    let mut rounds = 15usize;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--data" => data = value,
            "--rounds" => rounds = value.parse().expect("--rounds: a number"),
            other => panic!("unknown flag {other}"),
        }
    }
    let read = |name: &str| std::fs::read(format!("{data}/{name}")).expect("MNIST t10k file");
    let set = idx_dataset::Dataset::from_idx_bytes(
        "images",
        &read("t10k-images-idx3-ubyte.gz"),
        "labels",
        &read("t10k-labels-idx1-ubyte.gz"),
    )
    .expect("MNIST t10k");
    let images: Vec<f32> = set.pixels().iter().map(|&p| f32::from(p) / 255.0).collect();

    let mut rng = TestRng::new(7);
    let mut glorot = |k: usize, n: usize| -> Vec<f32> {
        let limit = (6.0 / (k + n) as f32).sqrt();
        (0..k * n)
            .map(|_| (rng.unit() * 2.0 - 1.0) * limit)
            .collect()
    };
    let first =
        DenseLayer::new(&glorot(784, 512), 784, 512, false, None, Activation::Relu).unwrap();
    let second =
        DenseLayer::new(&glorot(512, 256), 512, 256, false, None, Activation::Relu).unwrap();
    let hidden = first.forward_with(Isa::Portable, &images).unwrap();

    println!(
        "CPU: {}; {} threads; best of {rounds} rounds; 10,000 rows\n",
        cpu_name(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "| ISA | layer | height | nonzero share of inputs run | ms | ns / 1000 MACs run | cost vs tallest |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    // The portable kernel runs one-row tiles only.
    for isa in Isa::available()
        .into_iter()
        .filter(|&isa| isa != Isa::Portable)
    {
        for (name, layer, x) in [
            ("784->512", &first, &images),
            ("512->256", &second, &hidden),
        ] {
            let heights: Vec<usize> = (1..=MAX_TILE_ROWS).collect();
            let mut best = vec![f64::INFINITY; heights.len()];
            for _ in 0..rounds {
                for (i, &h) in heights.iter().enumerate() {
                    let start = Instant::now();
                    let out = layer.forward_with_tile_height(isa, x, h).unwrap();
                    best[i] = best[i].min(start.elapsed().as_secs_f64());
                    std::hint::black_box(out);
                }
            }
            let per_mac: Vec<f64> = heights
                .iter()
                .zip(&best)
                .map(|(&h, &t)| t * 1e12 / macs_run(x, layer, h) as f64)
                .collect();
            let tallest = per_mac[per_mac.len() - 1];
            for (i, &h) in heights.iter().enumerate() {
                let share =
                    macs_run(x, layer, h) as f64 / layer.macs(x.len() / layer.rows_in()) as f64;
                println!(
                    "| {isa:?} | {name} | {h} | {:.0}% | {:.2} | {:.1} | {:.2} |",
                    share * 100.0,
                    best[i] * 1e3,
                    per_mac[i],
                    per_mac[i] / tallest
                );
            }
        }
    }
}

/// Multiply-adds the kernels run with tiles of `height` rows: per tile, the union of its rows'
/// non-zero inputs times its rows times the padded output width (blocks of `ROW_BLOCK` rows).
fn macs_run(x: &[f32], layer: &DenseLayer, height: usize) -> usize {
    let k = layer.rows_in();
    let padded = layer.cols().div_ceil(PANEL) * PANEL;
    let rows = x.len() / k;
    let mut total = 0;
    for block in (0..rows).step_by(ROW_BLOCK) {
        let end = (block + ROW_BLOCK).min(rows);
        for tile in (block..end).step_by(height) {
            let tile_end = (tile + height).min(end);
            let union = (0..k)
                .filter(|&j| (tile..tile_end).any(|r| x[r * k + j] != 0.0))
                .count();
            total += union * (tile_end - tile) * padded;
        }
    }
    total
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}
