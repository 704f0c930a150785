//! Wiring: the configuration, the state HTTP requests share, and [`Server`], which starts the
//! model lifecycle (the configured models are loaded before [`Server::serve`] takes the
//! listeners), serves, and shuts down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};

use storage::Location;

use crate::ServingError;
use crate::access::AccessRules;
use crate::batching::BatchingConfig;
use crate::body::{BodyLimits, SlowBodies};
use crate::lifecycle::ModelLifecycle;
use crate::lifecycle::predictor::{ModelLoader, SavedModelLoader};
use crate::metrics::Metrics;

/// 1.5 MB: Cloud ML Engine's online prediction payload limit.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1_572_864;

/// Everything `predictor serve` can be told.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub addr: SocketAddr,
    pub project: String,
    /// Where models and versions persist (local folder or `gs://`).
    pub registry: String,
    /// `--model NAME=URL`: one SavedModel served as version 1.
    pub models: Vec<(String, String)>,
    /// `--model-base-path NAME=URL`: numbered version folders, polled.
    pub base_paths: Vec<(String, String)>,
    pub poll_interval: Duration,
    /// How often the registry store is re-read, to follow other replicas.
    pub registry_poll_interval: Duration,
    /// Bearer token required on mutating calls.
    pub auth_token: Option<String>,
    /// Where versions may be loaded from (URL or path prefixes); empty: anywhere.
    pub allowed_origins: Vec<String>,
    pub max_body_bytes: usize,
    pub max_concurrent_requests: usize,
    pub request_timeout: Duration,
    /// `None`: batching off.
    pub batching: Option<BatchingConfig>,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// Longest wait for a complete request head, idle keep-alive time included.
    pub header_read_timeout: Duration,
    /// Where models run (CPU, or a CUDA GPU in a build with the `cuda` feature).
    pub device: candle_core::Device,
    /// Longest time a request body may take to arrive ([`crate::body`]).
    pub body_read_timeout: Duration,
    /// Slowest accepted body, bytes per second after a short start; 0: no rate check.
    pub min_body_rate: u64,
    /// Bodies from one client address that may arrive slowly at once.
    pub max_slow_bodies_per_client: usize,
    /// Browser origins (`--cors-allow-origin`) allowed to change deployments ([`crate::access`]).
    pub cors_origins: Vec<String>,
    /// Allow deployment changes without a token on a non-loopback address.
    pub allow_unauthenticated_changes: bool,
    /// Most memory one model load may need (constants, variables, intermediates of the largest
    /// batch), checked before anything is allocated.
    pub memory_budget: u64,
    /// Vertex AI's container contract: its model and its health and predict routes.
    pub vertex: Option<crate::vertex::VertexModel>,
    /// Largest gRPC message accepted (RESOURCE_EXHAUSTED above it).
    pub grpc_max_message_bytes: usize,
    /// How training jobs run (`jobs` crate).
    pub jobs: JobsOptions,
}

/// The `predictor serve` flags for Cloud ML Engine jobs.
#[derive(Debug, Clone)]
pub struct JobsOptions {
    /// `--trainer-path`; `None`: `trainer` beside the server binary.
    pub trainer: Option<std::path::PathBuf>,
    /// `--allow-cpu`: a job asking for a GPU this machine cannot give trains on the CPU.
    pub allow_cpu: bool,
    /// `--max-concurrent-jobs`: jobs training on the CPU at once.
    pub max_concurrent_jobs: usize,
    /// `--job-cancel-grace-seconds`: SIGTERM to SIGKILL.
    pub cancel_grace: Duration,
    /// Environment variables the trainer must not inherit.
    pub env_remove: Vec<String>,
}

impl Default for JobsOptions {
    fn default() -> JobsOptions {
        JobsOptions {
            trainer: None,
            allow_cpu: false,
            max_concurrent_jobs: 1,
            cancel_grace: Duration::from_secs(30),
            env_remove: Vec::new(),
        }
    }
}

