//! `predictor local`: `gcloud ai-platform local predict` without Python or TensorFlow.
//!
//! The model is loaded once; instances are streamed from the file and run in batches of at most
//! `--max-batch-size` (one batch unless the file is very large). Nothing is printed until every
//! instance has been checked and run, so a bad line anywhere gives an error and no predictions,
//! never a partial result that looks whole. Output is byte-for-byte what gcloud prints for the
//! same model and file (default table, or `--format json`).

use std::fs::File;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use predict_json::{InstanceFormat, PyValue};
use savedmodel_runtime::{LoadedModel, SignatureInfo};
use storage::Location;

use compute_device::{self as device, DeviceChoice};

/// Large enough that ordinary files run as one batch; bounds memory for huge files.
const DEFAULT_MAX_BATCH: usize = 16_384;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// gcloud's default: a table with one column per output.
    Table,
    /// gcloud's `--format json`.
    Json,
}

#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("instances")
        .required(true)
        .args(["json_instances", "json_request", "text_instances"])
))]
pub struct LocalArgs {
    /// The SavedModel directory (the one holding saved_model.pb): a local path or gs:// URL.
    #[arg(long, value_name = "DIR|URL")]
    model_dir: String,
    /// Newline-delimited JSON, one instance per line (`-` reads stdin).
    #[arg(long, value_name = "FILE")]
    json_instances: Option<PathBuf>,
    /// A JSON request body, {"instances": [...]} (`-` reads stdin).
    #[arg(long, value_name = "FILE")]
    json_request: Option<PathBuf>,
    /// One string instance per line (`-` reads stdin).
    #[arg(long, value_name = "FILE")]
    text_instances: Option<PathBuf>,
    /// The signature to run; by default the model's only signature, else serving_default.
    #[arg(long)]
    signature_name: Option<String>,
    /// Output layout.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Most instances run in one forward pass; larger files run in several.
    #[arg(long, default_value_t = DEFAULT_MAX_BATCH, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_batch_size: usize,
    /// Where the model runs.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// Most memory the model may need, in MiB: its constants, variables and the intermediate
    /// tensors of a --max-batch-size batch, checked before anything is allocated.
    #[arg(long, value_name = "MIB", default_value_t = savedmodel_runtime::DEFAULT_MEMORY_BUDGET >> 20)]
    memory_budget_mb: u64,
}

pub fn run(args: LocalArgs) -> Result<()> {
    // A device that cannot be used is a mistake in the command: say so before any I/O.
    let device = device::open(args.device, "predictor", "running models")?;
    let (path, format) = match (
        &args.json_instances,
        &args.json_request,
        &args.text_instances,
    ) {
        (Some(path), _, _) => (path, InstanceFormat::JsonLines),
        (_, Some(path), _) => (path, InstanceFormat::JsonRequest),
        (_, _, Some(path)) => (path, InstanceFormat::TextLines),
        // clap's required group makes this unreachable; say so rather than panic.
        (None, None, None) => {
            bail!("one of --json-instances, --json-request, --text-instances is required")
        }
    };
    let source = path.display().to_string();
    // Open the instances first: a typo in the file name should not wait for a model load.
    let reader = open_instances(path)?;

    let model_dir = Location::parse(&args.model_dir)
        .with_context(|| format!("invalid --model-dir {}", args.model_dir))?;
    check_model_dir(&model_dir)?;
    let limits = savedmodel_runtime::LoadLimits {
        memory_budget: args.memory_budget_mb.saturating_mul(1 << 20),
        max_batch: args.max_batch_size,
    };
    let model = LoadedModel::load_blocking_with(&model_dir, &["serve"], &device, &limits)
        .with_context(|| format!("cannot load the SavedModel in {model_dir}"))?;
    let signature = choose_signature(&model, args.signature_name.as_deref())?;

    let batches = predict_json::read_instances(reader, format, signature, args.max_batch_size)
        .with_context(|| format!("signature \"{}\" of {model_dir}", signature.name))?;
    let mut predictions: Vec<PyValue> = Vec::new();
    for batch in batches {
        let batch = batch.with_context(|| source.clone())?;
        let outputs = model.run(&signature.name, &batch.inputs).with_context(|| {
            format!(
                "running signature \"{}\" on instances {}..{} of {source}",
                signature.name,
                batch.first_instance + 1,
                batch.first_instance + batch.num_instances
            )
        })?;
        predictions.extend(predict_json::gcloud_predictions(&outputs).with_context(|| {
            format!(
                "signature \"{}\" returned outputs that cannot be printed",
                signature.name
            )
        })?);
    }

    let response = predict_json::gcloud_response(predictions);
    let text = match args.format {
        Format::Table => predict_json::format_gcloud_default(&response),
        Format::Json => predict_json::format_gcloud_json(&response),
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // A closed pipe (`predictor local ... | head`) is the reader's choice, not a failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write the predictions to stdout"),
    }
}

fn open_instances(path: &Path) -> Result<Box<dyn BufRead>> {
    if path == Path::new("-") {
        return Ok(Box::new(BufReader::with_capacity(
            1 << 20,
            std::io::stdin(),
        )));
    }
    let file = File::open(path)
        .with_context(|| format!("cannot open the instances file {}", path.display()))?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        bail!("the instances file {} is a directory", path.display());
    }
    Ok(Box::new(BufReader::with_capacity(1 << 20, file)))
}

/// Tells "no such directory" from "a directory that is not a SavedModel" before loading.
fn check_model_dir(dir: &Location) -> Result<()> {
    let marker = dir.join("saved_model.pb");
    if marker
        .exists_blocking()
        .with_context(|| format!("cannot check {marker}"))?
    {
        return Ok(());
    }
    if dir
        .join("saved_model.pbtxt")
        .exists_blocking()
        .unwrap_or(false)
    {
        // The loader explains that the text format is not supported.
        return Ok(());
    }
    match dir.local_path() {
        Some(path) if !path.exists() => {
            bail!("the model directory {} does not exist", path.display())
        }
        Some(path) if !path.is_dir() => {
            bail!("the model directory {} is not a directory", path.display())
        }
        Some(path) => bail!(
            "{} is not a SavedModel directory: it has no saved_model.pb (give the directory that holds \
             saved_model.pb and variables/)",
            path.display()
        ),
        None => {
            let listed = dir
                .list_blocking()
                .with_context(|| format!("cannot list {dir}"))?;
            if listed.is_empty() {
                bail!("the model directory {dir} does not exist (no objects under it)");
            }
            bail!(
                "{dir} is not a SavedModel directory: it has no saved_model.pb (give the directory that holds \
                 saved_model.pb and variables/)"
            )
        }
    }
}

/// gcloud's choice: the named signature; else the only one; else `serving_default` (the same
/// rule batch prediction uses).
fn choose_signature<'m>(model: &'m LoadedModel, name: Option<&str>) -> Result<&'m SignatureInfo> {
    Ok(batch_prediction::choose_signature(model, name)?)
}
