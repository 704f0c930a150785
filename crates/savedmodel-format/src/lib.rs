//! savedmodel-format: TensorFlow SavedModel files, written and read without TensorFlow.
//!
//! (Overview to be completed by the crate's author: proto subset, tensor bundle, SSTable,
//! graph writer, reader/validation.)
//!
//! The crate is deliberately free of candle and of any I/O: it turns bytes into messages and
//! tensors and back. Loading from disk or `gs://` is the caller's job (see `storage`), and
//! evaluating a graph lives in `savedmodel-runtime`.

pub mod bundle;
pub mod convert;
pub mod crc;
mod error;
pub mod proto;
pub mod reader;
pub mod sstable;
pub mod tensor;
pub mod writer;

pub use error::FormatError;

pub use tensor::{DataType, HostTensor, TensorData};
