//! `model.fit` and `model.evaluate`: the epoch loop, validation and the test pass.

use std::time::Instant;

use idx_dataset::Dataset;
use mnist_model::{BatchMetrics, Mlp, RunningMetrics, TrainConfig, seeds};
use serde::{Deserialize, Serialize};

use crate::TrainingError;
use crate::observer::{
    Control, EpochBegin, EpochEnd, EvalPass, FitContext, FitObserver, TrainBatchEnd, TrainBegin,
};

/// One finished epoch as job.json records it (`metrics.epochs[i]`): the same seed and flags give
/// the same records, so two runs can be compared on them (timings live elsewhere).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based, as on the progress line.
    pub epoch: usize,
    pub loss: f64,
    pub accuracy: f64,
    /// Optimizer steps in the epoch.
    pub steps: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_accuracy: Option<f64>,
}

/// Where a run is: enough, with the model's weights, momentum slots and step count, to continue
/// it exactly (what a checkpoint holds besides the model).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Position {
    /// Epoch in progress (0-based); `epochs` once training is over.
    pub epoch: usize,
    /// Batches of that epoch already trained.
    pub batch: usize,
    /// Loss and accuracy sums over those batches, so a resumed epoch reports the same means.
    pub running: BatchMetrics,
    /// Wall seconds already spent in the epoch in progress (by earlier processes, if resumed).
    pub epoch_seconds: f64,
    /// Finished epochs.
    pub history: Vec<EpochRecord>,
    /// Wall seconds of each finished epoch.
    pub history_seconds: Vec<f64>,
}

/// What to train on and how.
#[derive(Debug, Clone, Copy)]
pub struct FitPlan<'a> {
    pub train: &'a Dataset,
    /// Evaluated (dropout off) at the end of every epoch: Keras's `validation_data`.
    pub validation: Option<&'a Dataset>,
    /// Epochs, batch size, optimizer settings and the seed (which drives the shuffle order of
    /// every epoch through [`seeds::shuffle_seed`]).
    pub config: &'a TrainConfig,
}

/// How `fit` ended.
#[derive(Debug, Clone, PartialEq)]
pub struct FitResult {
    /// Where training ended: after the last epoch, or at the step where an observer stopped it.
    pub position: Position,
    /// An observer returned [`Control::Stop`] (for example on SIGTERM).
    pub stopped: bool,
}

/// Runs every observer's hook (all of them, in order), stopping at the first error.
fn each<T>(
    observers: &mut [&mut dyn FitObserver],
    callback: &'static str,
    mut hook: impl FnMut(&mut dyn FitObserver) -> Result<T, crate::ObserverError>,
    mut fold: impl FnMut(T),
) -> Result<(), TrainingError> {
    for observer in observers.iter_mut() {
        fold(hook(&mut **observer).map_err(TrainingError::observer(callback))?);
    }
    Ok(())
}

fn each_control(
    observers: &mut [&mut dyn FitObserver],
    callback: &'static str,
    hook: impl FnMut(&mut dyn FitObserver) -> Result<Control, crate::ObserverError>,
) -> Result<Control, TrainingError> {
    let mut control = Control::Continue;
    each(observers, callback, hook, |c| {
        if c == Control::Stop {
            control = Control::Stop;
        }
    })?;
    Ok(control)
}

