//! The server's shared state, start-up, model loading and the file-system watcher.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use storage::Location;
use tokio::sync::{Semaphore, watch};

use crate::ServingError;
use crate::access::AccessRules;
use crate::batching::BatchingConfig;
use crate::body::{BodyLimits, SlowBodies};
use crate::metrics::Metrics;
use crate::models::{ModelTable, ServedModel, ServedVersion, Slot, Source};
use crate::predictor::{ModelLoader, SavedModelLoader, check_prediction};
use crate::registry::{Registry, VersionState};
use crate::status::ApiError;

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
            jobs: JobsOptions::default(),
        }
    }
}

pub struct AppState {
    pub config: ServeConfig,
    pub registry: Registry,
    pub table: ModelTable,
    pub loader: Arc<dyn ModelLoader>,
    pub metrics: Arc<Metrics>,
    pub in_flight: Arc<Semaphore>,
    /// Parsed `--allow-origin` prefixes (canonical URLs; local folders with symlinks resolved).
    pub allowed_origins: Vec<String>,
    /// Who may change deployments.
    pub access: AccessRules,
    /// Slow request bodies being received, per client address.
    pub slow_bodies: SlowBodies,
    /// Cloud ML Engine jobs (training runs of our trainer).
    pub jobs: Arc<jobs::Jobs>,
}

impl AppState {
    /// Opens the registry, registers the file-system models and starts loading everything.
    pub async fn start(
        config: ServeConfig,
        loader: Arc<dyn ModelLoader>,
    ) -> Result<Arc<AppState>, ServingError> {
        let registry_root =
            Location::parse(&config.registry).map_err(|e| ServingError::Registry {
                location: config.registry.clone(),
                reason: e.to_string(),
            })?;
        let registry = Registry::open(registry_root.clone()).await?;
        let options = &config.jobs;
        let mut jobs_config = jobs::JobsConfig::new(registry_root);
        jobs_config.trainer = options.trainer.clone();
        jobs_config.allow_cpu = options.allow_cpu;
        jobs_config.max_concurrent_cpu_jobs = options.max_concurrent_jobs.max(1);
        jobs_config.cancel_grace = options.cancel_grace;
        jobs_config.env_remove = options.env_remove.clone();
        let jobs = jobs::Jobs::open(jobs_config)
            .await
            .map_err(|e| ServingError::Registry {
                location: config.registry.clone(),
                reason: e.to_string(),
            })?;
        let mut allowed_origins = Vec::new();
        for prefix in &config.allowed_origins {
            let location = Location::parse(prefix)
                .map_err(|e| ServingError::Config(format!("--allow-origin {prefix}: {e}")))?;
            let location = canonical_if_local(&location).unwrap_or(location);
            allowed_origins.push(location.url().trim_end_matches('/').to_string());
        }
        let access = AccessRules::new(&config, config.addr);
        let state = Arc::new(AppState {
            in_flight: Arc::new(Semaphore::new(config.max_concurrent_requests.max(1))),
            config,
            registry,
            table: ModelTable::default(),
            loader,
            metrics: Arc::new(Metrics::default()),
            allowed_origins,
            access,
            slow_bodies: SlowBodies::default(),
            jobs,
        });

        let mut file_models = BTreeMap::new();
        for (name, url) in &state.config.models {
            file_models.insert(name.clone(), Source::Single(url.clone()));
        }
        for (name, url) in &state.config.base_paths {
            if file_models
                .insert(name.clone(), Source::BasePath(url.clone()))
                .is_some()
            {
                return Err(ServingError::Config(format!(
                    "model {name:?} is given twice"
                )));
            }
        }
        for (name, source) in &file_models {
            if state.registry.get(name).is_some() {
                return Err(ServingError::Config(format!(
                    "model {name:?} is given on the command line and also exists in the registry {}",
                    state.config.registry
                )));
            }
            state
                .table
                .with_mut(|models| models.insert(name.clone(), ServedModel::new(source.clone())));
        }
        state.sync_registry_models(true);
        Ok(state)
    }

    /// The limits request bodies are received under.
    pub fn body_limits(&self) -> BodyLimits {
        BodyLimits {
            max_bytes: self.config.max_body_bytes,
            timeout: self.config.body_read_timeout,
            min_rate: self.config.min_body_rate,
            max_slow_per_client: self.config.max_slow_bodies_per_client.max(1),
        }
    }

