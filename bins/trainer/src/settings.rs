//! Command-line flags and the settings they resolve to.
//!
//! Hyper-parameter flags are optional here (defaults come from [`TrainConfig::default`], the
//! tutorial's values) so that a value given explicitly can be told apart from a default when a
//! job configuration file (`--config`) is merged in. What a config means for the run (device,
//! refused clusters) is decided in `job.rs`, which this module calls and which never sees `Cli`.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{CommandFactory, FromArgMatches, Parser};
use compute_device::DeviceChoice;
use job_config::JobConfig;
use mnist_model::{ModelConfig, TrainConfig};
use storage::Location;

use crate::job::{self, Requested};

#[derive(Debug, Parser)]
#[command(
    name = "trainer",
    version,
    about = "Train the Keras MNIST MLP and export it as a TensorFlow SavedModel"
)]
pub struct Cli {
    /// Directory (local path, file:// or gs:// URL) with the MNIST IDX files (gzip or raw).
    #[arg(long, value_name = "DIR|URL")]
    pub train_file: String,
    /// Where the model (`<job-dir>/model/`) and `job.json` go; local path or gs:// URL.
    #[arg(long, value_name = "DIR|URL")]
    pub job_dir: String,
    /// Passes over the training set [default: 1].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Examples per optimizer step [default: 32].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// SGD learning rate [default: 0.01].
    #[arg(long, allow_negative_numbers = true)]
    pub learning_rate: Option<f32>,
    /// Momentum of the TF1 MomentumOptimizer [default: 0.9].
    #[arg(long, allow_negative_numbers = true)]
    pub momentum: Option<f32>,
    /// Widths of the hidden ReLU layers, comma-separated: `512,256` is the tutorial's network, a
    /// single value means one hidden layer [default: 512,256].
    #[arg(long, value_name = "W[,W…]", value_parser = parse_hidden_units)]
    pub hidden_units: Option<HiddenUnits>,
    /// Dropout rate after every hidden layer, in [0, 1); 0 turns dropout off [default: 0.2].
    #[arg(long, value_name = "RATE", allow_negative_numbers = true)]
    pub dropout: Option<f32>,
    /// Seed for initialisation, shuffling and dropout; the same seed and thread count give a
    /// bit-identical run [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Hold out the last F of the training examples (Keras's `validation_split`) and evaluate on
    /// them after every epoch (`val_loss`, `val_accuracy`) [default: no validation].
    #[arg(long, value_name = "F", allow_negative_numbers = true)]
    pub validation_split: Option<f64>,
    /// TensorBoard log directory (local path or gs:// URL): event files go to DIR/train and
    /// DIR/validation, with Keras's tag names [default: $AIP_TENSORBOARD_LOG_DIR, else
    /// <job-dir>/logs].
    #[arg(long, value_name = "DIR|URL", env = "AIP_TENSORBOARD_LOG_DIR")]
    pub tensorboard_dir: Option<String>,
    /// Write `batch_loss` / `batch_accuracy` to TensorBoard every N optimizer steps; 0 writes
    /// epoch scalars only [default: 100].
    #[arg(long, value_name = "N")]
    pub log_every_steps: Option<u64>,
    /// Write no TensorBoard logs.
    #[arg(long)]
    pub no_tensorboard: bool,
    /// Also write a checkpoint every N optimizer steps (one is always written at each epoch end
    /// and on SIGTERM) [default: 0, epoch ends only].
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub checkpoint_every_steps: u64,
    /// How many checkpoints to keep (the oldest are deleted).
    #[arg(long, value_name = "K", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub keep_checkpoints: u64,
    /// Where checkpoints go [default: $AIP_CHECKPOINT_DIR, else <job-dir>/checkpoints].
    #[arg(long, value_name = "DIR|URL", env = "AIP_CHECKPOINT_DIR")]
    pub checkpoint_dir: Option<String>,
    /// `auto`: continue from the latest checkpoint when there is one; `never`: start over (old
    /// checkpoints are deleted only once the first new one is written).
    #[arg(long, value_enum, default_value_t = ResumeMode::Auto)]
    pub resume: ResumeMode,
    /// Name recorded in job.json [default: mnist_mlp_<unix time>].
    #[arg(long)]
    pub job_name: Option<String>,
    /// CPU worker threads [default: $RAYON_NUM_THREADS, else all cores].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// Where to train: a CUDA GPU if this build has the `cuda` feature and one is present (auto),
    /// or exactly the CPU / the first CUDA device [default: auto, or what --config asks for].
    #[arg(long, value_enum)]
    pub device: Option<DeviceChoice>,
    /// Cloud ML Engine job configuration (YAML or JSON `trainingInput`): its machine types decide
    /// the device, its `args` apply like flags (flags given here win), and it is recorded in
    /// job.json.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Train on the CPU even when --config asks for a GPU this machine or build cannot provide.
    #[arg(long)]
    pub allow_cpu: bool,
    /// The validated --config file, loaded once by [`parse_command_line`].
    #[arg(skip)]
    pub loaded_config: Option<JobConfig>,
}

