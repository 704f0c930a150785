//! `job.json`: what a run was asked to do, what it measured and what produced it, as a typed
//! serde value that other code (the jobs service, tests, tools) reads back with
//! [`TrainingReport::from_json`] instead of indexing untyped JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::TrainingError;
use crate::fit::EpochRecord;

/// The whole `job.json` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingReport {
    pub job_name: String,
    /// `--train-file` as a URL.
    pub train_file: String,
    pub job_dir: String,
    pub model_dir: String,
    pub hyperparameters: Hyperparameters,
    pub dataset: DatasetSummary,
    pub metrics: Metrics,
    pub timings_seconds: Timings,
    /// Engine and device, e.g. `cpu (avx2+fma kernels, 2 threads)`.
    pub device: String,
    pub threads: usize,
    /// The validated `--config` with what it resolved to and what was applied; absent without
    /// `--config`. Its shape is `job-config`'s (see that crate), kept as JSON here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_config: Option<serde_json::Value>,
    /// Set when this run continued from a checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<ResumedFrom>,
    pub versions: Versions,
    pub started_at_unix: f64,
    pub finished_at_unix: f64,
}

/// Flags that shape training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hyperparameters {
    pub epochs: usize,
    pub batch_size: usize,
    /// As the user typed it (`0.01`, not the f32's `0.009999999776482582`).
    pub learning_rate: f64,
    pub momentum: f64,
    pub seed: u64,
    /// `--validation-split`; absent when no validation set was split off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_split: Option<f64>,
    pub optimizer: String,
    pub loss: String,
    pub model: ModelSummary,
}

/// The network's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    pub input_dim: usize,
    pub hidden_units: Vec<usize>,
    pub num_classes: usize,
    pub dropout_rate: f64,
    pub parameters: usize,
}

/// Sizes of the data the run saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetSummary {
    /// Examples trained on (after a validation split).
    pub train_examples: usize,
    /// Examples split off for validation (0 without `--validation-split`).
    #[serde(default)]
    pub validation_examples: usize,
    pub test_examples: usize,
    /// `[rows, cols]` of each image.
    pub image_dims: [usize; 2],
}

/// What the run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub epochs: Vec<EpochRecord>,
    pub test_loss: f64,
    pub test_accuracy: f64,
    pub test_examples: usize,
}

/// Wall times, in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub load_data: f64,
    /// One per epoch (a resumed epoch includes the time its earlier processes spent on it).
    pub train_epochs: Vec<f64>,
    pub train_total: f64,
    pub evaluate: f64,
    pub export: f64,
    pub total: f64,
}

/// The checkpoint a resumed run started from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResumedFrom {
    /// The checkpoint's prefix (e.g. `gs://b/job/checkpoints/ckpt-600`).
    pub checkpoint: String,
    pub global_step: u64,
    /// 0-based epoch and batch the run continued at.
    pub epoch: usize,
    pub batch: usize,
}

/// What produced the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Versions {
    pub trainer: String,
    /// `name -> version` of the crates the trainer was built from.
    pub crates: BTreeMap<String, String>,
}

impl TrainingReport {
    /// The document as job.json holds it: pretty-printed, newline-terminated.
    pub fn to_json(&self) -> Result<String, TrainingError> {
        serde_json::to_string_pretty(self)
            .map(|text| text + "\n")
            .map_err(|source| TrainingError::Json {
                context: "encoding job.json".to_string(),
                source,
            })
    }

    /// Parses a job.json; `source` names it in the error.
    pub fn from_json(text: &[u8], source_name: &str) -> Result<TrainingReport, TrainingError> {
        serde_json::from_slice(text).map_err(|source| TrainingError::Json {
            context: format!("reading {source_name}"),
            source,
        })
    }
}

/// An f32 flag value as the decimal the user typed (`0.01`, not `0.009999999776482582`).
pub fn shortest_decimal(value: f32) -> f64 {
    value.to_string().parse().unwrap_or(f64::from(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_decimal_is_what_was_typed() {
        assert_eq!(shortest_decimal(0.01), 0.01);
        assert_eq!(shortest_decimal(0.9), 0.9);
        assert_ne!(f64::from(0.01f32), 0.01);
    }
}
