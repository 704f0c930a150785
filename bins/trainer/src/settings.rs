//! Command-line flags and the settings they resolve to.
//!
//! Hyper-parameter flags are optional here (defaults come from [`TrainConfig::default`], the
//! tutorial's values) so that a value given explicitly can be told apart from a default when a
//! job configuration file (`--config`) is merged in.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use job_config::JobConfig;
use mnist_model::TrainConfig;
use storage::Location;

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
    /// Seed for initialisation, shuffling and dropout; the same seed and thread count give a
    /// bit-identical run [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
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
    /// The validated --config file, loaded once by `job::parse_command_line`.
    #[arg(skip)]
    pub loaded_config: Option<JobConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda,
}

/// Everything a run needs, validated.
pub struct Settings {
    pub train_file: Location,
    pub job_dir: Location,
    pub train: TrainConfig,
    pub job_name: String,
    pub threads: Option<usize>,
    pub device: DeviceChoice,
    /// `--config` as validated, resolved and applied (see `job.rs`), for job.json.
    pub job_config: Option<serde_json::Value>,
}

impl Settings {
    pub fn resolve(cli: Cli) -> Result<Settings> {
        let train_file = Location::parse(&cli.train_file)
            .with_context(|| format!("--train-file {:?}", cli.train_file))?;
        let job_dir = Location::parse(&cli.job_dir)
            .with_context(|| format!("--job-dir {:?}", cli.job_dir))?;
        // Job configuration files describe machines (`trainingInput`); their args were merged
        // with the flags when the command line was parsed (flags given explicitly win). Here the
        // machine they ask for decides the device, or stops the run.
        let applied = crate::job::apply_to_run(&cli)?;
        let defaults = TrainConfig::default();
        let train = TrainConfig {
            epochs: cli.epochs.unwrap_or(defaults.epochs),
            batch_size: cli.batch_size.unwrap_or(defaults.batch_size),
            learning_rate: cli.learning_rate.unwrap_or(defaults.learning_rate),
            momentum: cli.momentum.unwrap_or(defaults.momentum),
            seed: cli.seed.unwrap_or(defaults.seed),
        };
        train.validate().context("invalid training flags")?;
        let job_name = match cli.job_name {
            Some(name) if !name.trim().is_empty() => name,
            Some(_) => anyhow::bail!("--job-name must not be empty"),
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
            job_name,
            threads: cli.threads.map(usize::from),
            device: applied.device,
            job_config: applied.record,
        })
    }
}
