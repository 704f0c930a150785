//! The observer interface of [`fit`](crate::fit): how progress bars, TensorBoard logs,
//! checkpoints and metric files follow a run without living inside the loop.
//!
//! # Contract
//!
//! An observer is anything that implements [`FitObserver`]; the binary builds a list of them and
//! hands it to [`fit`](crate::fit) and [`evaluate`](crate::evaluate). Every hook has a default
//! that does nothing, so an observer implements only what it needs. For one run the hooks come in
//! this order (Keras's `Callback` order):
//!
//! ```text
//! on_train_begin
//!   for each epoch:
//!     on_epoch_begin
//!       on_train_batch_end            (once per optimizer step)
//!     [on_test_begin / on_test_batch_end* / on_test_end]   (validation, EvalPass::Validation)
//!     on_epoch_end                    (with the epoch's training and validation metrics)
//! on_train_end
//! [on_test_begin / on_test_batch_end* / on_test_end]       (final test pass, EvalPass::Test)
//! ```
//!
//! * Observers are called in list order, every one of them for every event, on the training
//!   thread, between optimizer steps: a slow observer slows training by exactly its own time,
//!   and the model cannot change while a hook runs. Keep per-batch hooks cheap (the trainer takes
//!   a step in under a millisecond); do expensive work every N steps.
//! * Steps are Keras's: [`TrainBatchEnd::global_step`] counts optimizer steps since the start of
//!   the run, 1 after the first batch (the value Keras's TensorBoard callback uses as the step of
//!   `batch_*` scalars). Epochs are 0-based in hooks (Keras's `epoch` argument, and the step of
//!   `epoch_*` scalars); job.json and the progress line show them 1-based.
//! * A resumed run starts with `on_train_begin` whose [`TrainBegin::start`] is the checkpoint's
//!   position (not epoch 0, batch 0); the first `on_epoch_begin` may then have
//!   [`EpochBegin::first_batch`] > 0. Steps and epochs continue from the checkpoint, so a
//!   TensorBoard series continues where the killed run left it.
//! * A hook that returns `Err` stops the run: `fit` returns [`TrainingError::Observer`] naming
//!   the hook. `on_train_batch_end` and `on_epoch_end` may instead return [`Control::Stop`] to
//!   end training cleanly after that step (the checkpoint observer does this on SIGTERM, after
//!   writing a checkpoint); `fit` then returns with [`FitResult::stopped`] set and no further
//!   hooks are called (not even `on_train_end`).
//! * [`FitContext`] gives read access to the model and the run's [`Position`] at the moment of
//!   the hook, which is all a checkpoint needs (see `crate::checkpoint`).
//!
//! [`TrainingError::Observer`]: crate::TrainingError::Observer

use mnist_model::{BatchMetrics, Mlp, RunningMetrics};

use crate::ObserverError;
use crate::fit::{EpochRecord, Position};

/// What an observer wants after a training step or an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Control {
    #[default]
    Continue,
    /// End training after this step (every observer still sees the current event).
    Stop,
}

/// Result of a training hook.
pub type ControlResult = Result<Control, ObserverError>;

/// Result of the other hooks.
pub type HookResult = Result<(), ObserverError>;

/// The run as it starts (or resumes).
#[derive(Debug, Clone, Copy)]
pub struct TrainBegin<'a> {
    pub epochs: usize,
    /// Optimizer steps per epoch (`ceil(train examples / batch size)`).
    pub steps_per_epoch: usize,
    pub train_examples: usize,
    /// `None` without validation data.
    pub validation_examples: Option<usize>,
    pub learning_rate: f32,
    /// Where training starts: all zero for a fresh run, a checkpoint's position when resumed.
    pub start: &'a Position,
}

/// An epoch starts (or resumes mid-way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochBegin {
    /// 0-based.
    pub epoch: usize,
    pub epochs: usize,
    /// Steps in this epoch.
    pub steps: usize,
    /// Steps of this epoch already taken before this process started (0 unless resumed).
    pub first_batch: usize,
}

