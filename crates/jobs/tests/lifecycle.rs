//! The runner's handling of real child processes: small shell scripts stand in for the trainer
//! (the end-to-end tests in bins/predictor run the real one), so each way a process can end is
//! produced on purpose: a crash with stderr, SIGTERM ignored (SIGKILL after the grace period),
//! a queue of one slot, and jobs and logs read back after a reopen.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jobs::{Job, JobState, Jobs, NewJob};
use serde_json::json;
use support::{entries, messages, script, test_config, wait};

async fn open(dir: &Path, trainer: &Path) -> Arc<Jobs> {
    let mut config = test_config(dir);
    config.trainer = Some(trainer.to_path_buf());
    Jobs::open(config).await.unwrap()
}

fn job(id: &str, dir: &Path) -> NewJob {
    NewJob::training(
        id,
        json!({"jobDir": dir.join(id).to_str().unwrap(), "args": ["--epochs", "1"]}),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_fails_the_job_with_its_error_lines_and_the_arguments_are_the_config() {
    let tmp = tempfile::tempdir().unwrap();
    let trainer = script(
        tmp.path(),
        "trainer",
        "echo \"args: $*\"; echo \"job: $CLOUD_ML_JOB_ID\"; cat \"$2\"; echo; echo 'error: the data is gone' >&2; exit 3",
    );
    let jobs = open(tmp.path(), &trainer).await;
    let created = jobs.create(job("crash", tmp.path())).await.unwrap();
    assert_eq!(created.state, JobState::Queued);
    let ended = wait(&jobs, "crash", |j| j.state.is_final()).await;
    assert_eq!(ended.state, JobState::Failed);
    assert_eq!(
        ended.error_message.as_deref(),
        Some("The replica master 0 exited with a non-zero status of 3. \nerror: the data is gone")
    );
    assert!(ended.start_time.is_some() && ended.end_time.is_some());
    let log = messages(&jobs, "crash").await;
    let args = log.iter().find(|l| l.contains("args: ")).unwrap();
    assert!(args.ends_with("--job-name crash"), "{args}");
    assert!(
        args.contains("--config ") && !args.contains("--allow-cpu"),
        "{args}"
    );
    assert!(
        log.contains(&"INFO master-replica-0 job: crash".to_string()),
        "{log:?}"
    );
    // The config file is the job's trainingInput, as submitted.
    assert!(
        log.iter()
            .any(|l| l.contains("\"trainingInput\":{\"args\":[\"--epochs\",\"1\"]")),
        "{log:?}"
    );
    assert!(log.contains(&"ERROR master-replica-0 error: the data is gone".to_string()));
    assert_eq!(log.last().unwrap(), "ERROR service Job failed.");

    // Reopened (a restart): the job and its whole log are read back from the registry.
    drop(jobs);
    let reopened = open(tmp.path(), &trainer).await;
    assert_eq!(reopened.get("crash").unwrap().state, JobState::Failed);
    assert_eq!(messages(&reopened, "crash").await, log);
    let duplicate = reopened.create(job("crash", tmp.path())).await.unwrap_err();
    assert!(
        matches!(duplicate, jobs::JobsError::AlreadyExists(_)),
        "{duplicate}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_sends_sigterm_then_sigkill_and_a_queued_job_waits_for_the_slot() {
    let tmp = tempfile::tempdir().unwrap();
    // Ignores SIGTERM, so only SIGKILL stops it.
    let trainer = script(
        tmp.path(),
        "trainer",
        "trap '' TERM; echo started; while true; do sleep 0.05; done",
    );
    let jobs = open(tmp.path(), &trainer).await;
    jobs.create(job("stubborn", tmp.path())).await.unwrap();
    jobs.create(job("next", tmp.path())).await.unwrap();
    wait(&jobs, "stubborn", |j| j.state == JobState::Running).await;
    let queued = jobs.get("next").unwrap();
    assert_eq!(
        (queued.state, queued.job_position),
        (JobState::Queued, Some(0))
    );

    // The queued one is cancelled without ever starting.
    jobs.cancel("next").await.unwrap();
    let next = wait(&jobs, "next", |j| j.state.is_final()).await;
    assert_eq!((next.state, next.start_time), (JobState::Cancelled, None));

    jobs.cancel("stubborn").await.unwrap();
    assert_eq!(jobs.get("stubborn").unwrap().state, JobState::Cancelling);
    let ended = wait(&jobs, "stubborn", |j| j.state.is_final()).await;
    assert_eq!(ended.state, JobState::Cancelled);
    let log = messages(&jobs, "stubborn").await;
    assert!(
        log.iter()
            .any(|l| l.starts_with("INFO service Sent SIGTERM")),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("did not stop after SIGTERM; sending SIGKILL")),
        "{log:?}"
    );
    let again = jobs.cancel("stubborn").await.unwrap_err();
    assert!(
        matches!(again, jobs::JobsError::FailedPrecondition(_)),
        "{again}"
    );
    assert!(matches!(
        jobs.cancel("ghost").await,
        Err(jobs::JobsError::NotFound(_))
    ));
}

fn tuning_job(id: &str, dir: &Path, max_trials: u32, max_failed: u32) -> NewJob {
    NewJob::training(
        id,
        json!({
            "jobDir": dir.join(id).to_str().unwrap(),
            "args": ["--epochs", "1"],
            "hyperparameters": {
                "goal": "MAXIMIZE",
                "hyperparameterMetricTag": "accuracy",
                "algorithm": "RANDOM_SEARCH",
                "maxTrials": max_trials,
                "maxParallelTrials": 2,
                "maxFailedTrials": max_failed,
                "params": [{"parameterName": "learning-rate", "type": "DOUBLE",
                    "minValue": 0.001, "maxValue": 0.1, "scaleType": "UNIT_LOG_SCALE"}]
            }
        }),
    )
}

/// Starts a tuning job `id` whose trials run a stand-in trainer with `body`.
async fn start_tuning(
    dir: &Path,
    id: &str,
    body: &str,
    max_trials: u32,
    max_failed: u32,
) -> Arc<Jobs> {
    let trainer = script(dir, "trainer", body);
    let jobs = open(dir, &trainer).await;
    jobs.create(tuning_job(id, dir, max_trials, max_failed))
        .await
        .unwrap();
    jobs
}

/// `severity task trial message` per log entry (trial `-` when untagged).
async fn tagged_messages(jobs: &Jobs, id: &str) -> Vec<String> {
    entries(jobs, id)
        .await
        .into_iter()
        .map(|e| {
            format!(
                "{} {} {} {}",
                e.severity.name(),
                e.task,
                e.trial.as_deref().unwrap_or("-"),
                e.message
            )
        })
        .collect()
}

fn tuning(job: &Job) -> &jobs::TuningOutput {
    job.training_output
        .as_ref()
        .and_then(|o| o.tuning.as_ref())
        .unwrap_or_else(|| panic!("no tuning output: {job:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tuning_job_runs_each_trial_as_a_trainer_and_reports_a_failing_one() {
    let tmp = tempfile::tempdir().unwrap();
    // Trial 2 crashes; the others report accuracy 0.<trial id> at step 10, as the trainer's
    // hypertune observer would.
    let body = r#"echo "args: $*"
echo "env: trial=$CLOUD_ML_TRIAL_ID threads=$RAYON_NUM_THREADS tag=$CLOUD_ML_HP_METRIC_TAG"
echo "tf: $TF_CONFIG"
if [ "$CLOUD_ML_TRIAL_ID" = 2 ]; then echo 'error: trial two diverged' >&2; exit 4; fi
printf '{"accuracy": "0.%s", "global_step": "10", "timestamp": 1.5, "trial": "%s"}\n' "$CLOUD_ML_TRIAL_ID" "$CLOUD_ML_TRIAL_ID" > "$CLOUD_ML_HP_METRIC_FILE""#;
    let jobs = start_tuning(tmp.path(), "tune", body, 3, 2).await;
    let ended = wait(&jobs, "tune", |j| j.state.is_final()).await;
    let log = tagged_messages(&jobs, "tune").await;
    assert_eq!(ended.state, JobState::Succeeded, "{ended:?}\n{log:#?}");

    let output = tuning(&ended);
    assert!(output.is_hyperparameter_tuning_job);
    assert_eq!(output.hyperparameter_metric_tag, "accuracy");
    assert_eq!(output.completed_trial_count, 2);
    // Best first: trial 3 (0.3), trial 1 (0.1), then the failed trial 2.
    let summary: Vec<(String, jobs::TrialState, Option<f64>)> = output
        .trials
        .iter()
        .map(|t| {
            (
                t.trial_id.clone(),
                t.state,
                t.final_metric.as_ref().map(|m| m.objective_value),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("3".to_string(), jobs::TrialState::Succeeded, Some(0.3)),
            ("1".to_string(), jobs::TrialState::Succeeded, Some(0.1)),
            ("2".to_string(), jobs::TrialState::Failed, None),
        ]
    );
    for trial in &output.trials {
        let lr: f64 = trial.hyperparameters["learning-rate"].parse().unwrap();
        assert!((0.001..=0.1).contains(&lr), "{trial:?}");
        assert!(trial.start_time.is_some() && trial.end_time.is_some());
    }
    assert_eq!(
        output.trials[0]
            .final_metric
            .as_ref()
            .unwrap()
            .training_step,
        10
    );

    // Each trial: the job's command line plus its parameter and its own job dir, its
    // environment, TF_CONFIG with the trial, and lines tagged with the trial.
    let cores = std::thread::available_parallelism().unwrap().get();
    let threads = (cores / 2.min(cores)).max(1);
    for trial in ["1", "2", "3"] {
        let args = log
            .iter()
            .find(|l| l.starts_with(&format!("INFO master-replica-0 {trial} args: ")))
            .unwrap_or_else(|| panic!("trial {trial} has no tagged lines: {log:#?}"));
        let job_dir = tmp.path().join("tune").join(trial);
        assert!(
            args.contains("--config ") && args.contains("--job-name tune"),
            "{args}"
        );
        assert!(args.contains(" --learning-rate="), "{args}");
        assert!(
            args.ends_with(&format!("--job-dir={}", job_dir.display())),
            "{args}"
        );
        assert!(
            log.contains(&format!(
                "INFO master-replica-0 {trial} env: trial={trial} threads={threads} tag=accuracy"
            )),
            "{log:#?}"
        );
        let tf = log
            .iter()
            .find(|l| l.starts_with(&format!("INFO master-replica-0 {trial} tf: ")))
            .unwrap();
        let tf: serde_json::Value = serde_json::from_str(tf.split_once("tf: ").unwrap().1).unwrap();
        assert_eq!(tf["task"]["trial"], trial);
        assert_eq!(tf["task"]["type"], "master");
        assert_eq!(tf["job"]["hyperparameters"]["maxTrials"], 3);
    }
    // The failing trial is reported with its error, tagged with it.
    assert!(
        log.iter()
            .any(|l| l.starts_with("ERROR service 2 Trial 2 failed: ")
                && l.contains("non-zero status of 4")
                && l.contains("error: trial two diverged")),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.starts_with("INFO service 3 Trial 3 SUCCEEDED: objective 0.3 at step 10")),
        "{log:#?}"
    );

    // trainingOutput is saved with the job (as the API shows it: a trial's error is in the log).
    drop(jobs);
    let reopened = open(tmp.path(), &tmp.path().join("trainer")).await;
    assert_eq!(
        serde_json::to_value(reopened.get("tune").unwrap().training_output).unwrap(),
        serde_json::to_value(&ended.training_output).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tuning_job_fails_at_max_failed_trials_naming_the_trial() {
    let tmp = tempfile::tempdir().unwrap();
    let body = "echo \"error: no data for trial $CLOUD_ML_TRIAL_ID\" >&2; exit 2";
    let jobs = start_tuning(tmp.path(), "broken", body, 4, 2).await;
    let ended = wait(&jobs, "broken", |j| j.state.is_final()).await;
    assert_eq!(ended.state, JobState::Failed, "{ended:?}");
    let message = ended.error_message.clone().unwrap();
    assert!(
        message.contains("reaching maxFailedTrials (2)")
            && message.contains("First failure: trial ")
            && message.contains("non-zero status of 2")
            && message.contains("error: no data for trial "),
        "{message}"
    );
    let output = tuning(&ended);
    assert_eq!(output.completed_trial_count, 0);
    // Trials 1 and 2 start together; trial 3 may start when the first failure frees a place.
    assert!((2..=3).contains(&output.trials.len()), "{output:?}");
    assert!(
        output
            .trials
            .iter()
            .all(|t| t.state == jobs::TrialState::Failed)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_tuning_job_stops_every_running_trial() {
    let tmp = tempfile::tempdir().unwrap();
    // Like the trainer: a checkpoint and exit 75 on SIGTERM.
    let body = "trap 'echo stopping; exit 75' TERM; echo started; while true; do sleep 0.05; done";
    let jobs = start_tuning(tmp.path(), "tune_cancel", body, 4, 0).await;
    // Both parallel trials run (or one, on a single-core machine).
    let parallel = 2.min(std::thread::available_parallelism().unwrap().get());
    wait(&jobs, "tune_cancel", |j| {
        j.training_output
            .as_ref()
            .and_then(|o| o.tuning.as_ref())
            .is_some_and(|t| t.trials.len() == parallel)
    })
    .await;
    let started = Instant::now();
    loop {
        let log = tagged_messages(&jobs, "tune_cancel").await;
        if log.iter().filter(|l| l.ends_with(" started")).count() == parallel {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{log:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(jobs.get("tune_cancel").unwrap().state, JobState::Running);
    let running = tuning(&jobs.get("tune_cancel").unwrap()).clone();
    assert!(
        running
            .trials
            .iter()
            .all(|t| t.state == jobs::TrialState::Running && t.start_time.is_some()),
        "{running:?}"
    );

    jobs.cancel("tune_cancel").await.unwrap();
    let ended = wait(&jobs, "tune_cancel", |j| j.state.is_final()).await;
    let log = tagged_messages(&jobs, "tune_cancel").await;
    assert_eq!(ended.state, JobState::Cancelled, "{log:#?}");
    let output = tuning(&ended);
    assert_eq!(
        output.trials.len(),
        parallel,
        "no new trial after the cancel"
    );
    assert!(
        output
            .trials
            .iter()
            .all(|t| t.state == jobs::TrialState::Cancelled),
        "{output:?}"
    );
    for trial in 1..=parallel {
        assert!(
            log.iter()
                .any(|l| l.starts_with(&format!("INFO service {trial} Sent SIGTERM"))),
            "{log:#?}"
        );
        assert!(
            log.contains(&format!("INFO master-replica-0 {trial} stopping")),
            "{log:#?}"
        );
    }
    // Nothing was left to SIGKILL: every trial ended on SIGTERM.
    assert!(!log.iter().any(|l| l.contains("SIGKILL;")), "{log:#?}");
}

/// A server that dies mid-tuning leaves no trial RUNNING: the next server finds the job FAILED,
/// and the trials it was running FAILED with an end time, not RUNNING forever.
#[tokio::test(flavor = "multi_thread")]
async fn a_restart_mid_tuning_ends_the_running_trials_with_the_job() {
    let tmp = tempfile::tempdir().unwrap();
    let body = "trap 'exit 75' TERM; echo started; while true; do sleep 0.05; done";
    let jobs = start_tuning(tmp.path(), "tune_restart", body, 4, 0).await;
    wait(&jobs, "tune_restart", |j| {
        j.training_output
            .as_ref()
            .and_then(|o| o.tuning.as_ref())
            .is_some_and(|t| {
                !t.trials.is_empty()
                    && t.trials
                        .iter()
                        .all(|t| t.state == jobs::TrialState::Running)
            })
    })
    .await;
    // Let the store catch up, then take the registry as a restarted server would find it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let restarted = tempfile::tempdir().unwrap();
    copy_tree(&tmp.path().join("reg"), &restarted.path().join("reg"));
    let reopened = open(restarted.path(), &tmp.path().join("trainer")).await;
    let job = reopened.get("tune_restart").unwrap();
    assert_eq!(job.state, JobState::Failed, "{job:?}");
    let trials = &tuning(&job).trials;
    assert!(!trials.is_empty(), "{job:?}");
    for trial in trials {
        assert_eq!(trial.state, jobs::TrialState::Failed, "{trial:?}");
        assert!(trial.end_time.is_some(), "{trial:?}");
    }
    jobs.cancel("tune_restart").await.unwrap();
    wait(&jobs, "tune_restart", |j| j.state == JobState::Cancelled).await;
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
