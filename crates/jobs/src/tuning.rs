//! A hyperparameter-tuning job (`trainingInput.hyperparameters`): `hypertune::run_tuning` decides
//! the trials and this module runs each one as a trainer child process, through the same
//! [`run_child`] as a single training run (config file, args, log capture, SIGTERM → SIGKILL).
//!
//! Each trial, as Cloud ML Engine starts it:
//! - the job's command line plus `--<parameterName>=<value>` per parameter and
//!   `--job-dir=<jobDir>/<trialId>`, so its checkpoints, TensorBoard logs and model go to their own
//!   folder (Cloud ML Engine leaves that suffix to the user's code, which reads the trial from
//!   `TF_CONFIG`; our trainer is told it on the command line, where flags win over the config);
//! - `CLOUD_ML_TRIAL_ID`, its own `CLOUD_ML_HP_METRIC_FILE` and `CLOUD_ML_HP_METRIC_TAG`, and a
//!   `TF_CONFIG` whose `task.trial` is the trial id;
//! - its log lines tagged with the trial (`labels.trial_id`, the column gcloud prints after the
//!   task name `master-replica-0`).
//!
//! **Cores.** A tuning job holds one job slot, like any job, and uses no more of the machine than
//! a single training run does: at most `min(maxParallelTrials, cores)` trials run at once, each
//! with `cores / that` worker threads (`RAYON_NUM_THREADS`, which the trainer's CPU engine reads;
//! training's bits do not depend on the thread count). On a GPU slot trials run one at a time.
//!
//! `trainingOutput` is updated as trials start and finish (so `jobs describe` shows progress)
//! and saved with the job.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hypertune::{
    CancelHandle, TrialExit, TrialLaunch, TrialLauncher, TrialOutput, TrialState, TuningEvent,
    TuningOptions, TuningOutput, TuningState,
};
use job_config::JobConfig;
use tokio::sync::{mpsc, watch};

use crate::logs::{SERVICE_TASK, Severity};
use crate::queue::SlotKind;
use crate::runner::{Outcome, Prepared, TrainerChild, prepare, run_child, stopped};
use crate::{JobState, Jobs, Stop, TrainingOutput};

/// How often running trials' metric files are read for early stopping.
const EARLY_STOPPING_POLL: Duration = Duration::from_secs(1);

/// How many trials run at once and the worker threads of each (see the module docs).
pub(crate) fn trial_shares(max_parallel_trials: u32, cores: usize, kind: SlotKind) -> (u32, usize) {
    let cores = cores.max(1);
    let parallel = match kind {
        SlotKind::Gpu => 1,
        SlotKind::Cpu => max_parallel_trials.clamp(1, u32::try_from(cores).unwrap_or(u32::MAX)),
    };
    (parallel, (cores / parallel as usize).max(1))
}