/// Trains `model` from `start` (a fresh [`Position::default`] or a checkpoint's) to the last
/// epoch of `plan`, telling `observers` about every step, epoch and validation pass (see
/// [`crate::observer`] for the order and the contract).
///
/// Every epoch visits the training examples in the order drawn from
/// `seeds::shuffle_seed(seed, epoch)`; a resumed epoch redraws the same order and skips the
/// batches already trained, so — with the model restored to the checkpoint's weights, momentum
/// slots and step count (the dropout stream position) — the run continues bit-identically.
pub fn fit(
    model: &mut Mlp,
    plan: &FitPlan<'_>,
    start: Position,
    observers: &mut [&mut dyn FitObserver],
) -> Result<FitResult, TrainingError> {
    let config = plan.config;
    let num_classes = model.config().num_classes;
    let optimizer = config.optimizer();
    let steps_per_epoch = plan.train.len().div_ceil(config.batch_size.max(1));
    if plan.train.is_empty() {
        return Err(TrainingError::Plan(
            "the training split holds no examples".to_string(),
        ));
    }
    if start.batch > steps_per_epoch {
        return Err(TrainingError::Plan(format!(
            "the start position is batch {} of epoch {}, but an epoch has {steps_per_epoch} batches",
            start.batch,
            start.epoch + 1
        )));
    }
    let mut position = start;
    each(
        observers,
        "on_train_begin",
        |o| {
            o.on_train_begin(&TrainBegin {
                epochs: config.epochs,
                steps_per_epoch,
                train_examples: plan.train.len(),
                validation_examples: plan.validation.map(Dataset::len),
                learning_rate: optimizer.learning_rate,
                start: &position,
            })
        },
        |()| {},
    )?;

    while position.epoch < config.epochs {
        let epoch = position.epoch;
        let epoch_started = Instant::now();
        let mut batches = plan
            .train
            .batches(
                config.batch_size,
                Some(seeds::shuffle_seed(config.seed, epoch)),
                num_classes,
            )
            .map_err(TrainingError::data("preparing training batches"))?;
        let steps = batches.num_batches();
        // Skip what an earlier process already trained (same order: same shuffle seed).
        for _ in 0..position.batch {
            batches.next_batch();
        }
        let begin = EpochBegin {
            epoch,
            epochs: config.epochs,
            steps,
            first_batch: position.batch,
        };
        each(
            observers,
            "on_epoch_begin",
            |o| o.on_epoch_begin(&begin),
            |()| {},
        )?;

        let resumed_seconds = position.epoch_seconds;
        let mut running = RunningMetrics::new();
        running.add(&position.running);
        while let Some(batch) = batches.next_batch() {
            let batch_metrics = model
                .train_step(&batch.features, &batch.labels, &optimizer)
                .map_err(TrainingError::model(format!(
                    "training step {} of epoch {}",
                    position.batch + 1,
                    epoch + 1
                )))?;
            running.add(&batch_metrics);
            let end = TrainBatchEnd {
                epoch,
                batch: position.batch,
                steps,
                global_step: model.steps_taken(),
                batch_metrics,
                running,
                learning_rate: optimizer.learning_rate,
            };
            position.batch += 1;
            position.running = running.totals();
            position.epoch_seconds = resumed_seconds + epoch_started.elapsed().as_secs_f64();
            let context = FitContext {
                model,
                position: &position,
            };
            let control = each_control(observers, "on_train_batch_end", |o| {
                o.on_train_batch_end(&end, &context)
            })?;
            if control == Control::Stop {
                return Ok(FitResult {
                    position,
                    stopped: true,
                });
            }
        }

        let validation = match plan.validation {
            Some(data) => Some(evaluate(
                model,
                data,
                config.batch_size,
                EvalPass::Validation {
                    epoch,
                    global_step: model.steps_taken(),
                },
                observers,
            )?),
            None => None,
        };
        let seconds = resumed_seconds + epoch_started.elapsed().as_secs_f64();
        let record = EpochRecord {
            epoch: epoch + 1,
            loss: running.loss(),
            accuracy: running.accuracy(),
            steps,
            val_loss: validation.as_ref().map(RunningMetrics::loss),
            val_accuracy: validation.as_ref().map(RunningMetrics::accuracy),
        };
        position.history.push(record.clone());
        position.history_seconds.push(seconds);
        position.epoch += 1;
        position.batch = 0;
        position.running = BatchMetrics::default();
        position.epoch_seconds = 0.0;
        let end = EpochEnd {
            epoch,
            epochs: config.epochs,
            record: &record,
            global_step: model.steps_taken(),
            learning_rate: optimizer.learning_rate,
            seconds,
        };
        let context = FitContext {
            model,
            position: &position,
        };
        let control = each_control(observers, "on_epoch_end", |o| {
            o.on_epoch_end(&end, &context)
        })?;
        if control == Control::Stop && position.epoch < config.epochs {
            return Ok(FitResult {
                position,
                stopped: true,
            });
        }
    }

    let context = FitContext {
        model,
        position: &position,
    };
    each(
        observers,
        "on_train_end",
        |o| o.on_train_end(&context),
        |()| {},
    )?;
    Ok(FitResult {
        position,
        stopped: false,
    })
}

/// `model.evaluate`: loss and accuracy over `data` with dropout off, in file order, in batches of
/// `batch_size`, telling `observers` about each batch.
pub fn evaluate(
    model: &Mlp,
    data: &Dataset,
    batch_size: usize,
    pass: EvalPass,
    observers: &mut [&mut dyn FitObserver],
) -> Result<RunningMetrics, TrainingError> {
    let what = match pass {
        EvalPass::Validation { .. } => "validation",
        EvalPass::Test => "test",
    };
    let mut batches = data
        .batches(batch_size, None, model.config().num_classes)
        .map_err(TrainingError::data(format!("preparing {what} batches")))?;
    let total = batches.num_batches();
    each(
        observers,
        "on_test_begin",
        |o| o.on_test_begin(pass, total),
        |()| {},
    )?;
    let mut metrics = RunningMetrics::new();
    let mut index = 0;
    while let Some(batch) = batches.next_batch() {
        metrics.add(&model.evaluate(&batch.features, &batch.labels).map_err(
            TrainingError::model(format!("evaluating {what} batch {}", index + 1)),
        )?);
        each(
            observers,
            "on_test_batch_end",
            |o| o.on_test_batch_end(pass, index, &metrics),
            |()| {},
        )?;
        index += 1;
    }
    each(
        observers,
        "on_test_end",
        |o| o.on_test_end(pass, &metrics),
        |()| {},
    )?;
    Ok(metrics)
}

/// Keras's `validation_split`: the last `fraction` of `data` (in file order, before any
/// shuffling) becomes the validation set, the rest is trained on. Keras keeps
/// `floor(n * (1 - fraction))` examples for training.
pub fn split_validation(
    data: &Dataset,
    fraction: f64,
) -> Result<(Dataset, Dataset), TrainingError> {
    if !(fraction.is_finite() && fraction > 0.0 && fraction < 1.0) {
        return Err(TrainingError::Plan(format!(
            "--validation-split {fraction} is not in (0, 1)"
        )));
    }
    let keep = (data.len() as f64 * (1.0 - fraction)).floor() as usize;
    if keep == 0 || keep == data.len() {
        return Err(TrainingError::Plan(format!(
            "--validation-split {fraction} of {} training examples leaves {keep} to train on and {} to validate on; both must be at least 1",
            data.len(),
            data.len() - keep
        )));
    }
    let split = |range| {
        data.subset(range)
            .map_err(TrainingError::data("splitting off the validation set"))
    };
    Ok((split(0..keep)?, split(keep..data.len())?))
}
