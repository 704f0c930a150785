//! Reads MNIST-style IDX files from any [`storage::Location`] (local, `gs://`, `memory://`),
//! checks them thoroughly, and turns them into `f32` training batches.
//!
//! Why it is shaped this way:
//! - **Distrust every byte.** Files come from users and buckets. The IDX header is decoded
//!   field by field (zero bytes, element type, rank, magic number, dimensions) and the payload
//!   length is checked against the header's product with checked arithmetic *before* any
//!   allocation sized by the header; gzip input is never inflated beyond what the header allows
//!   plus one byte, nor beyond [`MAX_IDX_BYTES`]. Every failure is an [`IdxError`] naming the
//!   file and the expected and found values, never a panic.
//! - **Content, not names.** Gzip is recognised by its magic bytes, so `train-images-idx3-ubyte`
//!   may be compressed and `*.gz` may not be.
//! - **Fail before training.** Image/label counts are checked at load time and labels against
//!   the number of classes when batching starts ([`Dataset::validate_labels`]), so bad data
//!   stops a run before its first step rather than in the middle of an epoch.
//! - **Bytes at rest, floats in flight.** A [`Dataset`] keeps pixels as `u8`; [`BatchIter`]
//!   scales them by 1/255 into a reused `f32` buffer, with one-hot labels, in file order or in a
//!   seeded ChaCha8 permutation that is the same on every platform.

mod dataset;
mod error;
mod idx;
mod mnist;

pub use dataset::{Batch, BatchIter, Dataset, shuffled_indices};
pub use error::IdxError;
pub use idx::{
    DTYPE_U8, IMAGES_MAGIC, IdxArray, IdxKind, LABELS_MAGIC, MAX_IDX_BYTES, decode_idx, is_gzip,
};
pub use mnist::{MnistSplits, load_mnist, load_mnist_blocking};
