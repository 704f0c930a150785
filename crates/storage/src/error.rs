//! The crate's single error type, and the mapping from `object_store` errors onto it.

use std::error::Error as StdError;

/// Everything that can go wrong in this crate.
///
/// Every variant names the location (as the user wrote it, see [`crate::Location`]'s `Display`)
/// and, for I/O, the operation that failed, so a message read on its own says *what* failed *where*.
/// The kind of failure (not found, permission, network, bad URL, ...) is the variant, so callers
/// can react to it (see [`StorageError::is_not_found`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The URL or path could not be understood, or a joined path would escape its base (`..`).
    #[error("invalid storage location {location:?}: {reason}")]
    InvalidLocation { location: String, reason: String },

    /// The store behind a valid location could not be set up (credentials, emulator endpoint).
    #[error("cannot set up storage for {location}: {reason}")]
    Config {
        location: String,
        reason: String,
        #[source]
        source: Option<object_store::Error>,
    },

    /// There is no object at the location.
    #[error("cannot {operation} {location}: not found")]
    NotFound {
        location: String,
        operation: &'static str,
        #[source]
        source: object_store::Error,
    },

    /// The credentials in use may not do this (or there are no valid credentials).
    #[error("cannot {operation} {location}: permission denied or not authenticated")]
    PermissionDenied {
        location: String,
        operation: &'static str,
        #[source]
        source: object_store::Error,
    },

    /// No credentials could be obtained for Google Cloud Storage.
    #[error(
        "cannot {operation} {location}: no usable Google Cloud credentials (set \
         GOOGLE_APPLICATION_CREDENTIALS, run `gcloud auth application-default login`, or set \
         STORAGE_EMULATOR_HOST to use an emulator)"
    )]
    Credentials {
        location: String,
        operation: &'static str,
        #[source]
        source: object_store::Error,
    },

    /// The storage service could not be reached or the connection failed (after retries).
    #[error("cannot {operation} {location}: network error")]
    Network {
        location: String,
        operation: &'static str,
        #[source]
        source: object_store::Error,
    },

    /// Any other failure reported by the store (server error, local I/O error, ...).
    #[error("cannot {operation} {location}: storage error")]
    Backend {
        location: String,
        operation: &'static str,
        #[source]
        source: object_store::Error,
    },

    /// The object is larger than the caller accepts; nothing of it was read.
    #[error("cannot read {location}: it is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        location: String,
        size: u64,
        limit: u64,
    },

    /// `write_tree` was called with a file list it cannot write safely.
    #[error("cannot write tree at {location}: {reason}")]
    InvalidTree { location: String, reason: String },

    /// The crate's I/O runtime could not be started or the I/O task died.
    #[error("cannot {operation} {location}: storage I/O runtime failed: {reason}")]
    Runtime {
        location: String,
        operation: &'static str,
        reason: String,
    },
}

impl StorageError {
    /// True when the failure means "there is no object there" (as opposed to "could not look").
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }

    /// The location the error is about, as shown to the user.
    pub fn location(&self) -> &str {
        match self {
            StorageError::InvalidLocation { location, .. }
            | StorageError::Config { location, .. }
            | StorageError::NotFound { location, .. }
            | StorageError::PermissionDenied { location, .. }
            | StorageError::Credentials { location, .. }
            | StorageError::Network { location, .. }
            | StorageError::Backend { location, .. }
            | StorageError::InvalidTree { location, .. }
            | StorageError::TooLarge { location, .. }
            | StorageError::Runtime { location, .. } => location,
        }
    }

    /// Sorts an `object_store` error into one of the I/O variants.
    pub(crate) fn from_store(
        source: object_store::Error,
        operation: &'static str,
        location: String,
    ) -> StorageError {
        match classify(&source) {
            Kind::NotFound => StorageError::NotFound {
                location,
                operation,
                source,
            },
            Kind::Permission => StorageError::PermissionDenied {
                location,
                operation,
                source,
            },
            Kind::Credentials => StorageError::Credentials {
                location,
                operation,
                source,
            },
            Kind::Network => StorageError::Network {
                location,
                operation,
                source,
            },
            Kind::Other => StorageError::Backend {
                location,
                operation,
                source,
            },
        }
    }
}

