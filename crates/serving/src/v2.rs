//! KServe V2 / Open Inference Protocol over REST (`docs/reference/inference_protocols.md` §2.1),
//! the protocol of `tritonclient`, KServe, Triton and MLServer clients:
//!
//! | verb path | answer |
//! |---|---|
//! | `GET /v2` | server metadata |
//! | `GET /v2/health/live` | `{"live": true}` |
//! | `GET /v2/health/ready` | `{"ready": …}`, 200 only when every configured model serves |
//! | `GET /v2/models/{m}[/versions/{v}]` | model metadata (V2 datatypes, `-1` for any size) |
//! | `GET /v2/models/{m}[/versions/{v}]/ready` | `{"name", "ready"}`, 200 when ready |
//! | `POST /v2/models/{m}[/versions/{v}]/infer` | inference |
//!
//! Versions are TF Serving's numbers (`1`, `2`) or their labels (registry version names). Errors
//! are V2's `{"error": "<message>"}` with the status of their canonical code (400 for a bad
//! request, 404 for an unknown model or version). Request and response bodies are converted by
//! `predict-json`; inference runs the default signature, through the batcher like REST rows.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::response::Response;
use savedmodel_runtime::DEFAULT_SIGNATURE;
use serde_json::json;

use crate::http::{INLINE_PARSE_LIMIT, json_response, percent_decode, read_body};
use crate::lifecycle::table::{ServedVersion, VersionSpec};
use crate::server::AppState;
use crate::status::{ApiError, Code};

/// `{"error": "<message>"}` with the code's HTTP status: V2's error shape.
pub(crate) fn v2_error(error: &ApiError) -> Response {
    let status = if error.code == Code::ResourceExhausted
        && error.message.starts_with("Request payload size")
    {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        error.code.http_status()
    };
    json_response(status, json!({ "error": error.message }).to_string())
}

fn ok(value: serde_json::Value) -> Response {
    json_response(StatusCode::OK, value.to_string())
}

/// Handles every path under `/v2`.
pub(crate) async fn handle(state: &Arc<AppState>, request: Request, path: &str) -> Response {
    let method = request.method().clone();
    let malformed = || ApiError::invalid(format!("Malformed request: {method} {path}"));
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let result = match (&method, segments.as_slice()) {
        (&Method::GET, ["v2"]) => Ok(ok(json!({
            "name": "predictor",
            "version": env!("CARGO_PKG_VERSION"),
            "extensions": [],
        }))),
        (&Method::GET, ["v2", "health", "live"]) => Ok(ok(json!({ "live": true }))),
        (&Method::GET, ["v2", "health", "ready"]) => {
            let ready = state.models.table.all_ready();
            Ok(json_response(
                if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                },
                json!({ "ready": ready }).to_string(),
            ))
        }
        (_, ["v2", "models", rest @ ..]) => match model_route(rest) {
            Some((model, version, verb)) => match percent_decode(model) {
                Some(model) => model_call(state, request, &model, version, verb).await,
                None => Err(malformed()),
            },
            None => Err(malformed()),
        },
        _ => Err(malformed()),
    };
    result.unwrap_or_else(|error| v2_error(&error))
}

/// `{m}[/versions/{v}][/ready|/infer]` → (model, version, verb).
fn model_route<'a>(rest: &[&'a str]) -> Option<(&'a str, Option<&'a str>, Option<&'a str>)> {
    let verb = |s: &'a str| matches!(s, "ready" | "infer").then_some(s);
    match rest {
        [model] if !model.is_empty() => Some((model, None, None)),
        [model, last] if !model.is_empty() => Some((model, None, Some(verb(last)?))),
        [model, "versions", version] if !model.is_empty() && !version.is_empty() => {
            Some((model, Some(version), None))
        }
        [model, "versions", version, last] if !model.is_empty() && !version.is_empty() => {
            Some((model, Some(version), Some(verb(last)?)))
        }
        _ => None,
    }
}

fn version_spec(version: Option<&str>) -> Result<VersionSpec, ApiError> {
    Ok(match version {
        None => VersionSpec::Default,
        Some(v) if v.bytes().all(|b| b.is_ascii_digit()) => VersionSpec::Number(
            v.parse()
                .map_err(|_| ApiError::invalid(format!("version {v:?} is out of range")))?,
        ),
        Some(label) => VersionSpec::Label(percent_decode(label).ok_or_else(|| {
            ApiError::invalid(format!("version {label:?} is not valid percent-encoding"))
        })?),
    })
}

/// The served version a V2 path names, with V2's wording for a missing one.
fn resolve(
    state: &AppState,
    model: &str,
    version: Option<&str>,
) -> Result<Arc<ServedVersion>, ApiError> {
    let spec = version_spec(version)?;
    state.models.table.resolve(model, &spec).map_err(|error| {
        let exists = state.models.table.with(|models| models.contains_key(model));
        let message = match (exists, version) {
            (false, _) => format!("Model with name {model} does not exist."),
            (true, Some(v)) => format!("Model {model} has no available version {v}."),
            (true, None) => format!("Model {model} has no available version."),
        };
        match error.code {
            Code::NotFound => ApiError::not_found(message),
            Code::InvalidArgument if exists => ApiError::not_found(message),
            _ => error,
        }
    })
}

