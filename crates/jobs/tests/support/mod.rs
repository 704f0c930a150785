//! Helpers the runner tests share: shell scripts standing in for the jobs' programs, the test
//! settings, waiting for a job and reading its log.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jobs::{Job, Jobs, JobsConfig, LogEntry, LogQuery};

/// An executable `/bin/sh` script `dir/name` running `body`.
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Jobs kept in `dir/reg`, with a short cancel grace and log flush, and no GPU.
pub fn test_config(dir: &Path) -> JobsConfig {
    let mut config =
        JobsConfig::new(storage::Location::parse(dir.join("reg").to_str().unwrap()).unwrap());
    config.cancel_grace = Duration::from_millis(500);
    config.log_flush_interval = Duration::from_millis(100);
    config.gpu_slots = Some(0);
    config
}

/// Polls the job until `done` (at most 20 s).
pub async fn wait(jobs: &Jobs, id: &str, done: impl Fn(&Job) -> bool) -> Job {
    let started = Instant::now();
    loop {
        let job = jobs.get(id).unwrap();
        if done(&job) {
            return job;
        }
        if started.elapsed() > Duration::from_secs(20) {
            panic!("{id}: {job:?}\nlog: {:#?}", messages(jobs, id).await);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The job's log entries, oldest first.
pub async fn entries(jobs: &Jobs, id: &str) -> Vec<LogEntry> {
    let query = LogQuery {
        job_id: id.to_string(),
        ..LogQuery::default()
    };
    jobs.logs(&query).await.unwrap()
}

/// The job's log entries as `SEVERITY task message`.
pub async fn messages(jobs: &Jobs, id: &str) -> Vec<String> {
    entries(jobs, id)
        .await
        .into_iter()
        .map(|e| format!("{} {} {}", e.severity.name(), e.task, e.message))
        .collect()
}
