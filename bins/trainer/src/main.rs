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
//!
//! Checkpoints (TensorFlow tensor bundles + `checkpoint` state file) go to `<job-dir>/checkpoints`
//! or `AIP_CHECKPOINT_DIR`; a run started on a job dir that holds one continues from it
//! (`--resume auto`), bit-identically. SIGTERM (preemption) writes a checkpoint after the current
//! step and exits with [`EXIT_PREEMPTED`] (75).

mod faults;
mod job;
mod progress;
mod settings;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use mnist_model::{EngineOptions, Mlp, ModelConfig};
use training::checkpoint::{
    CheckpointManager, CheckpointObserver, CheckpointSchedule, RunFingerprint, data_checksum,
};
use training::report::{
    DatasetSummary, Hyperparameters, Metrics, ModelSummary, ResumedFrom, Timings, TrainingReport,
    Versions, shortest_decimal,
};
use training::{EvalPass, FitObserver, FitPlan, Position, TensorBoardObserver};

use progress::ProgressObserver;
use settings::{ResumeMode, Settings};

/// Exit status after SIGTERM: a checkpoint was written and the run stopped; rerunning the same
/// command continues it (sysexits' EX_TEMPFAIL, "try again later").
const EXIT_PREEMPTED: u8 = 75;

/// How a run ended without an error.
enum Finished {
    Completed,
    /// Stopped by SIGTERM after writing a checkpoint.
    Preempted,
}

/// MNIST has ten digit classes; the reference network's output layer has one unit per class.
const NUM_CLASSES: usize = 10;