    /// Brings the served table in line with the registry: loads versions that should be served
    /// and are not, drops models and versions that are gone. `resume_creating`: also (re)load
    /// versions left CREATING (at start-up, when no other process is loading them for us).
    pub fn sync_registry_models(self: &Arc<Self>, resume_creating: bool) {
        let records = self.registry.list();
        let mut to_load = Vec::new();
        self.table.with_mut(|models| {
            models.retain(|name, m| {
                m.source != Source::Registry || records.iter().any(|r| &r.name == name)
            });
            for record in &records {
                let served = models
                    .entry(record.name.clone())
                    .or_insert_with(|| ServedModel::new(Source::Registry));
                if served.source != Source::Registry {
                    continue;
                }
                served.labels = record
                    .versions
                    .values()
                    .map(|v| (v.name.clone(), v.serving_version))
                    .collect();
                served.default_version = record
                    .default_version
                    .as_ref()
                    .and_then(|d| record.versions.get(d))
                    .map(|v| v.serving_version);
                served
                    .versions
                    .retain(|n, _| record.versions.values().any(|v| v.serving_version == *n));
                for version in record.versions.values() {
                    let wanted = match version.state {
                        VersionState::Ready => true,
                        VersionState::Creating => resume_creating,
                        VersionState::Failed => false,
                    };
                    if wanted && !served.versions.contains_key(&version.serving_version) {
                        served
                            .versions
                            .insert(version.serving_version, Slot::Loading);
                        to_load.push((
                            record.name.clone(),
                            version.name.clone(),
                            version.serving_version,
                            version.deployment_uri.clone(),
                        ));
                    }
                }
            }
        });
        for (model, version, number, uri) in to_load {
            let state = self.clone();
            tokio::spawn(async move {
                state
                    .load_registry_version(model, version, number, uri)
                    .await
            });
        }
    }

    /// Loads a registry version, publishes it, and records READY or FAILED in the registry.
    pub async fn load_registry_version(
        self: Arc<Self>,
        model: String,
        version: String,
        number: i64,
        uri: String,
    ) {
        // The origin is checked again as it is loaded: a symlink may have changed since.
        let result = match self.check_origin(&uri) {
            Ok(location) => {
                self.load_location_and_check(&model, number, &uri, location)
                    .await
            }
            Err(error) => Err(error.message),
        };
        let (slot, state, error) = match result {
            Ok(served) => (Slot::Available(Arc::new(served)), VersionState::Ready, None),
            Err(message) => (
                Slot::Failed(message.clone()),
                VersionState::Failed,
                Some(message),
            ),
        };
        // Publish before recording READY, so a client that sees READY can predict at once.
        let still_wanted = self.table.with_mut(|models| {
            let Some(served) = models.get_mut(&model) else {
                return false;
            };
            match served.versions.get_mut(&number) {
                Some(existing) => {
                    *existing = slot;
                    true
                }
                None => false,
            }
        });
        if !still_wanted {
            return;
        }
        match &error {
            None => tracing::info!(model, version, number, uri, "version is READY"),
            Some(e) => tracing::warn!(model, version, number, uri, error = %e, "version FAILED"),
        }
        let recorded = self
            .registry
            .mutate(&model, |current| {
                let Some(mut record) = current.cloned() else {
                    return Ok((None, ()));
                };
                match record.versions.get_mut(&version) {
                    // Only the creation's outcome is recorded: a replica that merely follows a READY
                    // version never rewrites its state.
                    Some(v) if v.serving_version == number && v.state == VersionState::Creating => {
                        v.state = state;
                        v.error_message = error.clone();
                    }
                    _ => return Ok((Some(record), ())),
                }
                Ok((Some(record), ()))
            })
            .await;
        if let Err(e) = recorded {
            tracing::error!(model, version, error = %e, "cannot record the version's state");
        }
    }

    /// Loads the model at `uri`, runs the check prediction (off the reactor) and builds the
    /// served version. Errors are the message a user sees on the version.
    pub async fn load_and_check(
        &self,
        model: &str,
        number: i64,
        uri: &str,
    ) -> Result<ServedVersion, String> {
        let location = Location::parse(uri).map_err(|e| format!("cannot use {uri}: {e}"))?;
        self.load_location_and_check(model, number, uri, location)
            .await
    }

    /// [`AppState::load_and_check`] of a location already parsed (`uri` names it in messages).
    async fn load_location_and_check(
        &self,
        model: &str,
        number: i64,
        uri: &str,
        location: Location,
    ) -> Result<ServedVersion, String> {
        let predictor = self
            .loader
            .load(location)
            .await
            .map_err(|e| format!("cannot load the model at {uri}: {e}"))?;
        let checked = predictor.clone();
        let report = tokio::task::spawn_blocking(move || check_prediction(checked.as_ref()))
            .await
            .map_err(|e| format!("check prediction crashed: {e}"))?
            .map_err(|e| format!("model at {uri}: {e}"))?;
        ServedVersion::new(
            model,
            number,
            predictor,
            report,
            self.config.batching.as_ref(),
            self.metrics.clone(),
        )
    }

