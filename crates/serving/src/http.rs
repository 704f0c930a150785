//! The HTTP front: one handler for every request, which routes by path to the API modules
//! (Vertex's configured routes, `/v2` KServe V2, `/v1/projects/…` Cloud ML Engine, `/v1/models…`
//! TF Serving) and serves `/monitoring/prometheus/metrics`, plus the response helpers they share.
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
use serde_json::{Value, json};

use crate::access;
use crate::body;
use crate::server::AppState;
use crate::status::{ApiError, Code, Refusal};
use crate::tf_serving::tfs_error;

/// Bodies at least this large are parsed on the blocking pool rather than on the reactor.
pub(crate) const INLINE_PARSE_LIMIT: usize = 64 * 1024;

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

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
pub(crate) fn refusal_response(path: &str, refusal: &Refusal) -> Response {
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
            let text = state.metrics.render(&state.models.table.states());
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
        return crate::cmle::handle(state, request, &path).await;
    }
    crate::tf_serving::handle(state, request, &path).await
}

pub(crate) fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.len() >= prefix.len()
        && text.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

// ---------------------------------------------------------------------------------------------
// Responses

pub(crate) fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
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

pub(crate) fn ok_json(value: &Value) -> Response {
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
pub(crate) fn with_payload_status(mut response: Response, error: &ApiError) -> Response {
    if error.code == Code::ResourceExhausted && error.message.starts_with("Request payload size") {
        *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    }
    response
}

/// A path segment with `%XX` escapes decoded; `None` when it is not valid UTF-8 afterwards.
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
