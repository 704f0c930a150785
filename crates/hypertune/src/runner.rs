//! [`run_tuning`]: runs a tuning job's trials through a caller-supplied [`TrialLauncher`], at
//! most `maxParallelTrials` at a time, and returns `trainingOutput`.
//!
//! The launcher is how a trial becomes a process: the jobs service starts the trainer with the
//! job's `args` plus [`TrialLaunch::args`] and the environment in [`TrialLaunch::env`]; tests pass
//! a closure. Each trial writes its metrics to its own file (`<metric_dir>/<trial id>/
//! output.metrics`, passed as `CLOUD_ML_HP_METRIC_FILE`), read when the trial ends.
//!
//! **Stopping.** [`TrialLaunch::stop`] is raised when the job is cancelled ([`CancelHandle`]) or
//! the trial is stopped early; the launcher should then end the trial (the trainer checkpoints
//! and exits on SIGTERM) and return. A trial stopped early still counts as SUCCEEDED with the
//! last metric it reported and `isTrialStoppedEarly`, as in Cloud ML Engine.
//!
//! **Early stopping** (`enableTrialEarlyStopping`): the median stopping rule. While trials run,
//! their metric files are read every [`TuningOptions::poll_interval`]; a trial whose latest value
//! is worse than the median of the completed trials' values at the same step (each completed
//! trial's last report at or before that step; at least two completed trials needed) is stopped.
//!
//! No task is spawned: the trials run as futures polled by the caller's task, so the launcher's
//! futures need not be `'static` and the runner works on any async runtime that provides
//! `tokio::time` (tokio's).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use futures::FutureExt as _;
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use job_config::{Goal, HyperparameterSpec};
use tokio::sync::watch;

use crate::HypertuneError;
use crate::metrics::{MetricReport, read_metric_file};
use crate::output::{
    FinalMetric, TrialOutput, TrialState, TuningOutput, better, rfc3339, sort_best_first,
};
use crate::planner::{Planner, TrialResult};
use crate::space::TrialParams;

/// `hyperparameterMetricTag` when the spec names none.
pub const DEFAULT_METRIC_TAG: &str = "training/hptuning/metric";
/// Name of each trial's metric file inside its directory.
pub const METRIC_FILE_NAME: &str = "output.metrics";

/// A raised-or-not flag a trial can wait on.
#[derive(Debug, Clone)]
pub struct StopSignal(watch::Receiver<bool>);

impl StopSignal {
    /// Whether the trial has been asked to stop.
    pub fn is_raised(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the trial is asked to stop (never, if the runner is gone without asking).
    pub async fn raised(&mut self) {
        if self.0.wait_for(|raised| *raised).await.is_err() {
            futures::future::pending::<()>().await;
        }
    }
}

/// The side that raises a [`StopSignal`].
#[derive(Debug)]
struct StopSender(watch::Sender<bool>);

impl StopSender {
    fn new() -> (StopSender, StopSignal) {
        let (tx, rx) = watch::channel(false);
        (StopSender(tx), StopSignal(rx))
    }

    fn raise(&self) {
        self.0.send_replace(true);
    }
}

/// Cancels a whole tuning run: every running trial is asked to stop and no new one starts.
#[derive(Debug, Clone)]
pub struct CancelHandle(watch::Sender<bool>);

impl CancelHandle {
    pub fn new() -> CancelHandle {
        CancelHandle(watch::channel(false).0)
    }

    pub fn cancel(&self) {
        self.0.send_replace(true);
    }

