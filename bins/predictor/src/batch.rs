//! `predictor batch-predict`: a Cloud ML Engine batch prediction job run in the foreground, for
//! users without the jobs API (the `batch-prediction` crate does the work; this is flags).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use batch_prediction::{BatchPredictionRequest, DataFormat};
use compute_device::{self as device, DeviceChoice};

/// `--data-format`, gcloud's spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DataFormatFlag {
    Json,
    Text,
    TfRecord,
    TfRecordGzip,
}

/// The input and output flags `batch-predict` and `jobs submit prediction` share (gcloud's).
#[derive(Debug, clap::Args)]
pub struct PredictionFiles {
    /// Input files, comma-separated; `*` wildcards match within a path segment (quote them).
    #[arg(
        long,
        value_name = "PATH[,PATH…]",
        value_delimiter = ',',
        required = true
    )]
    pub input_paths: Vec<String>,
    /// Where prediction.results-00000-of-00001 and prediction.errors_stats-00000-of-00001 go.
    #[arg(long, value_name = "DIR|URL")]
    pub output_path: String,
    /// How records are stored: one JSON instance per line (text, json) or TFRecord (gzipped).
    #[arg(long, value_enum)]
    pub data_format: DataFormatFlag,
    /// The signature to run; by default the model's only signature, else serving_default.
    #[arg(long)]
    pub signature_name: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct BatchPredictArgs {
    /// The SavedModel directory (local path or gs:// URL).
    #[arg(long, value_name = "DIR|URL")]
    model_dir: String,
    #[command(flatten)]
    files: PredictionFiles,
    /// Instances per forward pass at least (larger passes are used when it is small).
    #[arg(long, default_value_t = batch_prediction::DEFAULT_BATCH_SIZE, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    batch_size: usize,
    /// Where the model runs.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// Worker threads [default: one per core].
    #[arg(long)]
    threads: Option<usize>,
    /// Most memory the model may need, in MiB (checked before anything is allocated).
    #[arg(long, value_name = "MIB", default_value_t = savedmodel_runtime::DEFAULT_MEMORY_BUDGET >> 20)]
    memory_budget_mb: u64,
}

/// The API's `dataFormat` a `--data-format` stands for.
pub fn data_format(flag: DataFormatFlag) -> DataFormat {
    match flag {
        DataFormatFlag::Json => DataFormat::Json,
        DataFormatFlag::Text => DataFormat::Text,
        DataFormatFlag::TfRecord => DataFormat::TfRecord,
        DataFormatFlag::TfRecordGzip => DataFormat::TfRecordGzip,
    }
}

pub fn run(args: BatchPredictArgs) -> Result<()> {
    let device = device::open(args.device, "predictor", "running models")?;
    let files = args.files;
    let data_format = data_format(files.data_format);
    let cancel = Arc::new(AtomicBool::new(false));
    // Ctrl-C / SIGTERM stop the run before anything is written.
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&cancel))
            .context("installing the signal handlers")?;
    }
    let request = BatchPredictionRequest {
        signature_name: files.signature_name,
        batch_size: Some(args.batch_size),
        device,
        memory_budget: args.memory_budget_mb.saturating_mul(1 << 20),
        threads: args.threads,
        cancel: Some(Arc::clone(&cancel)),
        ..BatchPredictionRequest::new(
            files.input_paths,
            data_format,
            files.output_path,
            args.model_dir,
        )
    };
    let output = batch_prediction::run_batch_prediction(&request)?;
    if cancel.load(Ordering::Relaxed) {
        bail!("stopped by a signal; nothing was written");
    }
    for error in &output.errors {
        eprintln!("error: {error}");
    }
    if output.error_count > output.errors.len() as u64 {
        eprintln!(
            "… and {} more errors (counted in {})",
            output.error_count - output.errors.len() as u64,
            output.errors_file
        );
    }
    let rate = output.prediction_count as f64 / output.seconds.max(1e-9);
    eprintln!(
        "Read {} file{}; wrote {} predictions to {} and {} errors to {} in {:.2}s ({rate:.0} instances/s)",
        output.input_files.len(),
        if output.input_files.len() == 1 {
            ""
        } else {
            "s"
        },
        output.prediction_count,
        output.results_file,
        output.error_count,
        output.errors_file,
        output.seconds,
    );
    println!("predictionCount: {}", output.prediction_count);
    println!("errorCount: {}", output.error_count);
    Ok(())
}