    /// Refuses a deployment URI outside `--allow-origin`, or with `..` segments. Local folders
    /// are resolved with symlinks followed, the folder and every file in it, so a link inside an
    /// allowed folder cannot reach outside it; the location returned is the resolved one.
    pub fn check_origin(&self, uri: &str) -> Result<Location, ApiError> {
        let has_dot_dot = uri.split(['/', '\\']).any(|segment| segment == "..");
        if has_dot_dot {
            return Err(ApiError::new(
                crate::status::Code::PermissionDenied,
                format!("deploymentUri {uri:?} contains a '..' segment, which is refused"),
            ));
        }
        let location = Location::parse(uri)
            .map_err(|e| ApiError::invalid(format!("deploymentUri {uri:?}: {e}")))?;
        if self.allowed_origins.is_empty() {
            return Ok(location);
        }
        let outside = |resolved: &str| {
            ApiError::new(
                crate::status::Code::PermissionDenied,
                format!(
                    "deploymentUri {uri:?}{resolved} is outside the allowed origins ({}); start \
                     the server with --allow-origin to allow it",
                    self.config.allowed_origins.join(", ")
                ),
            )
        };
        let Some(path) = location.local_path() else {
            return if self.is_allowed(&location.url()) {
                Ok(location)
            } else {
                Err(outside(""))
            };
        };
        let resolved = match resolve_local_tree(&path) {
            Ok(resolved) => resolved,
            // Nothing to follow: a path that is outside as written is refused as such.
            Err(_) if !self.is_allowed(&location.url()) => return Err(outside("")),
            Err(e) => return Err(ApiError::invalid(format!("deploymentUri {uri:?}: {e}"))),
        };
        for (shown, url) in &resolved.urls {
            if !self.is_allowed(url) {
                return Err(outside(&if shown.as_os_str().is_empty() {
                    format!(" (resolved: {url})")
                } else {
                    format!(" ({} resolves to {url})", shown.display())
                }));
            }
        }
        Ok(resolved.root)
    }

    fn is_allowed(&self, url: &str) -> bool {
        let url = url.trim_end_matches('/');
        self.allowed_origins.iter().any(|prefix| {
            url == prefix
                || url
                    .strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        })
    }

    /// Starts the pollers: file-system models and the registry (for other replicas' changes).
    pub fn start_background(self: &Arc<Self>, shutdown: watch::Receiver<bool>) {
        let file_models: Vec<(String, Source)> = self.table.with(|models| {
            models
                .iter()
                .filter(|(_, m)| m.source != Source::Registry)
                .map(|(n, m)| (n.clone(), m.source.clone()))
                .collect()
        });
        for (name, source) in file_models {
            let state = self.clone();
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    state.poll_file_model(&name, &source).await;
                    if matches!(source, Source::Single(_)) {
                        return;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(state.config.poll_interval) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            });
        }
        let state = self.clone();
        let mut shutdown = shutdown;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(state.config.registry_poll_interval) => {}
                    _ = shutdown.changed() => return,
                }
                match state.registry.refresh().await {
                    Ok(_) => state.sync_registry_models(false),
                    Err(e) => tracing::warn!(error = %e, "cannot re-read the registry"),
                }
            }
        });
    }

    /// One poll of a file-system model: serve the highest version that loads, keep the one
    /// serving until a newer one is available, unload versions whose folder disappeared.
    pub async fn poll_file_model(&self, name: &str, source: &Source) {
        let present: Vec<(i64, String)> = match source {
            Source::Single(url) => vec![(1, url.clone())],
            Source::BasePath(base) => match list_versions(base).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(model = name, base, error = %e, "cannot list the base path");
                    return;
                }
            },
            Source::Registry => return,
        };
        // Forget versions whose folder is gone (in-flight requests keep their Arc).
        let candidate = self.table.with_mut(|models| {
            let served = models.get_mut(name)?;
            served
                .versions
                .retain(|n, _| present.iter().any(|(p, _)| p == n));
            present
                .iter()
                .rev()
                .find(|(n, _)| !matches!(served.versions.get(n), Some(Slot::Failed(_))))
                .cloned()
        });
        let Some((number, url)) = candidate else {
            return;
        };
        let already = self.table.with(|models| {
            models
                .get(name)
                .and_then(|m| m.versions.get(&number))
                .is_some_and(|s| matches!(s, Slot::Available(_)))
        });
        if !already {
            self.table.set_slot(name, number, Slot::Loading);
            tracing::info!(model = name, version = number, url, "loading version");
            let slot = match self.load_and_check(name, number, &url).await {
                Ok(served) => {
                    tracing::info!(model = name, version = number, "version is AVAILABLE");
                    Slot::Available(Arc::new(served))
                }
                Err(e) => {
                    tracing::warn!(model = name, version = number, error = %e, "version failed to load");
                    Slot::Failed(e)
                }
            };
            self.table.set_slot(name, number, slot);
        }
        // Once the candidate serves, older versions are unloaded (TF Serving's "latest 1").
        self.table.with_mut(|models| {
            if let Some(served) = models.get_mut(name)
                && matches!(served.versions.get(&number), Some(Slot::Available(_)))
            {
                served
                    .versions
                    .retain(|n, slot| *n >= number || matches!(slot, Slot::Failed(_)));
            }
        });
    }
}

