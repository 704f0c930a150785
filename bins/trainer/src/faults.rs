//! Fault injection for the resume and export tests: a small-data run is over in a fraction of a
//! second, too fast to kill at a chosen step from outside, so the process sends itself the real
//! signal at the point the test names.
//!
//! * `TRAINER_FAULT_SIGKILL_AFTER_STEP=N`: SIGKILL after global step N (after the other
//!   observers' hooks for that step ran).
//! * `TRAINER_FAULT_SIGTERM_AFTER_STEP=N`: SIGTERM after global step N, before the checkpoint
//!   observer's hook for that step (the handler runs synchronously, so the SIGTERM checkpoint is
//!   the one of step N).
//! * `TRAINER_FAULT_SIGKILL_AT_EXPORT=staged|reported|switched`: SIGKILL at that point of
//!   publishing the model (see `training::export::ExportStage`).
//!
//! Unset (always, outside tests), these do nothing.

use training::export::ExportStage;
use training::{Control, ControlResult, FitContext, FitObserver, TrainBatchEnd};

fn step_from_env(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

/// Sends itself `signal` (a real signal, as `kill` would).
fn raise(signal: i32) {
    let _ = signal_hook::low_level::raise(signal);
}

/// Sends itself a signal after a given global step, if the environment asks for one.
pub struct SignalAfterStep {
    step: Option<u64>,
    signal: i32,
}

impl SignalAfterStep {
    /// SIGKILL after `TRAINER_FAULT_SIGKILL_AFTER_STEP`.
    pub fn kill_from_env() -> Self {
        SignalAfterStep {
            step: step_from_env("TRAINER_FAULT_SIGKILL_AFTER_STEP"),
            signal: signal_hook::consts::SIGKILL,
        }
    }

    /// SIGTERM after `TRAINER_FAULT_SIGTERM_AFTER_STEP`.
    pub fn term_from_env() -> Self {
        SignalAfterStep {
            step: step_from_env("TRAINER_FAULT_SIGTERM_AFTER_STEP"),
            signal: signal_hook::consts::SIGTERM,
        }
    }
}

impl FitObserver for SignalAfterStep {
    fn on_train_batch_end(&mut self, end: &TrainBatchEnd, _: &FitContext<'_>) -> ControlResult {
        if Some(end.global_step) == self.step {
            raise(self.signal);
        }
        Ok(Control::Continue)
    }
}

/// The export hook: SIGKILL at the named stage, if asked to.
pub fn export_hook() -> impl FnMut(ExportStage) {
    let target = std::env::var("TRAINER_FAULT_SIGKILL_AT_EXPORT").ok();
    move |stage| {
        if target.as_deref() == Some(stage.name()) {
            raise(signal_hook::consts::SIGKILL);
        }
    }
}
