//! Checkpoints in TensorFlow's format: a tensor bundle per checkpoint plus the `checkpoint`
//! state file, in `<job-dir>/checkpoints/` (or `AIP_CHECKPOINT_DIR`), local or `gs://`.
//!
//! # What a checkpoint holds
//! Keys are TF1 variable names, the names the exported SavedModel's variables have, so
//! `tf.train.load_checkpoint(dir)` (TF 2.21) reads them and `tf.compat.v1.train.Saver` can
//! restore the SavedModel's graph from them:
//!
//! | key | dtype, shape | meaning |
//! |---|---|---|
//! | `dense/kernel`, `dense/bias`, `dense_1/…`, `dense_2/…` | float `[in,out]`, `[out]` | weights (Keras layout) |
//! | `<weight>/Momentum` | same | TF1 `MomentumOptimizer` slot (`accum`) |
//! | `global_step` | int64 `[]` | optimizer steps taken; also the dropout stream position |
//! | `training_state/epoch`, `training_state/batch` | int64 `[]` | 0-based epoch in progress, batches of it done |
//! | `training_state/rng/shuffle_seed` | int64 `[]` | seed of this epoch's shuffle stream (u64 bits) |
//! | `training_state/rng/shuffle_position` | int64 `[]` | examples of that permutation consumed |
//! | `training_state/rng/dropout_step` | int64 `[]` | dropout stream position (step; masks are addressed by it) |
//! | `training_state/metrics/{loss_sum,correct,examples}` | double/int64 `[]` | the epoch's running sums |
//! | `training_state/epoch_seconds` | double `[]` | wall time already spent in the epoch |
//! | `training_state/history` | string `[]` | JSON: finished epochs' records and seconds |
//! | `training_state/run_config` | string `[]` | JSON [`RunFingerprint`]: what must match to resume |
//!
//! Both RNG streams are counter-based (ChaCha8 seeded from the run's seed), so a position is a
//! number, not a generator state: the shuffle order of epoch `e` is drawn from
//! `shuffle_seed(seed, e)` and the dropout masks of step `s` sit at a fixed offset of their
//! stream. Storing both positions explicitly lets a resume check them against the run's
//! configuration instead of trusting them.
//!
//! # Never visible half-written
//! A bundle's data file is written first, then its index, then the `checkpoint` state file that
//! names it (each a single atomic object write: a temp file and a rename locally, one upload on
//! GCS). Readers (TF's `latest_checkpoint`, our resume) go through the state file, so a kill at
//! any moment leaves the previous state file pointing at a whole checkpoint. A listed prefix is
//! never rewritten: a name collision with another run's listed checkpoint gets a fresh suffix.
//! Files of checkpoints that fall out of the last `keep`, and leftovers of killed writes, are
//! deleted only after a new state file is in place.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use mnist_model::{Activation, BatchMetrics, DenseWeights, Mlp, keras_layer_name};
use savedmodel_format::bundle::{BundleIndex, data_file_name, write_bundle};
use savedmodel_format::{DataType, HostTensor, TensorData};
use serde::{Deserialize, Serialize};
use storage::Location;

use crate::fit::{EpochRecord, Position};
use crate::observer::{Control, ControlResult, EpochEnd, FitContext, FitObserver, TrainBatchEnd};
use crate::{ObserverError, TrainingError};

/// Name of the state file (TF's `CheckpointState`, text format).
pub const STATE_FILE: &str = "checkpoint";
/// Checkpoint file name prefix: `ckpt-<global step>`.
pub const PREFIX_STEM: &str = "ckpt-";

/// What must be the same for a checkpoint to continue this run exactly. Compared field by field
/// on resume; the error names every field that differs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFingerprint {
    pub input_dim: usize,
    pub hidden_units: Vec<usize>,
    pub num_classes: usize,
    pub dropout_rate: f64,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub momentum: f64,
    pub seed: u64,
    pub train_examples: usize,
    pub validation_examples: usize,
    pub image_dims: [usize; 2],
    /// CRC-32C of the training split's pixels then labels (after any validation split): the
    /// same shape with other data is still other data.
    pub train_data_crc32c: u32,
}

