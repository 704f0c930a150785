//! The persistent registry of Cloud ML Engine models and versions.
//!
//! One JSON document per model (`<registry>/models/<name>.json`, the model with its versions)
//! in a `storage` location, so the registry can be a local folder or `gs://` and a restarted
//! server, or a second replica, sees the same deployments. Every change goes through
//! [`Registry::mutate`]: mutations are serialized by one async lock, each re-reads the model's
//! document from the store (picking up another replica's writes), computes the new record,
//! writes it, and only then publishes it in memory, so memory never shows a state the store
//! does not have.

use std::collections::BTreeMap;
use std::sync::RwLock;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use storage::Location;

use crate::ServingError;
use crate::status::ApiError;

/// A version's lifecycle, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VersionState {
    Creating,
    Ready,
    Failed,
}

impl VersionState {
    pub fn name(self) -> &'static str {
        match self {
            VersionState::Creating => "CREATING",
            VersionState::Ready => "READY",
            VersionState::Failed => "FAILED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionRecord {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub deployment_uri: String,
    #[serde(default)]
    pub runtime_version: String,
    #[serde(default)]
    pub python_version: String,
    #[serde(default)]
    pub framework: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub state: VersionState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    pub create_time: String,
    /// The number TF Serving's routes address this version by (`/versions/<n>`), assigned in
    /// creation order and never reused within a model.
    pub serving_version: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelRecord {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub regions: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub online_prediction_logging: bool,
    pub create_time: String,
    #[serde(default)]
    pub default_version: Option<String>,
    #[serde(default)]
    pub versions: BTreeMap<String, VersionRecord>,
    /// Highest `serving_version` ever assigned, so numbers of deleted versions are not reused.
    #[serde(default)]
    pub last_serving_version: i64,
}

pub struct Registry {
    root: Location,
    records: RwLock<BTreeMap<String, ModelRecord>>,
    write_lock: tokio::sync::Mutex<()>,
}

/// Model names are also file names in the store: the API's own rule keeps them safe.
pub fn valid_resource_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 128
}

impl Registry {
    /// Opens the registry at `root`, reading every model document there.
    pub async fn open(root: Location) -> Result<Registry, ServingError> {
        let registry = Registry {
            root,
            records: RwLock::new(BTreeMap::new()),
            write_lock: tokio::sync::Mutex::new(()),
        };
        let records = registry.read_all().await?;
        *registry
            .records
            .write()
            .map_err(|_| ServingError::Poisoned)? = records;
        Ok(registry)
    }

    fn models_dir(&self) -> Location {
        self.root.join("models")
    }

    fn model_location(&self, name: &str) -> Location {
        self.models_dir().join(&format!("{name}.json"))
    }

    async fn read_all(&self) -> Result<BTreeMap<String, ModelRecord>, ServingError> {
        let dir = self.models_dir();
        let keys = dir.list().await.map_err(|source| ServingError::Registry {
            location: dir.to_string(),
            reason: source.to_string(),
        })?;
        let mut records = BTreeMap::new();
        for key in keys {
            let Some(name) = key.strip_suffix(".json") else {
                continue;
            };
            if !valid_resource_name(name) {
                continue;
            }
            if let Some(record) = self.read_model(name).await? {
                records.insert(name.to_string(), record);
            }
        }
        Ok(records)
    }

    async fn read_model(&self, name: &str) -> Result<Option<ModelRecord>, ServingError> {
        let location = self.model_location(name);
        let bytes = match location.read().await {
            Ok(bytes) => bytes,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => {
                return Err(ServingError::Registry {
                    location: location.to_string(),
                    reason: e.to_string(),
                });
            }
        };
        let record: ModelRecord =
            serde_json::from_slice(&bytes).map_err(|e| ServingError::Registry {
                location: location.to_string(),
                reason: format!("not a model record: {e}"),
            })?;
        if record.name != name {
            return Err(ServingError::Registry {
                location: location.to_string(),
                reason: format!("the record names model {:?}, not {name:?}", record.name),
            });
        }
        Ok(Some(record))
    }

    /// Re-reads the whole store (another replica may have changed it) and returns the records.
    pub async fn refresh(&self) -> Result<Vec<ModelRecord>, ServingError> {
        let _guard = self.write_lock.lock().await;
        let records = self.read_all().await?;
        let list = records.values().cloned().collect();
        *self.records.write().map_err(|_| ServingError::Poisoned)? = records;
        Ok(list)
    }

    pub fn get(&self, name: &str) -> Option<ModelRecord> {
        self.records.read().ok()?.get(name).cloned()
    }

