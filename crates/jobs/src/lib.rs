//! jobs: Cloud ML Engine jobs on this machine — typed `Job` resources, their lifecycle, the
//! queue for the machine's slots, persistence in the server's registry, the runner that starts
//! the job's child processes (our `trainer` for `trainingInput`, once or per hyperparameter-tuning
//! trial; `predictor batch-predict` for `predictionInput`, see [`prediction`]), and every line the
//! job prints.
//!
//! `gcloud ml-engine jobs submit training|prediction …` sends a `Job`; `predictor serve` hands it to
//! [`Jobs::create`] and answers with what comes back. The HTTP shapes (routes, error envelopes,
//! logging filters) stay in the `serving` crate; this crate speaks in typed resources
//! ([`Job`], [`NewJob`], [`LogQuery`]) and one error type ([`JobsError`]).
//!
//! Why it is shaped this way:
//! - **The trainer runs as a child process**, exactly as `trainer --config FILE` runs by hand:
//!   the job's `trainingInput` (with its `jobDir` and `args`) is written to a config file and the
//!   trainer resolves it itself (`job-config`, the trainer's flag merge), so a job and a manual
//!   run cannot drift apart. A process also gives cancellation for free: SIGTERM makes the
//!   trainer checkpoint and exit 75, SIGKILL follows after a grace period, and a crash of the
//!   trainer can never take the server down.
//! - **The request is validated before it is accepted**: `job-config` parses `trainingInput`
//!   (every bad field named) and refuses workers and parameter servers the same way the trainer
//!   does, and [`prediction`] checks `predictionInput` and looks its model up through the
//!   server's [`ModelResolver`], so a bad job is a 400, not a FAILED job a minute later.
//! - **Persistence follows the model registry**: one JSON document per job and one log file
//!   (JSON lines) in the `--registry` location, local or `gs://`, through `storage`. Every state
//!   change is written before it is published. A job the server was running when it stopped is
//!   FAILED on the next start with the reason; a QUEUED one is queued again.
//! - **Slots** ([`queue`]): one job per GPU and `--max-concurrent-jobs` on the CPU, first come
//!   first served; `jobPosition` is a job's place in that line.
//! - **Tuning jobs** (`trainingInput.hyperparameters`, module `tuning`): `hypertune` decides the
//!   trials; each is a trainer child process started by the same code as a single run, with the
//!   trial's flags, `--job-dir=<jobDir>/<trialId>`, environment and `TF_CONFIG`. A tuning job
//!   holds one slot like any job, and its trials share the machine's cores: `min(maxParallelTrials,
//!   cores)` at once, `cores / that` threads each (the trainer's `RAYON_NUM_THREADS`; training is
//!   bit-identical across thread counts), so a tuning job never oversubscribes the CPU more than a
//!   single job does. `trainingOutput` (hypertune's typed trials) is saved as trials finish.
//! - **Logs** ([`logs`]) keep every line the trainer prints (stdout and stderr) plus the
//!   service's own lines, with timestamps and insert ids ordered the way Cloud Logging pages
//!   them, so `gcloud … stream-logs` works through the logging endpoint override.
//! - Timestamps use `chrono` (RFC 3339 with nanoseconds, parsing the filters gcloud sends)
//!   rather than hand-written date arithmetic.

pub mod logs;
pub mod prediction;
pub mod queue;
pub mod resource;
mod runner;
mod store;
mod tuning;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use job_config::{DeviceKind, JobConfig};
use storage::Location;
use tokio::sync::watch;

pub use logs::{JobLog, LogEntry, LogQuery, Severity, Since};
pub use prediction::{ModelResolver, ModelSource};
pub use resource::{
    FinalMetric, Job, JobState, NewJob, PredictionOutput, TrainingOutput, TrialOutput, TrialState,
    TuningOutput,
};

use logs::{SERVICE_TASK, now_rfc3339};
use queue::{JobQueue, SlotKind};
use runner::Work;
use store::JobStore;

