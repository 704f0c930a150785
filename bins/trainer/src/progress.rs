//! Keras-style progress output for `fit` and `evaluate`.
//!
//! On a terminal: Keras 2's bar (`keras_semantics.md` §8.1), drawn with indicatif,
//! `1875/1875 [==============================] - 2s 1ms/step - loss: 0.2917 - accuracy: 0.9130`,
//! with `ETA: 3s` in place of the timing while it runs. Elsewhere (a log file, a pipe, CI): one
//! plain line per pass in the shape of Keras's `verbose=2` (§8.2), because a log full of
//! carriage-return redraws is unreadable.
//!
//! [`ProgressObserver`] draws them as a `training` observer; with validation data the epoch's
//! line ends in `val_loss` and `val_accuracy`, as in Keras.

use std::io::Write;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mnist_model::RunningMetrics;
use training::{
    ControlResult, EpochBegin, EpochEnd, EvalPass, FitContext, FitObserver, HookResult,
    TrainBatchEnd,
};

/// Keras redraws at most every 50 ms (except the final update).
const REDRAW_INTERVAL: Duration = Duration::from_millis(50);

/// `%.4f`, or Python's `%.4e` for tiny magnitudes (Keras: `abs(v) > 1e-3`).
pub fn format_metric(value: f64) -> String {
    if value.abs() > 1e-3 {
        return format!("{value:.4}");
    }
    // Rust writes `1.2340e-4`; Python writes `1.2340e-04`.
    let formatted = format!("{value:.4e}");
    match formatted.split_once('e') {
        Some((mantissa, exponent)) => {
            let (sign, digits) = match exponent.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exponent),
            };
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None => formatted,
    }
}

/// Keras's ETA: `%ds` under a minute, `M:SS` under an hour, else `H:MM:SS`.
pub fn format_eta(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    if seconds > 3600.0 {
        format!("{}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
    } else if seconds > 60.0 {
        format!("{}:{:02}", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// Keras's per-step time: `%.0fs`, `%.0fms` or `%.0fus`.
pub fn format_step_time(seconds: f64) -> String {
    if seconds >= 1.0 {
        format!("{seconds:.0}s")
    } else if seconds >= 1e-3 {
        format!("{:.0}ms", seconds * 1e3)
    } else {
        format!("{:.0}us", seconds * 1e6)
    }
}

/// Loss and accuracy means, as a progress line shows them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shown {
    pub loss: f64,
    pub accuracy: f64,
}

impl From<&RunningMetrics> for Shown {
    fn from(metrics: &RunningMetrics) -> Self {
        Shown {
            loss: metrics.loss(),
            accuracy: metrics.accuracy(),
        }
    }
}

fn metrics_text(metrics: Shown, validation: Option<Shown>) -> String {
    let mut text = format!(
        "loss: {} - accuracy: {}",
        format_metric(metrics.loss),
        format_metric(metrics.accuracy)
    );
    if let Some(val) = validation {
        text.push_str(&format!(
            " - val_loss: {} - val_accuracy: {}",
            format_metric(val.loss),
            format_metric(val.accuracy)
        ));
    }
    text
}

/// Progress of one pass over a dataset (a training epoch or an evaluation).
pub struct PassProgress {
    total: usize,
    done: usize,
    /// Steps done before this process started (a resumed epoch); not part of the timing.
    skipped: usize,
    started: Instant,
    /// When the first step finished: Keras leaves the first step (tracing) out of the
    /// per-step time.
    first_step_done: Option<Instant>,
    last_redraw: Instant,
    bar: Option<ProgressBar>,
}

impl PassProgress {
    /// Starts a pass of `total` steps of which `done` were already taken (by the process a
    /// resumed run continues); `on_terminal` selects the live bar.
    pub fn start(total: usize, done: usize, on_terminal: bool) -> Self {
        let bar = on_terminal.then(|| {
            let width = total.to_string().len();
            let bar =
                ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stdout());
            let template = format!("{{pos:>{width}}}/{{len}} [{{bar:30}}] - {{msg}}");
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style.progress_chars("=>."));
            }
            bar
        });
        let now = Instant::now();
        PassProgress {
            total,
            done,
            skipped: done,
            started: now,
            first_step_done: None,
            last_redraw: now,
            bar,
        }
    }

    fn seconds_per_step(&self, now: Instant) -> f64 {
        let here = self.done - self.skipped;
        match self.first_step_done {
            Some(first) if here > 1 => now.duration_since(first).as_secs_f64() / (here - 1) as f64,
            _ => now.duration_since(self.started).as_secs_f64() / here.max(1) as f64,
        }
    }

    /// Records one finished step; `metrics` are the running means so far.
    pub fn step(&mut self, metrics: &RunningMetrics) {
        self.done += 1;
        let now = Instant::now();
        if self.done == self.skipped + 1 {
            self.first_step_done = Some(now);
        }
        let Some(bar) = &self.bar else { return };
        bar.set_position(self.done as u64);
        if now.duration_since(self.last_redraw) >= REDRAW_INTERVAL && self.done < self.total {
            self.last_redraw = now;
            let eta = self.seconds_per_step(now) * (self.total - self.done) as f64;
            bar.set_message(format!(
                "ETA: {} - {}",
                format_eta(eta),
                metrics_text(metrics.into(), None)
            ));
        }
    }

    /// Ends the pass: the bar's final state on a terminal, else one plain line, with the
    /// validation metrics at the end when there are any. Returns the pass's wall time.
    pub fn finish(self, metrics: Shown, validation: Option<Shown>) -> Duration {
        let now = Instant::now();
        let elapsed = now.duration_since(self.started);
        let per_step = format_step_time(self.seconds_per_step(now));
        match &self.bar {
            Some(bar) => {
                bar.set_position(self.done as u64);
                bar.finish_with_message(format!(
                    "{:.0}s {per_step}/step - {}",
                    elapsed.as_secs_f64(),
                    metrics_text(metrics, validation)
                ));
            }
            None => {
                let width = self.total.to_string().len();
                let mut out = std::io::stdout().lock();
                // A closed stdout must not turn into a panic; the run's result is in job.json.
                let _ = writeln!(
                    out,
                    "{:>width$}/{} - {:.0}s - {} - {}/step",
                    self.done,
                    self.total,
                    elapsed.as_secs_f64(),
                    metrics_text(metrics, validation),
                    per_step
                );
            }
        }
        elapsed
    }
}

