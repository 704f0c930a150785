//! The crate's single error type.

/// Everything that can go wrong while reading or writing SavedModel files.
///
/// Each variant names the file (by its name inside the SavedModel directory, e.g.
/// `variables/variables.index`), and where it applies the tensor, signature, node or field at
/// fault, so that a user can tell which part of which file is broken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// A protobuf message could not be decoded (truncated, corrupted, nested too deeply, …).
    #[error("{file}: cannot decode {message}: {source}")]
    Decode {
        file: String,
        message: &'static str,
        #[source]
        source: prost::DecodeError,
    },

    /// The SSTable (`.index` file) structure is broken: bad footer, magic, handle, block layout.
    #[error("{file}: corrupt table: {reason}")]
    Table { file: String, reason: String },

    /// A table block's stored checksum does not match its contents.
    #[error(
        "{file}: block checksum mismatch in {block} block at offset {offset} (stored {stored:#010x}, computed {computed:#010x})"
    )]
    BlockChecksum {
        file: String,
        block: &'static str,
        offset: u64,
        stored: u32,
        computed: u32,
    },

    /// An SSTable could not be written (keys out of order, …).
    #[error("table writer: {reason}")]
    TableWrite { reason: String },

    /// A bundle index entry is invalid or inconsistent (bad header, size, shape, slices, …).
    #[error("{file}: tensor '{tensor}': {reason}")]
    BundleEntry {
        file: String,
        tensor: String,
        reason: String,
    },

    /// The tensor's bytes in the data file do not match the checksum in the index.
    #[error(
        "{file}: tensor '{tensor}': checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): the data file is corrupt"
    )]
    TensorChecksum {
        file: String,
        tensor: String,
        stored: u32,
        computed: u32,
    },

    /// The data shard holding a tensor was not supplied (the file is missing).
    #[error("{file}: data file is missing (needed for tensor '{tensor}')")]
    MissingDataFile { file: String, tensor: String },

    /// A tensor's byte range lies outside its data file (truncated file or corrupt index).
    #[error(
        "{file}: tensor '{tensor}' needs bytes {offset}..{end} but the file has only {file_len} bytes"
    )]
    DataOutOfRange {
        file: String,
        tensor: String,
        offset: u64,
        end: u64,
        file_len: u64,
    },

    /// A tensor name was looked up that the bundle does not contain.
    #[error("{file}: tensor '{tensor}' not found in the bundle")]
    TensorNotFound { file: String, tensor: String },

    /// A dtype this crate cannot decode/encode. `context` says where it was found.
    #[error("{context}: unsupported dtype {dtype} ({name})")]
    UnsupportedDType {
        context: String,
        dtype: i32,
        name: &'static str,
    },

    /// A `TensorProto` (Const value, signature default, …) is malformed.
    #[error("{context}: invalid tensor: {reason}")]
    InvalidTensor { context: String, reason: String },

    /// No meta graph has exactly the requested tag set.
    #[error(
        "saved_model.pb: no meta graph matches tags {requested:?}; available tag sets: {available:?}"
    )]
    MetaGraphNotFound {
        requested: Vec<String>,
        available: Vec<Vec<String>>,
    },

    /// The SavedModel has no signature with the requested key.
    #[error("saved_model.pb: no signature '{key}'; available signatures: {available:?}")]
    SignatureNotFound { key: String, available: Vec<String> },

    /// A signature input/output refers to a tensor that is not in the graph (or is malformed).
    #[error(
        "saved_model.pb: signature '{signature}' {direction} '{key}' refers to tensor '{tensor}': {reason}"
    )]
    SignatureTensor {
        signature: String,
        direction: &'static str,
        key: String,
        tensor: String,
        reason: String,
    },

    /// The graph is structurally unusable for the requested operation (missing graph_def, a
    /// node without a required attr, a restore subgraph we cannot follow, …).
    #[error("saved_model.pb: {context}: {reason}")]
    Graph { context: String, reason: String },

    /// A variable's shape or dtype in the graph differs from the tensor stored in the bundle.
    #[error(
        "variable '{variable}' (checkpoint key '{checkpoint_key}'): graph declares {graph}, but variables/variables.index stores {bundle}"
    )]
    VariableMismatch {
        variable: String,
        checkpoint_key: String,
        graph: String,
        bundle: String,
    },

    /// The model handed to the exporter is inconsistent (shapes, names, non-finite weights).
    #[error("cannot export model: {0}")]
    InvalidExport(String),
}

impl FormatError {
    pub(crate) fn decode(
        file: &str,
        message: &'static str,
        source: prost::DecodeError,
    ) -> FormatError {
        FormatError::Decode {
            file: file.to_string(),
            message,
            source,
        }
    }

    pub(crate) fn table(file: &str, reason: impl Into<String>) -> FormatError {
        FormatError::Table {
            file: file.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn entry(file: &str, tensor: &str, reason: impl Into<String>) -> FormatError {
        FormatError::BundleEntry {
            file: file.to_string(),
            tensor: tensor.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn graph(context: impl Into<String>, reason: impl Into<String>) -> FormatError {
        FormatError::Graph {
            context: context.into(),
            reason: reason.into(),
        }
    }
}
