//! savedmodel-format: TensorFlow SavedModel files, written and read without TensorFlow.
//!
//! A SavedModel directory is `saved_model.pb` (a `SavedModel` protobuf: meta graphs with a
//! `GraphDef`, signatures and a `SaverDef`) plus a tensor bundle in `variables/` (an SSTable
//! `.index` and raw `.data-*` shards). This crate turns those bytes into typed values and back,
//! compatibly enough that TensorFlow, TF Serving and `gcloud ai-platform local predict` load what
//! we write, and that we can read what TensorFlow writes.
//!
//! # What's where
//! * [`proto`]: hand-written `prost` messages for the schema subset a SavedModel uses (no
//!   `protoc` or build script). Message fields are `Option`s so presence round-trips.
//! * [`tensor`]: [`HostTensor`]/[`TensorData`]/[`DataType`], the tensors shared with the runtime
//!   and the servers, with the row operations batching needs; [`convert`]: `TensorProto` and
//!   little-endian buffer conversions.
//! * [`signature`]: [`SignatureInfo`]/[`TensorSpec`] (a signature's named dense tensors, dtype and
//!   shape) and the one [`DEFAULT_SIGNATURE`] key, shared by the runtime, `predict-json` and the
//!   servers.
//! * [`crc`]: masked CRC-32C; [`sstable`]: the LevelDB table format as TF writes it;
//!   [`bundle`]: tensor bundles (`variables.index` + data shards), byte-identical to TF's writer.
//! * [`writer`]: [`writer::export_mlp`] writes a dense MLP as a TF1-style SavedModel (resource
//!   variables, save/restore subgraph, `serving_default` predict signature).
//! * [`reader`]: parsing, meta graph selection by tag set, signature lookup, and validation
//!   (signature tensors exist, the restore subgraph's variables match the bundle's dtypes and
//!   shapes).
//! * [`FormatError`]: the crate's one error type; every variant names the file and the tensor,
//!   signature, node or field at fault.
//!
//! # Why no candle and no I/O
//! The format is pure data: keeping this crate free of candle keeps it small, fast to build and
//! usable by tools that never evaluate a graph (the trainer's exporter, validators). Evaluating
//! graphs on candle lives in `savedmodel-runtime`, which depends on this crate (not the reverse),
//! so the dependency graph stays a line. Likewise the crate does no I/O: it parses and produces
//! byte buffers, and the callers choose local files or `gs://` (see the `storage` crate). That
//! also makes every parser testable on in-memory garbage.
//!
//! # Writing a SavedModel: marker last
//! [`writer::export_mlp`] returns `(relative path, bytes)` pairs with `saved_model.pb`
//! ([`writer::SAVED_MODEL_MARKER`]) **last**. Callers must write the files in that order (and
//! should write each one atomically, e.g. temp name + rename, where the store allows it): loaders
//! treat a directory containing `saved_model.pb` as a complete model, so writing the marker last
//! means a crash or a concurrent reader never sees a model whose variables are missing or partly
//! written.
//!
//! # Robustness
//! All parsers treat input as untrusted: bounds and checksums are verified, sizes are checked
//! before allocating, protobuf decoding is depth-limited by prost's recursion limit (100), and
//! none of them panics on malformed input (see `tests/savedmodel_format/fuzz.rs`).

pub mod bundle;
pub mod convert;
pub mod crc;
mod error;
pub mod proto;
pub mod reader;
pub mod signature;
pub mod sstable;
pub mod tensor;
pub mod writer;

pub use error::FormatError;
pub use signature::{DEFAULT_SIGNATURE, SignatureInfo, TensorSpec};
pub use tensor::{DataType, HostTensor, TensorData};