    fn signal(&self) -> StopSignal {
        StopSignal(self.0.subscribe())
    }
}

impl Default for CancelHandle {
    fn default() -> Self {
        CancelHandle::new()
    }
}

/// What a launcher gets for one trial.
#[derive(Debug, Clone)]
pub struct TrialLaunch {
    /// `"1"`, `"2"`, …: `CLOUD_ML_TRIAL_ID` and `TF_CONFIG`'s `task.trial`.
    pub trial_id: String,
    pub params: TrialParams,
    /// `--name=value` per parameter, to append after the job's `args`.
    pub args: Vec<String>,
    /// `CLOUD_ML_TRIAL_ID`, `CLOUD_ML_HP_METRIC_FILE` and `CLOUD_ML_HP_METRIC_TAG` for the trial.
    pub env: Vec<(String, String)>,
    /// Where the trial's metrics are read from (also in `env`).
    pub metric_file: PathBuf,
    /// Raised when the trial should end now (job cancelled, or stopped early).
    pub stop: StopSignal,
}

/// How a trial's run ended, as the launcher saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum TrialExit {
    /// Exited successfully, or ended as asked after [`TrialLaunch::stop`] was raised.
    Succeeded,
    /// Could not start, crashed or exited with an error; the text says how (it ends up in the
    /// job log and, for a failed job, its `errorMessage`).
    Failed(String),
}

/// Starts and awaits trial processes. Implemented by the jobs service (trainer child
/// processes) and by tests; any `Fn(TrialLaunch) -> Future<Output = TrialExit>` closure is one.
#[async_trait::async_trait]
pub trait TrialLauncher: Send + Sync {
    async fn run_trial(&self, launch: TrialLaunch) -> TrialExit;
}

#[async_trait::async_trait]
impl<F, Fut> TrialLauncher for F
where
    F: Fn(TrialLaunch) -> Fut + Send + Sync,
    Fut: std::future::Future<Output = TrialExit> + Send + 'static,
{
    async fn run_trial(&self, launch: TrialLaunch) -> TrialExit {
        self(launch).await
    }
}

/// Settings of a tuning run besides the spec.
#[derive(Debug, Clone)]
pub struct TuningOptions {
    /// Parent of the per-trial metric directories (created as needed).
    pub metric_dir: PathBuf,
    /// Seeds the random and Bayesian choices.
    pub seed: u64,
    /// How often running trials' metric files are read for early stopping.
    pub poll_interval: Duration,
    /// Cancels the run from outside.
    pub cancel: CancelHandle,
}

/// Something the jobs service may log or show while the run goes on.
#[derive(Debug, Clone, PartialEq)]
pub enum TuningEvent {
    TrialStarted {
        trial_id: String,
        /// Parameter name -> value, as `trainingOutput.trials[].hyperparameters` shows them.
        hyperparameters: BTreeMap<String, String>,
        args: Vec<String>,
    },
    /// The trial's entry as it will appear in `trainingOutput.trials`.
    TrialFinished(TrialOutput),
    /// The runner asked a trial to stop early (median rule).
    TrialStoppingEarly { trial_id: String, reason: String },
    /// A planner note or a metric-file problem.
    Note(String),
}

/// How the tuning job ends.
#[derive(Debug, Clone, PartialEq)]
pub enum TuningState {
    Succeeded,
    /// The job failed; the text is its `errorMessage`.
    Failed(String),
    Cancelled,
}

/// The result of [`run_tuning`].
#[derive(Debug, Clone, PartialEq)]
pub struct TuningOutcome {
    pub state: TuningState,
    /// `trainingOutput`, trials best first.
    pub output: TuningOutput,
}

/// The metric tag a spec reports under.
pub fn metric_tag(spec: &HyperparameterSpec) -> &str {
    spec.hyperparameter_metric_tag
        .as_deref()
        .unwrap_or(DEFAULT_METRIC_TAG)
}

struct Running {
    params: TrialParams,
    metric_file: PathBuf,
    stop: StopSender,
    started: SystemTime,
    stopped_early: bool,
}