/// One optimizer step has been taken.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainBatchEnd {
    /// 0-based epoch.
    pub epoch: usize,
    /// 0-based index of this batch in the epoch.
    pub batch: usize,
    /// Steps in this epoch.
    pub steps: usize,
    /// Optimizer steps since the run started, this one included (1 after the first batch).
    pub global_step: u64,
    /// This batch's loss and accuracy sums (dropout on, before the update: what Keras reports).
    pub batch_metrics: BatchMetrics,
    /// Running means over the epoch so far (Keras's progress-bar values).
    pub running: RunningMetrics,
    /// Learning rate used for this step.
    pub learning_rate: f32,
}

/// An epoch has finished (training, then validation if any).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochEnd<'a> {
    /// 0-based.
    pub epoch: usize,
    pub epochs: usize,
    /// Training loss/accuracy (running means over the whole epoch) and, with validation data,
    /// `val_loss`/`val_accuracy`.
    pub record: &'a EpochRecord,
    /// Optimizer steps since the run started.
    pub global_step: u64,
    pub learning_rate: f32,
    /// Wall time of the epoch in this process (a resumed epoch counts only its resumed part
    /// plus what the checkpoint recorded).
    pub seconds: f64,
}

/// Which evaluation pass an evaluation hook belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalPass {
    /// The validation pass at the end of 0-based `epoch`, after `global_step` training steps.
    Validation { epoch: usize, global_step: u64 },
    /// The final pass over the test split.
    Test,
}

/// Read access to the run for a hook: the model (weights, momentum slots, steps taken) and where
/// the run is.
pub struct FitContext<'a> {
    pub(crate) model: &'a Mlp,
    pub(crate) position: &'a Position,
}

impl<'a> FitContext<'a> {
    /// The model as it is after the event (after the step's update, after the epoch).
    pub fn model(&self) -> &'a Mlp {
        self.model
    }

    /// Where a run resumed from here would start: after a batch, the same epoch at the next
    /// batch; after an epoch, the next epoch at batch 0.
    pub fn position(&self) -> &'a Position {
        self.position
    }
}

/// Follows a run. See the module documentation for the order of the hooks and their contract.
#[allow(unused_variables)]
pub trait FitObserver {
    /// Before the first step (also when resuming: see [`TrainBegin::start`]).
    fn on_train_begin(&mut self, begin: &TrainBegin<'_>) -> HookResult {
        Ok(())
    }

    /// Before the first step of an epoch (or of its resumed part).
    fn on_epoch_begin(&mut self, begin: &EpochBegin) -> HookResult {
        Ok(())
    }

    /// After every optimizer step.
    fn on_train_batch_end(
        &mut self,
        end: &TrainBatchEnd,
        context: &FitContext<'_>,
    ) -> ControlResult {
        Ok(Control::Continue)
    }

    /// After an epoch's training steps and its validation pass.
    fn on_epoch_end(&mut self, end: &EpochEnd<'_>, context: &FitContext<'_>) -> ControlResult {
        Ok(Control::Continue)
    }

    /// After the last epoch (not called when an observer stopped the run).
    fn on_train_end(&mut self, context: &FitContext<'_>) -> HookResult {
        Ok(())
    }

    /// An evaluation pass of `batches` batches starts.
    fn on_test_begin(&mut self, pass: EvalPass, batches: usize) -> HookResult {
        Ok(())
    }

    /// One evaluation batch is done; `running` holds the pass's running means.
    fn on_test_batch_end(
        &mut self,
        pass: EvalPass,
        batch: usize,
        running: &RunningMetrics,
    ) -> HookResult {
        Ok(())
    }

    /// An evaluation pass is done; `metrics` are its final means.
    fn on_test_end(&mut self, pass: EvalPass, metrics: &RunningMetrics) -> HookResult {
        Ok(())
    }
}
