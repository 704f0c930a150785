//! The HTTP side of Cloud ML Engine jobs: `projects.jobs.create|get|list|cancel` under
//! `/v1/projects/{project}/jobs…`, and Cloud Logging's `POST /v2/entries:list`, which gcloud's
//! `jobs stream-logs` (and `submit training --stream-logs`) read job logs from through the
//! `api_endpoint_overrides/logging` override. The jobs themselves live in the `jobs` crate; this
//! module only turns requests into its typed calls and its answers into the APIs' JSON, and
//! gives the crate [`RegistryModels`] to look prediction jobs' models up in the registry.

use std::sync::Arc;

use axum::extract::Request;
use jobs::{JobsError, LogEntry, LogQuery, NewJob, Since};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::lifecycle::ModelLifecycle;
use crate::server::AppState;
use crate::status::{ApiError, Code};

/// Prediction jobs' models, looked up the way the models API sees them: `modelName` /
/// `versionName` in the registry (the version's `deploymentUri`; a model's default version when
/// none is named), `uri` checked against `--allow-origin` like a version's origin.
pub(crate) struct RegistryModels {
    pub models: Arc<ModelLifecycle>,
    pub project: String,
}

impl std::fmt::Debug for RegistryModels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryModels")
            .field("project", &self.project)
            .finish_non_exhaustive()
    }
}

impl jobs::ModelResolver for RegistryModels {
    fn model_dir(&self, source: &jobs::ModelSource) -> Result<String, String> {
        let (project, model, version) = match source {
            jobs::ModelSource::Uri(uri) => {
                return self
                    .models
                    .check_origin(uri)
                    .map(|location| location.url())
                    .map_err(|e| e.message);
            }
            jobs::ModelSource::Registry {
                project,
                model,
                version,
            } => (project, model, version),
        };
        if *project != self.project {
            return Err(format!(
                "project {project:?} is not this server's project ({:?})",
                self.project
            ));
        }
        let Some(record) = self.models.registry.get(model) else {
            let on_command_line = self.models.table.with(|models| models.contains_key(model));
            return Err(if on_command_line {
                format!(
                    "model {model:?} is served from the command line (--model or \
                     --model-base-path), not the registry; give its SavedModel directory as \
                     uri (gcloud: --model-dir)"
                )
            } else {
                format!("model {model:?} not found")
            });
        };
        let version = match version.as_deref().or(record.default_version.as_deref()) {
            Some(version) => version,
            None => {
                return Err(format!(
                    "model {model:?} has no default version; name one (gcloud: --version)"
                ));
            }
        };
        record
            .versions
            .get(version)
            .map(|v| v.deployment_uri.clone())
            .ok_or_else(|| format!("version {version:?} of model {model:?} not found"))
    }
}

/// The API's default and largest `pageSize` for `jobs.list`.
const DEFAULT_JOBS_PAGE: usize = 20;
const MAX_JOBS_PAGE: usize = 100;
/// Cloud Logging's default and largest `pageSize`.
const MAX_LOG_PAGE: usize = 1000;

fn api_error(error: JobsError) -> ApiError {
    let code = match &error {
        JobsError::InvalidArgument(_) => Code::InvalidArgument,
        JobsError::NotFound(_) => Code::NotFound,
        JobsError::AlreadyExists(_) => Code::AlreadyExists,
        JobsError::FailedPrecondition(_) => Code::FailedPrecondition,
        JobsError::Unimplemented(_) => Code::Unimplemented,
        _ => Code::Internal,
    };
    ApiError::new(code, error.to_string())
}

fn job_json(job: &jobs::Job) -> Result<Value, ApiError> {
    serde_json::to_value(job).map_err(|e| ApiError::internal(format!("cannot encode the job: {e}")))
}

pub(crate) async fn create(state: &Arc<AppState>, request: Request) -> Result<Value, ApiError> {
    let body = crate::http::read_body(state, request).await?;
    let new: NewJob = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("Invalid JSON payload received. {e}")))?;
    let job = state.jobs.create(new).await.map_err(api_error)?;
    job_json(&job)
}

pub(crate) fn get(state: &AppState, job_id: &str) -> Result<Value, ApiError> {
    job_json(&state.jobs.get(job_id).map_err(api_error)?)
}