impl RunFingerprint {
    /// `field: checkpoint X, this run Y` for every field that differs.
    pub fn differences(&self, run: &RunFingerprint) -> Vec<String> {
        let (Ok(ours), Ok(theirs)) = (serde_json::to_value(run), serde_json::to_value(self)) else {
            return vec!["the run configuration cannot be compared".to_string()];
        };
        let (Some(ours), Some(theirs)) = (ours.as_object(), theirs.as_object()) else {
            return vec!["the run configuration cannot be compared".to_string()];
        };
        ours.iter()
            .filter(|(key, value)| theirs.get(*key) != Some(value))
            .map(|(key, value)| {
                let stored = theirs
                    .get(key)
                    .map_or_else(|| "absent".to_string(), ToString::to_string);
                format!("{key}: checkpoint {stored}, this run {value}")
            })
            .collect()
    }
}

/// CRC-32C over a dataset's pixels then labels (hardware CRC: ~10 ms for all of MNIST).
pub fn data_checksum(data: &idx_dataset::Dataset) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(data.pixels()), data.labels())
}

/// Everything needed to continue a run exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingState {
    pub weights: Vec<DenseWeights>,
    /// Momentum slots, same names and shapes as `weights`.
    pub slots: Vec<DenseWeights>,
    pub global_step: u64,
    pub position: Position,
    pub fingerprint: RunFingerprint,
}

#[derive(Serialize, Deserialize)]
struct HistoryEntry {
    #[serde(flatten)]
    record: EpochRecord,
    seconds: f64,
}

impl TrainingState {
    /// The state of the run an observer sees.
    pub fn capture(
        context: &FitContext<'_>,
        fingerprint: &RunFingerprint,
    ) -> Result<TrainingState, TrainingError> {
        let model: &Mlp = context.model();
        Ok(TrainingState {
            weights: model
                .weights()
                .map_err(TrainingError::model("reading the weights for a checkpoint"))?,
            slots: model.momentum_slots().map_err(TrainingError::model(
                "reading the momentum slots for a checkpoint",
            ))?,
            global_step: model.steps_taken(),
            position: context.position().clone(),
            fingerprint: fingerprint.clone(),
        })
    }

    /// The bundle's tensors, in the order they go into the data file.
    fn tensors(&self) -> Result<Vec<(String, HostTensor)>, TrainingError> {
        let f32s = |shape: Vec<usize>, values: &[f32]| {
            HostTensor::new(shape, TensorData::F32(values.to_vec()))
        };
        let mut out = Vec::new();
        let bad = |e: savedmodel_format::tensor::ShapeMismatch| {
            TrainingError::Plan(format!("checkpoint tensor shape: {e:?}"))
        };
        for (layers, suffix) in [(&self.weights, ""), (&self.slots, "/Momentum")] {
            for layer in layers.iter() {
                out.push((
                    format!("{}/kernel{suffix}", layer.name),
                    f32s(vec![layer.in_dim, layer.out_dim], &layer.kernel).map_err(bad)?,
                ));
                out.push((
                    format!("{}/bias{suffix}", layer.name),
                    f32s(vec![layer.out_dim], &layer.bias).map_err(bad)?,
                ));
            }
        }
        let int = |v: i64| HostTensor::new(vec![], TensorData::I64(vec![v]));
        let double = |v: f64| HostTensor::new(vec![], TensorData::F64(vec![v]));
        let string = |s: String| HostTensor::new(vec![], TensorData::Str(vec![s.into_bytes()]));
        let p = &self.position;
        let json = |value: &dyn erased::Json| value.json();
        let history: Vec<HistoryEntry> = p
            .history
            .iter()
            .zip(&p.history_seconds)
            .map(|(record, &seconds)| HistoryEntry {
                record: record.clone(),
                seconds,
            })
            .collect();
        let scalars = [
            ("global_step", int(self.global_step as i64)),
            ("training_state/epoch", int(p.epoch as i64)),
            ("training_state/batch", int(p.batch as i64)),
            (
                "training_state/rng/shuffle_seed",
                int(mnist_model::seeds::shuffle_seed(self.fingerprint.seed, p.epoch) as i64),
            ),
            (
                "training_state/rng/shuffle_position",
                int(
                    (p.batch * self.fingerprint.batch_size).min(self.fingerprint.train_examples)
                        as i64,
                ),
            ),
            (
                "training_state/rng/dropout_step",
                int(self.global_step as i64),
            ),
            (
                "training_state/metrics/loss_sum",
                double(p.running.loss_sum),
            ),
            (
                "training_state/metrics/correct",
                int(p.running.correct as i64),
            ),
            (
                "training_state/metrics/examples",
                int(p.running.examples as i64),
            ),
            ("training_state/epoch_seconds", double(p.epoch_seconds)),
            ("training_state/history", string(json(&history)?)),
            (
                "training_state/run_config",
                string(json(&self.fingerprint)?),
            ),
        ];
        for (name, tensor) in scalars {
            out.push((name.to_string(), tensor.map_err(bad)?));
        }
        Ok(out)
    }