fn machine_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs a tuning job's trials to the job's end.
pub(crate) async fn run(
    jobs: &Arc<Jobs>,
    id: &str,
    config: &JobConfig,
    stop: &mut watch::Receiver<Stop>,
) -> Outcome {
    let Some(spec) = config.training_input.hyperparameters.as_ref() else {
        return Outcome::failed("trainingInput.hyperparameters: missing");
    };
    let prepared = match prepare(jobs, id, stop).await {
        Ok(prepared) => prepared,
        Err(outcome) => return outcome,
    };
    let Some(job_dir) = config.resolved.job_dir.clone() else {
        return Outcome::failed("trainingInput.jobDir: required for a tuning job");
    };
    let cores = machine_cores();
    let (parallel, threads) = trial_shares(spec.max_parallel_trials, cores, jobs.slot_kind(config));
    let mut spec = spec.clone();
    spec.max_parallel_trials = parallel;
    let tag = hypertune::metric_tag(&spec).to_string();
    jobs.service_line(
        id,
        Severity::Info,
        &format!(
            "Hyperparameter tuning: up to {} trials, {parallel} at a time (maxParallelTrials {}, \
             {cores} cores), each with {threads} worker threads; objective {tag:?} ({:?}). Trial \
             N writes to {}/N.",
            spec.max_trials,
            config
                .training_input
                .hyperparameters
                .as_ref()
                .map_or(parallel, |s| s.max_parallel_trials),
            spec.goal,
            job_dir.trim_end_matches('/'),
        ),
    );
    set_tuning_output(jobs, id, |output| {
        output.hyperparameter_metric_tag = tag.clone();
    })
    .await;

    let cancel = CancelHandle::new();
    let options = TuningOptions {
        metric_dir: jobs.work_dir.path().join(id).join("trials"),
        seed: seed_of(id),
        poll_interval: EARLY_STOPPING_POLL,
        cancel: cancel.clone(),
    };
    let launcher = TrialProcesses {
        jobs: jobs.clone(),
        id: id.to_string(),
        prepared,
        job_dir,
        threads,
        training_input: jobs
            .get(id)
            .ok()
            .and_then(|job| job.training_input)
            .unwrap_or_default(),
    };
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let tuning = hypertune::run_tuning(&spec, &options, &launcher, move |event| {
        let _ = events_tx.send(event);
    });
    // The tuning and the event consumer run side by side: an update of the job waits for the
    // store's write lock, which a trial's own update may hold, so the trials must keep running
    // while events are applied.
    let driver = async {
        tokio::pin!(tuning);
        let mut why = Stop::Running;
        loop {
            tokio::select! {
                result = &mut tuning => break (result, why),
                stop_why = stopped(stop), if why == Stop::Running => {
                    why = stop_why;
                    cancel.cancel();
                    jobs.service_line(id, Severity::Info, "Stopping every running trial.");
                }
            }
        }
    };
    let consumer = async {
        // Ends when the tuning (which owns the sender) has finished.
        while let Some(event) = events.recv().await {
            on_event(jobs, id, event).await;
        }
    };
    let ((result, why), ()) = tokio::join!(driver, consumer);
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(error) => return Outcome::failed(format!("hyperparameter tuning: {error}")),
    };
    let finished = outcome.output;
    set_tuning_output(jobs, id, move |output| *output = finished).await;
    match outcome.state {
        TuningState::Succeeded => Outcome {
            state: JobState::Succeeded,
            error: None,
        },
        TuningState::Failed(message) => Outcome::failed(message),
        TuningState::Cancelled if why == Stop::ServerStopping => Outcome::failed(
            "The server stopped while the tuning job was RUNNING; its trials were stopped with \
             SIGTERM. Submit the job again to rerun it.",
        ),
        TuningState::Cancelled => Outcome {
            state: JobState::Cancelled,
            error: None,
        },
    }
}

