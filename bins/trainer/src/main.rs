//! trainer: trains the Keras MNIST tutorial network and exports it as a TensorFlow SavedModel.
//!
//! ```text
//! trainer --train-file testdata/mnist --job-dir checkpoints
//! ```
//! loads the four MNIST IDX files from `--train-file` (a directory, local or `gs://`), trains
//! for `--epochs` with Keras-style progress, evaluates on the test split, writes the model to
//! `<job-dir>/model/` (a SavedModel whose `saved_model.pb` is written last, so a reader never sees
//! a half-written model) and `<job-dir>/job.json` (hyper-parameters, metrics, timings, device,
//! versions), and ends stdout with `Test Loss: <f>` and `Test Accuracy: <f>`.
//!
//! The binary is thin: the fit loop, evaluation, export and the job.json report live in the
//! `training` crate; this file wires flags to it and plugs in the observers that print progress.
//!
//! The flags mirror the tutorial's `trainer.task` arguments as Cloud ML Engine passes them.
//! Informational messages go to stderr so that stdout stays the run's record. Every failure
//! exits with status 1 and a single `error: ...: ...` line (the anyhow chain), never a panic.

mod job;
mod progress;
mod settings;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use mnist_model::{EngineOptions, Mlp, ModelConfig};
use training::report::{
    DatasetSummary, Hyperparameters, Metrics, ModelSummary, Timings, TrainingReport, Versions,
    shortest_decimal,
};
use training::{EvalPass, FitObserver, FitPlan, Position, TensorBoardObserver};

use progress::ProgressObserver;
use settings::Settings;

/// MNIST has ten digit classes; the reference network's output layer has one unit per class.
const NUM_CLASSES: usize = 10;

