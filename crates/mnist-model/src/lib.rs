//! mnist-model: the Keras MNIST tutorial network, trained exactly the way Keras/TF train it.
//!
//! The network is `Input(784) -> Dense(512, relu) -> Dropout(0.2) -> Dense(256, relu) ->
//! Dropout(0.2) -> Dense(10) -> softmax` (sizes and rate in [`ModelConfig`]), with Keras's
//! initialisation (Glorot-uniform kernels, zero biases), inverted dropout during training only,
//! categorical cross-entropy computed from the logits, and TF1 `MomentumOptimizer` updates
//! (`accum = m * accum + g; w -= lr * accum`) — see `keras_semantics.md` for each rule.
//!
//! # Shape of the crate
//!
//! * [`Mlp`] is the whole model: parameters, momentum slots and the engine that runs them.
//!   [`Mlp::train_step`] is one `model.fit` batch; [`Mlp::evaluate`] and [`Mlp::predict`] run
//!   with dropout off. The data pipeline lives elsewhere (`idx-dataset`): the model takes plain
//!   `[rows, input_dim]` feature slices and byte labels, so it can be fed from anything.
//! * The caller picks a candle [`Device`]. On the CPU the model runs on its own engine
//!   (`cpu` module: explicit forward/backward with the fused kernels of `cpu-kernels`, run by a small thread
//!   team that falls back to one thread when a busy machine makes two slower),
//!   because training speed on a small CPU is a requirement and per-op tensor frameworks spend
//!   more time allocating and synchronising than computing at batch size 32. On other devices
//!   (CUDA with the `cuda` feature) it runs the same algorithm as candle tensor ops. Both are
//!   tested against each other.
//! * Weights leave and enter the crate only as [`DenseWeights`]: Keras layout (`kernel` is
//!   `[in, out]`) and Keras names (`dense`, `dense_1`, `dense_2`), which is what the SavedModel
//!   writer needs. Internal layouts (padding, leading dimensions) never escape.
//! * One seed drives everything random (initialisation, dropout masks, shuffle seeds) through
//!   separate ChaCha8 streams ([`seeds`]). With the same seed and thread count, a rerun is
//!   bit-identical; the CPU engine's results do not even depend on the thread count, because
//!   every output element is reduced in a fixed order whichever thread computes it.

mod candle_engine;
mod config;
mod cpu;
mod error;
mod loss;
mod metrics;
pub mod seeds;
mod weights;

pub use candle_core::Device;
pub use config::{MAX_LAYER_WIDTH, ModelConfig, SgdMomentum, TrainConfig};
pub use cpu_kernels::Isa;
pub use error::ModelError;
pub use metrics::{BatchMetrics, RunningMetrics};
pub use weights::{Activation, DenseWeights, keras_layer_name};

use candle_engine::CandleEngine;
use cpu::CpuEngine;
use seeds::DropoutMasks;

/// One layer's `([in, out] kernel, [out] bias)` as the engines hand them over.
type LayerParams = (Vec<f32>, Vec<f32>);

/// Largest batch a training step accepts (bounds the per-step scratch memory).
pub const MAX_BATCH_ROWS: usize = 1 << 16;

/// Largest number of classes (labels are bytes).
pub const MAX_CLASSES: usize = 256;

/// Which implementation runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// The CPU engine for `Device::Cpu`, candle ops for any other device.
    #[default]
    Auto,
    /// Candle tensor ops on every device, the CPU included (slower on the CPU; used to
    /// cross-check the CPU engine and as the GPU path).
    Candle,
}

/// How the model runs (not what it computes).
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Worker threads of the CPU engine. `None`: `RAYON_NUM_THREADS` if set, else every
    /// available core.
    pub threads: Option<usize>,
    pub backend: Backend,
    /// Kernels of the CPU engine. `None`: the best this CPU has ([`Isa::detect`]). Every ISA
    /// trains to the same bits; forcing one is for tests and benchmarks.
    pub isa: Option<Isa>,
}

