//! Training behaviour of `Mlp`: the CPU engine against an independent f64 reference and against
//! the candle engine, determinism, and learning on a small synthetic problem.

// Helpers outside #[test] functions unwrap too: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mnist_model::{
    Activation, Backend, Device, EngineOptions, Mlp, ModelConfig, RunningMetrics, SgdMomentum,
};

use test_rng::uniform;

/// A learnable toy problem: noise pixels, with the pixel group of the label's class brightened.
fn toy_data(rows: usize, input_dim: usize, classes: usize, seed: u64) -> (Vec<f32>, Vec<u8>) {
    let mut x = uniform(rows * input_dim, seed);
    let picks = uniform(rows, seed ^ 0xABCD);
    let group = input_dim / classes;
    let labels: Vec<u8> = picks
        .iter()
        .map(|p| ((p * classes as f32) as usize).min(classes - 1) as u8)
        .collect();
    for (row, &label) in x.chunks_exact_mut(input_dim).zip(&labels) {
        let start = label as usize * group;
        for v in &mut row[start..start + group] {
            *v = 0.6 + 0.4 * *v;
        }
    }
    (x, labels)
}

fn cpu(threads: usize) -> EngineOptions {
    EngineOptions {
        threads: Some(threads),
        backend: Backend::Auto,
        ..EngineOptions::default()
    }
}

fn small_config(dropout: f32) -> ModelConfig {
    // Widths that are not multiples of the CPU engine's 16-column panels, to exercise padding.
    ModelConfig {
        input_dim: 37,
        hidden_units: vec![24, 40],
        num_classes: 3,
        dropout_rate: dropout,
    }
}

fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / (1e-3 + x.abs().max(y.abs())))
        .fold(0.0, f32::max)
}

/// Textbook f64 implementation of the same network without dropout: forward, softmax
/// cross-entropy, backprop, TF momentum. Independent of the crate's code paths.
struct Reference {
    kernels: Vec<Vec<f64>>,
    biases: Vec<Vec<f64>>,
    accum_k: Vec<Vec<f64>>,
    accum_b: Vec<Vec<f64>>,
    dims: Vec<(usize, usize)>,
}

impl Reference {
    fn from_model(model: &Mlp) -> Self {
        let w = model.weights().unwrap();
        Reference {
            kernels: w
                .iter()
                .map(|l| l.kernel.iter().map(|&v| v as f64).collect())
                .collect(),
            biases: w
                .iter()
                .map(|l| l.bias.iter().map(|&v| v as f64).collect())
                .collect(),
            accum_k: w.iter().map(|l| vec![0.0; l.kernel.len()]).collect(),
            accum_b: w.iter().map(|l| vec![0.0; l.bias.len()]).collect(),
            dims: w.iter().map(|l| (l.in_dim, l.out_dim)).collect(),
        }
    }

    /// Returns the batch's mean loss.
    fn step(&mut self, x: &[f32], labels: &[u8], lr: f64, momentum: f64) -> f64 {
        let m = labels.len();
        let last = self.dims.len() - 1;
        let mut acts: Vec<Vec<f64>> = vec![x.iter().map(|&v| v as f64).collect()];
        for (l, &(fan_in, units)) in self.dims.iter().enumerate() {
            let input = &acts[l];
            let mut out = vec![0.0; m * units];
            for i in 0..m {
                for j in 0..units {
                    let mut s = self.biases[l][j];
                    for k in 0..fan_in {
                        s += input[i * fan_in + k] * self.kernels[l][k * units + j];
                    }
                    out[i * units + j] = if l < last { s.max(0.0) } else { s };
                }
            }
            acts.push(out);
        }
        let classes = self.dims[last].1;
        let mut dy = vec![0.0; m * classes];
        let mut loss = 0.0;
        for i in 0..m {
            let z = &acts[last + 1][i * classes..(i + 1) * classes];
            let max = z.iter().cloned().fold(f64::MIN, f64::max);
            let sum: f64 = z.iter().map(|v| (v - max).exp()).sum();
            let y = labels[i] as usize;
            loss += max + sum.ln() - z[y];
            for c in 0..classes {
                let p = (z[c] - max).exp() / sum;
                dy[i * classes + c] = (p - if c == y { 1.0 } else { 0.0 }) / m as f64;
            }
        }
        for l in (0..=last).rev() {
            let (fan_in, units) = self.dims[l];
            let input = &acts[l];
            let mut dx = vec![0.0; m * fan_in];
            if l > 0 {
                for i in 0..m {
                    for k in 0..fan_in {
                        let mut s = 0.0;
                        for j in 0..units {
                            s += dy[i * units + j] * self.kernels[l][k * units + j];
                        }
                        dx[i * fan_in + k] = if input[i * fan_in + k] > 0.0 { s } else { 0.0 };
                    }
                }
            }
            for k in 0..fan_in {
                for j in 0..units {
                    let g: f64 = (0..m)
                        .map(|i| input[i * fan_in + k] * dy[i * units + j])
                        .sum();
                    let a = &mut self.accum_k[l][k * units + j];
                    *a = momentum * *a + g;
                    self.kernels[l][k * units + j] -= lr * *a;
                }
            }
            for j in 0..units {
                let g: f64 = (0..m).map(|i| dy[i * units + j]).sum();
                let a = &mut self.accum_b[l][j];
                *a = momentum * *a + g;
                self.biases[l][j] -= lr * *a;
            }
            dy = dx;
        }
        loss / m as f64
    }
}

