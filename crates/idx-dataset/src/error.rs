//! The crate's single error type.

use crate::idx::IdxKind;

/// Everything that can go wrong reading IDX data or making batches from it.
///
/// Each variant names the file at fault (as the caller named it: usually its storage location)
/// and, where there is one, the expected and the found value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdxError {
    #[error("{file}: too short for {what}: needs {needed} bytes, has {found}")]
    Truncated {
        file: String,
        what: &'static str,
        needed: u64,
        found: u64,
    },

    #[error(
        "{file}: not an IDX file: expected the first two bytes to be 0x00 0x00, found {:#04x} {:#04x}",
        found[0],
        found[1]
    )]
    NotIdx { file: String, found: [u8; 2] },

    #[error(
        "{file}: unsupported IDX element type {dtype:#04x} ({}): expected 0x08 (unsigned byte)",
        crate::idx::dtype_name(*dtype)
    )]
    UnsupportedDtype { file: String, dtype: u8 },

    #[error(
        "{file}: wrong IDX magic number for {}: expected {expected}, found {found} ({})",
        kind.description(),
        crate::idx::magic_description(*found)
    )]
    WrongMagic {
        file: String,
        kind: IdxKind,
        expected: u32,
        found: u32,
    },

    #[error("{file}: the {dimension} dimension is 0")]
    ZeroDimension {
        file: String,
        dimension: &'static str,
    },

    #[error("{file}: dimensions {dims:?} describe more than the {limit} bytes this reader accepts")]
    TooLarge {
        file: String,
        dims: Vec<u32>,
        limit: u64,
    },

    #[error(
        "{file}: payload length mismatch: dimensions {dims:?} need {expected} bytes, found {found}"
    )]
    PayloadLength {
        file: String,
        dims: Vec<u32>,
        expected: u64,
        found: u64,
    },

    #[error(
        "{file}: payload longer than dimensions {dims:?} allow: expected {expected} bytes, found more"
    )]
    PayloadTooLong {
        file: String,
        dims: Vec<u32>,
        expected: u64,
    },

    #[error("{file}: corrupt or truncated gzip data")]
    Gzip {
        file: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{images_file} has {images} images but {labels_file} has {labels} labels")]
    CountMismatch {
        images_file: String,
        images: u64,
        labels_file: String,
        labels: u64,
    },

    #[error(
        "{file}: label {label} at index {index} is out of range: expected below {num_classes} classes"
    )]
    LabelOutOfRange {
        file: String,
        index: usize,
        label: u8,
        num_classes: usize,
    },

    #[error("invalid {what}: {reason}")]
    InvalidArgument { what: &'static str, reason: String },

    #[error("{dir}: no {description} file: looked for {}", looked_for.join(", "))]
    MissingFile {
        dir: String,
        description: &'static str,
        looked_for: Vec<String>,
    },

    #[error("cannot read {file}")]
    Storage {
        file: String,
        /// Boxed: storage errors are large and this crate's results are passed around a lot.
        #[source]
        source: Box<storage::StorageError>,
    },
}