fn main() -> ExitCode {
    let cli = match settings::parse_command_line(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes a line to stdout, turning a closed pipe into an error instead of a panic.
fn say(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").context("writing to stdout")?;
    out.flush().context("writing to stdout")
}

fn unix_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn run(cli: settings::Cli) -> Result<()> {
    let started = Instant::now();
    let started_unix = unix_seconds();
    let settings = Settings::resolve(cli)?;
    let train = &settings.train;

    // Before the data: a device that is not there should fail the run at once.
    let device = compute_device::open(settings.device, "trainer", "training")?;
    let load_start = Instant::now();
    let splits = idx_dataset::load_mnist_blocking(&settings.train_file)
        .with_context(|| format!("loading MNIST from {}", settings.train_file))?;
    let load_seconds = load_start.elapsed().as_secs_f64();
    let (rows, cols) = splits.train.image_dims();
    if splits.test.feature_len() != splits.train.feature_len() {
        bail!(
            "test images are {:?} but training images are {rows}x{cols}",
            splits.test.image_dims()
        );
    }
    if splits.train.is_empty() || splits.test.is_empty() {
        bail!(
            "{}: the training and test splits must both hold at least one image (found {} and {})",
            settings.train_file,
            splits.train.len(),
            splits.test.len()
        );
    }
    eprintln!(
        "Loaded {} training and {} test images ({rows}x{cols}) from {} in {load_seconds:.2}s",
        splits.train.len(),
        splits.test.len(),
        settings.train_file
    );
    let split = settings
        .validation_split
        .map(|fraction| training::split_validation(&splits.train, fraction))
        .transpose()?;
    let (train_data, validation_data) = match &split {
        Some((train_part, validation_part)) => (train_part, Some(validation_part)),
        None => (&splits.train, None),
    };

    let model_config = ModelConfig {
        input_dim: splits.train.feature_len(),
        num_classes: NUM_CLASSES,
        ..ModelConfig::default()
    };
    let options = EngineOptions {
        threads: settings.threads,
        ..EngineOptions::default()
    };
    let mut model = Mlp::new(model_config.clone(), train.seed, &device, &options)
        .context("building the model")?;
    eprintln!("Training on {}", model.device_description());

    let mut tensorboard = settings
        .tensorboard
        .as_ref()
        .map(|logs| {
            TensorBoardObserver::create(&logs.log_dir, logs.log_every_steps)
                .with_context(|| format!("starting TensorBoard logs in {}", logs.log_dir))
        })
        .transpose()?;
    let mut progress = ProgressObserver::new(std::io::stdout().is_terminal());
    let mut observers: Vec<&mut dyn FitObserver> = vec![&mut progress];
    if let Some(tensorboard) = &mut tensorboard {
        observers.push(tensorboard);
    }
    let plan = FitPlan {
        train: train_data,
        validation: validation_data,
        config: train,
    };
    let fitted = training::fit(&mut model, &plan, Position::default(), &mut observers)?;

    let eval_start = Instant::now();
    let test = training::evaluate(
        &model,
        &splits.test,
        train.batch_size,
        EvalPass::Test,
        &mut observers,
    )?;
    let eval_seconds = eval_start.elapsed().as_secs_f64();
    drop(observers);
    if let Some(tensorboard) = &mut tensorboard {
        tensorboard.finish().context("writing TensorBoard logs")?;
    }

    let export_start = Instant::now();
    let model_dir = settings.job_dir.join("model");
    let weights = model.weights().context("reading the trained weights")?;
    training::export::write_saved_model(&model_dir, weights)?;
    let export_seconds = export_start.elapsed().as_secs_f64();
    eprintln!("Model exported to {model_dir}");

    let position = fitted.position;
    let report = TrainingReport {
        job_name: settings.job_name.clone(),
        train_file: settings.train_file.url(),
        job_dir: settings.job_dir.url(),
        model_dir: model_dir.url(),
        hyperparameters: Hyperparameters {
            epochs: train.epochs,
            batch_size: train.batch_size,
            learning_rate: shortest_decimal(train.learning_rate),
            momentum: shortest_decimal(train.momentum),
            seed: train.seed,
            validation_split: settings.validation_split,
            optimizer:
                "MomentumOptimizer (accum = momentum * accum + grad; var -= learning_rate * accum)"
                    .to_string(),
            loss: "categorical_crossentropy (from logits)".to_string(),
            model: ModelSummary {
                input_dim: model_config.input_dim,
                hidden_units: model_config.hidden_units.clone(),
                num_classes: model_config.num_classes,
                dropout_rate: shortest_decimal(model_config.dropout_rate),
                parameters: model_config.parameter_count(),
            },
        },
        dataset: DatasetSummary {
            train_examples: train_data.len(),
            validation_examples: validation_data.map_or(0, |v| v.len()),
            test_examples: splits.test.len(),
            image_dims: [rows, cols],
        },
        metrics: Metrics {
            epochs: position.history.clone(),
            test_loss: test.loss(),
            test_accuracy: test.accuracy(),
            test_examples: test.examples(),
        },
        timings_seconds: Timings {
            load_data: load_seconds,
            train_total: position.history_seconds.iter().sum(),
            train_epochs: position.history_seconds.clone(),
            evaluate: eval_seconds,
            export: export_seconds,
            total: started.elapsed().as_secs_f64(),
        },
        device: model.device_description(),
        threads: model.threads(),
        job_config: settings.job_config.clone(),
        resumed_from: None,
        versions: Versions {
            trainer: env!("CARGO_PKG_VERSION").to_string(),
            crates: crate_versions(),
        },
        started_at_unix: started_unix,
        finished_at_unix: unix_seconds(),
    };
    let job_json = settings.job_dir.join("job.json");
    job_json
        .write_blocking(Bytes::from(report.to_json()?))
        .with_context(|| format!("writing {job_json}"))?;

    say(&format!("Test Loss: {}", test.loss()))?;
    say(&format!("Test Accuracy: {}", test.accuracy()))?;
    Ok(())
}

/// `name -> version` of the crates this binary was built from (see build.rs).
fn crate_versions() -> BTreeMap<String, String> {
    env!("TRAINER_CRATE_VERSIONS")
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, version)| (name.to_string(), version.to_string()))
        .collect()
}
