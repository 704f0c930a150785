//! HTTP routing and handlers: the Cloud ML Engine API under `/v1/projects/{project}/…`, TF
//! Serving's REST API under `/v1/models/…`, and `/monitoring/prometheus/metrics`.
//!
//! Routing is done by hand on the path, not with the router's patterns, because both APIs
//! put verbs inside the last segment (`models/mnist:predict`), TF Serving matches its paths
//! case-insensitively, and unmatched `/v1/` paths must get TF Serving's exact
//! `Malformed request: <METHOD> <path>` answer. Every request passes one wrapper that logs it,
//! counts it, bounds concurrency (503 + `Retry-After` when full) and applies the timeout.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use predict_json::RequestFormat;
use savedmodel_runtime::DEFAULT_SIGNATURE;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::access;
use crate::body;
use crate::models::{ServedVersion, Slot, Source, VersionSpec};
use crate::registry::{ModelRecord, VersionRecord, VersionState, now_rfc3339, valid_resource_name};
use crate::server::AppState;
use crate::status::{ApiError, Code, Refusal};
use crate::tensor_json;
use crate::tfs_documents::{self, ModelVersionStatus, StatusProto};

pub fn router(state: Arc<AppState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

/// Bodies at least this large are parsed on the blocking pool rather than on the reactor.
const INLINE_PARSE_LIMIT: usize = 64 * 1024;

async fn handle(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    // The body is received first: a request counts as in flight only once it has arrived, so
    // clients that send their bodies slowly cannot hold the in-flight permits (see `body`).
    let response = match body::receive(request, &state.body_limits(), &state.slow_bodies).await {
        Err(refusal) => {
            let mut response = refusal_response(&path, &refusal);
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
        Ok(request) => match state.in_flight.clone().try_acquire_owned() {
            Ok(permit) => {
                let timeout = state.config.request_timeout;
                let response = match tokio::time::timeout(timeout, dispatch(&state, request)).await
                {
                    Ok(response) => response,
                    Err(_) => tfs_error(&ApiError::new(
                        Code::DeadlineExceeded,
                        format!("Request timed out after {} ms", timeout.as_millis()),
                    )),
                };
                drop(permit);
                response
            }
            Err(_) => {
                let mut response = tfs_error(&ApiError::unavailable(
                    "The server is overloaded: too many requests in flight; retry later",
                ));
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
        },
    };
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    state.metrics.observe_request(status, elapsed.as_secs_f64());
    tracing::info!(
        target: "predictor::http",
        %method,
        path,
        status,
        latency_ms = elapsed.as_secs_f64() * 1e3,
        "request"
    );
    response
}

/// A refusal in the error format of the API `path` belongs to: Google's envelope for the Cloud
/// ML Engine resource calls, `{"error": "…"}` for predictions and TF Serving.
fn refusal_response(path: &str, refusal: &Refusal) -> Response {
    let google = starts_with_ignore_case(path, "/v1/projects/")
        && !path
            .rsplit_once(':')
            .is_some_and(|(_, verb)| verb.eq_ignore_ascii_case("predict"));
    let mut response = if google {
        google_error(&refusal.error)
    } else {
        tfs_error(&refusal.error)
    };
    *response.status_mut() = refusal.status;
    response
}

async fn dispatch(state: &Arc<AppState>, mut request: Request) -> Response {
    let path = request.uri().path().to_string();
    // HEAD is GET without the body (hyper leaves the body out of the answer).
    if request.method() == Method::HEAD {
        *request.method_mut() = Method::GET;
    }
    let method = request.method().clone();
    // Vertex's routes are whatever AIP_*_ROUTE says, so they are matched first and exactly.
    let request = match &state.config.vertex {
        Some(vertex) if path == vertex.routes.health || path == vertex.routes.predict => {
            return crate::vertex::handle(state, vertex, request, &path)
                .await
                .unwrap_or_else(|| tfs_error(&ApiError::not_found(format!("Not found: {path}"))));
        }
        _ => request,
    };
    // Cloud Logging's entries.list, where gcloud reads job logs (its `logging` endpoint
    // override points here); every other /v2 path is KServe's.
    if path == "/v2/entries:list" && method == Method::POST {
        return match crate::jobs_api::list_entries(state, request).await {
            Ok(value) => ok_json(&value),
            Err(error) => with_payload_status(google_error(&error), &error),
        };
    }
    if path == "/v2" || path.starts_with("/v2/") {
        return crate::v2::handle(state, request, &path).await;
    }
    if path == "/monitoring/prometheus/metrics" {
        return if method == Method::GET {
            let text = state.metrics.render(&state.table.states());
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
        } else {
            tfs_error(&ApiError::invalid(format!(
                "Malformed request: {method} {path}"
            )))
        };
    }
    if !starts_with_ignore_case(&path, "/v1/") {
        return tfs_error(&ApiError::not_found(format!("Not found: {path}")));
    }
    if method == Method::OPTIONS {
        let mutating = access::preflight_is_mutating(&path, request.headers());
        return match state.access.preflight(request.headers(), mutating) {
            Ok(headers) => {
                let mut response = json_response(StatusCode::OK, String::new());
                response.headers_mut().extend(headers);
                response
            }
            Err(error) if mutating => google_error(&error),
            Err(error) => tfs_error(&error),
        };
    }
    if starts_with_ignore_case(&path, "/v1/projects/") {
        return cmle(state, request, &path).await;
    }
    match parse_tfs_route(&method, &path) {
        Ok(route) => tfs(state, request, route).await,
        Err(error) => tfs_error(&error),
    }
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.len() >= prefix.len()
        && text.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

// ---------------------------------------------------------------------------------------------
// Responses

pub(crate) fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// TF Serving's (and online prediction's) error: `{"error": "<message>"}`.
pub(crate) fn tfs_error(error: &ApiError) -> Response {
    json_response(
        error.code.http_status(),
        tensor_json::error_body(&error.message),
    )
}

/// Google's error envelope, used by the Cloud ML Engine resource methods.
pub(crate) fn google_error(error: &ApiError) -> Response {
    let status = error.code.http_status();
    let body = json!({"error": {"code": status.as_u16(), "message": error.message, "status": error.code.name()}});
    let mut response = json_response(status, pretty(&body));
    if error.code == Code::Unauthenticated {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

fn ok_json(value: &Value) -> Response {
    json_response(StatusCode::OK, pretty(value))
}

/// Reads the body within the size limit: 413 as soon as the declared or received size passes it.
pub(crate) async fn read_body(state: &AppState, request: Request) -> Result<Bytes, ApiError> {
    let limit = state.config.max_body_bytes;
    let too_large = || body::payload_too_large(limit);
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|e| {
            // The body error of a length-limited read is the only way the limit shows here.
            let text = e.to_string();
            if text.contains("length limit") {
                too_large()
            } else {
                ApiError::invalid(format!("cannot read the request body: {text}"))
            }
        })
}

/// Payload-too-large gets its own HTTP status (413), whatever the API.
fn with_payload_status(mut response: Response, error: &ApiError) -> Response {
    if error.code == Code::ResourceExhausted && error.message.starts_with("Request payload size") {
        *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    }
    response
}

// ---------------------------------------------------------------------------------------------
// Prediction (both APIs)

pub(crate) async fn predict(
    state: &Arc<AppState>,
    request: Request,
    served: Result<Arc<ServedVersion>, ApiError>,
) -> Response {
    let result = match served {
        Ok(served) => predict_body(state, request, served).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(error) => with_payload_status(tfs_error(&error), &error),
    }
}

async fn predict_body(
    state: &Arc<AppState>,
    request: Request,
    served: Arc<ServedVersion>,
) -> Result<String, ApiError> {
    // Announce the request to the batcher before reading it, so a batch being formed waits.
    let arrival = served.batcher.as_ref().map(|b| b.arrival());
    let body = read_body(state, request).await?;
    let parsed = if body.len() < INLINE_PARSE_LIMIT {
        tensor_json::parse_predict_request(&body, served.predictor.signatures())?
    } else {
        let served = served.clone();
        tokio::task::spawn_blocking(move || {
            tensor_json::parse_predict_request(&body, served.predictor.signatures())
        })
        .await
        .map_err(|e| ApiError::internal(format!("parsing task failed: {e}")))??
    };
    if let (Some(batcher), Some(arrival), RequestFormat::Row, Some(rows)) =
        (&served.batcher, arrival, parsed.format, parsed.batch_size)
        && parsed.signature_name == DEFAULT_SIGNATURE
        && batcher.accepts(rows)
    {
        let out = batcher.predict(parsed.inputs, rows, arrival).await?;
        return tensor_json::write_row_response(&out.outputs, Some(out.rows));
    }
    let outputs = served
        .run_direct(
            parsed.signature_name,
            parsed.inputs,
            state.metrics.clone(),
            parsed.batch_size,
        )
        .await?;
    match parsed.format {
        RequestFormat::Row => tensor_json::write_row_response(&outputs, None),
        RequestFormat::Columnar => tensor_json::write_columnar_response(&outputs),
    }
}

// ---------------------------------------------------------------------------------------------
// TF Serving REST API

#[derive(Debug, PartialEq, Eq)]
enum TfsRoute {
    Infer {
        model: String,
        version: VersionSpec,
        verb: String,
    },
    Status {
        model: String,
        version: VersionSpec,
    },
    Metadata {
        model: String,
        version: VersionSpec,
    },
}

/// TF Serving's URL grammar (docs/reference/serving_api.md A2), case-insensitive.
fn parse_tfs_route(method: &Method, path: &str) -> Result<TfsRoute, ApiError> {
    let malformed = || ApiError::invalid(format!("Malformed request: {method} {path}"));
    let rest = if starts_with_ignore_case(path, "/v1/models/") {
        &path["/v1/models/".len()..]
    } else if path.eq_ignore_ascii_case("/v1/models") {
        return if *method == Method::GET {
            Err(ApiError::invalid("Missing model name in request."))
        } else {
            Err(malformed())
        };
    } else {
        return Err(malformed());
    };
    let (target, verb) = match rest.rsplit_once(':') {
        Some((target, verb)) => (target, Some(verb)),
        None => (rest, None),
    };
    let mut segments: Vec<&str> = target.split('/').collect();
    let metadata = verb.is_none()
        && segments.len() > 1
        && segments
            .last()
            .is_some_and(|s| s.eq_ignore_ascii_case("metadata"));
    if metadata {
        segments.pop();
    }
    let model = match segments.first() {
        Some(name) if !name.is_empty() => percent_decode(name).ok_or_else(malformed)?,
        _ => return Err(malformed()),
    };
    let version = match segments.as_slice() {
        [_] => VersionSpec::Default,
        [_, kind, number] if kind.eq_ignore_ascii_case("versions") => {
            if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
                return Err(malformed());
            }
            VersionSpec::Number(number.parse().map_err(|_| {
                ApiError::invalid(format!("Failed to convert version: {number} to numeric."))
            })?)
        }
        [_, kind, label] if kind.eq_ignore_ascii_case("labels") && !label.is_empty() => {
            VersionSpec::Label(percent_decode(label).ok_or_else(malformed)?)
        }
        _ => return Err(malformed()),
    };
    match (method, verb) {
        (&Method::POST, Some(verb)) => {
            let verb = verb.to_ascii_lowercase();
            if matches!(verb.as_str(), "predict" | "classify" | "regress") {
                Ok(TfsRoute::Infer {
                    model,
                    version,
                    verb,
                })
            } else {
                Err(malformed())
            }
        }
        (&Method::GET, None) if metadata => Ok(TfsRoute::Metadata { model, version }),
        (&Method::GET, None) => Ok(TfsRoute::Status { model, version }),
        _ => Err(malformed()),
    }
}

pub(crate) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

async fn tfs(state: &Arc<AppState>, request: Request, route: TfsRoute) -> Response {
    match route {
        TfsRoute::Infer {
            model,
            version,
            verb,
        } => {
            if verb != "predict" {
                return tfs_error(&ApiError::new(
                    Code::Unimplemented,
                    format!("{verb} is not supported by this server; use :predict"),
                ));
            }
            let served = state.table.resolve(&model, &version);
            predict(state, request, served).await
        }
        TfsRoute::Status { model, version } => match state.table.status(&model, &version) {
            Ok(slots) => {
                let statuses: Vec<ModelVersionStatus> = slots
                    .iter()
                    .map(|(number, slot)| {
                        let (error_code, error_message) = match slot {
                            Slot::Failed(message) => ("UNKNOWN", message.as_str()),
                            _ => ("OK", ""),
                        };
                        ModelVersionStatus {
                            version: number.to_string(),
                            state: slot.state_name(),
                            status: StatusProto {
                                error_code,
                                error_message,
                            },
                        }
                    })
                    .collect();
                json_response(StatusCode::OK, tfs_documents::status_body(&statuses))
            }
            Err(error) => tfs_error(&error),
        },
        TfsRoute::Metadata { model, version } => match state.table.resolve(&model, &version) {
            Ok(served) => json_response(
                StatusCode::OK,
                tfs_documents::metadata_body(&model, served.version, served.predictor.signatures()),
            ),
            Err(error) => tfs_error(&error),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Cloud ML Engine API

async fn cmle(state: &Arc<AppState>, request: Request, path: &str) -> Response {
    let method = request.method().clone();
    let query = request.uri().query().unwrap_or_default().to_string();
    let rest = &path["/v1/projects/".len()..];
    let (rest, verb) = match rest.rsplit_once(':') {
        Some((r, v)) if !v.contains('/') => (r, Some(v)),
        _ => (rest, None),
    };
    let segments: Vec<String> = match rest
        .split('/')
        .map(percent_decode)
        .collect::<Option<Vec<_>>>()
    {
        Some(s) => s,
        None => {
            return google_error(&ApiError::invalid(format!(
                "Malformed request: {method} {path}"
            )));
        }
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let Some((&project, resource)) = segments.split_first() else {
        return google_error(&ApiError::invalid(format!(
            "Malformed request: {method} {path}"
        )));
    };
    if project != state.config.project {
        return google_error(&ApiError::not_found(format!(
            "Project {project:?} not found: this server serves project {:?}",
            state.config.project
        )));
    }
    let is_predict = verb == Some("predict");
    // Names become registry file names: refuse anything the API would not accept as a name
    // before it gets near the store (predictions may address file-system models by any name).
    if !is_predict && let Err(error) = check_resource_names(resource) {
        return google_error(&error);
    }
    if !is_predict
        && method != Method::GET
        && let Err(refusal) = state.access.check_change(&method, request.headers())
    {
        return refusal_response(path, &refusal);
    }
    let result = match (&method, resource, verb) {
        (&Method::POST, ["models", model], Some("predict")) => {
            let served = cmle_resolve(state, model, None);
            return predict(state, request, served).await;
        }
        (&Method::POST, ["models", model, "versions", version], Some("predict")) => {
            let served = cmle_resolve(state, model, Some(version));
            return predict(state, request, served).await;
        }
        (&Method::GET, ["models"], None) => Ok(list_models(state)),
        (&Method::POST, ["models"], None) => create_model(state, request).await,
        (&Method::GET, ["models", model], None) => get_model(state, model),
        (&Method::DELETE, ["models", model], None) => delete_model(state, model).await,
        (&Method::GET, ["models", model, "versions"], None) => list_versions(state, model),
        (&Method::POST, ["models", model, "versions"], None) => {
            create_version(state, model, request).await
        }
        (&Method::GET, ["models", model, "versions", version], None) => {
            get_version(state, model, version)
        }
        (&Method::DELETE, ["models", model, "versions", version], None) => {
            delete_version(state, model, version).await
        }
        (&Method::POST, ["models", model, "versions", version], Some("setDefault")) => {
            set_default(state, model, version).await
        }
        (&Method::GET, ["operations", operation], None) => get_operation(state, operation),
        (&Method::GET, ["jobs"], None) => crate::jobs_api::list(state, &query),
        (&Method::POST, ["jobs"], None) => crate::jobs_api::create(state, request).await,
        (&Method::GET, ["jobs", job], None) => crate::jobs_api::get(state, job),
        (&Method::POST, ["jobs", job], Some("cancel")) => crate::jobs_api::cancel(state, job).await,
        _ => Err(ApiError::invalid(format!(
            "Malformed request: {method} {path}"
        ))),
    };
    match result {
        Ok(value) => ok_json(&value),
        Err(error) => with_payload_status(google_error(&error), &error),
    }
}

/// The version a Cloud ML Engine predict call addresses (by name; the model's default when
/// none is given), with the API's own answers for versions that cannot serve.
fn cmle_resolve(
    state: &AppState,
    model: &str,
    version: Option<&str>,
) -> Result<Arc<ServedVersion>, ApiError> {
    let source = state.table.with(|m| m.get(model).map(|s| s.source.clone()));
    match source {
        None => Err(model_not_found(state, model)),
        // File-system models name their versions by number.
        Some(Source::BasePath(_) | Source::Single(_)) => {
            let spec = match version {
                None => VersionSpec::Default,
                Some(v) => {
                    VersionSpec::Number(v.parse().map_err(|_| version_not_found(state, model, v))?)
                }
            };
            state.table.resolve(model, &spec)
        }
        // A concurrent setDefault + delete can retire the version between reading the registry
        // and looking it up in the served table; one fresh look then finds the new default.
        Some(Source::Registry) => match cmle_resolve_registry(state, model, version) {
            Err(error) if error.code == Code::Unavailable => {
                cmle_resolve_registry(state, model, version)
            }
            resolved => resolved,
        },
    }
}

fn cmle_resolve_registry(
    state: &AppState,
    model: &str,
    version: Option<&str>,
) -> Result<Arc<ServedVersion>, ApiError> {
    let record = state
        .registry
        .get(model)
        .ok_or_else(|| model_not_found(state, model))?;
    let Some(name) = version.or(record.default_version.as_deref()) else {
        return Err(ApiError::failed_precondition(format!(
            "Model {:?} has no default version; create a version first",
            model_path(state, model)
        )));
    };
    let v = record
        .versions
        .get(name)
        .ok_or_else(|| version_not_found(state, model, name))?;
    let full = || format!("{}/versions/{name}", model_path(state, model));
    match v.state {
        VersionState::Creating => Err(ApiError::unavailable(format!(
            "Version {:?} is still being created; retry later",
            full()
        ))),
        VersionState::Failed => Err(ApiError::failed_precondition(format!(
            "Version {:?} failed to deploy: {}",
            full(),
            v.error_message.clone().unwrap_or_default()
        ))),
        VersionState::Ready => state
            .table
            .resolve(model, &VersionSpec::Number(v.serving_version))
            .map_err(|_| {
                ApiError::unavailable(format!(
                    "Version {:?} is being loaded by this server; retry later",
                    full()
                ))
            }),
    }
}

fn model_path(state: &AppState, model: &str) -> String {
    format!("projects/{}/models/{model}", state.config.project)
}

fn version_json(state: &AppState, model: &ModelRecord, version: &VersionRecord) -> Value {
    let mut v = json!({
        "name": format!("{}/versions/{}", model_path(state, &model.name), version.name),
        "deploymentUri": version.deployment_uri,
        "createTime": version.create_time,
        "state": version.state.name(),
        "framework": if version.framework.is_empty() { "TENSORFLOW" } else { &version.framework },
        "machineType": "mls1-c1-m2",
    });
    let fields = [
        ("runtimeVersion", &version.runtime_version),
        ("pythonVersion", &version.python_version),
        ("description", &version.description),
    ];
    for (key, value) in fields {
        if !value.is_empty() {
            v[key] = json!(value);
        }
    }
    if model.default_version.as_deref() == Some(version.name.as_str()) {
        v["isDefault"] = json!(true);
    }
    if let Some(message) = &version.error_message {
        v["errorMessage"] = json!(message);
    }
    if !version.labels.is_empty() {
        v["labels"] = json!(version.labels);
    }
    v
}

fn model_json(state: &AppState, model: &ModelRecord) -> Value {
    let mut v = json!({
        "name": model_path(state, &model.name),
        "regions": if model.regions.is_empty() { vec!["us-central1".to_string()] } else { model.regions.clone() },
    });
    if !model.description.is_empty() {
        v["description"] = json!(model.description);
    }
    if model.online_prediction_logging {
        v["onlinePredictionLogging"] = json!(true);
    }
    if !model.labels.is_empty() {
        v["labels"] = json!(model.labels);
    }
    if let Some(default) = model
        .default_version
        .as_ref()
        .and_then(|d| model.versions.get(d))
    {
        v["defaultVersion"] = version_json(state, model, default);
    }
    v
}

fn model_not_found(state: &AppState, model: &str) -> ApiError {
    ApiError::not_found(format!("Model {:?} not found", model_path(state, model)))
}

fn version_not_found(state: &AppState, model: &str, version: &str) -> ApiError {
    ApiError::not_found(format!(
        "Version {:?} not found",
        format!("{}/versions/{version}", model_path(state, model))
    ))
}

fn list_models(state: &AppState) -> Value {
    let models: Vec<Value> = state
        .registry
        .list()
        .iter()
        .map(|m| model_json(state, m))
        .collect();
    if models.is_empty() {
        json!({})
    } else {
        json!({"models": models})
    }
}

fn get_model(state: &AppState, model: &str) -> Result<Value, ApiError> {
    let record = state
        .registry
        .get(model)
        .ok_or_else(|| model_not_found(state, model))?;
    Ok(model_json(state, &record))
}

fn list_versions(state: &AppState, model: &str) -> Result<Value, ApiError> {
    let record = state
        .registry
        .get(model)
        .ok_or_else(|| model_not_found(state, model))?;
    let versions: Vec<Value> = record
        .versions
        .values()
        .map(|v| version_json(state, &record, v))
        .collect();
    Ok(if versions.is_empty() {
        json!({})
    } else {
        json!({"versions": versions})
    })
}

fn get_version(state: &AppState, model: &str, version: &str) -> Result<Value, ApiError> {
    let record = state
        .registry
        .get(model)
        .ok_or_else(|| model_not_found(state, model))?;
    let v = record
        .versions
        .get(version)
        .ok_or_else(|| version_not_found(state, model, version))?;
    Ok(version_json(state, &record, v))
}

fn parse_json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("Invalid JSON payload received. {e}")))
}

/// The model and version names in a Cloud ML Engine resource path must be valid names.
fn check_resource_names(resource: &[&str]) -> Result<(), ApiError> {
    let mut named = resource.iter().zip(resource.iter().skip(1));
    named.try_for_each(|(kind, name)| match *kind {
        "models" | "versions" | "jobs" if !valid_resource_name(name) => {
            Err(ApiError::invalid(format!(
                "{name:?} is not a valid {} name: it must start with a letter and contain only \
             letters, digits and underscores (at most 128)",
                kind.trim_end_matches('s')
            )))
        }
        _ => Ok(()),
    })
}

fn check_name(field: &str, name: &str) -> Result<(), ApiError> {
    if valid_resource_name(name) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "Field: {field} Error: {name:?} is not a valid name: it must start with a letter and \
             contain only letters, digits and underscores (at most 128)"
        )))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModelBody {
    name: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    regions: Vec<String>,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    online_prediction_logging: bool,
}

async fn create_model(state: &Arc<AppState>, request: Request) -> Result<Value, ApiError> {
    let body: ModelBody = parse_json_body(&read_body(state, request).await?)?;
    let name = body
        .name
        .ok_or_else(|| ApiError::invalid("Field: model.name Error: A name is required"))?;
    check_name("model.name", &name)?;
    if body.regions.len() > 1 {
        return Err(ApiError::invalid(
            "Field: model.regions Error: Only one region may be given",
        ));
    }
    let taken_by_files = state
        .table
        .with(|m| m.get(&name).is_some_and(|s| s.source != Source::Registry));
    if taken_by_files {
        return Err(ApiError::new(
            Code::AlreadyExists,
            format!(
                "Field: model.name Error: {name:?} is served from the file system (--model / --model-base-path)"
            ),
        ));
    }
    let record = ModelRecord {
        name: name.clone(),
        description: body.description,
        regions: body.regions,
        labels: body.labels,
        online_prediction_logging: body.online_prediction_logging,
        create_time: now_rfc3339(),
        default_version: None,
        versions: Default::default(),
        last_serving_version: 0,
    };
    let created = state
        .registry
        .mutate(&name, |current| {
            if current.is_some() {
                return Err(ApiError::new(
                    Code::AlreadyExists,
                    "Field: model.name Error: A model with the same name already exists.",
                ));
            }
            Ok((Some(record.clone()), record))
        })
        .await?;
    state.sync_registry_models(false);
    Ok(model_json(state, &created))
}

async fn delete_model(state: &Arc<AppState>, model: &str) -> Result<Value, ApiError> {
    state
        .registry
        .mutate(model, |current| {
            let record = current.ok_or_else(|| model_not_found(state, model))?;
            if !record.versions.is_empty() {
                return Err(ApiError::failed_precondition(format!(
                    "Model {:?} has versions ({}); delete them first",
                    model_path(state, model),
                    record
                        .versions
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            Ok((None, ()))
        })
        .await?;
    state.sync_registry_models(false);
    Ok(done_operation(state, "delete_model", model, None))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VersionBody {
    name: Option<String>,
    deployment_uri: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    runtime_version: String,
    #[serde(default)]
    python_version: String,
    #[serde(default)]
    framework: String,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
}

async fn create_version(
    state: &Arc<AppState>,
    model: &str,
    request: Request,
) -> Result<Value, ApiError> {
    let body: VersionBody = parse_json_body(&read_body(state, request).await?)?;
    let name = body
        .name
        .ok_or_else(|| ApiError::invalid("Field: version.name Error: A name is required"))?;
    check_name("version.name", &name)?;
    let uri = body
        .deployment_uri
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            ApiError::invalid("Field: version.deployment_uri Error: A deployment URI is required")
        })?;
    state.check_origin(&uri)?;
    let framework = body.framework.to_ascii_uppercase();
    if !framework.is_empty() && framework != "TENSORFLOW" {
        return Err(ApiError::invalid(format!(
            "Field: version.framework Error: {framework} is not supported: this server serves TensorFlow SavedModels"
        )));
    }
    let (record, version) = state
        .registry
        .mutate(model, |current| {
            let mut record = current.cloned().ok_or_else(|| model_not_found(state, model))?;
            if record.versions.contains_key(&name) {
                return Err(ApiError::new(
                    Code::AlreadyExists,
                    format!("Field: version.name Error: A version with the name {name:?} already exists."),
                ));
            }
            record.last_serving_version += 1;
            let version = VersionRecord {
                name: name.clone(),
                description: body.description.clone(),
                deployment_uri: uri.clone(),
                runtime_version: body.runtime_version.clone(),
                python_version: body.python_version.clone(),
                framework: "TENSORFLOW".into(),
                labels: body.labels.clone(),
                state: VersionState::Creating,
                error_message: None,
                create_time: now_rfc3339(),
                serving_version: record.last_serving_version,
            };
            // As in Cloud ML Engine, a model's first version becomes its default.
            if record.default_version.is_none() {
                record.default_version = Some(name.clone());
            }
            record.versions.insert(name.clone(), version.clone());
            Ok((Some(record.clone()), (record, version)))
        })
        .await?;
    // Registers the CREATING slot and starts the load, which records READY or FAILED.
    state.sync_registry_models(true);
    Ok(json!({
        "name": format!("projects/{}/operations/create_version-{model}-{name}-{}", state.config.project, version.serving_version),
        "metadata": {
            "@type": "type.googleapis.com/google.cloud.ml.v1.OperationMetadata",
            "createTime": version.create_time,
            "operationType": "CREATE_VERSION",
            "modelName": model_path(state, model),
            "version": version_json(state, &record, &version),
        },
    }))
}

fn done_operation(state: &AppState, kind: &str, model: &str, version: Option<&str>) -> Value {
    let target = match version {
        Some(v) => format!("{model}-{v}"),
        None => model.to_string(),
    };
    json!({
        "name": format!("projects/{}/operations/{kind}-{target}", state.config.project),
        "metadata": {
            "@type": "type.googleapis.com/google.cloud.ml.v1.OperationMetadata",
            "createTime": now_rfc3339(),
            "endTime": now_rfc3339(),
            "operationType": if version.is_some() { "DELETE_VERSION" } else { "DELETE_MODEL" },
            "modelName": model_path(state, model),
        },
        "done": true,
        "response": {"@type": "type.googleapis.com/google.protobuf.Empty"},
    })
}

/// `create_version-<model>-<version>-<n>`: done once the version left CREATING.
fn get_operation(state: &AppState, operation: &str) -> Result<Value, ApiError> {
    let not_found = || ApiError::not_found(format!("Operation {operation:?} not found"));
    let rest = operation
        .strip_prefix("create_version-")
        .ok_or_else(not_found)?;
    let mut parts = rest.split('-');
    let (Some(model), Some(version), Some(number), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(not_found());
    };
    let record = state.registry.get(model).ok_or_else(not_found)?;
    let v = record
        .versions
        .get(version)
        .filter(|v| v.serving_version.to_string() == number)
        .ok_or_else(not_found)?;
    let mut op = json!({
        "name": format!("projects/{}/operations/{operation}", state.config.project),
        "metadata": {
            "@type": "type.googleapis.com/google.cloud.ml.v1.OperationMetadata",
            "operationType": "CREATE_VERSION",
            "modelName": model_path(state, model),
            "version": version_json(state, &record, v),
        },
    });
    match v.state {
        VersionState::Creating => {}
        VersionState::Ready => {
            op["done"] = json!(true);
            let mut response = version_json(state, &record, v);
            response["@type"] = json!("type.googleapis.com/google.cloud.ml.v1.Version");
            op["response"] = response;
        }
        VersionState::Failed => {
            op["done"] = json!(true);
            op["error"] =
                json!({"code": 3, "message": v.error_message.clone().unwrap_or_default()});
        }
    }
    Ok(op)
}

async fn delete_version(
    state: &Arc<AppState>,
    model: &str,
    version: &str,
) -> Result<Value, ApiError> {
    state
        .registry
        .mutate(model, |current| {
            let mut record = current
                .cloned()
                .ok_or_else(|| model_not_found(state, model))?;
            if !record.versions.contains_key(version) {
                return Err(version_not_found(state, model, version));
            }
            if record.default_version.as_deref() == Some(version) && record.versions.len() > 1 {
                return Err(ApiError::failed_precondition(format!(
                    "Version {version:?} is the default version of model {model:?}; set another \
                     version as default before deleting it"
                )));
            }
            record.versions.remove(version);
            if record.default_version.as_deref() == Some(version) {
                record.default_version = None;
            }
            Ok((Some(record), ()))
        })
        .await?;
    state.sync_registry_models(false);
    Ok(done_operation(
        state,
        "delete_version",
        model,
        Some(version),
    ))
}

async fn set_default(state: &Arc<AppState>, model: &str, version: &str) -> Result<Value, ApiError> {
    let record = state
        .registry
        .mutate(model, |current| {
            let mut record = current
                .cloned()
                .ok_or_else(|| model_not_found(state, model))?;
            let v = record
                .versions
                .get(version)
                .ok_or_else(|| version_not_found(state, model, version))?;
            if v.state == VersionState::Failed {
                return Err(ApiError::failed_precondition(format!(
                    "Version {version:?} failed to deploy and cannot be the default: {}",
                    v.error_message.clone().unwrap_or_default()
                )));
            }
            record.default_version = Some(version.to_string());
            Ok((Some(record.clone()), record))
        })
        .await?;
    state.sync_registry_models(false);
    let v = record
        .versions
        .get(version)
        .ok_or_else(|| version_not_found(state, model, version))?;
    Ok(version_json(state, &record, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: Method, path: &str) -> Result<TfsRoute, ApiError> {
        parse_tfs_route(&method, path)
    }

    #[test]
    fn tf_serving_url_grammar() {
        assert_eq!(
            route(Method::POST, "/v1/models/mnist:predict").unwrap(),
            TfsRoute::Infer {
                model: "mnist".into(),
                version: VersionSpec::Default,
                verb: "predict".into()
            }
        );
        assert_eq!(
            route(Method::POST, "/V1/Models/a%20b/VERSIONS/007:Predict").unwrap(),
            TfsRoute::Infer {
                model: "a b".into(),
                version: VersionSpec::Number(7),
                verb: "predict".into()
            }
        );
        assert_eq!(
            route(Method::GET, "/v1/models/m/labels/stable/metadata").unwrap(),
            TfsRoute::Metadata {
                model: "m".into(),
                version: VersionSpec::Label("stable".into())
            }
        );
        assert_eq!(
            route(Method::GET, "/v1/models/m/versions/3").unwrap(),
            TfsRoute::Status {
                model: "m".into(),
                version: VersionSpec::Number(3)
            }
        );
        assert_eq!(
            route(Method::GET, "/v1/models").unwrap_err().message,
            "Missing model name in request."
        );
        for (method, path) in [
            (Method::POST, "/v1/models/foo"),
            (Method::POST, "/v1/models/foo/metadata"),
            (Method::GET, "/v1/models/foo:predict"),
            (Method::POST, "/v1/models/foo/versions/x:predict"),
            (Method::POST, "/v1/models/foo/label/x:predict"),
            (Method::POST, "/v1/models/foo/versions/50/labels/x:predict"),
            (Method::PUT, "/v1/models/foo"),
        ] {
            let e = route(method.clone(), path).unwrap_err();
            assert_eq!(e.message, format!("Malformed request: {method} {path}"));
        }
        assert_eq!(
            route(Method::GET, "/v1/models/m/versions/99999999999999999999")
                .unwrap_err()
                .message,
            "Failed to convert version: 99999999999999999999 to numeric."
        );
    }
}