    pub fn list(&self) -> Vec<ModelRecord> {
        self.records
            .read()
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Applies `change` to model `name` atomically with respect to other mutations: `change`
    /// sees the current record (`None` if absent) and returns the new one (`None` deletes it)
    /// plus a value for the caller. Nothing is stored or published if `change` fails.
    pub async fn mutate<T>(
        &self,
        name: &str,
        change: impl FnOnce(Option<&ModelRecord>) -> Result<(Option<ModelRecord>, T), ApiError>,
    ) -> Result<T, ApiError> {
        if !valid_resource_name(name) {
            return Err(ApiError::invalid(format!(
                "{name:?} is not a valid model name"
            )));
        }
        let _guard = self.write_lock.lock().await;
        let current = self
            .read_model(name)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let (next, value) = change(current.as_ref())?;
        let location = self.model_location(name);
        match &next {
            Some(record) => {
                let text = serde_json::to_vec_pretty(record)
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                location
                    .write(Bytes::from(text))
                    .await
                    .map_err(|e| ApiError::internal(format!("cannot save the registry: {e}")))?;
            }
            None => {
                if current.is_some() {
                    location.delete().await.map_err(|e| {
                        ApiError::internal(format!("cannot save the registry: {e}"))
                    })?;
                }
            }
        }
        let mut records = self
            .records
            .write()
            .map_err(|_| ApiError::internal("registry lock poisoned"))?;
        match next {
            Some(record) => {
                records.insert(name.to_string(), record);
            }
            None => {
                records.remove(name);
            }
        }
        Ok(value)
    }
}

/// Now as RFC 3339 UTC with seconds (`2024-05-01T12:00:00Z`), as Google APIs print times.
pub fn now_rfc3339() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    rfc3339(seconds)
}

fn rfc3339(unix_seconds: i64) -> String {
    let days = unix_seconds.div_euclid(86_400);
    let secs = unix_seconds.rem_euclid(86_400);
    // Howard Hinnant's days → civil date.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str) -> ModelRecord {
        ModelRecord {
            name: name.into(),
            description: String::new(),
            regions: vec![],
            labels: BTreeMap::new(),
            online_prediction_logging: false,
            create_time: now_rfc3339(),
            default_version: None,
            versions: BTreeMap::new(),
            last_serving_version: 0,
        }
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn names() {
        assert!(valid_resource_name("mnist_2"));
        assert!(!valid_resource_name("2mnist"));
        assert!(!valid_resource_name("../x"));
        assert!(!valid_resource_name(""));
        assert!(!valid_resource_name("a-b"));
    }

    #[tokio::test]
    async fn mutations_persist_and_reopen() {
        let root = Location::parse("memory://registry-test-persist/reg").unwrap();
        let registry = Registry::open(root.clone()).await.unwrap();
        registry
            .mutate("mnist", |cur| {
                assert!(cur.is_none());
                Ok((Some(model("mnist")), ()))
            })
            .await
            .unwrap();
        let refused = registry
            .mutate("mnist", |_| {
                Err::<(Option<ModelRecord>, ()), _>(ApiError::invalid("no"))
            })
            .await;
        assert!(refused.is_err());
        let reopened = Registry::open(root.clone()).await.unwrap();
        assert_eq!(reopened.list().len(), 1);
        assert_eq!(reopened.get("mnist").unwrap().name, "mnist");
        reopened.mutate("mnist", |_| Ok((None, ()))).await.unwrap();
        assert!(Registry::open(root).await.unwrap().list().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_mutations_do_not_lose_updates() {
        let root = Location::parse("memory://registry-test-concurrent/reg").unwrap();
        let registry = std::sync::Arc::new(Registry::open(root.clone()).await.unwrap());
        registry
            .mutate("m", |_| Ok((Some(model("m")), ())))
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..20 {
            let registry = registry.clone();
            tasks.push(tokio::spawn(async move {
                registry
                    .mutate("m", |cur| {
                        let mut next = cur.cloned().unwrap();
                        next.labels.insert(format!("k{i}"), "v".into());
                        Ok((Some(next), ()))
                    })
                    .await
                    .unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            Registry::open(root)
                .await
                .unwrap()
                .get("m")
                .unwrap()
                .labels
                .len(),
            20
        );
    }

    #[tokio::test]
    async fn corrupt_record_names_the_file() {
        let root = Location::parse("memory://registry-test-corrupt/reg").unwrap();
        root.join("models/bad.json")
            .write(Bytes::from_static(b"{nope"))
            .await
            .unwrap();
        let err = Registry::open(root).await.err().unwrap().to_string();
        assert!(
            err.contains("models/bad.json") && err.contains("not a model record"),
            "{err}"
        );
    }
}
