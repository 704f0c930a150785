//! What this process serves: every model by name, its versions by number, and the state of each
//! (loading, available, failed). Registry models get their versions from Cloud ML Engine API
//! calls; file-system models (`--model`, `--model-base-path`) from folders that are polled.
//!
//! A version is published as available only after it loaded and passed a check prediction; a
//! request takes an `Arc` of the version it resolved, so unloading never cuts a request short.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use savedmodel_runtime::{DEFAULT_SIGNATURE, HostTensor};

use super::predictor::{CheckReport, Predictor};
use crate::batching::{Batcher, BatchingConfig};
use crate::metrics::Metrics;
use crate::status::{ApiError, Code};

/// Where a model's versions come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Versions created through the Cloud ML Engine API; numbered in creation order.
    Registry,
    /// Numbered version folders under a base path, polled (`--model-base-path`).
    BasePath(String),
    /// One SavedModel folder served as version 1 (`--model`).
    Single(String),
}

/// A loaded model version, ready to predict.
pub struct ServedVersion {
    pub model: String,
    pub version: i64,
    pub predictor: Arc<dyn Predictor>,
    pub batcher: Option<Batcher>,
}

impl ServedVersion {
    pub fn new(
        model: &str,
        version: i64,
        predictor: Arc<dyn Predictor>,
        report: CheckReport,
        batching: Option<&BatchingConfig>,
        metrics: Arc<Metrics>,
    ) -> Result<ServedVersion, String> {
        let batcher = match batching {
            Some(config) if report.batchable => Some(
                Batcher::start(
                    predictor.clone(),
                    config,
                    metrics,
                    &format!("{model}-{version}"),
                )
                .map_err(|e| format!("cannot start batching threads: {e}"))?,
            ),
            _ => None,
        };
        Ok(ServedVersion {
            model: model.to_string(),
            version,
            predictor,
            batcher,
        })
    }

    /// Runs a signature directly (no batching), on the blocking pool.
    pub async fn run_direct(
        self: &Arc<Self>,
        signature: String,
        inputs: BTreeMap<String, HostTensor>,
        metrics: Arc<Metrics>,
        rows: Option<usize>,
    ) -> Result<BTreeMap<String, HostTensor>, ApiError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(rows) = rows {
                metrics.observe_batch(rows);
            }
            this.predictor.run(&signature, &inputs)
        })
        .await
        .map_err(|e| ApiError::internal(format!("prediction task failed: {e}")))?
    }

    /// Runs the default signature on one request's `rows` instances: merged with concurrent
    /// requests by the batcher when it takes them (`arrival` was announced before the body was
    /// read), else on its own. Returns only this request's rows of the outputs.
    pub async fn infer_rows(
        self: &Arc<Self>,
        inputs: BTreeMap<String, HostTensor>,
        rows: usize,
        arrival: Option<crate::batching::Arrival>,
        metrics: Arc<Metrics>,
    ) -> Result<BTreeMap<String, HostTensor>, ApiError> {
        if let (Some(batcher), Some(arrival)) = (&self.batcher, arrival)
            && batcher.accepts(rows)
        {
            let out = batcher.predict(inputs, rows, arrival).await?;
            return out
                .outputs
                .iter()
                .map(|(name, tensor)| {
                    let mine = tensor.slice_rows(out.rows.clone()).map_err(|e| {
                        ApiError::internal(format!("output {name}: {e} for this request"))
                    })?;
                    Ok((name.clone(), mine))
                })
                .collect();
        }
        self.run_direct(DEFAULT_SIGNATURE.to_string(), inputs, metrics, Some(rows))
            .await
    }
}

/// One version slot of a served model.
#[derive(Clone)]
pub enum Slot {
    Loading,
    Available(Arc<ServedVersion>),
    /// The load or the check prediction failed; the message says why.
    Failed(String),
}

impl Slot {
    /// TF Serving's `ModelVersionStatus.State` name.
    pub fn state_name(&self) -> &'static str {
        match self {
            Slot::Loading => "LOADING",
            Slot::Available(_) => "AVAILABLE",
            Slot::Failed(_) => "END",
        }
    }
}

pub struct ServedModel {
    pub source: Source,
    pub versions: BTreeMap<i64, Slot>,
    /// Registry models: version name → number (TF Serving labels address versions by name).
    pub labels: BTreeMap<String, i64>,
    /// Registry models: the default version's number; file-system models use the latest.
    pub default_version: Option<i64>,
}

impl ServedModel {
    pub fn new(source: Source) -> ServedModel {
        ServedModel {
            source,
            versions: BTreeMap::new(),
            labels: BTreeMap::new(),
            default_version: None,
        }
    }
}