pub(crate) async fn cancel(state: &AppState, job_id: &str) -> Result<Value, ApiError> {
    state.jobs.cancel(job_id).await.map_err(api_error)?;
    Ok(json!({}))
}

/// `?pageSize=N&pageToken=T`: tokens are offsets into the newest-first list.
pub(crate) fn list(state: &AppState, query: &str) -> Result<Value, ApiError> {
    let mut page_size = DEFAULT_JOBS_PAGE;
    let mut offset = 0usize;
    for (key, value) in query_pairs(query) {
        match key.as_str() {
            "pageSize" => {
                page_size = value.parse::<usize>().map_err(|_| {
                    ApiError::invalid(format!("pageSize {value:?} is not a number"))
                })?;
                if page_size == 0 {
                    page_size = DEFAULT_JOBS_PAGE;
                }
                page_size = page_size.min(MAX_JOBS_PAGE);
            }
            "pageToken" if !value.is_empty() => {
                offset = value
                    .parse()
                    .map_err(|_| ApiError::invalid(format!("pageToken {value:?} is not valid")))?;
            }
            "filter" if !value.is_empty() => {
                return Err(ApiError::new(
                    Code::Unimplemented,
                    "filter is not supported by this server; list all jobs and filter them on \
                     the client (gcloud does this for --filter)",
                ));
            }
            _ => {}
        }
    }
    let all = state.jobs.list();
    let page: Vec<Value> = all
        .iter()
        .skip(offset)
        .take(page_size)
        .map(job_json)
        .collect::<Result<_, _>>()?;
    let mut answer = json!({});
    if !page.is_empty() {
        answer["jobs"] = json!(page);
    }
    if offset + page_size < all.len() {
        answer["nextPageToken"] = json!((offset + page_size).to_string());
    }
    Ok(answer)
}

fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |text: &str| {
            crate::http::percent_decode(&text.replace('+', " ")).unwrap_or_else(|| text.to_string())
        };
        (decode(key), decode(value))
    })
}

/// Cloud Logging's `entries.list` request, the fields gcloud sends.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListEntries {
    #[serde(default)]
    filter: String,
    #[serde(default)]
    order_by: Option<String>,
    #[serde(default)]
    page_size: Option<usize>,
    #[serde(default)]
    page_token: Option<String>,
}

/// `POST /v2/entries:list`: a job's log entries, as Cloud Logging answers them.
pub(crate) async fn list_entries(
    state: &Arc<AppState>,
    request: Request,
) -> Result<Value, ApiError> {
    let body = crate::http::read_body(state, request).await?;
    let request: ListEntries = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("Invalid JSON payload received. {e}")))?;
    if let Some(order) = &request.order_by
        && !order.trim().eq_ignore_ascii_case("timestamp asc")
    {
        return Err(ApiError::invalid(format!(
            "orderBy {order:?} is not supported: this server returns entries in \"timestamp asc\" order"
        )));
    }
    let query = parse_filter(&request.filter)?;
    let entries = match state.jobs.logs(&query).await {
        Ok(entries) => entries,
        // Cloud Logging answers an empty list for a resource it has no entries of.
        Err(JobsError::NotFound(_)) => Vec::new(),
        Err(error) => return Err(api_error(error)),
    };
    let page_size = request
        .page_size
        .filter(|n| *n > 0)
        .unwrap_or(MAX_LOG_PAGE)
        .min(MAX_LOG_PAGE);
    let offset: usize = match request.page_token.as_deref().filter(|t| !t.is_empty()) {
        Some(token) => token
            .parse()
            .map_err(|_| ApiError::invalid(format!("pageToken {token:?} is not valid")))?,
        None => 0,
    };
    let project = &state.config.project;
    let page: Vec<Value> = entries
        .iter()
        .skip(offset)
        .take(page_size)
        .map(|entry| entry_json(project, &query.job_id, entry))
        .collect();
    let mut answer = json!({});
    if !page.is_empty() {
        answer["entries"] = json!(page);
    }
    if offset + page_size < entries.len() {
        answer["nextPageToken"] = json!((offset + page_size).to_string());
    }
    Ok(answer)
}

