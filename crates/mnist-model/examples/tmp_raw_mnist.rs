use std::time::Instant;
use mnist_model::*;
fn load(dir: &str, name: &str, off: usize) -> Vec<u8> { std::fs::read(format!("{dir}/{name}")).unwrap()[off..].to_vec() }
fn main() {
    let dir = "/tmp/mnist_raw";
    let seed: u64 = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(1);
    let threads: usize = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(2);
    let tx: Vec<f32> = load(dir, "train-images-idx3-ubyte", 16).iter().map(|&p| p as f32 / 255.0).collect();
    let ty = load(dir, "train-labels-idx1-ubyte", 8);
    let vx: Vec<f32> = load(dir, "t10k-images-idx3-ubyte", 16).iter().map(|&p| p as f32 / 255.0).collect();
    let vy = load(dir, "t10k-labels-idx1-ubyte", 8);
    let mut model = Mlp::new(ModelConfig::default(), seed, &Device::Cpu, &EngineOptions { threads: Some(threads), ..Default::default() }).unwrap();
    let opt = TrainConfig::default().optimizer();
    // shuffle
    let mut idx: Vec<usize> = (0..60000).collect();
    let mut s = seeds::shuffle_seed(seed, 0) | 1;
    for i in (1..idx.len()).rev() { s ^= s << 13; s ^= s >> 7; s ^= s << 17; let j = (s % (i as u64 + 1)) as usize; idx.swap(i, j); }
    let mut bx = vec![0f32; 32 * 784];
    let mut by = vec![0u8; 32];
    let start = Instant::now();
    let mut run = RunningMetrics::new();
    for chunk in idx.chunks(32) {
        for (r, &i) in chunk.iter().enumerate() { bx[r*784..(r+1)*784].copy_from_slice(&tx[i*784..(i+1)*784]); by[r] = ty[i]; }
        let n = chunk.len();
        run.add(&model.train_step(&bx[..n*784], &by[..n], &opt).unwrap());
    }
    let secs = start.elapsed().as_secs_f64();
    let e = model.evaluate(&vx, &vy).unwrap();
    println!("seed {seed}: epoch {secs:.3}s train loss {:.4} acc {:.4} | test loss {:.4} acc {:.4}", run.loss(), run.accuracy(), e.mean_loss(), e.accuracy());
}