/// An error and its causes as one line, each text once. Errors here and in the stores they
/// wrap embed their cause's text in their own and also return it as their `source`, so printing
/// the chain naively repeats the same nested text three or four times (a GCS failure showed its
/// URL and retry summary thrice). A cause whose text is already shown is left out; a cause whose
/// text extends what is shown (a wrapper that only adds context) replaces it.
pub fn error_chain_text(error: &(dyn StdError + 'static)) -> String {
    let mut shown = String::new();
    let mut cause: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(current) = cause {
        let text = current.to_string();
        if shown.is_empty() || text.starts_with(&shown) {
            shown = text;
        } else if !shown.contains(&text) {
            shown.push_str(": ");
            shown.push_str(&text);
        }
        cause = current.source();
    }
    shown
}

enum Kind {
    NotFound,
    Permission,
    Credentials,
    Network,
    Other,
}

/// `object_store` reports not-found and permission errors as variants for remote stores, but the
/// local store folds permission problems and all stores fold network failures into `Generic`,
/// so the cause chain is inspected too.
fn classify(error: &object_store::Error) -> Kind {
    match error {
        object_store::Error::NotFound { .. } => return Kind::NotFound,
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => return Kind::Permission,
        _ => {}
    }
    let mut cause: Option<&(dyn StdError + 'static)> = error.source();
    while let Some(current) = cause {
        // Fetching an OAuth token failed (object_store's credential error type is private, so
        // its message is what identifies it). Checked before network causes: outside Google
        // Cloud the metadata server is unreachable, which is a credentials problem to the user.
        if current
            .to_string()
            .starts_with("Error performing token request")
        {
            return Kind::Credentials;
        }
        if let Some(http) = current.downcast_ref::<object_store::client::HttpError>() {
            use object_store::client::HttpErrorKind;
            match http.kind() {
                HttpErrorKind::Connect
                | HttpErrorKind::Request
                | HttpErrorKind::Timeout
                | HttpErrorKind::Interrupted => return Kind::Network,
                _ => {}
            }
        }
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind;
            match io.kind() {
                ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => {
                    return Kind::Permission;
                }
                ErrorKind::NotFound => return Kind::NotFound,
                ErrorKind::ConnectionRefused
                | ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::NotConnected
                | ErrorKind::TimedOut
                | ErrorKind::HostUnreachable
                | ErrorKind::NetworkUnreachable => return Kind::Network,
                _ => {}
            }
        }
        cause = current.source();
    }
    Kind::Other
}

#[cfg(test)]
mod chain_tests {
    use super::*;

    /// A test error whose text embeds its cause's, as object_store's errors do.
    #[derive(Debug)]
    struct Layer(String, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl StdError for Layer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            self.1.as_deref().map(|l| l as &(dyn StdError + 'static))
        }
    }

    #[test]
    fn chain_text_shows_each_cause_once() {
        let layer = |text: &str, cause| Layer(text.to_string(), cause);
        let root = layer("Connection refused (os error 111)", None);
        let tcp = layer(
            "tcp connect error: Connection refused (os error 111)",
            Some(Box::new(root)),
        );
        let retry = layer(
            "Error performing HEAD u after 2 retries",
            Some(Box::new(tcp)),
        );
        let generic = layer(
            "Generic GCS error: Error performing HEAD u after 2 retries",
            Some(Box::new(retry)),
        );
        let storage = layer(
            "cannot check gs://b/x: network error",
            Some(Box::new(generic)),
        );
        let context = layer("cannot check gs://b/x", Some(Box::new(storage)));
        assert_eq!(
            error_chain_text(&context),
            "cannot check gs://b/x: network error: Generic GCS error: Error performing HEAD u \
             after 2 retries: tcp connect error: Connection refused (os error 111)"
        );
    }
}