    /// Encodes the checkpoint's two files.
    pub fn to_bundle(&self) -> Result<savedmodel_format::bundle::BundleFiles, TrainingError> {
        let tensors = self.tensors()?;
        write_bundle(tensors.iter().map(|(name, t)| (name.as_str(), t)))
            .map_err(|e| TrainingError::Export(Box::new(e)))
    }

    /// Decodes and checks a checkpoint: every tensor present with the dtype and shape this run's
    /// configuration needs, every checksum right, positions consistent. `prefix` names it in
    /// errors. Nothing is returned unless all of it is good.
    pub fn from_bundle(
        prefix: &str,
        index: &[u8],
        data: &[u8],
        expected: &RunFingerprint,
    ) -> Result<TrainingState, CheckpointProblem> {
        let index_name = format!("{prefix}.index");
        let bundle = BundleIndex::parse(&index_name, index)
            .map_err(|e| CheckpointProblem::Corrupt(e.to_string()))?;
        let shards = [Some(data)];
        let read = |name: &str| {
            bundle
                .read_tensor(name, &shards)
                .map_err(|e| CheckpointProblem::Corrupt(e.to_string()))
        };
        let scalar_i64 = |name: &str| -> Result<i64, CheckpointProblem> {
            match read(name)?.into_data() {
                TensorData::I64(v) if v.len() == 1 => Ok(v[0]),
                other => Err(CheckpointProblem::Corrupt(format!(
                    "{index_name}: tensor '{name}' is {:?}, expected an int64 scalar",
                    other.dtype()
                ))),
            }
        };
        let scalar_f64 = |name: &str| -> Result<f64, CheckpointProblem> {
            match read(name)?.into_data() {
                TensorData::F64(v) if v.len() == 1 => Ok(v[0]),
                other => Err(CheckpointProblem::Corrupt(format!(
                    "{index_name}: tensor '{name}' is {:?}, expected a double scalar",
                    other.dtype()
                ))),
            }
        };
        let scalar_str = |name: &str| -> Result<Vec<u8>, CheckpointProblem> {
            match read(name)?.into_data() {
                TensorData::Str(mut v) if v.len() == 1 => Ok(v.remove(0)),
                other => Err(CheckpointProblem::Corrupt(format!(
                    "{index_name}: tensor '{name}' is {:?}, expected a string scalar",
                    other.dtype()
                ))),
            }
        };

        // The configuration first: a checkpoint of another run is "other", not "corrupt".
        let fingerprint: RunFingerprint = serde_json::from_slice(&scalar_str(
            "training_state/run_config",
        )?)
        .map_err(|e| {
            CheckpointProblem::Corrupt(format!(
                "{index_name}: tensor 'training_state/run_config' is not a run configuration: {e}"
            ))
        })?;
        let differences = fingerprint.differences(expected);
        if !differences.is_empty() {
            return Err(CheckpointProblem::OtherRun(differences));
        }

        let dims = layer_dims(expected);
        let last = dims.len() - 1;
        let layers = |suffix: &str| -> Result<Vec<DenseWeights>, CheckpointProblem> {
            dims.iter()
                .enumerate()
                .map(|(l, &(in_dim, out_dim))| {
                    let name = keras_layer_name(l);
                    let kernel = float_tensor(
                        &read,
                        &index_name,
                        &format!("{name}/kernel{suffix}"),
                        &[in_dim, out_dim],
                    )?;
                    let bias = float_tensor(
                        &read,
                        &index_name,
                        &format!("{name}/bias{suffix}"),
                        &[out_dim],
                    )?;
                    Ok(DenseWeights {
                        name,
                        in_dim,
                        out_dim,
                        kernel,
                        bias,
                        activation: if l == last {
                            Activation::Linear
                        } else {
                            Activation::Relu
                        },
                    })
                })
                .collect()
        };
        let weights = layers("")?;
        let slots = layers("/Momentum")?;

        let non_negative = |name: &str| -> Result<u64, CheckpointProblem> {
            let value = scalar_i64(name)?;
            u64::try_from(value).map_err(|_| {
                CheckpointProblem::Corrupt(format!(
                    "{index_name}: tensor '{name}' is negative ({value})"
                ))
            })
        };
        let global_step = non_negative("global_step")?;
        let epoch = non_negative("training_state/epoch")? as usize;
        let batch = non_negative("training_state/batch")? as usize;
        let steps_per_epoch = expected.train_examples.div_ceil(expected.batch_size.max(1));
        let inconsistent = |what: String| {
            Err(CheckpointProblem::Corrupt(format!(
                "{index_name}: inconsistent training state: {what}"
            )))
        };
        if batch > steps_per_epoch {
            return inconsistent(format!(
                "batch {batch} of an epoch that has {steps_per_epoch} batches"
            ));
        }
        if (epoch * steps_per_epoch + batch) as u64 != global_step {
            return inconsistent(format!(
                "global_step {global_step} is not epoch {epoch} x {steps_per_epoch} steps + batch {batch}"
            ));
        }
        let shuffle_seed = scalar_i64("training_state/rng/shuffle_seed")? as u64;
        if shuffle_seed != mnist_model::seeds::shuffle_seed(expected.seed, epoch) {
            return inconsistent(format!(
                "shuffle stream seed {shuffle_seed:#x} is not the one seed {} draws for epoch {epoch}",
                expected.seed
            ));
        }
        let shuffle_position = non_negative("training_state/rng/shuffle_position")? as usize;
        if shuffle_position != (batch * expected.batch_size).min(expected.train_examples) {
            return inconsistent(format!(
                "shuffle position {shuffle_position} does not match batch {batch}"
            ));
        }
        let dropout_step = non_negative("training_state/rng/dropout_step")?;
        if dropout_step != global_step {
            return inconsistent(format!(
                "dropout stream position {dropout_step} differs from global_step {global_step}"
            ));
        }
        let running = BatchMetrics {
            loss_sum: scalar_f64("training_state/metrics/loss_sum")?,
            correct: non_negative("training_state/metrics/correct")? as usize,
            examples: non_negative("training_state/metrics/examples")? as usize,
        };
        let history: Vec<HistoryEntry> =
            serde_json::from_slice(&scalar_str("training_state/history")?).map_err(|e| {
                CheckpointProblem::Corrupt(format!(
                    "{index_name}: tensor 'training_state/history' is not an epoch history: {e}"
                ))
            })?;
        if history.len() != epoch {
            return inconsistent(format!(
                "{} finished epochs recorded, but the checkpoint is in epoch {epoch}",
                history.len()
            ));
        }
        let (history, history_seconds) = history
            .into_iter()
            .map(|entry| (entry.record, entry.seconds))
            .unzip();
        Ok(TrainingState {
            weights,
            slots,
            global_step,
            position: Position {
                epoch,
                batch,
                running,
                epoch_seconds: scalar_f64("training_state/epoch_seconds")?,
                history,
                history_seconds,
            },
            fingerprint,
        })
    }
}

