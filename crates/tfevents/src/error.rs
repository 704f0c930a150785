//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong writing or reading event files. Every variant names the file (or
/// run directory) at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TfEventsError {
    /// Uploading or creating an event file through the `storage` crate failed (`gs://`,
    /// `memory://`).
    #[error("cannot write TensorBoard event file {file}")]
    Storage {
        file: String,
        #[source]
        source: Box<storage::StorageError>,
    },

    /// Creating or appending to a local event file failed.
    #[error("cannot {operation} TensorBoard event file {}", path.display())]
    LocalIo {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A scalar was given a tag TensorBoard cannot show.
    #[error("cannot write scalar to {file}: {reason}")]
    InvalidTag { file: String, reason: String },

    /// The TFRecord framing of a file is broken: a checksum mismatch or a record cut short.
    #[error("{file}: corrupt event record at byte {offset}: {reason}")]
    CorruptRecord {
        file: String,
        offset: u64,
        reason: String,
    },

    /// A record's checksums are right but its bytes are not an `Event` protobuf.
    #[error("{file}: record {index} is not a TensorBoard Event")]
    NotAnEvent {
        file: String,
        index: usize,
        #[source]
        source: prost::DecodeError,
    },
}
