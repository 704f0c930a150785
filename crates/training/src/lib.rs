//! training: `model.fit` for the reference MNIST MLP, the way Keras and Cloud ML Engine users
//! know it, as a library the `trainer` binary (and tests, benches, a future jobs service) call.
//!
//! # Why a crate of its own, not part of `mnist-model`
//! `mnist-model` is the network: parameters, the CPU and candle engines, one optimizer step. It
//! deliberately takes plain feature slices and knows nothing of datasets, files or TensorFlow
//! formats, so it stays small, fast to build and usable from any data source. Running a job
//! needs all of those: epochs over an IDX [`idx_dataset::Dataset`] with per-epoch shuffling,
//! validation, checkpoints in TensorFlow's tensor-bundle format (`savedmodel-format`) written
//! to a job directory that may be `gs://` (`storage`), the SavedModel export and the job.json
//! report. Putting that in `mnist-model` would pull storage and protobuf code into the engine
//! crate; putting it in the binary is what this crate replaced (a 300-line `run()` nobody else
//! could call). So: one concept, "a training job", one crate.
//!
//! # What's where
//! * [`fit`]: the epoch loop; [`evaluate`]: one pass with dropout off; [`split_validation`]:
//!   Keras's `validation_split`. Both report to [`FitObserver`]s.
//! * [`observer`]: the observer interface (Keras's callbacks): progress printing, TensorBoard,
//!   checkpointing and metric files are observers the binary plugs in, not code in the loop.
//!   Read its module documentation before implementing one.
//! * [`tensorboard`]: [`TensorBoardObserver`], Keras's TensorBoard callback (event files via
//!   the `tfevents` crate).
//! * [`hypertune`]: [`HypertuneObserver`], the metric file `cloudml-hypertune` writes for
//!   hyperparameter-tuning trials.
//! * [`checkpoint`]: TensorFlow tensor-bundle checkpoints with the `checkpoint` state file, the
//!   manager that keeps the last K, and the observer that writes them (every N steps, at epoch
//!   ends, on a stop request).
//! * [`export`]: weights → SavedModel files → `<job-dir>/model/`.
//! * [`report`]: [`TrainingReport`], the typed job.json.
//! * [`TrainingError`]: the crate's one error type; observers fail with any boxed error
//!   ([`ObserverError`]), which comes back wrapped with the hook's name.
//!
//! No third-party training framework is used: the loop is forty lines over `mnist-model`, and
//! what it must guarantee (bit-identical resume, Keras's metric and step conventions) is easier
//! to keep exact in our own code than behind a framework's abstractions.

pub mod checkpoint;
mod error;
pub mod export;
mod fit;
pub mod hypertune;
pub mod observer;
pub mod report;
pub mod tensorboard;

pub use error::{ObserverError, TrainingError};
pub use fit::{EpochRecord, FitPlan, FitResult, Position, evaluate, fit, split_validation};
pub use hypertune::{HypertuneObserver, HypertuneSettings};
pub use observer::{
    Control, ControlResult, EpochBegin, EpochEnd, EvalPass, FitContext, FitObserver, HookResult,
    TrainBatchEnd, TrainBegin,
};
pub use report::TrainingReport;
pub use tensorboard::TensorBoardObserver;