/// Why a checkpoint cannot be used.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckpointProblem {
    /// Unreadable, truncated, a checksum or tensor missing or of the wrong shape.
    Corrupt(String),
    /// Whole, but written by a run with another configuration; lists each difference.
    OtherRun(Vec<String>),
}

fn layer_dims(fingerprint: &RunFingerprint) -> Vec<(usize, usize)> {
    mnist_model::ModelConfig {
        input_dim: fingerprint.input_dim,
        hidden_units: fingerprint.hidden_units.clone(),
        num_classes: fingerprint.num_classes,
        dropout_rate: fingerprint.dropout_rate as f32,
    }
    .layer_dims()
}

fn float_tensor(
    read: &dyn Fn(&str) -> Result<HostTensor, CheckpointProblem>,
    index_name: &str,
    name: &str,
    shape: &[usize],
) -> Result<Vec<f32>, CheckpointProblem> {
    let tensor = read(name)?;
    if tensor.dtype() != DataType::Float || tensor.shape() != shape {
        return Err(CheckpointProblem::Corrupt(format!(
            "{index_name}: tensor '{name}' is {} {:?}, this run needs DT_FLOAT {shape:?}",
            tensor.dtype().tf_name(),
            tensor.shape()
        )));
    }
    match tensor.into_data() {
        TensorData::F32(values) => Ok(values),
        _ => Err(CheckpointProblem::Corrupt(format!(
            "{index_name}: tensor '{name}' is not float"
        ))),
    }
}

