//! The crate's single error type.

use mnist_model::ModelError;

/// What an observer's callback may fail with: any error, boxed (an `anyhow::Error` converts
/// with `?` or `.into()`).
pub type ObserverError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can stop training, evaluation, checkpointing or export.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainingError {
    /// The model refused a step, an evaluation or its weights (names the epoch and step).
    #[error("{context}: {source}")]
    Model {
        context: String,
        #[source]
        source: Box<ModelError>,
    },

    /// The data cannot be batched for this model (a label out of range, an empty split, ...).
    #[error("{context}: {source}")]
    Data {
        context: String,
        #[source]
        source: Box<idx_dataset::IdxError>,
    },

    /// A plan that cannot run (bad validation split, empty split, mismatched shapes).
    #[error("{0}")]
    Plan(String),

    /// An observer (progress, logging, checkpointing) failed; `callback` names the hook.
    #[error("{callback}: {source}")]
    Observer {
        callback: &'static str,
        #[source]
        source: ObserverError,
    },

    /// Building the SavedModel's files failed.
    #[error("building the SavedModel: {0}")]
    Export(#[from] Box<savedmodel_format::FormatError>),

    /// Reading or writing the job directory failed (the storage error names the location).
    /// Boxed: storage errors are large and rare, and every `Result` here would carry their size.
    #[error("{context}: {source}")]
    Storage {
        context: String,
        #[source]
        source: Box<storage::StorageError>,
    },

    /// A checkpoint cannot be used: corrupt, or from another configuration (the message names
    /// the files and each difference), or the state file is unreadable.
    #[error("{0}")]
    Checkpoint(String),

    /// A local filesystem operation of the export failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// job.json could not be encoded or decoded.
    #[error("{context}: {source}")]
    Json {
        context: String,
        #[source]
        source: serde_json::Error,
    },
}

// Every variant's payload is boxed or small, so `Result<_, TrainingError>` stays cheap to return
// on the per-step path.
impl TrainingError {
    pub(crate) fn data(
        context: impl Into<String>,
    ) -> impl FnOnce(idx_dataset::IdxError) -> TrainingError {
        let context = context.into();
        move |source| TrainingError::Data {
            context,
            source: Box::new(source),
        }
    }

    pub(crate) fn model(context: impl Into<String>) -> impl FnOnce(ModelError) -> TrainingError {
        let context = context.into();
        move |source| TrainingError::Model {
            context,
            source: Box::new(source),
        }
    }

    pub(crate) fn storage(
        context: impl Into<String>,
    ) -> impl FnOnce(storage::StorageError) -> TrainingError {
        let context = context.into();
        move |source| TrainingError::Storage {
            context,
            source: Box::new(source),
        }
    }

    pub(crate) fn observer(callback: &'static str) -> impl FnOnce(ObserverError) -> TrainingError {
        move |source| TrainingError::Observer { callback, source }
    }
}
