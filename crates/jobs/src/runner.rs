//! One job, from the queue to its end: wait for a slot, then run its child processes with their
//! output captured line by line ([`run_process`]), stop them on cancel (SIGTERM, then SIGKILL
//! after the grace period), and record how the job ended.
//! - A training job writes the job's config and runs `trainer --config <file> --job-name <id>`
//!   ([`run_child`]); a tuning job goes to `tuning`, which starts each trial through the same
//!   [`run_child`].
//! - A prediction job runs `predictor batch-predict` ([`crate::prediction`]) through the same
//!   [`run_process`].

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use job_config::JobConfig;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::sync::watch;

use crate::logs::{MASTER_TASK, SERVICE_TASK, Severity};
use crate::prediction::PredictionSpec;
use crate::queue::SlotKind;
use crate::{JobState, Jobs, Stop};

/// The trainer's exit status after SIGTERM: it wrote a checkpoint and stopped.
const EXIT_PREEMPTED: i32 = 75;

/// Lines of a child's stdout and of its stderr kept to explain a failure (or read a summary).
const KEPT_LINES: usize = 20;

/// How a run ended.
pub(crate) struct Outcome {
    pub state: JobState,
    pub error: Option<String>,
}

impl Outcome {
    pub(crate) fn failed(message: impl Into<String>) -> Outcome {
        Outcome {
            state: JobState::Failed,
            error: Some(message.into()),
        }
    }
}

pub(crate) async fn stopped(stop: &mut watch::Receiver<Stop>) -> Stop {
    let why = stop
        .wait_for(|s| *s != Stop::Running)
        .await
        .map(|value| *value);
    match why {
        Ok(why) => why,
        // The sender lives as long as the job runs; without it nothing can stop the job.
        Err(_) => std::future::pending().await,
    }
}

/// What a job runs.
pub(crate) enum Work {
    /// `trainingInput`: the trainer (once, or once per tuning trial).
    Training(Box<JobConfig>),
    /// `predictionInput`: `predictor batch-predict` ([`crate::prediction`]).
    Prediction(PredictionSpec),
}

pub(crate) async fn run(jobs: Arc<Jobs>, id: String, work: Work, mut stop: watch::Receiver<Stop>) {
    let kind = match &work {
        Work::Training(config) => jobs.slot_kind(config),
        Work::Prediction(_) => SlotKind::Cpu,
    };
    let slot = tokio::select! {
        slot = jobs.queue.acquire(&id, kind) => slot,
        why = stopped(&mut stop) => {
            let outcome = match why {
                Stop::ServerStopping => Outcome::failed(
                    "The server stopped while the job was QUEUED; submit it again to run it",
                ),
                _ => Outcome { state: JobState::Cancelled, error: None },
            };
            jobs.finish(&id, outcome.state, outcome.error).await;
            return;
        }
    };
    jobs.advance(&id, JobState::Preparing).await;
    jobs.service_line(&id, Severity::Info, "Waiting for job to be provisioned.");
    let current = *stop.borrow();
    let outcome = match &work {
        _ if current != Stop::Running => ended_before_start(current),
        Work::Training(config) if config.training_input.hyperparameters.is_some() => {
            crate::tuning::run(&jobs, &id, config, &mut stop).await
        }
        Work::Training(_) => run_trainer(&jobs, &id, &mut stop).await,
        Work::Prediction(spec) => crate::prediction::run(&jobs, &id, spec, &mut stop).await,
    };
    drop(slot);
    let dir = jobs.work_dir.path().join(&id);
    let _ = tokio::fs::remove_dir_all(&dir).await;
    jobs.finish(&id, outcome.state, outcome.error).await;
}

async fn run_trainer(jobs: &Arc<Jobs>, id: &str, stop: &mut watch::Receiver<Stop>) -> Outcome {
    let prepared = match prepare(jobs, id, stop).await {
        Ok(prepared) => prepared,
        Err(outcome) => return outcome,
    };
    let child = TrainerChild {
        extra_args: Vec::new(),
        env: Vec::new(),
        trial: None,
    };
    run_child(jobs, id, &prepared, &child, stopped(stop)).await
}