/// Why a jobs call failed; the server maps each kind to the API's status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobsError {
    /// The request is wrong (a field is named in the message): 400 INVALID_ARGUMENT.
    #[error("{0}")]
    InvalidArgument(String),
    /// 404 NOT_FOUND.
    #[error("{0}")]
    NotFound(String),
    /// 409 ALREADY_EXISTS.
    #[error("{0}")]
    AlreadyExists(String),
    /// The job is not in a state that allows the call: 400 FAILED_PRECONDITION.
    #[error("{0}")]
    FailedPrecondition(String),
    /// What this server does not do: 501 UNIMPLEMENTED.
    #[error("{0}")]
    Unimplemented(String),
    /// The registry store failed: 500.
    #[error("job store {0}")]
    Storage(String),
}

/// How the server runs jobs.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// The registry root; jobs live under `<registry>/jobs/`.
    pub registry: Location,
    /// The trainer binary; `None`: `trainer` beside the running executable.
    pub trainer: Option<PathBuf>,
    /// Pass `--allow-cpu` to the trainer: a GPU master type trains on the CPU when no GPU can.
    pub allow_cpu: bool,
    /// Jobs running on the CPU at once.
    pub max_concurrent_cpu_jobs: usize,
    /// GPU slots; `None`: one when this build and machine can use CUDA, else none.
    pub gpu_slots: Option<usize>,
    /// How long a cancelled trainer has between SIGTERM and SIGKILL.
    pub cancel_grace: Duration,
    /// How often a running job's log is saved to the store.
    pub log_flush_interval: Duration,
    /// Environment variables the trainer must not inherit (the server's own tuning).
    pub env_remove: Vec<String>,
    /// The program prediction jobs run as `PROGRAM batch-predict …`; `None`: this executable
    /// (the server is `predictor`).
    pub batch_predictor: Option<PathBuf>,
    /// Looks up `modelName` / `versionName` of prediction jobs (and checks their `uri`); `None`:
    /// only `uri` is accepted.
    pub model_resolver: Option<Arc<dyn ModelResolver>>,
}

impl JobsConfig {
    pub fn new(registry: Location) -> JobsConfig {
        JobsConfig {
            registry,
            trainer: None,
            allow_cpu: false,
            max_concurrent_cpu_jobs: 1,
            gpu_slots: None,
            cancel_grace: Duration::from_secs(30),
            log_flush_interval: Duration::from_secs(5),
            env_remove: Vec::new(),
            batch_predictor: None,
            model_resolver: None,
        }
    }
}

/// Why a running job is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Running,
    Cancel,
    ServerStopping,
}

struct Entry {
    job: Job,
    /// `None` until read from the store (jobs of an earlier run are read on first query).
    log: Option<JobLog>,
    log_dirty: bool,
    /// Generation counter behind the etag.
    generation: u64,
    stop: Option<watch::Sender<Stop>>,
}

/// The jobs of one server.
pub struct Jobs {
    config: JobsConfig,
    store: JobStore,
    queue: Arc<JobQueue>,
    entries: Mutex<BTreeMap<String, Entry>>,
    /// Serialises store writes so that a job's document is never overwritten by an older one.
    write_lock: tokio::sync::Mutex<()>,
    /// Per-job config files handed to the trainer.
    work_dir: tempfile::TempDir,
    gpu_slots: usize,
}

/// `[A-Za-z][A-Za-z0-9_]*`, at most 128: the API's job id rule (ids are also file names).
pub fn valid_job_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && id.len() <= 128
}

fn etag(generation: u64) -> String {
    base64::engine::general_purpose::STANDARD.encode(generation.to_be_bytes())
}