mod erased {
    //! JSON encoding for the string tensors, with the error mapped once.
    pub(super) trait Json {
        fn json(&self) -> Result<String, crate::TrainingError>;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> Result<String, crate::TrainingError> {
            serde_json::to_string(self).map_err(|source| crate::TrainingError::Json {
                context: "encoding a checkpoint's training state".to_string(),
                source,
            })
        }
    }
}

/// The `checkpoint` state file: the latest prefix and all kept ones, oldest first (names
/// relative to the checkpoint directory).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckpointState {
    pub latest: Option<String>,
    pub all: Vec<String>,
}

impl CheckpointState {
    /// Parses TF's text-format `CheckpointState`; unknown fields (timestamps) are ignored.
    pub fn parse(text: &str) -> Result<CheckpointState, String> {
        let mut state = CheckpointState::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                return Err(format!("line {}: expected `field: value`", n + 1));
            };
            let value = value.trim();
            let quoted = || {
                value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .map(|v| v.replace("\\\"", "\"").replace("\\\\", "\\"))
                    .ok_or_else(|| format!("line {}: {key} is not a quoted string", n + 1))
            };
            match key.trim() {
                "model_checkpoint_path" => state.latest = Some(quoted()?),
                "all_model_checkpoint_paths" => state.all.push(quoted()?),
                _ => {}
            }
        }
        Ok(state)
    }

    /// TF's text format, as `CheckpointManager` writes it.
    pub fn to_text(&self) -> String {
        let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
        let mut text = String::new();
        if let Some(latest) = &self.latest {
            text.push_str(&format!("model_checkpoint_path: {}\n", quote(latest)));
        }
        for path in &self.all {
            text.push_str(&format!("all_model_checkpoint_paths: {}\n", quote(path)));
        }
        text
    }
}

/// The checkpoint directory of a run: writes, lists, trims and loads checkpoints.
pub struct CheckpointManager {
    dir: Location,
    keep: usize,
    state: CheckpointState,
    /// Prefixes this process wrote (so it may skip rewriting one, and knows which listed ones
    /// belong to an older run).
    written: HashSet<String>,
}