/// A local location with symlinks resolved, when it exists (else `None`).
fn canonical_if_local(location: &Location) -> Option<Location> {
    let canonical = std::fs::canonicalize(location.local_path()?).ok()?;
    Location::parse(canonical.to_str()?).ok()
}

/// A local model folder with every symlink resolved.
struct ResolvedTree {
    /// The folder itself, resolved.
    root: Location,
    /// `(path relative to the folder as given, resolved URL)` for the folder (empty path) and
    /// every entry under it.
    urls: Vec<(std::path::PathBuf, String)>,
}

/// Most entries and depth looked at under a model folder: a SavedModel has a handful of files.
const MAX_ORIGIN_ENTRIES: usize = 10_000;
const MAX_ORIGIN_DEPTH: usize = 16;

/// Resolves `path` and everything under it (symlinks followed) for the allow-list check.
fn resolve_local_tree(path: &std::path::Path) -> Result<ResolvedTree, String> {
    let url_of = |canonical: &std::path::Path| -> Result<String, String> {
        let text = canonical
            .to_str()
            .ok_or_else(|| format!("{} is not a UTF-8 path", canonical.display()))?;
        Location::parse(text)
            .map(|l| l.url())
            .map_err(|e| e.to_string())
    };
    let canonical = std::fs::canonicalize(path)
        .map_err(|e| format!("cannot resolve {}: {e}", path.display()))?;
    let root_text = canonical
        .to_str()
        .ok_or_else(|| format!("{} is not a UTF-8 path", canonical.display()))?;
    let root = Location::parse(root_text).map_err(|e| e.to_string())?;
    let mut urls = vec![(std::path::PathBuf::new(), root.url())];
    let mut pending = vec![(std::path::PathBuf::new(), 0usize)];
    while let Some((relative, depth)) = pending.pop() {
        let dir = path.join(&relative);
        if !std::fs::metadata(&dir).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        if depth >= MAX_ORIGIN_DEPTH {
            return Err(format!("{} is nested too deeply", dir.display()));
        }
        let entries =
            std::fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
            let child = relative.join(entry.file_name());
            let resolved = std::fs::canonicalize(path.join(&child))
                .map_err(|e| format!("cannot resolve {}: {e}", path.join(&child).display()))?;
            urls.push((child.clone(), url_of(&resolved)?));
            if urls.len() > MAX_ORIGIN_ENTRIES {
                return Err(format!(
                    "{} holds more than {MAX_ORIGIN_ENTRIES} entries",
                    path.display()
                ));
            }
            pending.push((child, depth + 1));
        }
    }
    Ok(ResolvedTree { root, urls })
}

/// Numbered version folders under `base` that hold a complete SavedModel (their
/// `saved_model.pb` is written last), as `(number, url)`, ascending.
async fn list_versions(base: &str) -> Result<Vec<(i64, String)>, String> {
    let location = Location::parse(base).map_err(|e| e.to_string())?;
    let keys = location.list().await.map_err(|e| e.to_string())?;
    let mut versions = BTreeMap::new();
    for key in keys {
        let Some((folder, file)) = key.split_once('/') else {
            continue;
        };
        if file != "saved_model.pb"
            || folder.is_empty()
            || !folder.bytes().all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(number) = folder.parse::<i64>() else {
            continue;
        };
        // `1` and `001` name the same version; the first listed wins, as in TF Serving.
        versions
            .entry(number)
            .or_insert_with(|| location.join(folder).url());
    }
    Ok(versions.into_iter().collect())
}

/// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish (at
/// most `shutdown_grace`) and returns.
pub async fn serve(
    config: ServeConfig,
    loader: Option<Arc<dyn ModelLoader>>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServingError> {
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
    let mut config = config;
    // The address actually bound decides the access rules (port 0, or a listener made elsewhere).
    if let Ok(bound) = listener.local_addr() {
        config.addr = bound;
    }
    let state = AppState::start(config, loader).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    state.start_background(stop_rx);
    let app = crate::routes::router(state.clone());
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