/// What every trainer process of a job shares: the binary and the job's config file.
pub(crate) struct Prepared {
    pub trainer: PathBuf,
    pub config_path: PathBuf,
}

/// Finds the trainer and writes the document `trainer --config` reads (the job's trainingInput
/// as submitted) into the job's work folder; `Err` is how the job ends instead.
pub(crate) async fn prepare(
    jobs: &Arc<Jobs>,
    id: &str,
    stop: &watch::Receiver<Stop>,
) -> Result<Prepared, Outcome> {
    let current = *stop.borrow();
    if current != Stop::Running {
        return Err(ended_before_start(current));
    }
    let trainer = jobs.trainer_path().map_err(Outcome::failed)?;
    let dir = jobs.work_dir.path().join(id);
    let config_path = dir.join("config.json");
    let document = serde_json::json!({
        "jobId": id,
        "trainingInput": jobs.get(id).ok().and_then(|j| j.training_input),
    });
    let written = async {
        tokio::fs::create_dir_all(&dir).await?;
        tokio::fs::write(&config_path, document.to_string()).await
    }
    .await;
    if let Err(error) = written {
        return Err(Outcome::failed(format!(
            "cannot write the job's config file {}: {error}",
            config_path.display()
        )));
    }
    Ok(Prepared {
        trainer,
        config_path,
    })
}

/// One trainer process: the job's single run, or one trial of a tuning job.
pub(crate) struct TrainerChild<'a> {
    /// Appended after `--config FILE --job-name ID` (a trial's `--name=value` flags and its
    /// `--job-dir`): flags on the command line win over the config's `args`.
    pub extra_args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The trial id its log lines are tagged with.
    pub trial: Option<&'a str>,
}

