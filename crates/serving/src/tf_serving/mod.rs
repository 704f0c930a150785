//! TF Serving's REST API under `/v1/models/{name}[/versions/{n}|/labels/{l}]…`: status,
//! metadata and `:predict` in row and columnar formats, with TF Serving's status codes and error
//! texts. The JSON prediction ([`predict`]) is shared with Cloud ML Engine's and Vertex's
//! `predict`, whose bodies are TF Serving's row format.

pub(crate) mod documents;
pub(crate) mod tensor_json;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use predict_json::RequestFormat;
use savedmodel_runtime::DEFAULT_SIGNATURE;

use crate::http::{
    INLINE_PARSE_LIMIT, json_response, percent_decode, read_body, starts_with_ignore_case,
    with_payload_status,
};
use crate::lifecycle::table::{ServedVersion, Slot, VersionSpec};
use crate::server::AppState;
use crate::status::{ApiError, Code};
use documents::{ModelVersionStatus, StatusProto};

/// TF Serving's (and online prediction's) error: `{"error": "<message>"}`.
pub(crate) fn tfs_error(error: &ApiError) -> Response {
    json_response(
        error.code.http_status(),
        tensor_json::error_body(&error.message),
    )
}

/// A JSON prediction (TF Serving's row or columnar body) on a resolved version.
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

/// Handles a `/v1/models…` request.
pub(crate) async fn handle(state: &Arc<AppState>, request: Request, path: &str) -> Response {
    match parse_tfs_route(request.method(), path) {
        Ok(route) => serve_route(state, request, route).await,
        Err(error) => tfs_error(&error),
    }
}

async fn serve_route(state: &Arc<AppState>, request: Request, route: TfsRoute) -> Response {
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
            let served = state.models.table.resolve(&model, &version);
            predict(state, request, served).await
        }
        TfsRoute::Status { model, version } => match state.models.table.status(&model, &version) {
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
                json_response(StatusCode::OK, documents::status_body(&statuses))
            }
            Err(error) => tfs_error(&error),
        },
        TfsRoute::Metadata { model, version } => match state.models.table.resolve(&model, &version)
        {
            Ok(served) => json_response(
                StatusCode::OK,
                documents::metadata_body(&model, served.version, served.predictor.signatures()),
            ),
            Err(error) => tfs_error(&error),
        },
    }
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