fn entry_json(project: &str, job_id: &str, entry: &LogEntry) -> Value {
    let mut labels = json!({ "ml.googleapis.com/task_name": entry.task });
    if let Some(trial) = &entry.trial {
        labels["ml.googleapis.com/trial_id"] = json!(trial);
    }
    let timestamp = entry.timestamp();
    json!({
        "insertId": entry.insert_id(),
        "logName": format!("projects/{project}/logs/{}", entry.task),
        "resource": {
            "type": "ml_job",
            "labels": {"job_id": job_id, "project_id": project, "task_name": entry.task},
        },
        "labels": labels,
        "severity": entry.severity.name(),
        "timestamp": timestamp,
        "receiveTimestamp": timestamp,
        "textPayload": entry.message,
    })
}

/// The quoted value after `key` (`key"value"`), e.g. `resource.labels.job_id="J"`.
fn quoted_after<'a>(filter: &'a str, key: &str) -> Option<&'a str> {
    let start = filter.find(key)? + key.len();
    let rest = filter[start..].strip_prefix('"')?;
    rest.split_once('"').map(|(value, _)| value)
}

fn filter_time(text: &str) -> Result<i64, ApiError> {
    jobs::logs::parse_nanos(text)
        .ok_or_else(|| ApiError::invalid(format!("filter: {text:?} is not an RFC 3339 timestamp")))
}

/// The filters gcloud's log streaming sends (`docs` in `jobs_api.md` §4): the job, optionally
/// its task, and a time window, the lower end either `timestamp>="T"` or "after entry (T, I)".
fn parse_filter(filter: &str) -> Result<LogQuery, ApiError> {
    let job_id = quoted_after(filter, "resource.labels.job_id=").ok_or_else(|| {
        ApiError::invalid(
            "filter: this server keeps job logs only; the filter must name \
             resource.labels.job_id=\"JOB\"",
        )
    })?;
    let task = quoted_after(filter, "resource.labels.task_name=")
        .or_else(|| quoted_after(filter, "labels.task_name="))
        .map(str::to_string);
    let since = if let (Some(at), Some(id)) = (
        quoted_after(filter, "timestamp="),
        quoted_after(filter, "insertId>"),
    ) {
        Some(Since::AfterEntry(filter_time(at)?, id.to_string()))
    } else if let Some(at) = quoted_after(filter, "timestamp>=") {
        Some(Since::AtOrAfter(filter_time(at)?))
    } else if let Some(at) = quoted_after(filter, "timestamp>") {
        Some(Since::After(filter_time(at)?))
    } else {
        None
    };
    let before = quoted_after(filter, "timestamp<")
        .map(filter_time)
        .transpose()?;
    Ok(LogQuery {
        job_id: job_id.to_string(),
        task,
        since,
        before,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gclouds_filters_parse() {
        let first = "(resource.type=\"ml_job\" OR resource.type=\"cloudml_job\") AND \
                     resource.labels.job_id=\"J1\" AND timestamp>=\"1970-01-01T01:00:00.000000000Z\" \
                     AND timestamp<\"2026-12-04T13:00:00.000000Z\"";
        let query = parse_filter(first).unwrap();
        assert_eq!(query.job_id, "J1");
        assert_eq!(query.task, None);
        assert_eq!(query.since, Some(Since::AtOrAfter(3_600_000_000_000)));
        assert_eq!(
            query.before,
            jobs::logs::parse_nanos("2026-12-04T13:00:00Z")
        );
        let next = "resource.labels.job_id=\"J1\" AND (resource.labels.task_name=\"master-replica-0\" \
                    OR labels.task_name=\"master-replica-0\") AND ((timestamp=\"1970-01-01T00:00:01Z\" \
                    AND insertId>\"000000000007\") OR timestamp>\"1970-01-01T00:00:01Z\")";
        let query = parse_filter(next).unwrap();
        assert_eq!(query.task.as_deref(), Some("master-replica-0"));
        assert_eq!(
            query.since,
            Some(Since::AfterEntry(1_000_000_000, "000000000007".into()))
        );
        let error = parse_filter("logName=\"x\"").unwrap_err().message;
        assert!(error.contains("resource.labels.job_id"), "{error}");
        let error = parse_filter("resource.labels.job_id=\"J\" AND timestamp>=\"yesterday\"")
            .unwrap_err()
            .message;
        assert!(
            error.contains("\"yesterday\" is not an RFC 3339 timestamp"),
            "{error}"
        );
    }
}