/// Parses the command line. With `--config FILE`, the file is loaded and validated, and the
/// command line is parsed again behind the config's `jobDir` and `args`, so explicit flags win.
///
/// Usage errors, `--help` and `--version` exit the way clap always does; a bad config file is
/// returned as an error.
pub fn parse_command_line(argv: Vec<OsString>) -> Result<Cli> {
    // First find --config without insisting on the required flags: the config may supply them
    // (`jobDir`, or `--train-file` among its args).
    let lenient = Cli::command().mut_args(|arg| arg.required(false));
    let config_path = match lenient.try_get_matches_from(argv.iter()) {
        Ok(matches) => matches.get_one::<std::path::PathBuf>("config").cloned(),
        // --help, --version and real usage errors: let the strict parser say it, as usual.
        Err(_) => return Ok(Cli::parse_from(argv)),
    };
    let Some(config_path) = config_path else {
        return Ok(Cli::parse_from(argv));
    };
    // The error already names the file (and each field at fault).
    let config = JobConfig::from_path(&config_path)?;

    let config_flags = config_flags(&config)?;
    let mut merged: Vec<OsString> = Vec::with_capacity(argv.len() + config_flags.len());
    merged.extend(argv.first().cloned());
    merged.extend(config_flags.into_iter().map(OsString::from));
    merged.extend(argv.into_iter().skip(1));
    let matches = match Cli::command()
        .args_override_self(true)
        .try_get_matches_from(merged)
    {
        Ok(matches) => matches,
        Err(error) => error.exit(),
    };
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    cli.loaded_config = Some(config);
    Ok(cli)
}

/// The flags a config contributes: `--job-dir <jobDir>`, then `trainingInput.args`, checked to be
/// flags this trainer understands so that a mistake is blamed on the config, not the command line.
fn config_flags(config: &JobConfig) -> Result<Vec<String>> {
    let args_path = crate::job::field_path(config, "args");
    let args = &config.resolved.args;
    if let Some(flag) = args
        .iter()
        .find(|arg| *arg == "--config" || arg.starts_with("--config="))
    {
        bail!(
            "{}: {args_path}: {flag} cannot be given inside a config file",
            config.source
        );
    }
    let mut flags = Vec::with_capacity(args.len() + 1);
    if let Some(job_dir) = &config.resolved.job_dir {
        flags.push(format!("--job-dir={job_dir}"));
    }
    flags.extend(args.iter().cloned());
    let check = Cli::command()
        .mut_args(|arg| arg.required(false))
        .args_override_self(true)
        .try_get_matches_from(std::iter::once("trainer".to_string()).chain(args.iter().cloned()));
    if let Err(error) = check {
        let rendered = error.to_string();
        let first_line = rendered.lines().next().unwrap_or_default();
        bail!(
            "{}: {args_path}: {}",
            config.source,
            first_line.strip_prefix("error: ").unwrap_or(first_line)
        );
    }
    Ok(flags)
}

/// `--hidden-units`: the widths of the hidden layers, input side first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HiddenUnits(pub Vec<usize>);

/// `512,256` -> `[512, 256]`. Spaces around the commas are allowed (a YAML list written as one
/// string); empty items, zero and non-numbers are refused with the item named.
fn parse_hidden_units(text: &str) -> std::result::Result<HiddenUnits, String> {
    let mut widths = Vec::new();
    for (index, item) in text.split(',').enumerate() {
        let item = item.trim();
        match item.parse::<usize>() {
            Ok(width) if (1..=mnist_model::MAX_LAYER_WIDTH).contains(&width) => widths.push(width),
            _ => {
                return Err(format!(
                    "item {} is {item:?}; expected comma-separated layer widths in 1..={} such as 512,256",
                    index + 1,
                    mnist_model::MAX_LAYER_WIDTH
                ));
            }
        }
    }
    Ok(HiddenUnits(widths))
}

/// `--resume`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ResumeMode {
    Auto,
    Never,
}

/// Everything a run needs, validated.
pub struct Settings {
    pub train_file: Location,
    pub job_dir: Location,
    pub train: TrainConfig,
    /// Hidden widths and dropout from `--hidden-units` / `--dropout` (input and output sizes are
    /// filled in from the data).
    pub hidden_units: Vec<usize>,
    pub dropout_rate: f32,
    pub validation_split: Option<f64>,
    /// Where and how often to write TensorBoard logs; `None` with `--no-tensorboard`.
    pub tensorboard: Option<TensorBoardSettings>,
    pub checkpoint_dir: Location,
    pub checkpoint_every_steps: u64,
    pub keep_checkpoints: usize,
    pub resume: ResumeMode,
    pub job_name: String,
    pub threads: Option<usize>,
    pub device: DeviceChoice,
    /// `--config` as validated, resolved and applied (see `job.rs`), for job.json.
    pub job_config: Option<serde_json::Value>,
    /// Where to report the tuning metric when running as a hyperparameter-tuning trial.
    pub hypertune: Option<training::HypertuneSettings>,
}

