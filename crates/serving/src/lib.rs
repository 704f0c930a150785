//! serving: the HTTP prediction server behind `predictor serve`.
//!
//! It speaks two APIs over one port, so existing clients work unchanged:
//! - **Cloud ML Engine** (`/v1/projects/{project}/models…`): models and versions are created,
//!   listed, defaulted and deleted through the API and persisted in a [`registry`] store (a
//!   local folder or `gs://`), so a restart or a second replica serves the same deployments.
//!   `…/models/{m}[/versions/{v}]:predict` answers `{"predictions": …}` or `{"error": …}`.
//! - **TensorFlow Serving REST** (`/v1/models/{name}[/versions/{n}|/labels/{l}]…`): status,
//!   metadata and `:predict` in row and columnar formats, with TF Serving's status codes and
//!   error texts. Models given with `--model-base-path` are numbered version folders that are
//!   polled: new versions load without a restart, removed ones unload, and a version that fails
//!   to load never replaces the one serving.
//!
//! - **Cloud ML Engine jobs** (`/v1/projects/{project}/jobs…`, and Cloud Logging's
//!   `/v2/entries:list` for their logs) on the same port, as gcloud uses one endpoint for both:
//!   the `jobs` crate runs them, [`jobs_api`] is its HTTP face.
//!
//! Why it is its own crate, and shaped this way:
//! - The async HTTP stack (tokio, axum), the registry, batching and metrics are a subsystem of
//!   their own; the `predictor` binary stays thin glue and the model crates stay free of HTTP.
//! - The server sees models only through the [`predictor::Predictor`] trait (signatures + run).
//!   Production loads real SavedModels with `savedmodel-runtime`; unit tests of the layers above
//!   use a tiny fake, while the end-to-end tests use the real runtime and real models.
//! - A version is published only after it loaded **and** ran a check prediction
//!   ([`predictor::check_prediction`]); until then it is `CREATING` and a failure leaves it
//!   `FAILED` with the message, never half-served. Requests hold an `Arc` of the version they
//!   resolved, so deleting or replacing a version never cuts an in-flight request short.
//! - Forward passes are CPU-bound and never run on the async reactor: concurrent row-format
//!   requests for a version are merged by [`batching`] worker threads (a bounded queue, a
//!   bounded wait that only applies while more requests are arriving), and everything else runs
//!   on the blocking pool.
//! - Safety limits are on by default: 127.0.0.1, 1.5 MB bodies (413), bounded in-flight
//!   requests (503 + `Retry-After`), a request timeout (504), a header-read timeout that closes
//!   slow-loris and idle keep-alive connections ([`connections`], which is why connections are
//!   served with hyper directly rather than `axum::serve`), an optional bearer token on
//!   mutating calls (401) and optional `--allow-origin` prefixes for deployment URIs.
//! - TF Serving's status and metadata answers are protobuf JSON in protobuf's field order
//!   ([`tfs_documents`]), so clients comparing text or parsing in order see TF Serving's bytes.
//! - Request JSON is read by `predict-json`'s reader under TF Serving's rules (RapidJSON's:
//!   `NaN`/`Infinity` accepted, its error texts) and converted with TF Serving's rules
//!   ([`tensor_json`]: row and columnar formats, its own conversion errors). The common body,
//!   rows of numbers for one float input, goes from the text straight into the input tensor;
//!   everything else through a document tree. Response bodies (row, columnar, error) are
//!   `predict-json`'s TF Serving writers, kept there with the other output formats.

pub mod access;
pub mod batching;
pub mod body;
pub mod connections;
mod jobs_api;
pub mod metrics;
pub mod models;
pub mod predictor;
pub mod registry;
mod routes;
pub mod server;
pub mod status;
pub mod tensor_json;
pub mod tfs_documents;
mod v2;
mod vertex;

#[cfg(test)]
mod http_tests;

pub use batching::BatchingConfig;
pub use predictor::{ModelLoader, Predictor, SavedModelLoader};
pub use server::{DEFAULT_MAX_BODY_BYTES, JobsOptions, ServeConfig, serve};
pub use status::{ApiError, Code};
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
