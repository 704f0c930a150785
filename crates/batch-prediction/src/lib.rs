//! batch-prediction: Cloud ML Engine's batch prediction (`gcloud ai-platform jobs submit
//! prediction`) as a library: input files through a SavedModel into
//! `prediction.results-00000-of-00001` and `prediction.errors_stats-00000-of-00001`.
//!
//! # Why a crate of its own
//! Batch prediction is its own concept: files in, files out, errors per record, counts for the
//! job resource. The jobs service runs it for `predictionInput` jobs and `predictor
//! batch-predict` runs it from the command line; neither should hold the pipeline. It reuses the
//! online path for everything that decides results: `savedmodel-runtime` runs the model and
//! `predict-json` turns records into tensors ([`predict_json::RecordBatcher`], the same rules and
//! messages as `predictor local`) and outputs into prediction rows
//! ([`predict_json::gcloud_predictions`], as `predictor local` prints them).
//!
//! # Inputs
//! * `inputPaths`: local paths, `file://` or `gs://` URLs; `*`, `?` and `[…]` wildcards match
//!   within one path segment (`glob` crate, `require_literal_separator`), as gsutil's `*` does.
//!   A path without wildcards must name an existing file. Paths that match nothing at all fail
//!   the job before the model loads.
//! * `dataFormat`: `JSON` / `TEXT` (one record per line; `\r\n` and a BOM are fine), `TF_RECORD`,
//!   `TF_RECORD_GZIP` (TFRecord framing with both CRCs checked, `tfevents::record`; the gzip
//!   variant is the whole stream gzipped). A signature with exactly one string input gets each
//!   record as raw bytes (serialized `tf.train.Example`s work this way); any other signature
//!   gets each record parsed as one JSON instance (`{"b64": …}` for bytes).
//!
//! # Outputs (as Cloud ML Engine's pipeline, public as kubeflow/batch-predict, writes them)
//! * `prediction.results-00000-of-00001`: one `json.dumps(prediction)` line per instance
//!   (`{"class": 7, "probabilities": [...]}`), in input order (files in sorted order, records in
//!   file order).
//! * `prediction.errors_stats-00000-of-00001`: one Python tuple per distinct error,
//!   `('<message>', <count>)` (Beam's `Count.PerKey` printed with `str()`). Cloud ML Engine fails
//!   a whole batch when one record in it is bad and counts batches; here each record is checked on
//!   its own, so only the bad record fails and the count is of records. The messages carry no
//!   position; each failed record's file and line (or TFRecord record number) is in
//!   [`BatchPredictionOutput::errors`] for the job log (`FILE line 7: …`, [`RecordError`]).
//! * Both files are written only at the end, results last: a job that fails (inputs gone, model
//!   that does not load, disk full) leaves no results file, never a partial one that looks whole.
//!
//! # Speed
//! A reader thread cuts the input into chunks of records; worker threads (one per core) parse a
//! chunk into one `[n, …]` tensor per input, run the model once per chunk and format the rows;
//! the calling thread puts the chunks back in order. `batchSize` (API default 64) is a floor:
//! chunks hold at least [`MIN_CHUNK_RECORDS`] records, because one forward pass over thousands
//! of rows costs far less per row than many small ones, and results do not depend on the batch.

mod inputs;
mod pipeline;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

pub use inputs::expand_input_paths;
pub use pipeline::{choose_signature, run_batch_prediction};

/// Records per forward pass at least (see the crate docs).
pub const MIN_CHUNK_RECORDS: usize = 2048;
/// The API's default `batchSize`.
pub const DEFAULT_BATCH_SIZE: usize = 64;
/// Most per-record errors kept in [`BatchPredictionOutput::errors`] (all are counted).
pub const MAX_ERRORS_KEPT: usize = 1000;
/// Name of the results file (one shard).
pub const RESULTS_FILE: &str = "prediction.results-00000-of-00001";
/// Name of the error statistics file (one shard).
pub const ERRORS_FILE: &str = "prediction.errors_stats-00000-of-00001";

/// `predictionInput.dataFormat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFormat {
    /// One JSON instance per line (`TEXT` is the deprecated name of the same thing).
    Json,
    Text,
    TfRecord,
    TfRecordGzip,
}

impl DataFormat {
    /// Parses the API name (`JSON`, `TEXT`, `TF_RECORD`, `TF_RECORD_GZIP`); `CSV` and
    /// `FILE_LIST` exist in the API but are not supported here, and say so.
    pub fn from_api_name(name: &str) -> Result<DataFormat, BatchPredictionError> {
        match name {
            "JSON" => Ok(DataFormat::Json),
            "TEXT" => Ok(DataFormat::Text),
            "TF_RECORD" => Ok(DataFormat::TfRecord),
            "TF_RECORD_GZIP" => Ok(DataFormat::TfRecordGzip),
            "CSV" | "FILE_LIST" | "DATA_FORMAT_UNSPECIFIED" => {
                Err(BatchPredictionError::Request(format!(
                    "predictionInput.dataFormat {name} is not supported; use JSON (or TEXT), TF_RECORD or TF_RECORD_GZIP"
                )))
            }
            other => Err(BatchPredictionError::Request(format!(
                "predictionInput.dataFormat: unknown value {other:?}; expected JSON, TEXT, TF_RECORD or TF_RECORD_GZIP"
            ))),
        }
    }

