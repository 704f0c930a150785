//! Jobs in the registry store: `<registry>/jobs/<jobId>.json` (the `Job`) and
//! `<registry>/jobs/<jobId>.log` (its log, one JSON entry per line), local or `gs://`.

use bytes::Bytes;
use storage::Location;

use crate::JobsError;
use crate::logs::JobLog;
use crate::resource::Job;

pub struct JobStore {
    dir: Location,
}

impl JobStore {
    pub fn new(registry_root: &Location) -> JobStore {
        JobStore {
            dir: registry_root.join("jobs"),
        }
    }

    fn job_location(&self, job_id: &str) -> Location {
        self.dir.join(&format!("{job_id}.json"))
    }

    fn log_location(&self, job_id: &str) -> Location {
        self.dir.join(&format!("{job_id}.log"))
    }

    fn storage_error(location: &Location, reason: impl std::fmt::Display) -> JobsError {
        JobsError::Storage(format!("{location}: {reason}"))
    }

    /// Every job in the store. A record that cannot be read is an error naming its file: the
    /// server refuses to start rather than forget a job.
    pub async fn read_all(&self) -> Result<Vec<Job>, JobsError> {
        let keys = self
            .dir
            .list()
            .await
            .map_err(|e| Self::storage_error(&self.dir, e))?;
        let mut jobs = Vec::new();
        for key in keys {
            let Some(job_id) = key.strip_suffix(".json") else {
                continue;
            };
            if !crate::valid_job_id(job_id) {
                continue;
            }
            let location = self.job_location(job_id);
            let bytes = location
                .read()
                .await
                .map_err(|e| Self::storage_error(&location, e))?;
            let job: Job = serde_json::from_slice(&bytes)
                .map_err(|e| Self::storage_error(&location, format!("not a job record: {e}")))?;
            if job.job_id != job_id {
                return Err(Self::storage_error(
                    &location,
                    format!("the record names job {:?}", job.job_id),
                ));
            }
            jobs.push(job);
        }
        Ok(jobs)
    }

    pub async fn write_job(&self, job: &Job) -> Result<(), JobsError> {
        let location = self.job_location(&job.job_id);
        let text = serde_json::to_vec_pretty(job).map_err(|e| Self::storage_error(&location, e))?;
        location
            .write(Bytes::from(text))
            .await
            .map_err(|e| Self::storage_error(&location, format!("cannot save the job: {e}")))
    }

    pub async fn write_log(&self, job_id: &str, log: &JobLog) -> Result<(), JobsError> {
        let location = self.log_location(job_id);
        location
            .write(Bytes::from(log.to_json_lines()))
            .await
            .map_err(|e| Self::storage_error(&location, format!("cannot save the job log: {e}")))
    }

    /// The job's saved log; empty when none was saved yet.
    pub async fn read_log(&self, job_id: &str) -> Result<JobLog, JobsError> {
        let location = self.log_location(job_id);
        match location.read().await {
            Ok(bytes) => {
                JobLog::from_json_lines(&bytes).map_err(|e| Self::storage_error(&location, e))
            }
            Err(e) if e.is_not_found() => Ok(JobLog::default()),
            Err(e) => Err(Self::storage_error(&location, e)),
        }
    }
}