/// Runs the trials of `spec` through `launcher`; see the module docs. `on_event` sees each
/// start, finish and note as it happens.
pub async fn run_tuning<L: TrialLauncher + ?Sized>(
    spec: &HyperparameterSpec,
    options: &TuningOptions,
    launcher: &L,
    mut on_event: impl FnMut(TuningEvent) + Send,
) -> Result<TuningOutcome, HypertuneError> {
    let mut planner = Planner::new(spec, options.seed)?;
    let tag = metric_tag(spec).to_string();
    let goal = spec.goal;
    let early_stopping = spec.enable_trial_early_stopping == Some(true);
    let mut cancel = options.cancel.signal();
    let mut running: BTreeMap<u32, Running> = BTreeMap::new();
    let mut finished: Vec<TrialOutput> = Vec::new();
    // Completed trials' reports, for the median stopping rule.
    let mut histories: Vec<Vec<MetricReport>> = Vec::new();
    let mut first_failure: Option<String> = None;
    let mut notes_seen = 0usize;
    let mut futures = FuturesUnordered::new();
    let mut ticker = tokio::time::interval(options.poll_interval.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        if !cancel.is_raised() {
            let free = (planner.max_parallel() as usize).saturating_sub(running.len());
            for trial in planner.next_trials(free) {
                let trial_id = trial.id.to_string();
                let trial_dir = options.metric_dir.join(&trial_id);
                std::fs::create_dir_all(&trial_dir).map_err(|source| {
                    HypertuneError::MetricFile {
                        path: trial_dir.display().to_string(),
                        source,
                    }
                })?;
                let metric_file = trial_dir.join(METRIC_FILE_NAME);
                // A rerun in the same directory must not read an old run's metrics.
                match std::fs::remove_file(&metric_file) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(HypertuneError::MetricFile {
                            path: metric_file.display().to_string(),
                            source: e,
                        });
                    }
                    _ => {}
                }
                let (stop, signal) = StopSender::new();
                let args = trial.params.to_args();
                let launch = TrialLaunch {
                    trial_id: trial_id.clone(),
                    params: trial.params.clone(),
                    args: args.clone(),
                    env: vec![
                        ("CLOUD_ML_TRIAL_ID".to_string(), trial_id.clone()),
                        (
                            "CLOUD_ML_HP_METRIC_FILE".to_string(),
                            metric_file.display().to_string(),
                        ),
                        ("CLOUD_ML_HP_METRIC_TAG".to_string(), tag.clone()),
                    ],
                    metric_file: metric_file.clone(),
                    stop: signal,
                };
                on_event(TuningEvent::TrialStarted {
                    trial_id: trial_id.clone(),
                    hyperparameters: trial.params.to_map(),
                    args,
                });
                running.insert(
                    trial.id,
                    Running {
                        params: trial.params,
                        metric_file,
                        stop,
                        started: SystemTime::now(),
                        stopped_early: false,
                    },
                );
                let id = trial.id;
                futures.push(launcher.run_trial(launch).map(move |exit| (id, exit)));
            }
        }
        for note in &planner.notes()[notes_seen..] {
            on_event(TuningEvent::Note(note.clone()));
        }
        notes_seen = planner.notes().len();
        if futures.is_empty() {
            break;
        }
        tokio::select! {
            Some((id, exit)) = futures.next() => {
                let Some(trial) = running.remove(&id) else { continue };
                let metrics = read_metric_file(&trial.metric_file, &tag)?;
                for problem in &metrics.problems {
                    on_event(TuningEvent::Note(format!(
                        "trial {id}: {}: {problem}",
                        trial.metric_file.display()
                    )));
                }
                let cancelled = cancel.is_raised() && !trial.stopped_early;
                let (state, result, error) = match exit {
                    TrialExit::Succeeded if cancelled => {
                        (TrialState::Cancelled, TrialResult::Cancelled, None)
                    }
                    TrialExit::Succeeded => (
                        TrialState::Succeeded,
                        TrialResult::Completed { final_metric: metrics.final_metric() },
                        None,
                    ),
                    TrialExit::Failed(_) if cancelled => {
                        (TrialState::Cancelled, TrialResult::Cancelled, None)
                    }
                    TrialExit::Failed(error) => {
                        first_failure.get_or_insert_with(|| format!("trial {id}: {error}"));
                        (
                            TrialState::Failed,
                            TrialResult::Failed { error: error.clone() },
                            Some(error),
                        )
                    }
                };
                planner.record(id, &result);
                if state == TrialState::Succeeded {
                    histories.push(metrics.reports.clone());
                }
                let output = TrialOutput {
                    trial_id: id.to_string(),
                    hyperparameters: trial.params.to_map(),
                    final_metric: metrics.final_metric().filter(|_| state != TrialState::Failed),
                    state,
                    start_time: Some(rfc3339(trial.started)),
                    end_time: Some(rfc3339(SystemTime::now())),
                    is_trial_stopped_early: trial.stopped_early && state == TrialState::Succeeded,
                    error,
                };
                on_event(TuningEvent::TrialFinished(output.clone()));
                finished.push(output);
            }
            () = cancel.raised(), if !cancel.is_raised() => {
                for trial in running.values() {
                    trial.stop.raise();
                }
            }
            _ = ticker.tick(), if early_stopping && histories.len() >= 2 => {
                for (id, trial) in running.iter_mut().filter(|(_, t)| !t.stopped_early) {
                    let Ok(file) = read_metric_file(&trial.metric_file, &tag) else { continue };
                    let Some(latest) = file.reports.last() else { continue };
                    if let Some(median) = median_at(&histories, latest.global_step)
                        && better(goal, median, latest.value)
                    {
                        trial.stopped_early = true;
                        trial.stop.raise();
                        on_event(TuningEvent::TrialStoppingEarly {
                            trial_id: id.to_string(),
                            reason: format!(
                                "objective {} at step {} is worse than the median {median} of the completed trials",
                                latest.value, latest.global_step
                            ),
                        });
                    }
                }
            }
        }
    }

    let succeeded = finished
        .iter()
        .filter(|t| t.state == TrialState::Succeeded)
        .count();
    let state = if cancel.is_raised() {
        TuningState::Cancelled
    } else if let Some(reason) = planner.stop_reason() {
        TuningState::Failed(format!(
            "Hyperparameter tuning stopped: {reason}. First failure: {}",
            first_failure.as_deref().unwrap_or("none recorded")
        ))
    } else if succeeded == 0 {
        TuningState::Failed(format!(
            "All {} trials failed. First failure: {}",
            finished.len(),
            first_failure.as_deref().unwrap_or("none recorded")
        ))
    } else {
        TuningState::Succeeded
    };
    sort_best_first(&mut finished, goal);
    Ok(TuningOutcome {
        state,
        output: TuningOutput {
            completed_trial_count: succeeded as i64,
            trials: finished,
            is_hyperparameter_tuning_job: true,
            hyperparameter_metric_tag: tag,
        },
    })
}

