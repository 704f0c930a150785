//! The model lifecycle every API serves from: which models exist (command-line models, polled
//! base paths, the registry of deployments), loading a version and its check prediction, the
//! served table with versions, labels and default versions, readiness, and the pollers that
//! follow the file system and other replicas. The protocol modules (`cmle`, `tf_serving`, `v2`,
//! `vertex`, `grpc`) only translate requests into lookups on [`ModelTable`] and runs of a
//! [`ServedVersion`].

pub mod predictor;
pub mod registry;
pub mod table;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use storage::Location;
use tokio::sync::watch;

use crate::ServingError;
use crate::batching::BatchingConfig;
use crate::metrics::Metrics;
use crate::server::ServeConfig;
use crate::status::{ApiError, Code};
use predictor::{ModelLoader, check_prediction};
use registry::{Registry, VersionState};
use table::{ModelTable, ServedModel, ServedVersion, Slot, Source};

/// What the lifecycle needs from [`ServeConfig`].
struct LifecycleSettings {
    registry: String,
    poll_interval: Duration,
    registry_poll_interval: Duration,
    batching: Option<BatchingConfig>,
    /// `--allow-origin` as given, for messages.
    allowed_origins: Vec<String>,
}

/// The served models and everything that loads, checks, publishes and unloads them.
pub struct ModelLifecycle {
    settings: LifecycleSettings,
    pub registry: Registry,
    pub table: ModelTable,
    loader: Arc<dyn ModelLoader>,
    metrics: Arc<Metrics>,
    /// Parsed `--allow-origin` prefixes (canonical URLs; local folders with symlinks resolved).
    allowed_origins: Vec<String>,
}

impl ModelLifecycle {
    /// Opens the registry, registers the file-system models and starts loading everything.
    pub async fn start(
        config: &ServeConfig,
        loader: Arc<dyn ModelLoader>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<ModelLifecycle>, ServingError> {
        let registry_root =
            Location::parse(&config.registry).map_err(|e| ServingError::Registry {
                location: config.registry.clone(),
                reason: e.to_string(),
            })?;
        let registry = Registry::open(registry_root).await?;
        let mut allowed_origins = Vec::new();
        for prefix in &config.allowed_origins {
            let location = Location::parse(prefix)
                .map_err(|e| ServingError::Config(format!("--allow-origin {prefix}: {e}")))?;
            let location = canonical_if_local(&location).unwrap_or(location);
            allowed_origins.push(location.url().trim_end_matches('/').to_string());
        }
        let lifecycle = Arc::new(ModelLifecycle {
            settings: LifecycleSettings {
                registry: config.registry.clone(),
                poll_interval: config.poll_interval,
                registry_poll_interval: config.registry_poll_interval,
                batching: config.batching.clone(),
                allowed_origins: config.allowed_origins.clone(),
            },
            registry,
            table: ModelTable::default(),
            loader,
            metrics,
            allowed_origins,
        });

        let mut file_models = BTreeMap::new();
        for (name, url) in &config.models {
            file_models.insert(name.clone(), Source::Single(url.clone()));
        }
        for (name, url) in &config.base_paths {
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
            if lifecycle.registry.get(name).is_some() {
                return Err(ServingError::Config(format!(
                    "model {name:?} is given on the command line and also exists in the registry {}",
                    lifecycle.settings.registry
                )));
            }
            lifecycle
                .table
                .with_mut(|models| models.insert(name.clone(), ServedModel::new(source.clone())));
        }
        lifecycle.sync_registry_models(true);
        Ok(lifecycle)
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

    /// [`ModelLifecycle::load_and_check`] of a location already parsed (`uri` names it in messages).
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
            self.settings.batching.as_ref(),
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
                Code::PermissionDenied,
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
                Code::PermissionDenied,
                format!(
                    "deploymentUri {uri:?}{resolved} is outside the allowed origins ({}); start \
                     the server with --allow-origin to allow it",
                    self.settings.allowed_origins.join(", ")
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

    /// The file-system models (`--model`, `--model-base-path`, Vertex's `AIP_STORAGE_URI`).
    fn file_models(&self) -> Vec<(String, Source)> {
        self.table.with(|models| {
            models
                .iter()
                .filter(|(_, m)| m.source != Source::Registry)
                .map(|(n, m)| (n.clone(), m.source.clone()))
                .collect()
        })
    }

    /// Loads every file-system model's version once, all at the same time, and returns when each
    /// is AVAILABLE or has failed (logged, and shown on its status). The server calls this before
    /// it listens, as TF Serving loads its configured models before opening its ports: the first
    /// request finds them. Registry versions keep loading in the background.
    pub async fn load_file_models(self: &Arc<Self>) {
        let mut loads = tokio::task::JoinSet::new();
        for (name, source) in self.file_models() {
            let state = self.clone();
            loads.spawn(async move { state.poll_file_model(&name, &source).await });
        }
        while loads.join_next().await.is_some() {}
    }

    /// Starts the pollers: base paths (after the first poll, [`ModelLifecycle::load_file_models`])
    /// and the registry (for other replicas' changes).
    pub fn start_background(self: &Arc<Self>, shutdown: watch::Receiver<bool>) {
        for (name, source) in self.file_models() {
            if !matches!(source, Source::BasePath(_)) {
                continue;
            }
            let state = self.clone();
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(state.settings.poll_interval) => {}
                        _ = shutdown.changed() => return,
                    }
                    state.poll_file_model(&name, &source).await;
                }
            });
        }
        let state = self.clone();
        let mut shutdown = shutdown;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(state.settings.registry_poll_interval) => {}
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
