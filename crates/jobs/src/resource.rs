//! The Cloud ML Engine v1 `Job` resource and its parts, typed, in the API's JSON names.
//!
//! `trainingInput` and `predictionInput` are kept as the JSON the client sent: the API echoes
//! them back as given (gcloud's int64 strings included), and what they mean is decided by
//! `job-config` (training) when the job is validated and run, so a second typed copy of every
//! field here would only drift from it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use hypertune::{FinalMetric, TrialOutput, TrialState, TuningOutput};

/// A job's lifecycle: QUEUED → PREPARING → RUNNING → SUCCEEDED | FAILED; `:cancel` moves a live
/// job to CANCELLING and then CANCELLED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    Queued,
    Preparing,
    Running,
    Succeeded,
    Failed,
    Cancelling,
    Cancelled,
}

impl JobState {
    /// The API's name (`RUNNING`).
    pub fn name(self) -> &'static str {
        match self {
            JobState::Queued => "QUEUED",
            JobState::Preparing => "PREPARING",
            JobState::Running => "RUNNING",
            JobState::Succeeded => "SUCCEEDED",
            JobState::Failed => "FAILED",
            JobState::Cancelling => "CANCELLING",
            JobState::Cancelled => "CANCELLED",
        }
    }

    /// SUCCEEDED, FAILED or CANCELLED: nothing will change any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// `Job`, as `jobs.get` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub job_id: String,
    pub create_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    pub state: JobState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Changes with every update (base64, as the API's etags are).
    pub etag: String,
    /// Jobs ahead of this one in the queue (int64 as a JSON string); only while QUEUED.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "job_config::int64_string_option"
    )]
    pub job_position: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_input: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_output: Option<TrainingOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction_input: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction_output: Option<PredictionOutput>,
}

/// `TrainingOutput`. A tuning job's part (`trials`, `completedTrialCount`,
/// `isHyperparameterTuningJob`, `hyperparameterMetricTag`) is `hypertune`'s [`TuningOutput`]:
/// one definition of the trial shapes, shared with the tuner that fills them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainingOutput {
    /// Machine hours used (one CPU or GPU machine: wall hours).
    #[serde(default)]
    pub consumed_m_l_units: f64,
    /// Set for tuning jobs (absent from the JSON otherwise).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub tuning: Option<TuningOutput>,
}

/// `PredictionOutput`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PredictionOutput {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output_path: String,
    #[serde(with = "job_config::int64_string")]
    pub prediction_count: i64,
    #[serde(with = "job_config::int64_string")]
    pub error_count: i64,
    #[serde(default)]
    pub node_hours: f64,
}

/// What `jobs.create` takes: the client-settable fields of a `Job`. Output-only fields a client
/// may echo back (from `jobs describe`) are accepted and ignored; anything else is refused, as
/// the API refuses unknown names.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewJob {
    pub job_id: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub training_input: Option<Value>,
    pub prediction_input: Option<Value>,
    // Output-only, ignored.
    #[serde(default, rename = "createTime")]
    _create_time: Option<Value>,
    #[serde(default, rename = "startTime")]
    _start_time: Option<Value>,
    #[serde(default, rename = "endTime")]
    _end_time: Option<Value>,
    #[serde(default, rename = "state")]
    _state: Option<Value>,
    #[serde(default, rename = "errorMessage")]
    _error_message: Option<Value>,
    #[serde(default, rename = "etag")]
    _etag: Option<Value>,
    #[serde(default, rename = "jobPosition")]
    _job_position: Option<Value>,
    #[serde(default, rename = "trainingOutput")]
    _training_output: Option<Value>,
    #[serde(default, rename = "predictionOutput")]
    _prediction_output: Option<Value>,
}

impl NewJob {
    /// A training job (what a test or a client builds without going through JSON).
    pub fn training(job_id: &str, training_input: Value) -> NewJob {
        NewJob {
            job_id: Some(job_id.to_string()),
            training_input: Some(training_input),
            ..NewJob::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_json_uses_the_api_names_and_int64_strings() {
        let job = Job {
            job_id: "j1".into(),
            create_time: "2026-01-01T00:00:00Z".into(),
            start_time: None,
            end_time: None,
            state: JobState::Queued,
            error_message: None,
            labels: BTreeMap::new(),
            etag: "AQ==".into(),
            job_position: Some(2),
            training_input: Some(serde_json::json!({"workerCount": "0"})),
            training_output: Some(TrainingOutput {
                consumed_m_l_units: 0.0,
                tuning: Some(TuningOutput {
                    completed_trial_count: 4,
                    trials: vec![TrialOutput {
                        trial_id: "2".into(),
                        hyperparameters: BTreeMap::from([("dropout".into(), "0.25".into())]),
                        final_metric: Some(FinalMetric {
                            training_step: 40,
                            objective_value: 0.875,
                        }),
                        state: TrialState::Succeeded,
                        start_time: Some("2026-01-01T00:00:01.000000Z".into()),
                        end_time: Some("2026-01-01T00:00:09.000000Z".into()),
                        is_trial_stopped_early: false,
                        error: None,
                    }],
                    is_hyperparameter_tuning_job: true,
                    hyperparameter_metric_tag: "accuracy".into(),
                }),
            }),
            prediction_input: None,
            prediction_output: None,
        };
        let text = serde_json::to_value(&job).unwrap();
        assert_eq!(text["jobPosition"], "2");
        assert_eq!(text["state"], "QUEUED");
        assert_eq!(text["trainingInput"]["workerCount"], "0");
        assert_eq!(text["trainingOutput"]["completedTrialCount"], "4");
        assert_eq!(text["trainingOutput"]["consumedMLUnits"], 0.0);
        assert_eq!(text["trainingOutput"]["isHyperparameterTuningJob"], true);
        assert_eq!(
            text["trainingOutput"]["hyperparameterMetricTag"],
            "accuracy"
        );
        let trial = &text["trainingOutput"]["trials"][0];
        assert_eq!(trial["finalMetric"]["trainingStep"], "40");
        assert_eq!(trial["state"], "SUCCEEDED");
        let back: Job = serde_json::from_value(text).unwrap();
        assert_eq!(back, job);
        // A plain training job's output has no tuning fields, and reads back as such.
        let plain = serde_json::json!({"consumedMLUnits": 0.5});
        let output: TrainingOutput = serde_json::from_value(plain.clone()).unwrap();
        assert_eq!(output.tuning, None);
        assert_eq!(serde_json::to_value(&output).unwrap(), plain);
    }

    #[test]
    fn new_job_refuses_unknown_fields_and_ignores_output_only_ones() {
        let ok: NewJob = serde_json::from_str(
            r#"{"jobId": "a", "state": "RUNNING", "trainingInput": {"region": "us-east1"}}"#,
        )
        .unwrap();
        assert_eq!(ok.job_id.as_deref(), Some("a"));
        let error = serde_json::from_str::<NewJob>(r#"{"jobId": "a", "trainingInputs": {}}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field `trainingInputs`"), "{error}");
    }
}
