//! The Vertex AI custom prediction container contract (`docs/reference/inference_protocols.md`
//! §3). Vertex starts the container with `AIP_HTTP_PORT`, `AIP_HEALTH_ROUTE`, `AIP_PREDICT_ROUTE`
//! and `AIP_STORAGE_URI` (the binary reads them into [`VertexModel`]); the server then serves the
//! model from the storage URI and answers:
//!
//! - `GET $AIP_HEALTH_ROUTE`: 200 `{}` only once the model loaded and answered its check
//!   prediction, 503 before (Vertex routes no traffic until it is healthy);
//! - `POST $AIP_PREDICT_ROUTE`: Vertex's `{"instances": [...], "parameters"?: {...}}` →
//!   `{"predictions": [...]}`, the same body as Cloud ML Engine's `:predict`, with its
//!   `{"error": "<message>"}` errors.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::json;

use crate::http::json_response;
use crate::lifecycle::table::VersionSpec;
use crate::server::AppState;
use crate::status::ApiError;
use crate::tf_serving::{predict, tfs_error};

/// The routes Vertex calls (`AIP_HEALTH_ROUTE`, `AIP_PREDICT_ROUTE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VertexRoutes {
    pub health: String,
    pub predict: String,
}

/// The one model a Vertex container serves, and the routes it is served on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VertexModel {
    /// The served model's name (`AIP_MODEL_NAME`, or `model`).
    pub name: String,
    pub routes: VertexRoutes,
}

/// Answers a request on one of Vertex's routes; `None` when the path is not one of them.
pub(crate) async fn handle(
    state: &Arc<AppState>,
    vertex: &VertexModel,
    request: Request,
    path: &str,
) -> Option<Response> {
    let method = request.method().clone();
    if path == vertex.routes.health {
        return Some(if method == Method::GET || method == Method::HEAD {
            if state.models.table.all_ready() {
                json_response(StatusCode::OK, "{}".to_string())
            } else {
                json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({ "error": format!("model {} is not ready yet", vertex.name) })
                        .to_string(),
                )
            }
        } else {
            tfs_error(&ApiError::invalid(format!(
                "Malformed request: {method} {path} (the health route takes GET)"
            )))
        });
    }
    if path == vertex.routes.predict {
        return Some(if method == Method::POST {
            let served = state
                .models
                .table
                .resolve(&vertex.name, &VersionSpec::Default);
            predict(state, request, served).await
        } else {
            tfs_error(&ApiError::invalid(format!(
                "Malformed request: {method} {path} (the predict route takes POST)"
            )))
        });
    }
    None
}