#[test]
fn cpu_engine_matches_an_independent_f64_reference() {
    let config = small_config(0.0);
    let (x, y) = toy_data(200, config.input_dim, config.num_classes, 3);
    let opt = SgdMomentum {
        learning_rate: 0.1,
        momentum: 0.9,
    };
    for threads in [1, 2] {
        let mut model = Mlp::new(config.clone(), 11, &Device::Cpu, &cpu(threads)).unwrap();
        let mut reference = Reference::from_model(&model);
        // Batch sizes that exercise every row-tile remainder, including a single row.
        for (step, batch) in [32usize, 7, 1, 33, 13, 32, 50, 32].iter().enumerate() {
            let start = (step * 23) % (200 - batch);
            let xs = &x[start * config.input_dim..(start + batch) * config.input_dim];
            let ys = &y[start..start + batch];
            let got = model.train_step(xs, ys, &opt).unwrap();
            let want = reference.step(xs, ys, 0.1, 0.9);
            assert!(
                (got.mean_loss() - want).abs() < 1e-4 * (1.0 + want.abs()),
                "step {step}: loss {} vs reference {want}",
                got.mean_loss()
            );
        }
        for (l, layer) in model.weights().unwrap().iter().enumerate() {
            let kernel: Vec<f32> = reference.kernels[l].iter().map(|&v| v as f32).collect();
            let bias: Vec<f32> = reference.biases[l].iter().map(|&v| v as f32).collect();
            let dk = max_rel_diff(&layer.kernel, &kernel);
            let db = max_rel_diff(&layer.bias, &bias);
            assert!(
                dk < 2e-3 && db < 2e-3,
                "layer {l}: kernel diff {dk}, bias diff {db}"
            );
        }
    }
}

#[test]
fn cpu_engine_and_candle_engine_follow_the_same_trajectory() {
    // Same seed -> same initial weights and the same dropout masks in both engines.
    let config = small_config(0.3);
    let (x, y) = toy_data(256, config.input_dim, config.num_classes, 5);
    let opt = SgdMomentum {
        learning_rate: 0.05,
        momentum: 0.9,
    };
    let mut fast = Mlp::new(config.clone(), 21, &Device::Cpu, &cpu(2)).unwrap();
    let candle_opts = EngineOptions {
        threads: None,
        backend: Backend::Candle,
        ..EngineOptions::default()
    };
    let mut reference = Mlp::new(config.clone(), 21, &Device::Cpu, &candle_opts).unwrap();
    assert!(reference.device_description().contains("candle"));
    assert_eq!(fast.weights().unwrap(), reference.weights().unwrap());
    for (xs, ys) in x.chunks(32 * config.input_dim).zip(y.chunks(32)) {
        let a = fast.train_step(xs, ys, &opt).unwrap();
        let b = reference.train_step(xs, ys, &opt).unwrap();
        assert!(
            (a.mean_loss() - b.mean_loss()).abs() < 1e-4,
            "{a:?} vs {b:?}"
        );
    }
    for (a, b) in fast
        .weights()
        .unwrap()
        .iter()
        .zip(reference.weights().unwrap())
    {
        let d = max_rel_diff(&a.kernel, &b.kernel);
        assert!(d < 1e-3, "{}: kernels differ by {d}", a.name);
        assert!(
            max_rel_diff(&a.bias, &b.bias) < 1e-3,
            "{}: biases differ",
            a.name
        );
    }
    let pa = fast.predict(&x[..40 * config.input_dim]).unwrap();
    let pb = reference.predict(&x[..40 * config.input_dim]).unwrap();
    assert!(max_rel_diff(&pa.probabilities, &pb.probabilities) < 1e-3);
    let ea = fast.evaluate(&x, &y).unwrap();
    let eb = reference.evaluate(&x, &y).unwrap();
    assert!((ea.mean_loss() - eb.mean_loss()).abs() < 1e-4);
}