impl EngineOptions {
    /// The thread count `threads: None` resolves to.
    pub fn resolved_threads(&self) -> usize {
        if let Some(t) = self.threads {
            return t.max(1);
        }
        std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&t| t > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

enum Engine {
    // Boxed: the CPU engine carries its buffers' bookkeeping inline and is much larger.
    Cpu(Box<CpuEngine>),
    Candle(CandleEngine),
}

/// Class probabilities and arg-max classes for a batch of examples.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    pub num_classes: usize,
    /// `[rows, num_classes]` row-major softmax outputs.
    pub probabilities: Vec<f32>,
    /// Arg-max class per row (first index on ties, like TF's CPU ArgMax).
    pub classes: Vec<usize>,
}

impl Predictions {
    pub fn rows(&self) -> usize {
        self.classes.len()
    }

    /// Probabilities of row `r`, or `None` past the end.
    pub fn row(&self, r: usize) -> Option<&[f32]> {
        self.probabilities
            .get(r * self.num_classes..(r + 1) * self.num_classes)
    }
}

/// The reference MLP with its optimizer state, on a chosen device.
pub struct Mlp {
    config: ModelConfig,
    engine: Engine,
    steps: u64,
}

impl Mlp {
    /// A freshly initialised model (Glorot-uniform kernels, zero biases) from `seed`.
    pub fn new(
        config: ModelConfig,
        seed: u64,
        device: &Device,
        options: &EngineOptions,
    ) -> Result<Self, ModelError> {
        config.validate()?;
        let dims = config.layer_dims();
        let key = seeds::key_from_seed(seed);
        let kernels = seeds::glorot_uniform_kernels(key, &dims);
        let biases: Vec<Vec<f32>> = dims.iter().map(|&(_, out)| vec![0f32; out]).collect();
        Self::build(config, &dims, &kernels, &biases, key, device, options)
    }

    /// A model holding the given weights (fresh momentum slots); `seed` drives dropout if it is
    /// trained further. Every layer's name, shape and activation is checked.
    pub fn from_weights(
        config: ModelConfig,
        weights: &[DenseWeights],
        seed: u64,
        device: &Device,
        options: &EngineOptions,
    ) -> Result<Self, ModelError> {
        config.validate()?;
        let dims = config.layer_dims();
        check_layers(&dims, weights)?;
        let kernels: Vec<Vec<f32>> = weights.iter().map(|w| w.kernel.clone()).collect();
        let biases: Vec<Vec<f32>> = weights.iter().map(|w| w.bias.clone()).collect();
        let key = seeds::key_from_seed(seed);
        Self::build(config, &dims, &kernels, &biases, key, device, options)
    }

    /// A model continuing a training run: the given weights and momentum slots (as
    /// [`Mlp::weights`] and [`Mlp::momentum_slots`] returned them), `steps` optimizer steps
    /// already taken (the dropout stream continues from there) and the run's `seed`. Every
    /// layer's name, shape and activation is checked, for the slots as for the weights; with the
    /// same thread count the run continues bit-identically.
    #[allow(clippy::too_many_arguments)]
    pub fn resume(
        config: ModelConfig,
        weights: &[DenseWeights],
        slots: &[DenseWeights],
        steps: u64,
        seed: u64,
        device: &Device,
        options: &EngineOptions,
    ) -> Result<Self, ModelError> {
        let mut model = Self::from_weights(config, weights, seed, device, options)?;
        check_layers(&model.config.layer_dims(), slots)?;
        let raw: Vec<LayerParams> = slots
            .iter()
            .map(|s| (s.kernel.clone(), s.bias.clone()))
            .collect();
        match &mut model.engine {
            Engine::Cpu(e) => e.set_momentum(&raw),
            Engine::Candle(e) => e.set_momentum(&raw)?,
        }
        model.steps = steps;
        Ok(model)
    }

    /// The momentum accumulators (TF1 `Momentum` slots), one per layer, in the same layout,
    /// names and shapes as [`Mlp::weights`].
    pub fn momentum_slots(&self) -> Result<Vec<DenseWeights>, ModelError> {
        let raw = match &self.engine {
            Engine::Cpu(e) => e.momentum(),
            Engine::Candle(e) => e.momentum()?,
        };
        Ok(self.keras_layers(raw))
    }