async fn model_call(
    state: &Arc<AppState>,
    request: Request,
    model: &str,
    version: Option<&str>,
    verb: Option<&str>,
) -> Result<Response, ApiError> {
    let method = request.method().clone();
    match (&method, verb) {
        (&Method::GET, None) => {
            let served = resolve(state, model, version)?;
            metadata(&served)
        }
        (&Method::GET, Some("ready")) => {
            let known = state.models.table.with(|models| models.contains_key(model));
            match resolve(state, model, version) {
                Ok(_) => Ok(ok(json!({ "name": model, "ready": true }))),
                Err(_) if known => Ok(json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({ "name": model, "ready": false }).to_string(),
                )),
                Err(error) => Err(error),
            }
        }
        (&Method::POST, Some("infer")) => infer(state, request, model, version).await,
        _ => Err(ApiError::invalid(format!(
            "Malformed request: {method} {}",
            request.uri().path()
        ))),
    }
}

/// The signature V2 serves: the default one (V2 has no signature names).
fn default_signature(
    served: &ServedVersion,
) -> Result<&savedmodel_runtime::SignatureInfo, ApiError> {
    served
        .predictor
        .signatures()
        .get(DEFAULT_SIGNATURE)
        .ok_or_else(|| {
            ApiError::failed_precondition(format!(
                "model {} has no \"{DEFAULT_SIGNATURE}\" signature",
                served.model
            ))
        })
}

fn metadata(served: &ServedVersion) -> Result<Response, ApiError> {
    let signature = default_signature(served)?;
    let tensors = |specs: &std::collections::BTreeMap<String, savedmodel_runtime::TensorSpec>| {
        specs
            .iter()
            .map(|(name, spec)| {
                json!({
                    "name": name,
                    "datatype": predict_json::v2_datatype(spec.dtype).unwrap_or("BYTES"),
                    "shape": spec.shape.clone().unwrap_or_default(),
                })
            })
            .collect::<Vec<_>>()
    };
    Ok(ok(json!({
        "name": served.model,
        "versions": [served.version.to_string()],
        "platform": "tensorflow_savedmodel",
        "inputs": tensors(&signature.inputs),
        "outputs": tensors(&signature.outputs),
    })))
}

async fn infer(
    state: &Arc<AppState>,
    request: Request,
    model: &str,
    version: Option<&str>,
) -> Result<Response, ApiError> {
    if request
        .headers()
        .contains_key("inference-header-content-length")
    {
        return Err(ApiError::new(
            Code::Unimplemented,
            "the binary tensor data extension (Inference-Header-Content-Length) is not supported; \
             send JSON data (tritonclient: binary_data=False)",
        ));
    }
    let served = resolve(state, model, version)?;
    // Announce the request to the batcher before reading it, so a batch being formed waits.
    let arrival = served.batcher.as_ref().map(|b| b.arrival());
    let body = read_body(state, request).await?;
    let parse = |body: &[u8], served: &ServedVersion| {
        predict_json::parse_v2_infer_request(body, default_signature(served)?)
            .map_err(|e| ApiError::invalid(e.to_string()))
    };
    // Large bodies are parsed off the reactor, as REST's are.
    let parsed = if body.len() < INLINE_PARSE_LIMIT {
        parse(&body, &served)?
    } else {
        let served = served.clone();
        tokio::task::spawn_blocking(move || parse(&body, &served))
            .await
            .map_err(|e| ApiError::internal(format!("parsing task failed: {e}")))??
    };
    let rows = batch_rows(&parsed.inputs)?;
    let outputs = served
        .infer_rows(parsed.inputs, rows, arrival, state.metrics.clone())
        .await?;
    let version_text = served.version.to_string();
    let body = predict_json::v2_infer_response_json(
        &served.model,
        Some(&version_text),
        parsed.id.as_deref(),
        &outputs,
        parsed.outputs.as_deref(),
    )
    .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut response = json_response(StatusCode::OK, body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// The batch size of a request: dimension 0, the same for every input.
fn batch_rows(
    inputs: &std::collections::BTreeMap<String, savedmodel_runtime::HostTensor>,
) -> Result<usize, ApiError> {
    let mut rows = None;
    for (name, tensor) in inputs {
        let Some(&n) = tensor.shape().first() else {
            return Err(ApiError::invalid(format!(
                "input \"{name}\" is a scalar; V2 inputs need a batch dimension"
            )));
        };
        match rows {
            None => rows = Some(n),
            Some(r) if r != n => {
                return Err(ApiError::invalid(format!(
                    "inputs disagree on the batch size: \"{name}\" has {n} rows, others {r}"
                )));
            }
            _ => {}
        }
    }
    rows.ok_or_else(|| ApiError::invalid("the request has no inputs"))
}