impl CheckpointManager {
    /// Opens `dir` (which need not exist yet), keeping the last `keep` (at least 1) checkpoints.
    /// Reads the state file if there is one.
    pub fn open(dir: Location, keep: usize) -> Result<CheckpointManager, TrainingError> {
        let state_file = dir.join(STATE_FILE);
        let state = match state_file.read_blocking() {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                CheckpointState::parse(&text).map_err(|reason| {
                    TrainingError::Checkpoint(format!("{state_file}: {reason}"))
                })?
            }
            Err(e) if e.is_not_found() => CheckpointState::default(),
            Err(e) => return Err(TrainingError::storage(format!("reading {state_file}"))(e)),
        };
        Ok(CheckpointManager {
            dir,
            keep: keep.max(1),
            state,
            written: HashSet::new(),
        })
    }

    pub fn dir(&self) -> &Location {
        &self.dir
    }

    /// The latest checkpoint's prefix relative to the directory, if any.
    pub fn latest(&self) -> Option<&str> {
        self.state.latest.as_deref()
    }

    /// Treats the checkpoints the state file lists as this run's own (after resuming from one of
    /// them), so they count towards the last `keep` instead of being replaced at the first save.
    pub fn adopt_listed(&mut self) {
        self.written.extend(self.state.all.iter().cloned());
        self.written.extend(self.state.latest.iter().cloned());
    }

    /// Loads and checks the latest checkpoint. `None` when the directory holds none; an error
    /// (naming the files and what is wrong or different) when it holds one this run cannot
    /// continue from.
    pub fn load_latest(
        &self,
        expected: &RunFingerprint,
    ) -> Result<Option<(Location, TrainingState)>, TrainingError> {
        let Some(latest) = &self.state.latest else {
            return Ok(None);
        };
        let prefix = self.resolve(latest);
        let index_location = Location::parse(&format!("{}.index", prefix.url()))
            .map_err(TrainingError::storage(format!("{prefix}.index")))?;
        let data_location = Location::parse(&data_file_name(&prefix.url(), 0, 1))
            .map_err(TrainingError::storage(format!("{prefix}.data")))?;
        let index = index_location
            .read_blocking()
            .map_err(TrainingError::storage(format!(
                "reading checkpoint {prefix}"
            )))?;
        let data = data_location
            .read_blocking()
            .map_err(TrainingError::storage(format!(
                "reading checkpoint {prefix}"
            )))?;
        match TrainingState::from_bundle(&prefix.url(), &index, &data, expected) {
            Ok(state) => Ok(Some((prefix, state))),
            Err(CheckpointProblem::Corrupt(reason)) => Err(TrainingError::Checkpoint(format!(
                "checkpoint {prefix} is corrupt: {reason}; delete it (or pass --resume never) to start over"
            ))),
            Err(CheckpointProblem::OtherRun(differences)) => {
                Err(TrainingError::Checkpoint(format!(
                    "checkpoint {prefix} was written by a run with another configuration ({}); \
                     use another --job-dir, or pass --resume never to start over",
                    differences.join("; ")
                )))
            }
        }
    }

    /// A prefix from the state file as a location: relative names are inside the directory,
    /// absolute ones (TF1 writes those) are taken as they are.
    fn resolve(&self, prefix: &str) -> Location {
        if prefix.starts_with('/') || prefix.contains("://") {
            Location::parse(prefix).unwrap_or_else(|_| self.dir.join(prefix))
        } else {
            self.dir.join(prefix)
        }
    }

    /// Writes `state` as a new checkpoint and makes it the latest; trims to the last `keep` and
    /// removes leftovers. Returns the new prefix (relative), or `None` if this process already
    /// wrote a checkpoint at this step.
    pub fn save(&mut self, state: &TrainingState) -> Result<Option<String>, TrainingError> {
        let mut name = format!("{PREFIX_STEM}{}", state.global_step);
        if self.written.contains(&name) {
            return Ok(None);
        }
        // Never overwrite a checkpoint that the state file lists (another run's, with
        // --resume never): it must stay whole until the new state file replaces it.
        let mut n = 1;
        while self.state.all.contains(&name) || self.state.latest.as_deref() == Some(name.as_str())
        {
            name = format!("{PREFIX_STEM}{}_{n}", state.global_step);
            n += 1;
        }
        let files = state.to_bundle()?;
        let data = self.dir.join(&data_file_name(&name, 0, 1));
        data.write_blocking(Bytes::from(files.data))
            .map_err(TrainingError::storage(format!("writing checkpoint {data}")))?;
        let index = self.dir.join(&format!("{name}.index"));
        index
            .write_blocking(Bytes::from(files.index))
            .map_err(TrainingError::storage(format!(
                "writing checkpoint {index}"
            )))?;

        let mut next = self.state.clone();
        next.all.retain(|p| p != &name);
        next.all.push(name.clone());
        // Another run's checkpoints (listed but not ours) go as soon as ours is in place.
        next.all.retain(|p| self.written.contains(p) || p == &name);
        let dropped = next.all.len().saturating_sub(self.keep);
        next.all.drain(..dropped);
        next.latest = Some(name.clone());
        let state_file = self.dir.join(STATE_FILE);
        state_file
            .write_blocking(Bytes::from(next.to_text()))
            .map_err(TrainingError::storage(format!("writing {state_file}")))?;
        self.state = next;
        self.written.insert(name.clone());
        self.remove_unlisted()?;
        Ok(Some(name))
    }

    /// Deletes every checkpoint file (and temp file) in the directory that the state file does
    /// not list: trimmed checkpoints, another run's, and leftovers of killed writes.
    fn remove_unlisted(&self) -> Result<(), TrainingError> {
        let keys = self
            .dir
            .list_blocking()
            .map_err(TrainingError::storage(format!("listing {}", self.dir)))?;
        let listed: HashSet<&str> = self.state.all.iter().map(String::as_str).collect();
        // Index files first, so a trimmed checkpoint disappears as a whole for readers.
        let mut doomed: BTreeMap<(bool, String), ()> = BTreeMap::new();
        for key in keys {
            let name = key.rsplit('/').next().unwrap_or(&key).to_string();
            if !name.starts_with(PREFIX_STEM) {
                continue;
            }
            let prefix = name
                .split_once(".index")
                .or_else(|| name.split_once(".data-"))
                .map(|(p, _)| p);
            let keep = match prefix {
                Some(p) => listed.contains(p) && !name.contains('#'),
                None => false,
            };
            if !keep {
                doomed.insert((!name.contains(".index"), name), ());
            }
        }
        for (_, name) in doomed.into_keys() {
            let file = self.dir.join(&name);
            match file.delete_blocking() {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(TrainingError::storage(format!("deleting {file}"))(e)),
            }
        }
        Ok(())
    }
}

