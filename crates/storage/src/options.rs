//! How `gs://` locations reach a store: real Google Cloud Storage or a GCS emulator.

/// The environment variable GCS client libraries honour to talk to an emulator instead of Google.
pub const STORAGE_EMULATOR_HOST: &str = "STORAGE_EMULATOR_HOST";

/// Settings that change how locations are opened.
///
/// [`crate::Location::parse`] uses [`StorageOptions::from_env`]. Tests that run in parallel
/// inside one process cannot safely set environment variables, so they pass options explicitly
/// to [`crate::Location::parse_with`] instead.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StorageOptions {
    /// Base URL of a GCS emulator such as fake-gcs-server (`http://127.0.0.1:4443`).
    /// When set, every `gs://` location talks to it without OAuth; when `None`, `gs://` uses
    /// Google Cloud Storage with object_store's standard Google credentials
    /// (`GOOGLE_SERVICE_ACCOUNT*`, `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's application
    /// default credentials, or the metadata server).
    pub gcs_emulator_endpoint: Option<String>,
}

impl StorageOptions {
    /// Options for real Google Cloud Storage, ignoring the environment.
    pub fn google_cloud() -> StorageOptions {
        StorageOptions::default()
    }

    /// Options read from the environment: `STORAGE_EMULATOR_HOST`, if set and not empty, selects
    /// the emulator. A value without a scheme (`127.0.0.1:4443`) means plain `http://`, as the
    /// Google client libraries treat it.
    pub fn from_env() -> StorageOptions {
        let endpoint = std::env::var(STORAGE_EMULATOR_HOST)
            .ok()
            .filter(|value| !value.trim().is_empty());
        StorageOptions {
            gcs_emulator_endpoint: endpoint,
        }
    }

    /// Options that send every `gs://` location to the emulator at `endpoint`.
    pub fn with_gcs_emulator(endpoint: impl Into<String>) -> StorageOptions {
        StorageOptions {
            gcs_emulator_endpoint: Some(endpoint.into()),
        }
    }

    /// The emulator base URL in canonical form (scheme added, trailing `/` removed), or an
    /// explanation of why it is unusable.
    pub(crate) fn normalized_emulator_endpoint(&self) -> Option<Result<String, String>> {
        let raw = self.gcs_emulator_endpoint.as_deref()?.trim();
        let with_scheme = if raw.contains("://") {
            raw.to_string()
        } else {
            format!("http://{raw}")
        };
        let parsed = match url::Url::parse(&with_scheme) {
            Ok(parsed) => parsed,
            Err(error) => {
                return Some(Err(format!(
                    "GCS emulator endpoint {raw:?} is not a URL: {error}"
                )));
            }
        };
        if !matches!(parsed.scheme(), "http" | "https") {
            return Some(Err(format!(
                "GCS emulator endpoint {raw:?} must use http or https, not {}",
                parsed.scheme()
            )));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Some(Err(format!("GCS emulator endpoint {raw:?} has no host")));
        }
        Some(Ok(with_scheme.trim_end_matches('/').to_string()))
    }
}