impl ServeConfig {
    pub fn new(registry: impl Into<String>) -> ServeConfig {
        ServeConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8501)),
            project: "default".into(),
            registry: registry.into(),
            models: Vec::new(),
            base_paths: Vec::new(),
            poll_interval: Duration::from_secs(1),
            registry_poll_interval: Duration::from_secs(10),
            auth_token: None,
            allowed_origins: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_concurrent_requests: 1024,
            request_timeout: Duration::from_secs(30),
            batching: Some(BatchingConfig::default()),
            shutdown_grace: Duration::from_secs(30),
            header_read_timeout: crate::connections::DEFAULT_HEADER_READ_TIMEOUT,
            device: candle_core::Device::Cpu,
            body_read_timeout: crate::body::DEFAULT_BODY_READ_TIMEOUT,
            min_body_rate: crate::body::DEFAULT_MIN_BODY_RATE,
            max_slow_bodies_per_client: crate::body::DEFAULT_MAX_SLOW_BODIES_PER_CLIENT,
            cors_origins: Vec::new(),
            allow_unauthenticated_changes: false,
            memory_budget: savedmodel_runtime::DEFAULT_MEMORY_BUDGET,
            vertex: None,
            grpc_max_message_bytes: crate::grpc::DEFAULT_MAX_MESSAGE_BYTES,
            jobs: JobsOptions::default(),
        }
    }
}
/// What every HTTP request sees: the configuration, the models, and the request limits.
pub(crate) struct AppState {
    pub config: ServeConfig,
    pub models: Arc<ModelLifecycle>,
    pub metrics: Arc<Metrics>,
    pub in_flight: Arc<Semaphore>,
    /// Who may change deployments.
    pub access: AccessRules,
    /// Slow request bodies being received, per client address.
    pub slow_bodies: SlowBodies,
    /// Cloud ML Engine jobs (training runs of our trainer).
    pub jobs: Arc<jobs::Jobs>,
}

impl AppState {
    /// The limits request bodies are received under.
    pub fn body_limits(&self) -> BodyLimits {
        BodyLimits {
            max_bytes: self.config.max_body_bytes,
            timeout: self.config.body_read_timeout,
            min_rate: self.config.min_body_rate,
            max_slow_per_client: self.config.max_slow_bodies_per_client.max(1),
        }
    }
}

/// Opens the Cloud ML Engine jobs kept beside the model registry (`--registry`), with the
/// `predictor serve` job flags and the registry to look prediction jobs' models up in; jobs left
/// running by an earlier server are marked FAILED.
async fn open_jobs(
    config: &ServeConfig,
    models: &Arc<ModelLifecycle>,
) -> Result<Arc<jobs::Jobs>, ServingError> {
    let registry_error = |reason: String| ServingError::Registry {
        location: config.registry.clone(),
        reason,
    };
    let registry_root =
        Location::parse(&config.registry).map_err(|e| registry_error(e.to_string()))?;
    let options = &config.jobs;
    let mut jobs_config = jobs::JobsConfig::new(registry_root);
    jobs_config.trainer = options.trainer.clone();
    jobs_config.allow_cpu = options.allow_cpu;
    jobs_config.max_concurrent_cpu_jobs = options.max_concurrent_jobs.max(1);
    jobs_config.cancel_grace = options.cancel_grace;
    jobs_config.env_remove = options.env_remove.clone();
    jobs_config.model_resolver = Some(Arc::new(crate::jobs_api::RegistryModels {
        models: models.clone(),
        project: config.project.clone(),
    }));
    jobs::Jobs::open(jobs_config)
        .await
        .map_err(|e| registry_error(e.to_string()))
}

/// A server whose configured models are loaded, not yet listening: [`Server::load`], then
/// [`Server::serve`]. The binary binds its ports in between, so that they open only once the
/// `--model` / `--model-base-path` versions are AVAILABLE (or have failed and say why), as TF
/// Serving does; models created later through the API load in the background.
pub struct Server {
    config: ServeConfig,
    models: Arc<ModelLifecycle>,
    metrics: Arc<Metrics>,
    jobs: Arc<jobs::Jobs>,
}