/// Runs one trainer process to its end with its output in the job log: `stop` resolving asks
/// it to stop (SIGTERM, then SIGKILL after the grace period). The job moves to RUNNING once the
/// process started.
pub(crate) async fn run_child(
    jobs: &Arc<Jobs>,
    id: &str,
    prepared: &Prepared,
    child_spec: &TrainerChild<'_>,
    stop: impl std::future::Future<Output = Stop>,
) -> Outcome {
    let Prepared {
        trainer,
        config_path,
    } = prepared;
    let trial = child_spec.trial;
    let say = |severity: Severity, message: &str| {
        jobs.log_line(id, severity, SERVICE_TASK, trial, message);
    };
    let mut command = tokio::process::Command::new(trainer);
    command
        .arg("--config")
        .arg(config_path)
        .arg("--job-name")
        .arg(id);
    if jobs.config.allow_cpu {
        command.arg("--allow-cpu");
    }
    command.args(&child_spec.extra_args);
    command
        .envs(child_spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(config_path.parent().unwrap_or(Path::new(".")));
    let extra = child_spec
        .extra_args
        .iter()
        .map(|arg| format!(" {arg}"))
        .collect::<String>();
    say(
        Severity::Info,
        &format!(
            "Running: {} --config {} --job-name {id}{}{extra} (the job's trainingInput, with its \
             jobDir and args)",
            trainer.display(),
            config_path.display(),
            if jobs.config.allow_cpu {
                " --allow-cpu"
            } else {
                ""
            },
        ),
    );
    let names = ("the trainer", " (it writes a checkpoint and stops)");
    match run_process(jobs, id, command, trial, stop, names).await {
        Ok(ended) => outcome(&say, ended.status, ended.stop, &ended.stderr_tail),
        Err(error) => Outcome::failed(format!(
            "cannot start the trainer {}: {error}",
            trainer.display()
        )),
    }
}

/// How a job's child process ended.
pub(crate) struct Ended {
    pub(crate) status: std::io::Result<ExitStatus>,
    /// Why it was stopped (`Stop::Running`: it was not).
    pub(crate) stop: Stop,
    /// Its last lines on stdout and stderr ([`KEPT_LINES`] of each).
    pub(crate) stdout_tail: Vec<String>,
    pub(crate) stderr_tail: Vec<String>,
}

/// Starts a job's child process (`CLOUD_ML_JOB_ID` set, the server's `env_remove` unset, stopped
/// with the server) and moves the job to RUNNING; then waits for it, copying its output into the
/// job log (tagged with `trial`, if any) and saving the log as it goes. When `stop` resolves it
/// sends SIGTERM, then SIGKILL after the cancel grace period. `(what, note)` name the process in
/// the log lines and say what SIGTERM makes it do. An error: it could not be started.
pub(crate) async fn run_process(
    jobs: &Arc<Jobs>,
    id: &str,
    mut command: tokio::process::Command,
    trial: Option<&str>,
    stop: impl std::future::Future<Output = Stop>,
    (what, note): (&str, &str),
) -> std::io::Result<Ended> {
    let say = |severity: Severity, message: &str| {
        jobs.log_line(id, severity, SERVICE_TASK, trial, message);
    };
    for name in &jobs.config.env_remove {
        command.env_remove(name);
    }
    command
        .env("CLOUD_ML_JOB_ID", id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    stop_with_parent(&mut command);
    let mut child = command.spawn()?;
    jobs.advance(id, JobState::Running).await;
    let stdout_tail = Arc::new(Mutex::new(Vec::<String>::new()));
    let stderr_tail = Arc::new(Mutex::new(Vec::<String>::new()));
    let trial_owned = || trial.map(str::to_string);
    let readers = [
        child.stdout.take().map(|out| {
            tokio::spawn(read_lines(
                jobs.clone(),
                id.to_string(),
                trial_owned(),
                out,
                stdout_tail.clone(),
            ))
        }),
        child.stderr.take().map(|err| {
            tokio::spawn(read_lines(
                jobs.clone(),
                id.to_string(),
                trial_owned(),
                err,
                stderr_tail.clone(),
            ))
        }),
    ];
    let mut flush = tokio::time::interval(jobs.config.log_flush_interval);
    let mut stop_reason = Stop::Running;
    let mut kill_at: Option<tokio::time::Instant> = None;
    tokio::pin!(stop);
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            why = &mut stop, if stop_reason == Stop::Running => {
                stop_reason = why;
                if let Some(pid) = child.id() {
                    terminate(pid);
                }
                say(Severity::Info, &format!(
                    "Sent SIGTERM to {what}{note}; SIGKILL in {} s if it has not.",
                    jobs.config.cancel_grace.as_secs()
                ));
                kill_at = Some(tokio::time::Instant::now() + jobs.config.cancel_grace);
            }
            () = sleep_until(kill_at) => {
                kill_at = None;
                let (first, rest) = what.split_at(what.len().min(1));
                say(Severity::Warning, &format!(
                    "{}{rest} did not stop after SIGTERM; sending SIGKILL.",
                    first.to_ascii_uppercase()
                ));
                let _ = child.start_kill();
            }
            _ = flush.tick() => jobs.flush_log(id).await,
        }
    };
    for reader in readers.into_iter().flatten() {
        let _ = reader.await;
    }
    let lines = |kept: &Mutex<Vec<String>>| kept.lock().map(|l| l.clone()).unwrap_or_default();
    Ok(Ended {
        status,
        stop: stop_reason,
        stdout_tail: lines(&stdout_tail),
        stderr_tail: lines(&stderr_tail),
    })
}