    pub fn api_name(self) -> &'static str {
        match self {
            DataFormat::Json => "JSON",
            DataFormat::Text => "TEXT",
            DataFormat::TfRecord => "TF_RECORD",
            DataFormat::TfRecordGzip => "TF_RECORD_GZIP",
        }
    }

    fn is_tfrecord(self) -> bool {
        matches!(self, DataFormat::TfRecord | DataFormat::TfRecordGzip)
    }
}

/// What to predict: `predictionInput` with the model already resolved to its directory.
#[derive(Debug, Clone)]
pub struct BatchPredictionRequest {
    /// `inputPaths`, local or `gs://`, wildcards allowed.
    pub input_paths: Vec<String>,
    pub data_format: DataFormat,
    /// `outputPath`: the directory the two files go to.
    pub output_path: String,
    /// The SavedModel directory (`uri`, or the version's `deploymentUri`).
    pub model_dir: String,
    /// `signatureName`; `None`: the model's only signature, else `serving_default`.
    pub signature_name: Option<String>,
    /// `batchSize`; `None`: [`DEFAULT_BATCH_SIZE`].
    pub batch_size: Option<usize>,
    /// Where the model runs.
    pub device: candle_core::Device,
    /// How `gs://` is reached (the GCS emulator in tests).
    pub storage: storage::StorageOptions,
    /// Most memory the model may need for one chunk (see `savedmodel-runtime`'s load limits).
    pub memory_budget: u64,
    /// Worker threads; `None`: one per core.
    pub threads: Option<usize>,
    /// Set to stop the run; it then fails with [`BatchPredictionError::Cancelled`] and writes
    /// nothing.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl BatchPredictionRequest {
    /// A request with the defaults for everything but the four required fields.
    pub fn new(
        input_paths: Vec<String>,
        data_format: DataFormat,
        output_path: impl Into<String>,
        model_dir: impl Into<String>,
    ) -> BatchPredictionRequest {
        BatchPredictionRequest {
            input_paths,
            data_format,
            output_path: output_path.into(),
            model_dir: model_dir.into(),
            signature_name: None,
            batch_size: None,
            device: candle_core::Device::Cpu,
            storage: storage::StorageOptions::from_env(),
            memory_budget: savedmodel_runtime::DEFAULT_MEMORY_BUDGET,
            threads: None,
            cancel: None,
        }
    }
}

/// What [`RecordError::record`] counts in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordUnit {
    /// Lines of a text (JSON lines) file.
    Line,
    /// Records of a TFRecord file.
    Record,
}

/// One record that could not be predicted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// The input file (URL or path).
    pub file: String,
    /// 1-based line (text formats) or record number (TFRecord) in that file.
    pub record: usize,
    pub unit: RecordUnit,
    /// What was wrong, without the position (the key of the errors file).
    pub message: String,
}

/// `FILE line 7: message` / `FILE record 4: message`: the job log's line for a bad record.
impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.unit {
            RecordUnit::Line => "line",
            RecordUnit::Record => "record",
        };
        write!(f, "{} {unit} {}: {}", self.file, self.record, self.message)
    }
}

/// The result of a run: `predictionOutput`'s counts and where everything went.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchPredictionOutput {
    /// `predictionOutput.outputPath`.
    pub output_path: String,
    /// `predictionOutput.predictionCount`.
    pub prediction_count: u64,
    /// `predictionOutput.errorCount`.
    pub error_count: u64,
    /// The input files read, in order.
    pub input_files: Vec<String>,
    /// The results and errors files written.
    pub results_file: String,
    pub errors_file: String,
    /// The first [`MAX_ERRORS_KEPT`] failed records, in input order, for the job log.
    pub errors: Vec<RecordError>,
    /// Wall time of the run, loading the model included.
    pub seconds: f64,
}

/// What fails a whole batch-prediction run (bad records never do).
#[derive(Debug, thiserror::Error)]
pub enum BatchPredictionError {
    /// The request itself is wrong (names the field).
    #[error("{0}")]
    Request(String),
    /// `inputPaths` matched no file.
    #[error("predictionInput.inputPaths {patterns:?} match no files")]
    NoInputs { patterns: Vec<String> },
    /// Reading, listing or writing storage failed (the storage error names the location).
    #[error("{context}: {source}")]
    Storage {
        context: String,
        #[source]
        source: Box<storage::StorageError>,
    },
    /// A local file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A gzip stream is corrupt.
    #[error("{file}: not a valid gzip stream: {source}")]
    Gzip {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// The model cannot be loaded, or has no usable signature.
    #[error("{0}")]
    Model(String),
    /// The run was cancelled.
    #[error("batch prediction was cancelled")]
    Cancelled,
    /// A worker thread died (a bug; the message says where).
    #[error("internal error: {0}")]
    Internal(String),
}

impl BatchPredictionError {
    fn storage(context: impl Into<String>) -> impl FnOnce(storage::StorageError) -> Self {
        let context = context.into();
        move |source| BatchPredictionError::Storage {
            context,
            source: Box::new(source),
        }
    }
}