fn main() -> ExitCode {
    let cli = match settings::parse_command_line(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(error) => {
            eprintln!("error: {}", storage::error_chain_text(error.as_ref()));
            return ExitCode::FAILURE;
        }
    };
    match run(cli) {
        Ok(Finished::Completed) => ExitCode::SUCCESS,
        Ok(Finished::Preempted) => ExitCode::from(EXIT_PREEMPTED),
        Err(error) => {
            // Each cause once: nested storage errors repeat their causes' text.
            eprintln!("error: {}", storage::error_chain_text(error.as_ref()));
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

fn run(cli: settings::Cli) -> Result<Finished> {
    let started = Instant::now();
    let started_unix = unix_seconds();
    // From here on SIGTERM only sets this flag; the checkpoint observer acts on it between steps.
    let stop_requested = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop_requested))
        .context("installing the SIGTERM handler")?;
    let settings = Settings::resolve(cli)?;
    let train = &settings.train;

    // Before the data: a device that is not there, or a job directory that cannot be written,
    // should fail the run at once.
    let device = compute_device::open(settings.device, "trainer", "training")?;
    training::export::probe_job_dir(&settings.job_dir)?;
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
        hidden_units: settings.hidden_units.clone(),
        dropout_rate: settings.dropout_rate,
    };
    let options = EngineOptions {
        threads: settings.threads,
        ..EngineOptions::default()
    };
    let fingerprint = RunFingerprint {
        input_dim: model_config.input_dim,
        hidden_units: model_config.hidden_units.clone(),
        num_classes: model_config.num_classes,
        dropout_rate: shortest_decimal(model_config.dropout_rate),
        batch_size: train.batch_size,
        learning_rate: shortest_decimal(train.learning_rate),
        momentum: shortest_decimal(train.momentum),
        seed: train.seed,
        train_examples: train_data.len(),
        validation_examples: validation_data.map_or(0, |v| v.len()),
        image_dims: [rows, cols],
        train_data_crc32c: data_checksum(train_data),
    };
    let mut checkpoints =
        CheckpointManager::open(settings.checkpoint_dir.clone(), settings.keep_checkpoints)?;
    let resumed = match settings.resume {
        ResumeMode::Auto => checkpoints.load_latest(&fingerprint)?,
        ResumeMode::Never => None,
    };
    let (mut model, start, resumed_from) = match resumed {
        Some((prefix, state)) => {
            if state.position.epoch > train.epochs
                || (state.position.epoch == train.epochs && state.position.batch > 0)
            {
                bail!(
                    "checkpoint {prefix} is at epoch {} of a longer run, but --epochs is {}",
                    state.position.epoch + 1,
                    train.epochs
                );
            }
            let model = Mlp::resume(
                model_config.clone(),
                &state.weights,
                &state.slots,
                state.global_step,
                train.seed,
                &device,
                &options,
            )
            .with_context(|| format!("restoring checkpoint {prefix}"))?;
            eprintln!(
                "Resuming from checkpoint {prefix} (epoch {}, batch {}, step {})",
                state.position.epoch + 1,
                state.position.batch,
                state.global_step
            );
            checkpoints.adopt_listed();
            let from = ResumedFrom {
                checkpoint: prefix.url(),
                global_step: state.global_step,
                epoch: state.position.epoch,
                batch: state.position.batch,
            };
            (model, state.position, Some(from))
        }
        None => (
            Mlp::new(model_config.clone(), train.seed, &device, &options)
                .context("building the model")?,
            Position::default(),
            None,
        ),
    };
    eprintln!("Training on {}", model.device_description());

    let mut tensorboard = settings
        .tensorboard
        .as_ref()
        .map(|logs| {
            TensorBoardObserver::create(&logs.log_dir, logs.log_every_steps)
                .with_context(|| format!("starting TensorBoard logs in {}", logs.log_dir))
        })
        .transpose()?;
    let mut hypertune = settings
        .hypertune
        .clone()
        .map(training::HypertuneObserver::create)
        .transpose()?;
    if let (Some(settings), Some(observer)) = (&settings.hypertune, &hypertune) {
        let metric = match observer.metric() {
            training::hypertune::ReportedMetric::Loss => "loss",
            training::hypertune::ReportedMetric::Accuracy => "accuracy",
        };
        eprintln!(
            "Reporting the tuning metric {:?} ({metric}) for trial {} to {}",
            settings.tag,
            settings.trial_id,
            settings.metric_file.display()
        );
    }
    let mut kill_after = faults::SignalAfterStep::kill_from_env();
    let mut term_after = faults::SignalAfterStep::term_from_env();
    let mut progress = ProgressObserver::new(std::io::stdout().is_terminal());
    let mut checkpointer = CheckpointObserver::new(
        checkpoints,
        fingerprint,
        CheckpointSchedule {
            every_steps: settings.checkpoint_every_steps,
        },
        Arc::clone(&stop_requested),
    );
    let plan = FitPlan {
        train: train_data,
        validation: validation_data,
        config: train,
    };
    let fitted = {
        let mut observers: Vec<&mut dyn FitObserver> = vec![&mut term_after, &mut progress];
        if let Some(tensorboard) = &mut tensorboard {
            observers.push(tensorboard);
        }
        if let Some(hypertune) = &mut hypertune {
            observers.push(hypertune);
        }
        observers.push(&mut checkpointer);
        observers.push(&mut kill_after);
        training::fit(&mut model, &plan, start, &mut observers)?
    };
    // Finished or stopped by SIGTERM: either way the logs so far must be visible.
    if let Some(tensorboard) = &mut tensorboard {
        tensorboard.finish().context("writing TensorBoard logs")?;
    }
    if fitted.stopped {
        let at = checkpointer
            .stopped_at()
            .map_or_else(|| "no checkpoint".to_string(), |l| l.to_string());
        eprintln!(
            "Stopped by SIGTERM after step {}; checkpoint {at} written. Run the same command to continue.",
            model.steps_taken()
        );
        return Ok(Finished::Preempted);
    }
    let (written, checkpoint_seconds) = checkpointer.cost();
    if written > 0 {
        eprintln!("Wrote {written} checkpoints in {checkpoint_seconds:.3}s");
    }
    let mut observers: Vec<&mut dyn FitObserver> = vec![&mut progress];
    if let Some(hypertune) = &mut hypertune {
        observers.push(hypertune);
    }

    let eval_start = Instant::now();
    let test = training::evaluate(
        &model,
        &splits.test,
        train.batch_size,
        EvalPass::Test,
        &mut observers,
    )?;
    let eval_seconds = eval_start.elapsed().as_secs_f64();

    let export_start = Instant::now();
    let model_dir = settings.job_dir.join(training::export::MODEL_DIR);
    let weights = model.weights().context("reading the trained weights")?;

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
            // Up to encoding job.json: publishing the files comes after (job.json is part of it).
            export: export_start.elapsed().as_secs_f64(),
            total: started.elapsed().as_secs_f64(),
        },
        device: model.device_description(),
        threads: model.threads(),
        job_config: settings.job_config.clone(),
        resumed_from,
        versions: Versions {
            trainer: env!("CARGO_PKG_VERSION").to_string(),
            crates: crate_versions(),
        },
        started_at_unix: started_unix,
        finished_at_unix: unix_seconds(),
    };
    training::export::publish(
        &settings.job_dir,
        weights,
        &report.to_json()?,
        faults::export_hook(),
    )?;
    eprintln!("Model exported to {model_dir}");

    say(&format!("Test Loss: {}", test.loss()))?;
    say(&format!("Test Accuracy: {}", test.accuracy()))?;
    Ok(Finished::Completed)
}

/// `name -> version` of the crates this binary was built from (see build.rs).
fn crate_versions() -> BTreeMap<String, String> {
    env!("TRAINER_CRATE_VERSIONS")
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, version)| (name.to_string(), version.to_string()))
        .collect()
}