impl Jobs {
    /// Opens the jobs in the registry: jobs that were running when the server stopped become
    /// FAILED (CANCELLING ones CANCELLED), QUEUED ones are queued again.
    pub async fn open(config: JobsConfig) -> Result<Arc<Jobs>, JobsError> {
        let store = JobStore::new(&config.registry);
        let stored = store.read_all().await?;
        let gpu_slots = config
            .gpu_slots
            .unwrap_or_else(|| usize::from(compute_device::probe_cuda("predictor").is_ok()));
        let work_dir = tempfile::Builder::new()
            .prefix("predictor-jobs-")
            .tempdir()
            .map_err(|e| JobsError::Storage(format!("cannot make a temporary folder: {e}")))?;
        let jobs = Arc::new(Jobs {
            queue: JobQueue::new(config.max_concurrent_cpu_jobs, gpu_slots),
            config,
            store,
            entries: Mutex::new(BTreeMap::new()),
            write_lock: tokio::sync::Mutex::new(()),
            work_dir,
            gpu_slots,
        });
        for job in stored {
            let id = job.job_id.clone();
            let state = job.state;
            jobs.lock_entries().insert(
                id.clone(),
                Entry {
                    job,
                    log: None,
                    log_dirty: false,
                    generation: 1,
                    stop: None,
                },
            );
            match state {
                JobState::Preparing | JobState::Running | JobState::Cancelling => {
                    let (to, message) = if state == JobState::Cancelling {
                        (JobState::Cancelled, None)
                    } else {
                        (
                            JobState::Failed,
                            Some(format!(
                                "The server running this job stopped while the job was {}; the \
                                 trainer was stopped with it. Submit the job again to rerun it \
                                 (with the same jobDir it continues from its last checkpoint).",
                                state.name()
                            )),
                        )
                    };
                    jobs.load_log(&id).await?;
                    jobs.service_line(
                        &id,
                        Severity::Error,
                        &format!(
                            "The server restarted; the job, {} when it stopped, is now {}.",
                            state.name(),
                            to.name()
                        ),
                    );
                    jobs.finish(&id, to, message).await;
                }
                JobState::Queued => {
                    let job = jobs.get(&id)?;
                    let work = match jobs.work(
                        &id,
                        job.training_input.as_ref(),
                        job.prediction_input.as_ref(),
                    ) {
                        Ok(work) => work,
                        Err(error) => {
                            jobs.finish(&id, JobState::Failed, Some(error.to_string()))
                                .await;
                            continue;
                        }
                    };
                    jobs.load_log(&id).await?;
                    jobs.service_line(
                        &id,
                        Severity::Info,
                        "The server restarted; the job is queued again.",
                    );
                    jobs.start(id, work);
                }
                _ => {}
            }
        }
        Ok(jobs)
    }

    fn lock_entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn not_found(id: &str) -> JobsError {
        JobsError::NotFound(format!("Job {id:?} not found"))
    }

    /// Validates and queues a new job; returns it as stored (QUEUED).
    pub async fn create(self: &Arc<Self>, new: NewJob) -> Result<Job, JobsError> {
        let id = new.job_id.filter(|id| !id.is_empty()).ok_or_else(|| {
            JobsError::InvalidArgument("Field: job.job_id Error: A job id is required".into())
        })?;
        if !valid_job_id(&id) {
            return Err(JobsError::InvalidArgument(format!(
                "Field: job.job_id Error: {id:?} is not a valid job id: it must start with a \
                 letter and contain only letters, digits and underscores (at most 128)"
            )));
        }
        let work = self.work(
            &id,
            new.training_input.as_ref(),
            new.prediction_input.as_ref(),
        )?;
        let job = Job {
            job_id: id.clone(),
            create_time: now_rfc3339(),
            start_time: None,
            end_time: None,
            state: JobState::Queued,
            error_message: None,
            labels: new.labels,
            etag: etag(1),
            job_position: None,
            training_input: new.training_input,
            training_output: None,
            prediction_input: new.prediction_input,
            prediction_output: None,
        };
        {
            let _write = self.write_lock.lock().await;
            if self.lock_entries().contains_key(&id) {
                return Err(JobsError::AlreadyExists(
                    "Field: job.job_id Error: A job with this id already exists.".into(),
                ));
            }
            self.store.write_job(&job).await?;
            self.lock_entries().insert(
                id.clone(),
                Entry {
                    job: job.clone(),
                    log: Some(JobLog::default()),
                    log_dirty: true,
                    generation: 1,
                    stop: None,
                },
            );
        }
        self.service_line(&id, Severity::Info, "Validating job requirements...");
        self.service_line(
            &id,
            Severity::Info,
            "Job creation request has been successfully validated.",
        );
        match &work {
            Work::Training(config) => self.note_user_code(&id, config),
            Work::Prediction(spec) => spec.note_ignored(self, &id),
        }
        self.service_line(&id, Severity::Info, &format!("Job {id} is queued."));
        self.start(id, work);
        Ok(job)
    }

