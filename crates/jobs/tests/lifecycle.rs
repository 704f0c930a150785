//! The runner's handling of real child processes: small shell scripts stand in for the trainer
//! (the end-to-end tests in bins/predictor run the real one), so each way a process can end is
//! produced on purpose: a crash with stderr, SIGTERM ignored (SIGKILL after the grace period),
//! a queue of one slot, and jobs and logs read back after a reopen.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::sync::Arc;

use jobs::{JobState, Jobs, NewJob};
use serde_json::json;
use support::{messages, script, test_config, wait};

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
