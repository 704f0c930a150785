//! [`TensorBoardObserver`]: a run's curves in TensorBoard, under the tags and steps Keras 3's
//! `TensorBoard` callback uses, so a TensorBoard with Keras runs beside ours compares like with
//! like. The event files are written by the `tfevents` crate (local or `gs://`).
//!
//! | run dir | tag | step | value |
//! |---|---|---|---|
//! | `train/` | `batch_loss`, `batch_accuracy` | global step, every `log_every_steps` steps | running means over the epoch so far (Keras's `update_freq=N` values) |
//! | `train/` | `epoch_loss`, `epoch_accuracy`, `epoch_learning_rate` | 0-based epoch | the epoch's means; the optimizer's learning rate |
//! | `validation/` | `epoch_loss`, `epoch_accuracy` | 0-based epoch | `val_loss`, `val_accuracy` |
//! | `validation/` | `evaluation_loss_vs_iterations`, `evaluation_accuracy_vs_iterations` | global step at the epoch's end | the same |
//!
//! `validation/` is created with the first validation result, as Keras does. Both files are
//! flushed at every epoch end (for `gs://`, an upload; see `tfevents` for how files grow) and
//! when the run ends or is stopped ([`TensorBoardObserver::finish`]). A resumed run appends new
//! files to the same run directories; its steps continue from the checkpoint, and TensorBoard
//! replaces any points the killed run wrote past that step.

use storage::Location;
use tfevents::{EventWriter, TfEventsError};

use crate::observer::{
    Control, ControlResult, EpochEnd, FitContext, FitObserver, HookResult, TrainBatchEnd,
};

/// Writes `<log_dir>/train` and `<log_dir>/validation` as Keras's TensorBoard callback does.
pub struct TensorBoardObserver {
    log_dir: Location,
    log_every_steps: u64,
    train: EventWriter,
    validation: Option<EventWriter>,
}

impl TensorBoardObserver {
    /// Starts the `train/` event file at once, so that an unwritable log directory stops the run
    /// before it trains. `log_every_steps` 0 writes epoch scalars only (Keras's
    /// `update_freq="epoch"`).
    pub fn create(
        log_dir: &Location,
        log_every_steps: u64,
    ) -> Result<TensorBoardObserver, TfEventsError> {
        Ok(TensorBoardObserver {
            log_dir: log_dir.clone(),
            log_every_steps,
            train: EventWriter::create(&log_dir.join("train"))?,
            validation: None,
        })
    }

    /// Flushes both files and reports any error; call it however the run ended (finished or
    /// stopped). Dropping the observer flushes too, but cannot report.
    pub fn finish(&mut self) -> Result<(), TfEventsError> {
        self.train.flush()?;
        if let Some(validation) = &mut self.validation {
            validation.flush()?;
        }
        Ok(())
    }

    fn log_epoch(&mut self, end: &EpochEnd<'_>) -> Result<(), TfEventsError> {
        let epoch = end.epoch as i64;
        let record = end.record;
        self.train
            .write_scalar("epoch_loss", epoch, record.loss as f32)?;
        self.train
            .write_scalar("epoch_accuracy", epoch, record.accuracy as f32)?;
        self.train
            .write_scalar("epoch_learning_rate", epoch, end.learning_rate)?;
        self.train.flush()?;
        if let (Some(loss), Some(accuracy)) = (record.val_loss, record.val_accuracy) {
            let validation = match &mut self.validation {
                Some(writer) => writer,
                None => self
                    .validation
                    .insert(EventWriter::create(&self.log_dir.join("validation"))?),
            };
            let step = end.global_step as i64;
            validation.write_scalar("epoch_loss", epoch, loss as f32)?;
            validation.write_scalar("epoch_accuracy", epoch, accuracy as f32)?;
            validation.write_scalar("evaluation_loss_vs_iterations", step, loss as f32)?;
            validation.write_scalar("evaluation_accuracy_vs_iterations", step, accuracy as f32)?;
            validation.flush()?;
        }
        Ok(())
    }
}

impl FitObserver for TensorBoardObserver {
    fn on_train_batch_end(&mut self, end: &TrainBatchEnd, _: &FitContext<'_>) -> ControlResult {
        if self.log_every_steps > 0 && end.global_step.is_multiple_of(self.log_every_steps) {
            let step = end.global_step as i64;
            self.train
                .write_scalar("batch_loss", step, end.running.loss() as f32)?;
            self.train
                .write_scalar("batch_accuracy", step, end.running.accuracy() as f32)?;
        }
        Ok(Control::Continue)
    }

    fn on_epoch_end(&mut self, end: &EpochEnd<'_>, _: &FitContext<'_>) -> ControlResult {
        self.log_epoch(end)?;
        Ok(Control::Continue)
    }

    fn on_train_end(&mut self, _: &FitContext<'_>) -> HookResult {
        Ok(self.finish()?)
    }
}