/// The median over completed trials of each one's last value at or before `step` (`None` with
/// fewer than two such trials).
fn median_at(histories: &[Vec<MetricReport>], step: i64) -> Option<f64> {
    let mut values: Vec<f64> = histories
        .iter()
        .filter_map(|reports| {
            reports
                .iter()
                .rev()
                .find(|r| r.global_step <= step)
                .map(|r| r.value)
        })
        .filter(|v| v.is_finite())
        .collect();
    if values.len() < 2 {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

/// The best finished trial's final metric under `goal`, if any trial reported one.
pub fn best_metric(trials: &[TrialOutput], goal: Goal) -> Option<&FinalMetric> {
    trials
        .iter()
        .filter(|t| t.state == TrialState::Succeeded)
        .filter_map(|t| t.final_metric.as_ref())
        .filter(|m| m.objective_value.is_finite())
        .fold(None, |best: Option<&FinalMetric>, m| match best {
            Some(b) if !better(goal, m.objective_value, b.objective_value) => Some(b),
            _ => Some(m),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reports(values: &[(i64, f64)]) -> Vec<MetricReport> {
        values
            .iter()
            .map(|&(global_step, value)| MetricReport {
                global_step,
                value,
                timestamp: None,
            })
            .collect()
    }

    #[test]
    fn median_uses_each_trials_last_value_up_to_the_step() {
        let histories = vec![
            reports(&[(100, 0.5), (200, 0.8)]),
            reports(&[(100, 0.6), (200, 0.7)]),
            reports(&[(300, 0.9)]),
        ];
        assert_eq!(median_at(&histories, 150), Some(0.55));
        assert_eq!(median_at(&histories, 250), Some(0.75));
        assert_eq!(median_at(&histories, 300), Some(0.8));
        assert_eq!(median_at(&histories, 50), None);
    }
}
