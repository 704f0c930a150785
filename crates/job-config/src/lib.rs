//! Cloud ML Engine / AI Platform training job configuration: `trainingInput` and `TF_CONFIG`.
//!
//! The tutorial submits training with `gcloud ai-platform jobs submit training --config
//! config.yaml`, where the file holds a `Job` resource (`trainingInput: {scaleTier: CUSTOM,
//! masterType: standard_p100, ...}`). This crate reads such a file — YAML, or the same document as
//! JSON, told apart by content — validates it the way the service would, and resolves it into what
//! the machine running the trainer must provide ([`ResolvedJob`]: device kind, GPU model and count,
//! replica counts). A document whose first non-blank character is `{` or `[` is JSON, anything
//! else YAML. It also reads the `TF_CONFIG` environment variable the service sets on every
//! training VM ([`TfConfig`]).
//!
//! # Why it is shaped this way
//!
//! * **Every error, each with its field path.** A config with three mistakes should be fixed in
//!   one round, so validation collects all problems into [`JobConfigError::Invalid`], each a
//!   [`FieldError`] such as `trainingInput.masterConfig.acceleratorConfig.count: must be ≥ 1,
//!   found 0` or `trainingInput.masterTyp: unknown field; did you mean masterType?`. serde's own
//!   typed deserialisation stops at the first error and cannot suggest names, so serde_yaml /
//!   serde_json only parse the text into a neutral tree (`node`), which a hand-written walk
//!   (`walk`) checks against the schema.
//! * **Both document shapes.** A file is either a `Job` (`trainingInput: {...}`, with optional
//!   `jobId` and `labels`; output-only fields such as `state` from `gcloud ai-platform jobs
//!   describe` are ignored) or a bare `TrainingInput` (the fields at the top level, as in
//!   `TF_CONFIG`'s `job`). The shape is decided by whether the top level has any of `trainingInput`,
//!   `jobId`, `labels`, `predictionInput` or `explanationInput`. Error paths are paths *in the
//!   document*: `trainingInput.masterType` for a Job, `masterType` for a bare TrainingInput.
//! * **API encodings.** int64 counts may be numbers or strings of digits (protobuf's JSON form);
//!   `null` means "not set"; version strings written as bare YAML numbers (`pythonVersion: 3.5`)
//!   are refused with a hint, because YAML silently turns `2.10` into `2.1`. A missing `scaleTier`
//!   means BASIC; a missing `region` skips the region checks (a local run has no region).
//! * **Small, documented tables, not a live catalogue.** Legacy machine types and their GPUs come
//!   from the reference notes; Compute Engine names are checked for a valid
//!   `family-kind-size` shape; GPU regions are the tutorial's four (see [`GPU_REGIONS`]). The
//!   `machine` module docs list each table's source and limits.
//! * **Validated means resolvable.** [`JobConfig::parse`] only returns a config whose resolution
//!   succeeded, so [`JobConfig::resolved`] is a plain field and callers never handle a second error.

mod hyperparameters;
mod int64_json;
mod job;
mod machine;
mod node;
mod resolve;
mod tf_config;
mod training_input;
mod walk;

use std::fmt;
use std::path::PathBuf;

pub use hyperparameters::{
    Goal, HyperparameterSpec, ParameterSpec, ParameterType, ScaleType, SearchAlgorithm,
};
pub use int64_json::{int64_string, int64_string_option};
pub use job::{DocumentShape, JobConfig, MAX_CONFIG_BYTES};
pub use machine::{
    AcceleratorType, CLOUD_TPU, ComputeEngineMachine, GPU_REGIONS, LegacyMachineType, MachineType,
    ScaleTier, TPU_CORES_PER_DEVICE, TPU_REGIONS,
};
pub use node::SourceFormat;
pub use resolve::{DeviceKind, ReplicaRequirement, ResolvedJob};
pub use tf_config::{HostPort, TaskSpec, TaskType, TfConfig, TfConfigJob};
pub use training_input::{
    AcceleratorConfig, DiskConfig, EncryptionConfig, ReplicaConfig, Scheduling, TrainingInput,
};

/// One problem in a document, at a field path such as
/// `trainingInput.hyperparameters.params[0].minValue` (empty for the document itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Everything that can go wrong reading a job config or `TF_CONFIG`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobConfigError {
    #[error("cannot read job config {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{source_name}: larger than {limit} bytes; a job config is a short YAML or JSON file")]
    TooLarge { source_name: String, limit: u64 },
    #[error("{source_name}: not UTF-8 text (invalid byte at offset {byte_offset})")]
    NotUtf8 {
        source_name: String,
        byte_offset: usize,
    },
    #[error("{source_name}: not valid {format}: {message}")]
    Syntax {
        source_name: String,
        format: SourceFormat,
        message: String,
    },
    /// The document parsed but breaks the schema; `errors` lists every problem found.
    #[error("{source_name}: {}", render_field_errors(errors))]
    Invalid {
        source_name: String,
        errors: Vec<FieldError>,
    },
}

impl JobConfigError {
    /// The field errors of an [`JobConfigError::Invalid`], empty for the other kinds.
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            JobConfigError::Invalid { errors, .. } => errors,
            _ => &[],
        }
    }
}

fn render_field_errors(errors: &[FieldError]) -> String {
    match errors {
        [only] => only.to_string(),
        _ => {
            let mut text = format!("{} problems:", errors.len());
            for error in errors {
                text.push_str("\n  ");
                text.push_str(&error.to_string());
            }
            text
        }
    }
}
