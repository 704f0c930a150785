//! Process-wide store instances, shared by every [`crate::Location`] that points into them.
//!
//! Building a `gs://` store creates an HTTP client and reads credentials, so one store per
//! (bucket, endpoint) is kept for the life of the process. `memory://` stores must be shared by
//! name for a write and a later read in the same process to see the same data.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use object_store::ObjectStore;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;

use crate::StorageError;
use crate::emulator::EmulatorConnector;

pub(crate) fn local_store() -> Arc<dyn ObjectStore> {
    static LOCAL: OnceLock<Arc<LocalFileSystem>> = OnceLock::new();
    // Rooted at `/`: object keys are absolute paths without the leading slash. No automatic
    // cleanup: it would remove empty directories all the way up towards `/`, including ones the
    // user made. `delete_tree` tidies up only inside the tree it deleted.
    LOCAL
        .get_or_init(|| Arc::new(LocalFileSystem::new()))
        .clone()
}

pub(crate) fn memory_store(name: &str) -> Arc<dyn ObjectStore> {
    static MEMORY: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    let registry = MEMORY.get_or_init(Default::default);
    // A poisoned lock only means another thread panicked while inserting; the map is still valid.
    let mut stores = registry
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    stores
        .entry(name.to_string())
        .or_insert_with(|| Arc::new(InMemory::new()))
        .clone()
}

pub(crate) fn gcs_store(
    bucket: &str,
    emulator_endpoint: Option<&str>,
    location: &str,
) -> Result<Arc<dyn ObjectStore>, StorageError> {
    type Key = (String, Option<String>);
    static GCS: OnceLock<Mutex<HashMap<Key, Arc<dyn ObjectStore>>>> = OnceLock::new();
    let key = (bucket.to_string(), emulator_endpoint.map(str::to_string));
    let registry = GCS.get_or_init(Default::default);
    let mut stores = registry
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(store) = stores.get(&key) {
        return Ok(store.clone());
    }
    let builder = match emulator_endpoint {
        Some(endpoint) => emulator_builder(endpoint),
        None => GoogleCloudStorageBuilder::from_env(),
    };
    let store =
        builder
            .with_bucket_name(bucket)
            .build()
            .map_err(|source| StorageError::Config {
                location: location.to_string(),
                reason: match emulator_endpoint {
                    Some(endpoint) => format!("GCS emulator client for {endpoint}"),
                    None => "Google Cloud Storage client (credentials?)".to_string(),
                },
                source: Some(source),
            })?;
    let store: Arc<dyn ObjectStore> = Arc::new(store);
    stores.insert(key, store.clone());
    Ok(store)
}

/// A GCS client for an emulator: object_store skips OAuth when a service-account key says
/// `disable_oauth`, and takes the emulator's URL from its `gcs_base_url`. The environment is not
/// read (`new`, not `from_env`), so real credentials can never be sent to an emulator. The HTTP
/// layer bridges the emulator's gaps in GCS's XML API (see the `emulator` module).
fn emulator_builder(endpoint: &str) -> GoogleCloudStorageBuilder {
    let key = serde_json::json!({
        "gcs_base_url": endpoint,
        "disable_oauth": true,
        "client_email": "",
        "private_key": "",
        "private_key_id": "",
    });
    // An emulator is local: fail fast instead of retrying for minutes as for a cloud service.
    let retry = object_store::RetryConfig {
        max_retries: 2,
        retry_timeout: Duration::from_secs(10),
        ..Default::default()
    };
    let base_path = url::Url::parse(endpoint)
        .map(|url| url.path().trim_end_matches('/').to_string())
        .unwrap_or_default();
    GoogleCloudStorageBuilder::new()
        .with_service_account_key(key.to_string())
        .with_http_connector(EmulatorConnector { base_path })
        .with_client_options(
            object_store::ClientOptions::new()
                .with_allow_http(true)
                .with_connect_timeout(Duration::from_secs(5)),
        )
        .with_retry(retry)
}