fn ended_before_start(why: Stop) -> Outcome {
    match why {
        Stop::ServerStopping => {
            Outcome::failed("The server stopped before the job's trainer started")
        }
        _ => Outcome {
            state: JobState::Cancelled,
            error: None,
        },
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn outcome(
    say: &impl Fn(Severity, &str),
    status: std::io::Result<ExitStatus>,
    stop: Stop,
    errors: &[String],
) -> Outcome {
    let status = match status {
        Ok(status) => status,
        Err(error) => return Outcome::failed(format!("cannot wait for the trainer: {error}")),
    };
    if status.success() {
        if stop == Stop::Cancel {
            say(
                Severity::Warning,
                "The trainer finished before the cancel took effect; it SUCCEEDED.",
            );
        }
        return Outcome {
            state: JobState::Succeeded,
            error: None,
        };
    }
    match stop {
        Stop::Cancel => {
            return Outcome {
                state: JobState::Cancelled,
                error: None,
            };
        }
        Stop::ServerStopping => {
            return Outcome::failed(
                "The server stopped while the job was RUNNING; the trainer was stopped with \
                 SIGTERM (it writes a checkpoint). Submit the job again with the same jobDir to \
                 continue from it.",
            );
        }
        Stop::Running => {}
    }
    // The trainer's `error: …` lines say why; without them, its last few lines.
    let mut explaining: Vec<&str> = errors
        .iter()
        .map(String::as_str)
        .filter(|l| Severity::of_trainer_line(l) == Severity::Error)
        .collect();
    if explaining.is_empty() {
        explaining = last_lines(errors, 5);
    }
    let detail = if explaining.is_empty() {
        String::new()
    } else {
        format!(" \n{}", explaining.join("\n"))
    };
    let message = match (status.code(), signal_of(&status)) {
        (Some(EXIT_PREEMPTED), _) => format!(
            "The replica master 0 was stopped by SIGTERM (exit status {EXIT_PREEMPTED}) after \
             writing a checkpoint, but the job was not cancelled.{detail}"
        ),
        (Some(code), _) => {
            format!("The replica master 0 exited with a non-zero status of {code}.{detail}")
        }
        (None, Some(signal)) => {
            format!("The replica master 0 was killed by signal {signal}.{detail}")
        }
        (None, None) => format!("The replica master 0 ended abnormally ({status}).{detail}"),
    };
    Outcome::failed(message)
}

/// The last `count` of `lines`, in order.
pub(crate) fn last_lines(lines: &[String], count: usize) -> Vec<&str> {
    let skip = lines.len().saturating_sub(count);
    lines[skip..].iter().map(String::as_str).collect()
}

#[cfg(unix)]
pub(crate) fn signal_of(status: &ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt as _;
    status.signal()
}

#[cfg(not(unix))]
pub(crate) fn signal_of(_: &ExitStatus) -> Option<i32> {
    None
}

/// Asks the trainer to stop: it writes a checkpoint after the current step and exits 75.
fn terminate(pid: u32) {
    #[cfg(unix)]
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) with a pid we spawned and have not reaped yet (`child.id()` is `Some`
        // only until the child is waited for), so it cannot name a recycled process.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}

/// If the server dies without stopping its jobs (SIGKILL, a crash), the kernel sends the trainer
/// SIGTERM, so it checkpoints and stops instead of writing to the job dir of a job the restarted
/// server reports FAILED.
fn stop_with_parent(command: &mut tokio::process::Command) {
    #[cfg(target_os = "linux")]
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2), which is
    // async-signal-safe; it allocates nothing and touches no locks.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

/// Copies a pipe into the job log, one entry per line (`\r` progress redraws split lines too),
/// keeping its last [`KEPT_LINES`] lines in `kept` (to explain a failure, or read a summary).
async fn read_lines(
    jobs: Arc<Jobs>,
    id: String,
    trial: Option<String>,
    pipe: impl AsyncRead + Unpin,
    kept: Arc<Mutex<Vec<String>>>,
) {
    let mut reader = BufReader::new(pipe);
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        match reader.read_until(b'\n', &mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&buffer);
        for line in text.split(['\n', '\r']).filter(|l| !l.trim().is_empty()) {
            let severity = Severity::of_trainer_line(line);
            jobs.log_line(&id, severity, MASTER_TASK, trial.as_deref(), line);
            if let Ok(mut kept) = kept.lock() {
                kept.push(line.to_string());
                if kept.len() > KEPT_LINES {
                    kept.remove(0);
                }
            }
        }
    }
}
