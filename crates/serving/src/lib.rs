//! serving: the prediction server behind `predictor serve`.
//!
//! It speaks its users' APIs, so existing clients work unchanged, one module per API over one
//! shared model lifecycle:
//! - **Cloud ML Engine** (`cmle`, `/v1/projects/{project}/models…`): models and versions are
//!   created, listed, defaulted and deleted through the API and persisted in the lifecycle's
//!   registry (a local folder or `gs://`), so a restart or a second replica serves the same
//!   deployments. `…/models/{m}[/versions/{v}]:predict` answers `{"predictions": …}`.
//! - **TensorFlow Serving REST** (`tf_serving`, `/v1/models/{name}[/versions/{n}|/labels/{l}]…`):
//!   status, metadata and `:predict` in row and columnar formats, with TF Serving's status codes
//!   and error texts (its status and metadata answers are protobuf JSON in protobuf's field order).
//! - **TensorFlow Serving gRPC** ([`grpc`], `--grpc-port`): `PredictionService` Predict and
//!   GetModelMetadata, `ModelService` GetModelStatus, on tonic, from the vendored `.proto` files.
//! - **KServe V2 / Open Inference Protocol** (`v2`, `/v2/…`) and the **Vertex AI** custom
//!   container contract (`vertex`, the `AIP_*` routes).
//! - **Cloud ML Engine jobs** (`jobs_api`, `/v1/projects/{project}/jobs…`, and Cloud Logging's
//!   `/v2/entries:list` for their logs) on the same port, as gcloud uses one endpoint for both:
//!   the `jobs` crate runs them, `jobs_api` is its HTTP face.
//!
//! Why it is its own crate, and shaped this way:
//! - The async stack (tokio, axum, tonic), the registry, batching and metrics are a subsystem of
//!   their own; the `predictor` binary stays thin glue and the model crates stay free of HTTP.
//!   `server` only wires; `http` routes HTTP requests to the API modules.
//! - Every API resolves models, versions and labels through the one `lifecycle` module: which
//!   models exist (`--model`, polled `--model-base-path` folders, the registry), loading, the
//!   check prediction, readiness. A version is published only after it loaded **and** ran a
//!   check prediction; until then it is `CREATING` and a failure leaves it `FAILED` with the
//!   message, never half-served. Requests hold an `Arc` of the version they resolved, so
//!   deleting or replacing a version never cuts an in-flight request short. New folders under a
//!   base path load without a restart, removed ones unload, and a version that fails to load
//!   never replaces the one serving.
//! - The server sees models only through the [`Predictor`] trait (signatures + run). Production
//!   loads real SavedModels with `savedmodel-runtime`; unit tests of the layers above use a tiny
//!   fake, while the end-to-end tests use the real runtime and real models.
//! - Forward passes are CPU-bound and never run on the async reactor: concurrent requests of
//!   the default signature for a version are merged by batching worker threads (a bounded queue,
//!   a bounded wait that only applies while more requests are arriving), and everything else
//!   runs on the blocking pool; large JSON bodies are parsed there too.
//! - Safety limits are on by default: 127.0.0.1, 1.5 MB bodies (413), bounded in-flight
//!   requests (503 + `Retry-After`, UNAVAILABLE over gRPC), a request timeout, a header-read
//!   timeout that closes slow-loris and idle keep-alive connections (connections are served with
//!   hyper directly rather than `axum::serve` for it), an optional bearer token on mutating calls
//!   (401) and optional `--allow-origin` prefixes for deployment URIs.
//! - Every JSON ↔ tensor conversion (TF Serving rows and columns, Cloud ML Engine, V2) is
//!   `predict-json`'s, under each API's rules and with its error texts; gRPC tensors are decoded
//!   by savedmodel-format's `TensorProto` reader, the one that reads graph constants.

mod access;
mod batching;
mod body;
mod cmle;
mod connections;
pub mod grpc;
mod http;
mod jobs_api;
mod lifecycle;
mod metrics;
mod server;
mod status;
mod tf_serving;
mod v2;
mod vertex;

#[cfg(test)]
mod http_tests;

pub use batching::BatchingConfig;
pub use body::{
    DEFAULT_BODY_READ_TIMEOUT, DEFAULT_MAX_SLOW_BODIES_PER_CLIENT, DEFAULT_MIN_BODY_RATE,
};
pub use connections::DEFAULT_HEADER_READ_TIMEOUT;
pub use lifecycle::predictor::{LoadFuture, ModelLoader, Predictor, SavedModelLoader};
pub use server::{DEFAULT_MAX_BODY_BYTES, JobsOptions, ServeConfig, Server, serve};
pub use vertex::{VertexModel, VertexRoutes};

/// Failures that stop the server from starting or running (request failures are [`ApiError`]s).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServingError {
    #[error("registry {location}: {reason}")]
    Registry { location: String, reason: String },
    #[error("{0}")]
    Config(String),
    #[error("internal lock poisoned")]
    Poisoned,
}