    /// What a job with these inputs runs, checked (every bad field named).
    fn work(
        &self,
        id: &str,
        training_input: Option<&serde_json::Value>,
        prediction_input: Option<&serde_json::Value>,
    ) -> Result<Work, JobsError> {
        match (training_input, prediction_input) {
            (Some(input), None) => Ok(Work::Training(Box::new(training_config(id, Some(input))?))),
            (None, Some(input)) => Ok(Work::Prediction(prediction::validate(
                input,
                self.config.model_resolver.as_deref(),
            )?)),
            (Some(_), Some(_)) => Err(JobsError::InvalidArgument(
                "Field: job Error: a job has either trainingInput or predictionInput, not both"
                    .into(),
            )),
            (None, None) => Err(JobsError::InvalidArgument(
                "Field: job Error: a job needs trainingInput or predictionInput".into(),
            )),
        }
    }

    /// Says that the job's own code (Python package, container) is recorded but not run.
    fn note_user_code(&self, id: &str, config: &JobConfig) {
        let input = &config.training_input;
        let mut named = Vec::new();
        if !input.package_uris.is_empty() {
            named.push(format!("packageUris {}", input.package_uris.join(", ")));
        }
        if let Some(module) = &input.python_module {
            named.push(format!("pythonModule {module}"));
        }
        if let Some(image) = input
            .master_config
            .as_ref()
            .and_then(|c| c.image_uri.as_ref())
        {
            named.push(format!("masterConfig.imageUri {image}"));
        }
        if !named.is_empty() {
            self.service_line(
                id,
                Severity::Warning,
                &format!(
                    "The job names {}: recorded, but this server does not run Python packages or \
                     containers. Its built-in trainer (the Keras MNIST tutorial network) runs \
                     instead, with the job's args and jobDir.",
                    named.join(", ")
                ),
            );
        }
    }

    fn start(self: &Arc<Self>, id: String, work: Work) {
        let (stop_tx, stop_rx) = watch::channel(Stop::Running);
        if let Some(entry) = self.lock_entries().get_mut(&id) {
            entry.stop = Some(stop_tx);
        }
        let jobs = self.clone();
        tokio::spawn(async move { runner::run(jobs, id, work, stop_rx).await });
    }

    /// The job as the API shows it (`jobPosition` filled while QUEUED).
    pub fn get(&self, id: &str) -> Result<Job, JobsError> {
        let mut job = self
            .lock_entries()
            .get(id)
            .map(|e| e.job.clone())
            .ok_or_else(|| Self::not_found(id))?;
        if job.state == JobState::Queued {
            job.job_position = Some(self.queue.position(id).unwrap_or(0));
        }
        Ok(job)
    }

    /// Every job, newest first.
    pub fn list(&self) -> Vec<Job> {
        let ids: Vec<String> = self.lock_entries().keys().cloned().collect();
        let mut jobs: Vec<Job> = ids.iter().filter_map(|id| self.get(id).ok()).collect();
        jobs.sort_by(|a, b| {
            b.create_time
                .cmp(&a.create_time)
                .then_with(|| a.job_id.cmp(&b.job_id))
        });
        jobs
    }

    /// `:cancel`: a QUEUED, PREPARING or RUNNING job goes to CANCELLING and its trainer gets
    /// SIGTERM (SIGKILL after the grace period); a finished job is refused.
    pub async fn cancel(&self, id: &str) -> Result<(), JobsError> {
        let state = self.get(id)?.state;
        match state {
            JobState::Cancelling => return Ok(()),
            s if s.is_final() => {
                return Err(JobsError::FailedPrecondition(format!(
                    "Cannot cancel job {id:?}: it has already finished ({})",
                    s.name()
                )));
            }
            _ => {}
        }
        self.update(id, |job| {
            if !job.state.is_final() {
                job.state = JobState::Cancelling;
            }
        })
        .await;
        self.service_line(id, Severity::Info, "Job cancel requested.");
        if let Some(stop) = self.lock_entries().get(id).and_then(|e| e.stop.as_ref()) {
            let _ = stop.send(Stop::Cancel);
        }
        Ok(())
    }

