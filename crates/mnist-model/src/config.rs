//! Hyper-parameters, with the defaults of the Keras MNIST tutorial this crate reproduces.

use crate::ModelError;

/// Shape of the network: `Input(input_dim) -> [Dense(h, relu) -> Dropout(rate)]* -> Dense(num_classes) -> softmax`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Features per example (28 x 28 = 784 for MNIST).
    pub input_dim: usize,
    /// Units of each hidden ReLU layer, in order (`[512, 256]` for the reference network).
    pub hidden_units: Vec<usize>,
    /// Output classes (10 digits).
    pub num_classes: usize,
    /// Dropout rate after every hidden layer, in `[0, 1)`; 0 disables dropout.
    pub dropout_rate: f32,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            input_dim: 784,
            hidden_units: vec![512, 256],
            num_classes: 10,
            dropout_rate: 0.2,
        }
    }
}

/// Largest width accepted for any layer: generous for an MLP, and small enough that buffer sizes
/// (rows x width) can never overflow or turn into a surprise multi-gigabyte allocation.
pub const MAX_LAYER_WIDTH: usize = 1 << 20;

impl ModelConfig {
    /// Checks every field, naming the first bad one.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |field, reason: String| Err(ModelError::InvalidConfig { field, reason });
        if self.input_dim == 0 || self.input_dim > MAX_LAYER_WIDTH {
            return bad(
                "input_dim",
                format!("{} is not in 1..={MAX_LAYER_WIDTH}", self.input_dim),
            );
        }
        if self.num_classes < 2 || self.num_classes > 256 {
            // Labels are bytes, and a one-class softmax is constant.
            return bad(
                "num_classes",
                format!("{} is not in 2..=256", self.num_classes),
            );
        }
        for (i, &units) in self.hidden_units.iter().enumerate() {
            if units == 0 || units > MAX_LAYER_WIDTH {
                return bad(
                    "hidden_units",
                    format!("layer {i} has {units} units, expected 1..={MAX_LAYER_WIDTH}"),
                );
            }
        }
        if !(self.dropout_rate.is_finite() && (0.0..1.0).contains(&self.dropout_rate)) {
            return bad(
                "dropout_rate",
                format!("{} is not in [0, 1)", self.dropout_rate),
            );
        }
        Ok(())
    }

    /// `(fan_in, fan_out)` of every Dense layer, input to output.
    pub fn layer_dims(&self) -> Vec<(usize, usize)> {
        let mut dims = Vec::with_capacity(self.hidden_units.len() + 1);
        let mut fan_in = self.input_dim;
        for &units in &self.hidden_units {
            dims.push((fan_in, units));
            fan_in = units;
        }
        dims.push((fan_in, self.num_classes));
        dims
    }

    /// Number of trainable scalars (kernels and biases).
    pub fn parameter_count(&self) -> usize {
        self.layer_dims().iter().map(|&(i, o)| i * o + o).sum()
    }
}

/// How `model.fit` is driven: epochs, batch size, optimizer settings and the seed.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f32,
    pub momentum: f32,
    /// Drives weight initialisation, per-epoch shuffling and dropout masks (see [`crate::seeds`]).
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 1,
            batch_size: 32,
            learning_rate: 0.01,
            momentum: 0.9,
            seed: 0,
        }
    }
}

impl TrainConfig {
    /// Checks every field, naming the first bad one.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.epochs == 0 {
            return Err(ModelError::InvalidConfig {
                field: "epochs",
                reason: "must be at least 1".into(),
            });
        }
        if self.batch_size == 0 || self.batch_size > crate::MAX_BATCH_ROWS {
            return Err(ModelError::InvalidConfig {
                field: "batch_size",
                reason: format!(
                    "{} is not in 1..={}",
                    self.batch_size,
                    crate::MAX_BATCH_ROWS
                ),
            });
        }
        self.optimizer().validate()
    }

    /// The optimizer these settings describe.
    pub fn optimizer(&self) -> SgdMomentum {
        SgdMomentum {
            learning_rate: self.learning_rate,
            momentum: self.momentum,
        }
    }
}

/// TF1 `MomentumOptimizer` (no Nesterov): `accum = momentum * accum + grad; var -= lr * accum`.
///
/// With a constant learning rate this is the same trajectory as Keras `SGD(lr, momentum)`
/// (whose velocity is `-lr * accum`); the accumulator form is kept because it is what a TF1
/// checkpoint's `Momentum` slot holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdMomentum {
    pub learning_rate: f32,
    pub momentum: f32,
}

impl SgdMomentum {
    /// Rejects non-finite or negative settings (momentum must also be below 1 to converge).
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |field, value, reason| {
            Err(ModelError::InvalidOptimizer {
                field,
                value,
                reason,
            })
        };
        if !self.learning_rate.is_finite() || self.learning_rate <= 0.0 {
            return bad(
                "learning_rate",
                self.learning_rate,
                "must be a finite number > 0",
            );
        }
        if !self.momentum.is_finite() || !(0.0..1.0).contains(&self.momentum) {
            return bad("momentum", self.momentum, "must be in [0, 1)");
        }
        Ok(())
    }
}