/// How a request names a version (TF Serving's `Latest`, `Specific`, label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSpec {
    /// Registry models: the default version; file-system models: the highest available.
    Default,
    Number(i64),
    Label(String),
}

#[derive(Default)]
pub struct ModelTable {
    models: RwLock<BTreeMap<String, ServedModel>>,
}

impl ModelTable {
    pub fn with<T>(&self, f: impl FnOnce(&BTreeMap<String, ServedModel>) -> T) -> T {
        match self.models.read() {
            Ok(models) => f(&models),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    pub fn with_mut<T>(&self, f: impl FnOnce(&mut BTreeMap<String, ServedModel>) -> T) -> T {
        match self.models.write() {
            Ok(mut models) => f(&mut models),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    pub fn set_slot(&self, model: &str, version: i64, slot: Slot) {
        self.with_mut(|models| {
            if let Some(m) = models.get_mut(model) {
                m.versions.insert(version, slot);
            }
        });
    }

    /// The available version a request addresses, or TF Serving's 404
    /// `Servable not found for request: …`.
    pub fn resolve(&self, model: &str, spec: &VersionSpec) -> Result<Arc<ServedVersion>, ApiError> {
        self.with(|models| {
            let not_found = || {
                let request = match spec {
                    VersionSpec::Default => format!("Latest({model})"),
                    VersionSpec::Number(n) => format!("Specific({model}, {n})"),
                    VersionSpec::Label(l) => format!("Label({model}, {l})"),
                };
                ApiError::not_found(format!("Servable not found for request: {request}"))
            };
            let served = models.get(model).ok_or_else(not_found)?;
            let number = match spec {
                VersionSpec::Number(n) => *n,
                VersionSpec::Label(label) => *served.labels.get(label).ok_or_else(|| {
                    ApiError::invalid(format!("Unrecognized servable version label: {label}"))
                })?,
                VersionSpec::Default => match served.source {
                    Source::Registry => served.default_version.ok_or_else(not_found)?,
                    _ => served
                        .versions
                        .iter()
                        .rev()
                        .find(|(_, slot)| matches!(slot, Slot::Available(_)))
                        .map(|(n, _)| *n)
                        .ok_or_else(not_found)?,
                },
            };
            match served.versions.get(&number) {
                Some(Slot::Available(version)) => Ok(version.clone()),
                _ => Err(not_found()),
            }
        })
    }

    /// Whether every configured model serves: each model with any version has the version it
    /// would answer with loaded and through its check prediction (`AVAILABLE`). Readiness probes
    /// (KServe V2's `/v2/health/ready`, Vertex AI's health route) answer from this.
    pub fn all_ready(&self) -> bool {
        self.with(|models| {
            models.values().all(|m| match m.source {
                Source::Registry => m
                    .default_version
                    .is_none_or(|n| matches!(m.versions.get(&n), Some(Slot::Available(_)))),
                _ => m.versions.values().any(|s| matches!(s, Slot::Available(_))),
            })
        })
    }

    /// `(model, version, state)` for every slot, for metrics.
    pub fn states(&self) -> Vec<(String, String, &'static str)> {
        self.with(|models| {
            models
                .iter()
                .flat_map(|(name, m)| {
                    m.versions
                        .iter()
                        .map(move |(v, slot)| (name.clone(), v.to_string(), slot.state_name()))
                })
                .collect()
        })
    }

    /// TF Serving's model status: every version seen, or one; 404 as TF Serving words it.
    pub fn status(&self, model: &str, spec: &VersionSpec) -> Result<Vec<(i64, Slot)>, ApiError> {
        self.with(|models| {
            let served = models
                .get(model)
                .filter(|m| !m.versions.is_empty())
                .ok_or_else(|| {
                    ApiError::not_found(format!("Could not find any versions of model {model}"))
                })?;
            let number = match spec {
                VersionSpec::Default => {
                    return Ok(served
                        .versions
                        .iter()
                        .map(|(n, s)| (*n, s.clone()))
                        .collect());
                }
                VersionSpec::Number(n) => *n,
                VersionSpec::Label(label) => *served.labels.get(label).ok_or_else(|| {
                    ApiError::invalid(format!("Unrecognized servable version label: {label}"))
                })?,
            };
            served
                .versions
                .get(&number)
                .map(|slot| vec![(number, slot.clone())])
                .ok_or_else(|| {
                    ApiError::new(
                        Code::NotFound,
                        format!("Could not find version {number} of model {model}"),
                    )
                })
        })
    }
}