    /// The job's log entries that match `query`, in order.
    pub async fn logs(&self, query: &LogQuery) -> Result<Vec<LogEntry>, JobsError> {
        self.get(&query.job_id)?;
        self.load_log(&query.job_id).await?;
        let entries = self.lock_entries();
        Ok(entries
            .get(&query.job_id)
            .and_then(|e| e.log.as_ref())
            .map(|log| {
                log.entries
                    .iter()
                    .filter(|e| query.matches(e))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Stops every running trainer (SIGTERM: they write a checkpoint) and records their jobs
    /// FAILED with the reason; returns once they ended or the cancel grace ran out.
    pub async fn shutdown(&self) {
        let live: Vec<String> = {
            let entries = self.lock_entries();
            for entry in entries.values() {
                if let Some(stop) = &entry.stop
                    && !entry.job.state.is_final()
                {
                    let _ = stop.send(Stop::ServerStopping);
                }
            }
            entries
                .iter()
                .filter(|(_, e)| !e.job.state.is_final())
                .map(|(id, _)| id.clone())
                .collect()
        };
        let deadline =
            tokio::time::Instant::now() + self.config.cancel_grace + Duration::from_secs(5);
        while tokio::time::Instant::now() < deadline
            && live
                .iter()
                .any(|id| self.get(id).is_ok_and(|j| !j.state.is_final()))
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn load_log(&self, id: &str) -> Result<(), JobsError> {
        let loaded = self.lock_entries().get(id).is_some_and(|e| e.log.is_some());
        if loaded {
            return Ok(());
        }
        let log = self.store.read_log(id).await?;
        if let Some(entry) = self.lock_entries().get_mut(id)
            && entry.log.is_none()
        {
            entry.log = Some(log);
        }
        Ok(())
    }

    /// Appends a line to a job's log.
    fn log_line(
        &self,
        id: &str,
        severity: Severity,
        task: &str,
        trial: Option<&str>,
        message: &str,
    ) {
        if let Some(entry) = self.lock_entries().get_mut(id) {
            entry
                .log
                .get_or_insert_with(JobLog::default)
                .push(severity, task, trial, message);
            entry.log_dirty = true;
        }
    }

    fn service_line(&self, id: &str, severity: Severity, message: &str) {
        self.log_line(id, severity, SERVICE_TASK, None, message);
    }

    /// Saves the job's log if it changed.
    async fn flush_log(&self, id: &str) {
        let snapshot = {
            let mut entries = self.lock_entries();
            match entries.get_mut(id) {
                Some(entry) if entry.log_dirty => {
                    entry.log_dirty = false;
                    entry.log.clone()
                }
                _ => None,
            }
        };
        if let Some(log) = snapshot
            && let Err(error) = self.store.write_log(id, &log).await
        {
            tracing::error!(job = id, %error, "cannot save the job log");
            if let Some(entry) = self.lock_entries().get_mut(id) {
                entry.log_dirty = true;
            }
        }
    }

    /// Changes a job and saves it; the store is written in the order the changes were made.
    async fn update(&self, id: &str, change: impl FnOnce(&mut Job)) -> Option<Job> {
        let _write = self.write_lock.lock().await;
        let snapshot = {
            let mut entries = self.lock_entries();
            let entry = entries.get_mut(id)?;
            change(&mut entry.job);
            entry.generation += 1;
            entry.job.etag = etag(entry.generation);
            entry.job.clone()
        };
        if let Err(error) = self.store.write_job(&snapshot).await {
            tracing::error!(job = id, %error, "cannot save the job");
        }
        Some(snapshot)
    }

    /// Moves a job on, unless it is being cancelled or already finished.
    async fn advance(&self, id: &str, to: JobState) -> bool {
        let job = self
            .update(id, |job| {
                if job.state.is_final() || job.state == JobState::Cancelling {
                    return;
                }
                job.state = to;
                if to == JobState::Preparing {
                    job.start_time = Some(now_rfc3339());
                }
            })
            .await;
        job.is_some_and(|j| j.state == to)
    }

    /// Records how a job ended: its last service line, the log saved, then the final state.
    async fn finish(&self, id: &str, state: JobState, error: Option<String>) {
        let closing = match state {
            JobState::Succeeded => "Job completed successfully.",
            JobState::Cancelled => "Job cancelled.",
            _ => "Job failed.",
        };
        if let Some(message) = &error {
            self.service_line(id, Severity::Error, message);
        }
        self.service_line(
            id,
            if state == JobState::Failed {
                Severity::Error
            } else {
                Severity::Info
            },
            closing,
        );
        self.flush_log(id).await;
        self.update(id, |job| {
            let end = now_rfc3339();
            let hours = match (&job.start_time, &end) {
                (Some(start), end) => match (logs::parse_nanos(start), logs::parse_nanos(end)) {
                    (Some(s), Some(e)) => (e - s).max(0) as f64 / 3.6e12,
                    _ => 0.0,
                },
                _ => 0.0,
            };
            job.state = state;
            job.error_message = error;
            job.end_time = Some(end.clone());
            job.job_position = None;
            if job.prediction_input.is_some() {
                // One machine: node hours are wall hours (to the second).
                let output = job
                    .prediction_output
                    .get_or_insert_with(PredictionOutput::default);
                output.node_hours = (hours * 3600.0).round() / 3600.0;
            } else {
                let output = job
                    .training_output
                    .get_or_insert_with(TrainingOutput::default);
                output.consumed_m_l_units = (hours * 100.0).round() / 100.0;
                // Trials a restart (or a crash of the tuning loop) left open end with the job,
                // instead of showing RUNNING forever in `jobs describe`.
                let trial_end = if state == JobState::Cancelled {
                    TrialState::Cancelled
                } else {
                    TrialState::Failed
                };
                for trial in output.tuning.iter_mut().flat_map(|t| t.trials.iter_mut()) {
                    if matches!(trial.state, TrialState::Running | TrialState::Queued) {
                        trial.state = trial_end;
                        trial.end_time = Some(end.clone());
                    }
                }
            }
        })
        .await;
        if let Some(entry) = self.lock_entries().get_mut(id) {
            entry.stop = None;
        }
        tracing::info!(job = id, state = state.name(), "job finished");
    }

    fn slot_kind(&self, config: &JobConfig) -> SlotKind {
        if config.resolved.master.device == DeviceKind::Gpu && self.gpu_slots > 0 {
            SlotKind::Gpu
        } else {
            SlotKind::Cpu
        }
    }

    /// The trainer binary: `--trainer-path`, else `trainer` beside this executable.
    fn trainer_path(&self) -> Result<PathBuf, String> {
        let path = match &self.config.trainer {
            Some(path) => path.clone(),
            None => std::env::current_exe()
                .map_err(|e| {
                    format!("cannot find this executable to look for the trainer beside it: {e}")
                })?
                .with_file_name(format!("trainer{}", std::env::consts::EXE_SUFFIX)),
        };
        if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "cannot find the trainer: {} does not exist (start the server with \
                 --trainer-path, or put the trainer binary beside it)",
                path.display()
            ))
        }
    }
}

/// Validates a `trainingInput` as `trainer --config` would read it, and refuses what one machine
/// cannot run, naming the field.
fn training_config(id: &str, input: Option<&serde_json::Value>) -> Result<JobConfig, JobsError> {
    let input = input.ok_or_else(|| {
        JobsError::InvalidArgument("Field: job.training_input Error: missing".into())
    })?;
    if !input.is_object() {
        return Err(JobsError::InvalidArgument(
            "Field: job.training_input Error: must be an object".into(),
        ));
    }
    let source = format!("job {id}");
    let document = serde_json::json!({ "trainingInput": input }).to_string();
    let config = JobConfig::parse(&document, &source)
        .map_err(|e| JobsError::InvalidArgument(e.to_string()))?;
    if let Some(refusal) = config.resolved.single_machine_refusal(&source) {
        return Err(JobsError::InvalidArgument(refusal));
    }
    if config.resolved.job_dir.is_none() {
        return Err(JobsError::InvalidArgument(format!(
            "{source}: trainingInput.jobDir: required: the trainer writes the model to \
             <jobDir>/model (gcloud: --job-dir)"
        )));
    }
    Ok(config)
}
