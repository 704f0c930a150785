//! Times training epochs of the reference network on synthetic MNIST-shaped data (60,000
//! examples, batch 32 unless given), so the engine can be measured without any I/O:
//!
//!     cargo run --release -p mnist-model --example epoch_bench -- [threads] [epochs] [batch]
use std::time::Instant;

use mnist_model::{Device, EngineOptions, Mlp, ModelConfig, TrainConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let threads: Option<usize> = args.next().map(|a| a.parse()).transpose()?;
    let epochs: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1);
    let batch: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(32);
    let n = 60_000;
    let config = ModelConfig::default();
    // Deterministic pseudo-images: sparse-ish pixels in [0, 1], labels tied to the pixels.
    let mut state = 0x1234_5678_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let features: Vec<f32> = (0..n * config.input_dim)
        .map(|_| {
            let v = next();
            if v % 5 < 3 {
                0.0
            } else {
                (v >> 40) as f32 / (1u64 << 24) as f32
            }
        })
        .collect();
    let labels: Vec<u8> = (0..n).map(|_| (next() % 10) as u8).collect();
    let options = EngineOptions {
        threads,
        ..EngineOptions::default()
    };
    let train = TrainConfig::default();
    let mut model = Mlp::new(config.clone(), 1, &Device::Cpu, &options)?;
    println!("engine: {}", model.device_description());
    let opt = train.optimizer();
    for epoch in 0..epochs {
        let start = Instant::now();
        let mut loss = 0.0;
        for (x, y) in features
            .chunks(batch * config.input_dim)
            .zip(labels.chunks(batch))
        {
            loss += model.train_step(x, y, &opt)?.loss_sum;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "epoch {epoch}: {secs:.3} s ({:.1} us/step), mean loss {:.4}",
            secs * 1e6 / n.div_ceil(batch) as f64,
            loss / n as f64
        );
    }
    let start = Instant::now();
    let m = model.evaluate(&features[..10_000 * config.input_dim], &labels[..10_000])?;
    println!(
        "evaluate 10k: {:.3} s, loss {:.4}",
        start.elapsed().as_secs_f64(),
        m.mean_loss()
    );
    Ok(())
}