/// `--tensorboard-dir` / `AIP_TENSORBOARD_LOG_DIR` / `<job-dir>/logs`, and `--log-every-steps`.
pub struct TensorBoardSettings {
    pub log_dir: Location,
    pub log_every_steps: u64,
}

/// Batch scalars every 100 steps: 19 points per MNIST epoch, at a cost too small to measure
/// (see BENCHMARKS.md).
const DEFAULT_LOG_EVERY_STEPS: u64 = 100;

impl Settings {
    pub fn resolve(cli: Cli) -> Result<Settings> {
        let train_file = Location::parse(&cli.train_file)
            .with_context(|| format!("--train-file {:?}", cli.train_file))?;
        let job_dir = Location::parse(&cli.job_dir)
            .with_context(|| format!("--job-dir {:?}", cli.job_dir))?;
        let checkpoint_dir = match cli.checkpoint_dir.as_deref().filter(|d| !d.is_empty()) {
            Some(dir) => Location::parse(dir)
                .with_context(|| format!("--checkpoint-dir (or AIP_CHECKPOINT_DIR) {dir:?}"))?,
            None => job_dir.join("checkpoints"),
        };
        // Job configuration files describe machines (`trainingInput`); their args were merged
        // with the flags when the command line was parsed (flags given explicitly win). Here the
        // machine they ask for decides the device, or stops the run.
        let applied = job::apply_to_run(Requested {
            config: cli.loaded_config.as_ref(),
            device: cli.device,
            allow_cpu: cli.allow_cpu,
        })?;
        let defaults = TrainConfig::default();
        let train = TrainConfig {
            epochs: cli.epochs.unwrap_or(defaults.epochs),
            batch_size: cli.batch_size.unwrap_or(defaults.batch_size),
            learning_rate: cli.learning_rate.unwrap_or(defaults.learning_rate),
            momentum: cli.momentum.unwrap_or(defaults.momentum),
            seed: cli.seed.unwrap_or(defaults.seed),
        };
        train.validate().context("invalid training flags")?;
        let model_defaults = ModelConfig::default();
        let hidden_units = cli
            .hidden_units
            .map_or(model_defaults.hidden_units, |units| units.0);
        let dropout_rate = cli.dropout.unwrap_or(model_defaults.dropout_rate);
        if !(dropout_rate.is_finite() && (0.0..1.0).contains(&dropout_rate)) {
            bail!("--dropout {dropout_rate} is not a rate in [0, 1)");
        }
        if let Some(split) = cli.validation_split
            && !(split.is_finite() && split > 0.0 && split < 1.0)
        {
            bail!("--validation-split {split} is not a fraction in (0, 1)");
        }
        let tensorboard = if cli.no_tensorboard {
            None
        } else {
            let log_dir = match &cli.tensorboard_dir {
                Some(dir) => Location::parse(dir).with_context(|| {
                    format!("--tensorboard-dir (or AIP_TENSORBOARD_LOG_DIR) {dir:?}")
                })?,
                None => job_dir.join("logs"),
            };
            Some(TensorBoardSettings {
                log_dir,
                log_every_steps: cli.log_every_steps.unwrap_or(DEFAULT_LOG_EVERY_STEPS),
            })
        };
        let spec = cli
            .loaded_config
            .as_ref()
            .and_then(|config| config.training_input.hyperparameters.as_ref());
        let hypertune = training::HypertuneSettings::from_env(
            spec.is_some(),
            spec.and_then(|spec| spec.hyperparameter_metric_tag.as_deref()),
        );
        let job_name = match cli.job_name {
            Some(name) if !name.trim().is_empty() => name,
            Some(_) => bail!("--job-name must not be empty"),
            None => format!(
                "mnist_mlp_{}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            ),
        };
        Ok(Settings {
            train_file,
            job_dir,
            train,
            hidden_units,
            dropout_rate,
            validation_split: cli.validation_split,
            tensorboard,
            checkpoint_dir,
            checkpoint_every_steps: cli.checkpoint_every_steps,
            keep_checkpoints: usize::try_from(cli.keep_checkpoints).unwrap_or(usize::MAX),
            resume: cli.resume,
            job_name,
            threads: cli.threads.map(usize::from),
            device: applied.device,
            job_config: applied.record,
            hypertune,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> JobConfig {
        JobConfig::parse(text, "c.yaml").unwrap()
    }

    #[test]
    fn config_args_are_checked_against_the_trainer_flags() {
        let good = config("trainingInput:\n  jobDir: out\n  args: [--epochs, '3']\n");
        assert_eq!(
            config_flags(&good).unwrap(),
            ["--job-dir=out", "--epochs", "3"]
        );
        let unknown = config("trainingInput:\n  args: [--epochz, '3']\n");
        let message = config_flags(&unknown).unwrap_err().to_string();
        assert!(
            message.starts_with("c.yaml: trainingInput.args: unexpected argument '--epochz' found"),
            "{message}"
        );
        let nested = config("trainingInput:\n  args: [--config=other.yaml]\n");
        assert_eq!(
            config_flags(&nested).unwrap_err().to_string(),
            "c.yaml: trainingInput.args: --config=other.yaml cannot be given inside a config file"
        );
    }
}
