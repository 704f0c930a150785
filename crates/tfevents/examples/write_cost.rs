//! Cost of one scalar event, for BENCHMARKS.md: appends `N` (default 100000) scalars to a fresh
//! local event file, as the trainer's TensorBoard observer does, and prints the time per event.
//!
//!     cargo run --release -p tfevents --example write_cost [N]

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count: i64 = match std::env::args().nth(1) {
        Some(text) => text.parse()?,
        None => 100_000,
    };
    let dir = std::env::temp_dir().join(format!("tfevents-write-cost-{}", std::process::id()));
    let run = storage::Location::parse(dir.to_str().ok_or("temp dir is not UTF-8")?)?;
    let mut writer = tfevents::EventWriter::create(&run)?;
    let file = writer.file();
    let start = Instant::now();
    for step in 1..=count {
        writer.write_scalar("batch_loss", step, 1.0 / step as f32)?;
    }
    writer.close()?;
    let seconds = start.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&file)?.len();
    std::fs::remove_dir_all(&dir)?;
    println!(
        "{count} scalar events in {seconds:.3} s: {:.2} us per event, {:.1} bytes per event",
        seconds * 1e6 / count as f64,
        bytes as f64 / count as f64
    );
    Ok(())
}
