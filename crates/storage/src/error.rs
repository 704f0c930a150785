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