/// Prints Keras's progress for `fit` (one line or bar per epoch, `Epoch i/N` headers when there
/// is more than one epoch) and for the final test pass. Validation passes draw nothing of their
/// own: their means go on the epoch's line.
pub struct ProgressObserver {
    on_terminal: bool,
    pass: Option<PassProgress>,
    /// The epoch's running means after its last step in this process.
    last: Option<Shown>,
    validation: Option<Shown>,
}

impl ProgressObserver {
    pub fn new(on_terminal: bool) -> Self {
        ProgressObserver {
            on_terminal,
            pass: None,
            last: None,
            validation: None,
        }
    }
}

impl FitObserver for ProgressObserver {
    fn on_epoch_begin(&mut self, begin: &EpochBegin) -> HookResult {
        if begin.epochs > 1 {
            crate::say(&format!("Epoch {}/{}", begin.epoch + 1, begin.epochs))?;
        }
        self.pass = Some(PassProgress::start(
            begin.steps,
            begin.first_batch,
            self.on_terminal,
        ));
        self.last = None;
        self.validation = None;
        Ok(())
    }

    fn on_train_batch_end(&mut self, end: &TrainBatchEnd, _: &FitContext<'_>) -> ControlResult {
        if let Some(pass) = &mut self.pass {
            pass.step(&end.running);
        }
        self.last = Some((&end.running).into());
        Ok(training::Control::Continue)
    }

    fn on_epoch_end(&mut self, end: &EpochEnd<'_>, _: &FitContext<'_>) -> ControlResult {
        if let Some(pass) = self.pass.take() {
            let shown = self.last.unwrap_or(Shown {
                loss: end.record.loss,
                accuracy: end.record.accuracy,
            });
            pass.finish(shown, self.validation.take());
        }
        Ok(training::Control::Continue)
    }

    fn on_test_begin(&mut self, pass: EvalPass, batches: usize) -> HookResult {
        if pass == EvalPass::Test {
            self.pass = Some(PassProgress::start(batches, 0, self.on_terminal));
        }
        Ok(())
    }

    fn on_test_batch_end(
        &mut self,
        pass: EvalPass,
        _: usize,
        running: &RunningMetrics,
    ) -> HookResult {
        if let (EvalPass::Test, Some(progress)) = (pass, &mut self.pass) {
            progress.step(running);
        }
        Ok(())
    }

    fn on_test_end(&mut self, pass: EvalPass, metrics: &RunningMetrics) -> HookResult {
        match pass {
            EvalPass::Validation { .. } => self.validation = Some(metrics.into()),
            EvalPass::Test => {
                if let Some(progress) = self.pass.take() {
                    progress.finish(metrics.into(), None);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_formatted_like_keras() {
        assert_eq!(format_metric(0.23456), "0.2346");
        assert_eq!(format_metric(0.9312), "0.9312");
        assert_eq!(format_metric(12.5), "12.5000");
        assert_eq!(format_metric(0.000123456), "1.2346e-04");
        assert_eq!(format_metric(0.0), "0.0000e+00");
        assert_eq!(format_metric(-2.0e-5), "-2.0000e-05");
    }

    #[test]
    fn eta_and_step_times_are_formatted_like_keras() {
        assert_eq!(format_eta(0.4), "0s");
        assert_eq!(format_eta(42.7), "42s");
        assert_eq!(format_eta(61.0), "1:01");
        assert_eq!(format_eta(3725.0), "1:02:05");
        assert_eq!(format_step_time(2.4), "2s");
        assert_eq!(format_step_time(0.0016), "2ms");
        assert_eq!(format_step_time(0.000_45), "450us");
    }
}
