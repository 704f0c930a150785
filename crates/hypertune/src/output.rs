//! `trainingOutput` of a tuning job as Cloud ML Engine returns it: the typed trials
//! (`HyperparameterOutput`) and their order.
//!
//! Encoding follows the v1 API's JSON: int64 fields (`trainingStep`, `completedTrialCount`) are
//! strings, `objectiveValue` is a number, times are RFC 3339 UTC. Trials are listed best first:
//! those with a final metric by objective (highest first for MAXIMIZE, lowest for MINIMIZE; ties
//! by trial id), then the rest by trial id, which is how `gcloud ai-platform jobs describe` shows
//! a finished tuning job.

use std::collections::BTreeMap;
use std::time::SystemTime;

use job_config::Goal;
use serde::{Deserialize, Serialize};

/// `HyperparameterOutput.finalMetric`: the last objective value the trial reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FinalMetric {
    #[serde(with = "job_config::int64_string")]
    pub training_step: i64,
    pub objective_value: f64,
}

/// A trial's state, with the Job state names the API uses for trials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TrialState {
    StateUnspecified,
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

/// One entry of `trainingOutput.trials[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrialOutput {
    /// `"1"`, `"2"`, … in the order trials were started.
    pub trial_id: String,
    /// Parameter name -> the value the trial received (as passed on its command line).
    pub hyperparameters: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_metric: Option<FinalMetric>,
    pub state: TrialState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_trial_stopped_early: bool,
    /// Why a trial failed (not an API field: the jobs service puts it in the job log).
    #[serde(skip)]
    pub error: Option<String>,
}

/// The tuning part of `trainingOutput`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TuningOutput {
    #[serde(with = "job_config::int64_string")]
    pub completed_trial_count: i64,
    pub trials: Vec<TrialOutput>,
    pub is_hyperparameter_tuning_job: bool,
    pub hyperparameter_metric_tag: String,
}

/// RFC 3339 UTC with microseconds, as the API writes times (`2026-12-04T13:00:00.123456Z`).
pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_micros(time).to_string()
}

/// Sorts trials best first (see the module docs).
pub fn sort_best_first(trials: &mut [TrialOutput], goal: Goal) {
    trials.sort_by(|a, b| {
        let key = |t: &TrialOutput| {
            t.final_metric
                .as_ref()
                .map(|m| m.objective_value)
                .filter(|v| !v.is_nan())
        };
        let id = |t: &TrialOutput| t.trial_id.parse::<u64>().unwrap_or(u64::MAX);
        match (key(a), key(b)) {
            (Some(x), Some(y)) => {
                let by_value = match goal {
                    Goal::Maximize => y.total_cmp(&x),
                    Goal::Minimize => x.total_cmp(&y),
                };
                by_value.then(id(a).cmp(&id(b)))
            }
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => id(a).cmp(&id(b)),
        }
    });
}

/// Whether `candidate` beats `incumbent` under `goal`.
pub fn better(goal: Goal, candidate: f64, incumbent: f64) -> bool {
    match goal {
        Goal::Maximize => candidate > incumbent,
        Goal::Minimize => candidate < incumbent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(id: &str, value: Option<f64>, state: TrialState) -> TrialOutput {
        TrialOutput {
            trial_id: id.to_string(),
            hyperparameters: BTreeMap::from([("lr".to_string(), "0.1".to_string())]),
            final_metric: value.map(|objective_value| FinalMetric {
                training_step: 8000,
                objective_value,
            }),
            state,
            start_time: None,
            end_time: None,
            is_trial_stopped_early: false,
            error: None,
        }
    }

    #[test]
    fn trials_encode_as_the_api_does() {
        let json = serde_json::to_value(trial("1", Some(0.0276), TrialState::Succeeded)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"trialId": "1", "hyperparameters": {"lr": "0.1"},
                "finalMetric": {"trainingStep": "8000", "objectiveValue": 0.0276},
                "state": "SUCCEEDED"})
        );
        let back: TrialOutput = serde_json::from_value(json).unwrap();
        assert_eq!(back, trial("1", Some(0.0276), TrialState::Succeeded));
    }

    #[test]
    fn best_first_by_goal_then_the_rest_by_id() {
        let mut trials = vec![
            trial("3", None, TrialState::Failed),
            trial("1", Some(0.5), TrialState::Succeeded),
            trial("2", Some(0.9), TrialState::Succeeded),
            trial("4", Some(0.9), TrialState::Succeeded),
        ];
        sort_best_first(&mut trials, Goal::Maximize);
        let ids: Vec<&str> = trials.iter().map(|t| t.trial_id.as_str()).collect();
        assert_eq!(ids, ["2", "4", "1", "3"]);
        sort_best_first(&mut trials, Goal::Minimize);
        let ids: Vec<&str> = trials.iter().map(|t| t.trial_id.as_str()).collect();
        assert_eq!(ids, ["1", "2", "4", "3"]);
    }
}