fn train_epochs(model: &mut Mlp, x: &[f32], y: &[u8], epochs: usize) -> Vec<f64> {
    let input_dim = model.config().input_dim;
    let opt = SgdMomentum {
        learning_rate: 0.05,
        momentum: 0.9,
    };
    let mut losses = vec![];
    for _ in 0..epochs {
        let mut running = RunningMetrics::new();
        for (xs, ys) in x.chunks(32 * input_dim).zip(y.chunks(32)) {
            running.add(&model.train_step(xs, ys, &opt).unwrap());
        }
        losses.push(running.loss());
    }
    losses
}

#[test]
fn training_is_bit_identical_on_every_isa() {
    // Every kernel ISA this CPU has (portable, AVX2+FMA, AVX-512) must give the same bits, so a
    // model trained on an AVX2 machine is the one trained on an AVX-512 machine. Widths that
    // are not multiples of the 16-column panels, dropout on, two threads.
    let config = ModelConfig {
        input_dim: 50,
        hidden_units: vec![40, 24],
        num_classes: 5,
        dropout_rate: 0.2,
    };
    let (x, y) = toy_data(320, 50, 5, 13);
    let isas = mnist_model::Isa::available();
    let run = |isa: mnist_model::Isa| {
        let options = EngineOptions {
            threads: Some(2),
            isa: Some(isa),
            ..EngineOptions::default()
        };
        let mut model = Mlp::new(config.clone(), 5, &Device::Cpu, &options).unwrap();
        let losses = train_epochs(&mut model, &x, &y, 2);
        let bits: Vec<u32> = model
            .weights()
            .unwrap()
            .iter()
            .flat_map(|l| l.kernel.iter().chain(&l.bias).map(|v| v.to_bits()))
            .collect();
        (losses, bits)
    };
    let reference = run(isas[0]);
    assert!(
        reference.0[1] < reference.0[0],
        "the run must learn something"
    );
    for &isa in &isas[1..] {
        let other = run(isa);
        assert_eq!(reference.0, other.0, "{} losses", isa.name());
        assert!(
            reference.1 == other.1,
            "{} weights differ from {}",
            isa.name(),
            isas[0].name()
        );
    }
    eprintln!(
        "compared: {}",
        isas.iter().map(|i| i.name()).collect::<Vec<_>>().join(", ")
    );
}

#[test]
fn same_seed_gives_bit_identical_results_for_any_thread_count() {
    let config = ModelConfig {
        input_dim: 64,
        hidden_units: vec![48, 32],
        num_classes: 4,
        dropout_rate: 0.2,
    };
    let (x, y) = toy_data(640, 64, 4, 9);
    let run = |seed: u64, threads: usize| {
        let mut model = Mlp::new(config.clone(), seed, &Device::Cpu, &cpu(threads)).unwrap();
        let losses = train_epochs(&mut model, &x, &y, 2);
        let eval = model.evaluate(&x, &y).unwrap();
        (losses, eval, model.weights().unwrap())
    };
    let first = run(7, 2);
    let again = run(7, 2);
    // Bit-identical: compare the raw bits, not with a tolerance.
    let bits = |w: &[mnist_model::DenseWeights]| -> Vec<u32> {
        w.iter()
            .flat_map(|l| l.kernel.iter().chain(&l.bias).map(|v| v.to_bits()))
            .collect()
    };
    assert_eq!(first.0, again.0);
    assert_eq!(first.1, again.1);
    assert_eq!(bits(&first.2), bits(&again.2));
    // The CPU engine reduces every element in a fixed order, so the thread count does not matter.
    for threads in [1, 3] {
        let other = run(7, threads);
        assert_eq!(first.0, other.0, "{threads} threads");
        assert_eq!(bits(&first.2), bits(&other.2), "{threads} threads");
    }
    let different = run(8, 2);
    assert_ne!(first.0, different.0);
    assert_ne!(bits(&first.2), bits(&different.2));
}