    fn build(
        config: ModelConfig,
        dims: &[(usize, usize)],
        kernels: &[Vec<f32>],
        biases: &[Vec<f32>],
        key: [u8; 32],
        device: &Device,
        options: &EngineOptions,
    ) -> Result<Self, ModelError> {
        let dropout =
            (config.dropout_rate > 0.0).then(|| DropoutMasks::new(key, config.dropout_rate));
        let engine = match (options.backend, device) {
            (Backend::Auto, Device::Cpu) => Engine::Cpu(Box::new(CpuEngine::new(
                dims,
                kernels,
                biases,
                dropout,
                options.resolved_threads(),
                options.isa.unwrap_or_else(Isa::detect),
            )?)),
            _ => Engine::Candle(CandleEngine::new(device, dims, kernels, biases, dropout)?),
        };
        Ok(Mlp {
            config,
            engine,
            steps: 0,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Optimizer steps taken so far (also the dropout stream position).
    pub fn steps_taken(&self) -> u64 {
        self.steps
    }

    /// Worker threads of the CPU engine (1 for candle devices, whose threading candle manages).
    pub fn threads(&self) -> usize {
        match &self.engine {
            Engine::Cpu(e) => e.threads(),
            Engine::Candle(_) => 1,
        }
    }

    /// Human-readable engine and device, e.g. `cpu (avx2+fma kernels, 2 threads)`.
    pub fn device_description(&self) -> String {
        match &self.engine {
            Engine::Cpu(e) => format!(
                "cpu ({} kernels, {} thread{})",
                e.isa_name(),
                e.threads(),
                if e.threads() == 1 { "" } else { "s" }
            ),
            Engine::Candle(e) => match e.device() {
                Device::Cpu => "cpu (candle ops)".to_string(),
                Device::Cuda(_) => "cuda (candle ops)".to_string(),
                Device::Metal(_) => "metal (candle ops)".to_string(),
            },
        }
    }

    fn check_features(&self, features: &[f32], rows: usize) -> Result<(), ModelError> {
        let input_dim = self.config.input_dim;
        let expected = rows.saturating_mul(input_dim);
        if features.len() != expected {
            return Err(ModelError::FeatureShape {
                rows,
                input_dim,
                expected,
                found: features.len(),
            });
        }
        Ok(())
    }

    fn check_labels(&self, labels: &[u8]) -> Result<(), ModelError> {
        if let Some((row, &label)) = labels
            .iter()
            .enumerate()
            .find(|&(_, &l)| usize::from(l) >= self.config.num_classes)
        {
            return Err(ModelError::LabelOutOfRange {
                row,
                label: usize::from(label),
                num_classes: self.config.num_classes,
            });
        }
        Ok(())
    }

    fn rows_of(&self, features: &[f32]) -> Result<usize, ModelError> {
        let rows = features.len() / self.config.input_dim;
        self.check_features(features, rows)?;
        if rows == 0 {
            return Err(ModelError::EmptyBatch);
        }
        Ok(rows)
    }

    /// One `model.fit` batch: forward with dropout, loss and accuracy (of that forward pass,
    /// as Keras reports them), gradients, momentum update. `features` is `[labels.len(),
    /// input_dim]` row-major.
    pub fn train_step(
        &mut self,
        features: &[f32],
        labels: &[u8],
        optimizer: &SgdMomentum,
    ) -> Result<BatchMetrics, ModelError> {
        optimizer.validate()?;
        let rows = labels.len();
        if rows == 0 {
            return Err(ModelError::EmptyBatch);
        }
        if rows > MAX_BATCH_ROWS {
            return Err(ModelError::InvalidConfig {
                field: "batch_size",
                reason: format!("{rows} rows exceed the maximum of {MAX_BATCH_ROWS}"),
            });
        }
        self.check_features(features, rows)?;
        self.check_labels(labels)?;
        let metrics = match &mut self.engine {
            Engine::Cpu(e) => e.train_step(features, labels, *optimizer, self.steps),
            Engine::Candle(e) => e.train_step(features, labels, *optimizer, self.steps)?,
        };
        self.steps += 1;
        Ok(metrics)
    }

    fn logits(&self, features: &[f32]) -> Result<Vec<f32>, ModelError> {
        match &self.engine {
            Engine::Cpu(e) => Ok(e.logits(features)),
            Engine::Candle(e) => e.logits(features),
        }
    }

    /// Loss and accuracy sums over a batch with dropout off (`model.evaluate`); combine
    /// batches with [`RunningMetrics`].
    pub fn evaluate(&self, features: &[f32], labels: &[u8]) -> Result<BatchMetrics, ModelError> {
        if labels.is_empty() {
            return Err(ModelError::EmptyBatch);
        }
        self.check_features(features, labels.len())?;
        self.check_labels(labels)?;
        let logits = self.logits(features)?;
        let classes = self.config.num_classes;
        let mut probs = [0f32; MAX_CLASSES];
        let mut metrics = BatchMetrics {
            examples: labels.len(),
            ..BatchMetrics::default()
        };
        for (z, &label) in logits.chunks_exact(classes).zip(labels) {
            let outcome = loss::cross_entropy_row(z, usize::from(label), &mut probs, None);
            metrics.loss_sum += f64::from(outcome.loss);
            metrics.correct += usize::from(outcome.class == usize::from(label));
        }
        Ok(metrics)
    }

    /// Softmax probabilities and arg-max classes for `[rows, input_dim]` features.
    pub fn predict(&self, features: &[f32]) -> Result<Predictions, ModelError> {
        let rows = self.rows_of(features)?;
        let mut probabilities = self.logits(features)?;
        let classes_n = self.config.num_classes;
        let mut classes = Vec::with_capacity(rows);
        let mut probs = [0f32; MAX_CLASSES];
        for z in probabilities.chunks_exact_mut(classes_n) {
            classes.push(loss::softmax_row(z, &mut probs));
            z.copy_from_slice(&probs[..classes_n]);
        }
        Ok(Predictions {
            num_classes: classes_n,
            probabilities,
            classes,
        })
    }

    /// Current weights in Keras layout and names, input layer first.
    pub fn weights(&self) -> Result<Vec<DenseWeights>, ModelError> {
        let raw = match &self.engine {
            Engine::Cpu(e) => e.weights(),
            Engine::Candle(e) => e.weights()?,
        };
        Ok(self.keras_layers(raw))
    }

    fn keras_layers(&self, raw: Vec<LayerParams>) -> Vec<DenseWeights> {
        let last = raw.len().saturating_sub(1);
        raw.into_iter()
            .zip(self.config.layer_dims())
            .enumerate()
            .map(|(l, ((kernel, bias), (in_dim, out_dim)))| DenseWeights {
                name: keras_layer_name(l),
                in_dim,
                out_dim,
                kernel,
                bias,
                activation: layer_activation(l, last),
            })
            .collect()
    }
}

fn layer_activation(layer: usize, last: usize) -> Activation {
    if layer == last {
        Activation::Linear
    } else {
        Activation::Relu
    }
}

/// Checks that `layers` fit `dims`: count, names' shapes and activations.
fn check_layers(dims: &[(usize, usize)], layers: &[DenseWeights]) -> Result<(), ModelError> {
    if layers.len() != dims.len() {
        return Err(ModelError::WeightShape {
            layer: "model".into(),
            what: "number of Dense layers",
            expected: dims.len(),
            found: layers.len(),
        });
    }
    let last = dims.len() - 1;
    for (l, (w, &(fan_in, units))) in layers.iter().zip(dims).enumerate() {
        let check = |what, expected: usize, found: usize| {
            if expected == found {
                Ok(())
            } else {
                Err(ModelError::WeightShape {
                    layer: w.name.clone(),
                    what,
                    expected,
                    found,
                })
            }
        };
        check("in_dim", fan_in, w.in_dim)?;
        check("out_dim", units, w.out_dim)?;
        check(
            "kernel length (in_dim x out_dim)",
            fan_in * units,
            w.kernel.len(),
        )?;
        check("bias length", units, w.bias.len())?;
        let expected_activation = layer_activation(l, last);
        if w.activation != expected_activation {
            return Err(ModelError::InvalidConfig {
                field: "weights.activation",
                reason: format!(
                    "layer '{}' has {:?}, the configuration needs {expected_activation:?}",
                    w.name, w.activation
                ),
            });
        }
    }
    Ok(())
}