/// When [`CheckpointObserver`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointSchedule {
    /// Every this many global steps (0: only at epoch ends and on a stop request).
    pub every_steps: u64,
}

/// The observer that writes checkpoints: every `every_steps` global steps, at every epoch end,
/// and — when `stop_requested` becomes true (the trainer sets it from its SIGTERM handler) — at
/// the next step's end, after which it stops the run with [`Control::Stop`].
pub struct CheckpointObserver {
    manager: CheckpointManager,
    fingerprint: RunFingerprint,
    schedule: CheckpointSchedule,
    stop_requested: Arc<AtomicBool>,
    /// The prefix of the checkpoint written when a stop was requested.
    stopped_at: Option<String>,
    /// Time spent writing checkpoints, for the report and the benchmark.
    seconds: f64,
    written: usize,
}

impl CheckpointObserver {
    pub fn new(
        manager: CheckpointManager,
        fingerprint: RunFingerprint,
        schedule: CheckpointSchedule,
        stop_requested: Arc<AtomicBool>,
    ) -> Self {
        CheckpointObserver {
            manager,
            fingerprint,
            schedule,
            stop_requested,
            stopped_at: None,
            seconds: 0.0,
            written: 0,
        }
    }

    /// The checkpoint written when the run was asked to stop, if it was.
    pub fn stopped_at(&self) -> Option<Location> {
        self.stopped_at
            .as_deref()
            .map(|p| self.manager.dir().join(p))
    }

    /// Checkpoints written by this process, and the wall seconds spent writing them.
    pub fn cost(&self) -> (usize, f64) {
        (self.written, self.seconds)
    }

    fn save(&mut self, context: &FitContext<'_>) -> Result<Option<String>, ObserverError> {
        let started = std::time::Instant::now();
        let state = TrainingState::capture(context, &self.fingerprint)?;
        let saved = self.manager.save(&state)?;
        if saved.is_some() {
            self.written += 1;
            self.seconds += started.elapsed().as_secs_f64();
        }
        Ok(saved)
    }
}

impl FitObserver for CheckpointObserver {
    fn on_train_batch_end(
        &mut self,
        end: &TrainBatchEnd,
        context: &FitContext<'_>,
    ) -> ControlResult {
        if self.stop_requested.load(Ordering::SeqCst) {
            let saved = self.save(context)?;
            self.stopped_at = saved.or_else(|| self.manager.latest().map(str::to_string));
            return Ok(Control::Stop);
        }
        // The last step of an epoch is saved by on_epoch_end, with the next epoch's position.
        let last_of_epoch = end.batch + 1 == end.steps;
        if self.schedule.every_steps > 0
            && end.global_step.is_multiple_of(self.schedule.every_steps)
            && !last_of_epoch
        {
            self.save(context)?;
        }
        Ok(Control::Continue)
    }

    fn on_epoch_end(&mut self, _: &EpochEnd<'_>, context: &FitContext<'_>) -> ControlResult {
        self.save(context)?;
        if self.stop_requested.load(Ordering::SeqCst) {
            self.stopped_at = self.manager.latest().map(str::to_string);
            return Ok(Control::Stop);
        }
        Ok(Control::Continue)
    }
}