/// A seed per job id (FNV-1a), so a resubmitted job draws the same trials.
fn seed_of(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Changes the job's `trainingOutput` tuning part (created on first use) and saves the job.
async fn set_tuning_output(jobs: &Jobs, id: &str, change: impl FnOnce(&mut TuningOutput)) {
    jobs.update(id, |job| {
        let output = job
            .training_output
            .get_or_insert_with(TrainingOutput::default);
        let tuning = output.tuning.get_or_insert_with(|| TuningOutput {
            completed_trial_count: 0,
            trials: Vec::new(),
            is_hyperparameter_tuning_job: true,
            hyperparameter_metric_tag: hypertune::DEFAULT_METRIC_TAG.to_string(),
        });
        change(tuning);
    })
    .await;
}

/// Puts a trial's entry in `trainingOutput.trials` (replacing the one with its id).
fn upsert(trials: &mut Vec<TrialOutput>, trial: TrialOutput) {
    match trials.iter_mut().find(|t| t.trial_id == trial.trial_id) {
        Some(slot) => *slot = trial,
        None => trials.push(trial),
    }
}

async fn on_event(jobs: &Jobs, id: &str, event: TuningEvent) {
    match event {
        TuningEvent::TrialStarted {
            trial_id,
            hyperparameters,
            args,
        } => {
            jobs.log_line(
                id,
                Severity::Info,
                SERVICE_TASK,
                Some(&trial_id),
                &format!("Trial {trial_id} started: {}", args.join(" ")),
            );
            set_tuning_output(jobs, id, |output| {
                upsert(
                    &mut output.trials,
                    TrialOutput {
                        trial_id,
                        hyperparameters,
                        final_metric: None,
                        state: TrialState::Running,
                        start_time: Some(hypertune::output::rfc3339(SystemTime::now())),
                        end_time: None,
                        is_trial_stopped_early: false,
                        error: None,
                    },
                );
            })
            .await;
        }
        TuningEvent::TrialFinished(trial) => {
            let metric = trial.final_metric.as_ref().map_or_else(
                || "no objective value reported".to_string(),
                |m| {
                    format!(
                        "objective {} at step {}",
                        m.objective_value, m.training_step
                    )
                },
            );
            let (severity, message) = match (&trial.state, &trial.error) {
                (TrialState::Failed, Some(error)) => (
                    Severity::Error,
                    format!("Trial {} failed: {error}", trial.trial_id),
                ),
                (state, _) => (
                    Severity::Info,
                    format!(
                        "Trial {} {}{}: {metric}",
                        trial.trial_id,
                        serde_json::to_value(state)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default(),
                        if trial.is_trial_stopped_early {
                            " (stopped early)"
                        } else {
                            ""
                        },
                    ),
                ),
            };
            jobs.log_line(id, severity, SERVICE_TASK, Some(&trial.trial_id), &message);
            set_tuning_output(jobs, id, |output| {
                upsert(&mut output.trials, trial);
                output.completed_trial_count = output
                    .trials
                    .iter()
                    .filter(|t| t.state == TrialState::Succeeded)
                    .count() as i64;
            })
            .await;
        }
        TuningEvent::TrialStoppingEarly { trial_id, reason } => jobs.log_line(
            id,
            Severity::Info,
            SERVICE_TASK,
            Some(&trial_id),
            &format!("Stopping trial {trial_id} early: {reason}"),
        ),
        TuningEvent::Note(note) => jobs.service_line(id, Severity::Warning, &note),
    }
}

/// Starts each trial as a trainer child process of the job.
struct TrialProcesses {
    jobs: Arc<Jobs>,
    id: String,
    prepared: Prepared,
    /// The job's `jobDir`; trial N writes to `<jobDir>/N`.
    job_dir: String,
    threads: usize,
    /// `TF_CONFIG`'s `job`, as Cloud ML Engine sets it: the job's trainingInput.
    training_input: serde_json::Value,
}

impl TrialProcesses {
    fn tf_config(&self, trial_id: &str) -> String {
        serde_json::json!({
            "cluster": {"master": ["127.0.0.1:2222"]},
            "task": {"type": "master", "index": 0, "trial": trial_id},
            "environment": "cloud",
            "job": self.training_input,
        })
        .to_string()
    }
}

#[async_trait::async_trait]
impl TrialLauncher for TrialProcesses {
    async fn run_trial(&self, launch: TrialLaunch) -> TrialExit {
        let trial_id = launch.trial_id.as_str();
        let mut extra_args = launch.args.clone();
        extra_args.push(format!(
            "--job-dir={}/{trial_id}",
            self.job_dir.trim_end_matches('/')
        ));
        let mut env = launch.env.clone();
        env.push(("TF_CONFIG".to_string(), self.tf_config(trial_id)));
        env.push(("RAYON_NUM_THREADS".to_string(), self.threads.to_string()));
        let child = TrainerChild {
            extra_args,
            env,
            trial: Some(trial_id),
        };
        let mut signal = launch.stop.clone();
        let stop = async move {
            signal.raised().await;
            Stop::Cancel
        };
        let outcome = run_child(&self.jobs, &self.id, &self.prepared, &child, stop).await;
        match outcome.state {
            // Ended as asked (cancelled, or stopped early): the tuner decides what that means.
            JobState::Succeeded | JobState::Cancelled => TrialExit::Succeeded,
            _ => TrialExit::Failed(
                outcome
                    .error
                    .unwrap_or_else(|| "the trial's trainer failed".to_string()),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trials_share_the_cores_and_never_oversubscribe() {
        assert_eq!(trial_shares(2, 16, SlotKind::Cpu), (2, 8));
        assert_eq!(trial_shares(3, 16, SlotKind::Cpu), (3, 5));
        assert_eq!(trial_shares(4, 2, SlotKind::Cpu), (2, 1));
        assert_eq!(trial_shares(1, 1, SlotKind::Cpu), (1, 1));
        assert_eq!(trial_shares(0, 0, SlotKind::Cpu), (1, 1));
        assert_eq!(trial_shares(4, 16, SlotKind::Gpu), (1, 16));
    }

    #[test]
    fn seeds_are_stable_per_job() {
        assert_eq!(seed_of("tune_1"), seed_of("tune_1"));
        assert_ne!(seed_of("tune_1"), seed_of("tune_2"));
    }
}