impl Server {
    /// Opens the registry and the jobs, and loads the file-system models' versions (each with
    /// its check prediction). Registry versions start loading in the background.
    pub async fn load(
        config: ServeConfig,
        loader: Option<Arc<dyn ModelLoader>>,
    ) -> Result<Server, ServingError> {
        let loader = loader.unwrap_or_else(|| {
            // The budget is checked for the largest batch a version runs: a merged batch, or a
            // request's own rows (a 1.5 MB body holds at most a few hundred MNIST images).
            let max_batch = config
                .batching
                .as_ref()
                .map_or(savedmodel_runtime::DEFAULT_MAX_BATCH, |b| {
                    b.max_batch_size.max(savedmodel_runtime::DEFAULT_MAX_BATCH)
                });
            let limits = savedmodel_runtime::LoadLimits {
                memory_budget: config.memory_budget,
                max_batch,
            };
            Arc::new(SavedModelLoader::with_limits(config.device.clone(), limits))
        });
        let metrics = Arc::new(Metrics::default());
        let models = ModelLifecycle::start(&config, loader, metrics.clone()).await?;
        let jobs = open_jobs(&config, &models).await?;
        models.load_file_models().await;
        Ok(Server {
            config,
            models,
            metrics,
            jobs,
        })
    }

    /// Serves HTTP on `listener`, and TF Serving's gRPC API on `grpc_listener` when given, until
    /// `shutdown` resolves; then stops accepting, lets in-flight requests finish (at most
    /// `shutdown_grace`) and returns.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        grpc_listener: Option<tokio::net::TcpListener>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServingError> {
        let Server {
            mut config,
            models,
            metrics,
            jobs,
        } = self;
        // The address actually bound decides the access rules (port 0, or a listener made
        // elsewhere).
        if let Ok(bound) = listener.local_addr() {
            config.addr = bound;
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        models.start_background(stop_rx.clone());
        let state = Arc::new(AppState {
            in_flight: Arc::new(Semaphore::new(config.max_concurrent_requests.max(1))),
            access: AccessRules::new(&config, config.addr),
            config,
            models,
            metrics,
            slow_bodies: SlowBodies::default(),
            jobs,
        });
        if let Some(listener) = grpc_listener {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "serving TF Serving's gRPC API");
            }
            let mut stop = stop_rx.clone();
            let grpc = crate::grpc::serve(state.clone(), listener, async move {
                let _ = stop.wait_for(|s| *s).await;
            });
            tokio::spawn(async move {
                if let Err(e) = grpc.await {
                    tracing::error!(error = %e, "the gRPC server stopped");
                }
            });
        }
        let app = crate::http::router(state.clone());
        let grace = state.config.shutdown_grace;
        let (signalled_tx, mut signalled_rx) = watch::channel(false);
        let server = crate::connections::serve_connections(
            listener,
            app,
            state.config.header_read_timeout,
            async move {
                shutdown.await;
                tracing::info!("shutting down: finishing in-flight requests");
                let _ = stop_tx.send(true);
                let _ = signalled_tx.send(true);
            },
        );
        let jobs = state.jobs.clone();
        let result = tokio::select! {
            () = server => Ok(()),
            _ = async {
                let _ = signalled_rx.wait_for(|s| *s).await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!("in-flight requests did not finish within {grace:?}; exiting");
                Ok(())
            }
        };
        // Running jobs are stopped (their trainers checkpoint) and recorded FAILED with the reason.
        jobs.shutdown().await;
        result
    }
}

/// [`Server::load`], then [`Server::serve`] on listeners already bound (connections wait in
/// their backlog while the models load).
pub async fn serve(
    config: ServeConfig,
    loader: Option<Arc<dyn ModelLoader>>,
    listener: tokio::net::TcpListener,
    grpc_listener: Option<tokio::net::TcpListener>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServingError> {
    Server::load(config, loader)
        .await?
        .serve(listener, grpc_listener, shutdown)
        .await
}