#[test]
fn learns_a_separable_problem_and_predicts_consistently() {
    let config = ModelConfig {
        input_dim: 40,
        hidden_units: vec![64, 32],
        num_classes: 4,
        dropout_rate: 0.1,
    };
    let (x, y) = toy_data(2000, 40, 4, 1);
    let (tx, ty) = toy_data(500, 40, 4, 2);
    let mut model = Mlp::new(config.clone(), 3, &Device::Cpu, &cpu(2)).unwrap();
    let before = model.evaluate(&tx, &ty).unwrap();
    let losses = train_epochs(&mut model, &x, &y, 8);
    let after = model.evaluate(&tx, &ty).unwrap();
    assert!(
        losses[7] < losses[0],
        "training loss did not fall: {losses:?}"
    );
    assert!(after.mean_loss() < before.mean_loss());
    assert!(after.accuracy() > 0.9, "test accuracy {}", after.accuracy());
    assert_eq!(model.steps_taken(), 8 * 2000u64.div_ceil(32));

    let p = model.predict(&tx).unwrap();
    assert_eq!(p.rows(), 500);
    assert_eq!(p.probabilities.len(), 500 * 4);
    let mut correct = 0;
    for (r, &label) in ty.iter().enumerate() {
        let row = p.row(r).unwrap();
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(row.iter().all(|&v| (0.0..=1.0).contains(&v)));
        let best = (0..4).fold(0, |b, c| if row[c] > row[b] { c } else { b });
        assert_eq!(p.classes[r], best);
        correct += usize::from(p.classes[r] == label as usize);
    }
    assert_eq!(correct, after.correct);
    assert!(p.row(500).is_none());
}

#[test]
fn weights_use_keras_names_layout_and_initialisation() {
    let config = ModelConfig::default();
    let model = Mlp::new(config.clone(), 0, &Device::Cpu, &cpu(1)).unwrap();
    let w = model.weights().unwrap();
    let names: Vec<&str> = w.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["dense", "dense_1", "dense_2"]);
    let dims: Vec<(usize, usize)> = w.iter().map(|l| (l.in_dim, l.out_dim)).collect();
    assert_eq!(dims, [(784, 512), (512, 256), (256, 10)]);
    assert_eq!(
        w.iter().map(|l| l.activation).collect::<Vec<_>>(),
        [Activation::Relu, Activation::Relu, Activation::Linear]
    );
    assert_eq!(config.parameter_count(), 535_818);
    for l in &w {
        assert_eq!(l.kernel.len(), l.in_dim * l.out_dim);
        assert!(
            l.bias.iter().all(|&b| b == 0.0),
            "{}: biases start at zero",
            l.name
        );
        let limit = (6.0 / (l.in_dim + l.out_dim) as f32).sqrt();
        let max = l.kernel.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(
            max <= limit && max > 0.99 * limit,
            "{}: max {max}, limit {limit}",
            l.name
        );
    }
    // Layout [in, out]: a model whose only nonzero first-layer weight is kernel[3][5] routes
    // input feature 3 to unit 5.
    let mut probe = w.clone();
    for l in &mut probe {
        l.kernel.iter_mut().for_each(|v| *v = 0.0);
    }
    probe[0].kernel[3 * 512 + 5] = 1.0;
    probe[1].kernel[5 * 256 + 7] = 1.0;
    probe[2].kernel[7 * 10 + 2] = 1.0;
    let m = Mlp::from_weights(config, &probe, 0, &Device::Cpu, &cpu(2)).unwrap();
    let mut x = vec![0f32; 784];
    x[3] = 5.0;
    let p = m.predict(&x).unwrap();
    assert_eq!(p.classes, [2]);
    let mut x2 = vec![0f32; 784];
    x2[4] = 5.0;
    let p2 = m.predict(&x2).unwrap();
    assert!(
        (p2.probabilities[2] - 0.1).abs() < 1e-6,
        "uniform output without the path"
    );
}

#[test]
fn from_weights_round_trips_and_rejects_mismatches() {
    let config = small_config(0.2);
    let (x, y) = toy_data(64, config.input_dim, config.num_classes, 4);
    let mut model = Mlp::new(config.clone(), 5, &Device::Cpu, &cpu(2)).unwrap();
    train_epochs(&mut model, &x, &y, 1);
    let w = model.weights().unwrap();
    let copy = Mlp::from_weights(config.clone(), &w, 0, &Device::Cpu, &cpu(1)).unwrap();
    assert_eq!(copy.weights().unwrap(), w);
    assert_eq!(copy.predict(&x).unwrap(), model.predict(&x).unwrap());

    let mut short = w.clone();
    short[1].kernel.pop();
    let err = Mlp::from_weights(config.clone(), &short, 0, &Device::Cpu, &cpu(1))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("dense_1") && err.contains("kernel"), "{err}");
    let err = Mlp::from_weights(config.clone(), &w[..2], 0, &Device::Cpu, &cpu(1))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("number of Dense layers"), "{err}");
    let mut wrong_act = w.clone();
    wrong_act[2].activation = Activation::Relu;
    let err = Mlp::from_weights(config, &wrong_act, 0, &Device::Cpu, &cpu(1))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("dense_2") && err.contains("Linear"), "{err}");
}
