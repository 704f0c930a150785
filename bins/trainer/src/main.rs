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
//! The flags mirror the tutorial's `trainer.task` arguments as Cloud ML Engine passes them.
//! Informational messages go to stderr so that stdout stays the run's record. Every failure
//! exits with status 1 and a single `error: ...: ...` line (the anyhow chain), never a panic.

mod job;
mod progress;
mod settings;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use mnist_model::{Device, EngineOptions, Mlp, ModelConfig, RunningMetrics, seeds};
use savedmodel_format::writer::{self, DenseLayer, MlpExport, SAVED_MODEL_MARKER};
use serde_json::json;

use progress::PassProgress;
use settings::{Cli, DeviceChoice, Settings};

/// MNIST has ten digit classes; the reference network's output layer has one unit per class.
const NUM_CLASSES: usize = 10;

fn main() -> ExitCode {
    let cli = match job::parse_command_line(std::env::args_os().collect()) {
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

fn select_device(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda => {
            Device::new_cuda(0).context("--device cuda: no usable CUDA device (is this a build with the `cuda` feature, on a machine with an NVIDIA GPU?)")
        }
        DeviceChoice::Auto => {
            if cfg!(feature = "cuda") {
                match Device::new_cuda(0) {
                    Ok(device) => return Ok(device),
                    Err(error) => eprintln!("No CUDA device ({error}); training on the CPU."),
                }
            }
            Ok(Device::Cpu)
        }
    }
}

/// Per-epoch training record.
struct EpochRecord {
    loss: f64,
    accuracy: f64,
    seconds: f64,
    steps: usize,
}

fn run(cli: Cli) -> Result<()> {
    let started = Instant::now();
    let started_unix = unix_seconds();
    let settings = Settings::resolve(cli)?;
    let train = &settings.train;

    // Before the data: a device that is not there should fail the run at once.
    let device = select_device(settings.device)?;
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

    let optimizer = train.optimizer();
    let on_terminal = std::io::stdout().is_terminal();
    let mut epochs = Vec::with_capacity(train.epochs);
    for epoch in 0..train.epochs {
        if train.epochs > 1 {
            say(&format!("Epoch {}/{}", epoch + 1, train.epochs))?;
        }
        let shuffle = seeds::shuffle_seed(train.seed, epoch);
        let mut batches = splits
            .train
            .batches(train.batch_size, Some(shuffle), NUM_CLASSES)
            .context("preparing training batches")?;
        let steps = batches.num_batches();
        let mut progress = PassProgress::start(steps, on_terminal);
        let mut running = RunningMetrics::new();
        while let Some(batch) = batches.next_batch() {
            let metrics = model
                .train_step(&batch.features, &batch.labels, &optimizer)
                .with_context(|| {
                    format!(
                        "training step {} of epoch {}",
                        progress_step(&running, train.batch_size),
                        epoch + 1
                    )
                })?;
            running.add(&metrics);
            progress.step(&running);
        }
        let seconds = progress.finish(&running).as_secs_f64();
        epochs.push(EpochRecord {
            loss: running.loss(),
            accuracy: running.accuracy(),
            seconds,
            steps,
        });
    }

    let eval_start = Instant::now();
    let mut batches = splits
        .test
        .batches(train.batch_size, None, NUM_CLASSES)
        .context("preparing test batches")?;
    let mut progress = PassProgress::start(batches.num_batches(), on_terminal);
    let mut test = RunningMetrics::new();
    while let Some(batch) = batches.next_batch() {
        test.add(
            &model
                .evaluate(&batch.features, &batch.labels)
                .context("evaluating")?,
        );
        progress.step(&test);
    }
    progress.finish(&test);
    let eval_seconds = eval_start.elapsed().as_secs_f64();

    let export_start = Instant::now();
    let model_dir = settings.job_dir.join("model");
    let layers = model
        .weights()
        .context("reading the trained weights")?
        .into_iter()
        .map(|w| DenseLayer {
            kernel: w.kernel,
            bias: w.bias,
            in_dim: w.in_dim,
            out_dim: w.out_dim,
            activation: match w.activation {
                mnist_model::Activation::Relu => writer::Activation::Relu,
                mnist_model::Activation::Linear => writer::Activation::Linear,
            },
        })
        .collect();
    let files = writer::export_mlp(&MlpExport::new(layers)).context("building the SavedModel")?;
    model_dir
        .write_tree_blocking(files, SAVED_MODEL_MARKER)
        .with_context(|| format!("writing the SavedModel to {model_dir}"))?;
    let export_seconds = export_start.elapsed().as_secs_f64();
    eprintln!("Model exported to {model_dir}");

    let record = json!({
        "job_name": settings.job_name,
        "train_file": settings.train_file.url(),
        "job_dir": settings.job_dir.url(),
        "model_dir": model_dir.url(),
        "hyperparameters": {
            "epochs": train.epochs,
            "batch_size": train.batch_size,
            "learning_rate": shortest_decimal(train.learning_rate),
            "momentum": shortest_decimal(train.momentum),
            "seed": train.seed,
            "optimizer": "MomentumOptimizer (accum = momentum * accum + grad; var -= learning_rate * accum)",
            "loss": "categorical_crossentropy (from logits)",
            "model": {
                "input_dim": model_config.input_dim,
                "hidden_units": model_config.hidden_units,
                "num_classes": model_config.num_classes,
                "dropout_rate": shortest_decimal(model_config.dropout_rate),
                "parameters": model_config.parameter_count(),
            },
        },
        "dataset": {
            "train_examples": splits.train.len(),
            "test_examples": splits.test.len(),
            "image_dims": [rows, cols],
        },
        "metrics": {
            "epochs": epochs.iter().enumerate().map(|(i, e)| json!({
                "epoch": i + 1,
                "loss": e.loss,
                "accuracy": e.accuracy,
                "steps": e.steps,
            })).collect::<Vec<_>>(),
            "test_loss": test.loss(),
            "test_accuracy": test.accuracy(),
            "test_examples": test.examples(),
        },
        "timings_seconds": {
            "load_data": load_seconds,
            "train_epochs": epochs.iter().map(|e| e.seconds).collect::<Vec<_>>(),
            "train_total": epochs.iter().map(|e| e.seconds).sum::<f64>(),
            "evaluate": eval_seconds,
            "export": export_seconds,
            "total": started.elapsed().as_secs_f64(),
        },
        "device": model.device_description(),
        "threads": model.threads(),
        "job_config": settings.job_config,
        "versions": {
            "trainer": env!("CARGO_PKG_VERSION"),
            "crates": crate_versions(),
        },
        "started_at_unix": started_unix,
        "finished_at_unix": unix_seconds(),
    });
    let job_json = settings.job_dir.join("job.json");
    let text = serde_json::to_string_pretty(&record).context("encoding job.json")?;
    job_json
        .write_blocking(Bytes::from(text + "\n"))
        .with_context(|| format!("writing {job_json}"))?;

    say(&format!("Test Loss: {}", test.loss()))?;
    say(&format!("Test Accuracy: {}", test.accuracy()))?;
    Ok(())
}

/// An f32 flag value as the decimal the user typed (`0.01`, not `0.009999999776482582`).
fn shortest_decimal(value: f32) -> f64 {
    value.to_string().parse().unwrap_or(f64::from(value))
}

/// 1-based index of the step being run, for error messages.
fn progress_step(running: &RunningMetrics, batch_size: usize) -> usize {
    running.examples() / batch_size.max(1) + 1
}

/// `name -> version` of the crates this binary was built from (see build.rs).
fn crate_versions() -> serde_json::Map<String, serde_json::Value> {
    env!("TRAINER_CRATE_VERSIONS")
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, version)| (name.to_string(), json!(version)))
        .collect()
}
